"""Stores, the books they list and their stock.

A listing (one store's copy of a book: price, stock) is its own small document,
keyed by ``listing_id``; the book's descriptive info lives once in ``books`` and
its pictures in ``pictures``, so the documents that orders and searches read
stay small.
"""
import base64
import binascii

from pymongo.errors import DuplicateKeyError

from be import errors
from be.db import listing_id
from be.model import paging

MAX_STOCK = 10**9


def create_store(ctx, user_id, store_id):
    try:
        ctx.db.stores.insert_one(
            {"_id": store_id, "owner_id": user_id, "created_at": ctx.clock.now()})
    except DuplicateKeyError:
        raise errors.StoreExists(store_id)


def owned_store(ctx, user_id, store_id):
    """The store, if ``user_id`` owns it: 513 when it does not exist, 401 otherwise."""
    store = ctx.db.stores.find_one({"_id": store_id})
    if store is None:
        raise errors.NoSuchStore(store_id)
    if store["owner_id"] != user_id:
        raise errors.AuthorizationFailed()
    return store


def _decode_pictures(book_id, pictures):
    decoded = []
    for n, text in enumerate(pictures or []):
        try:
            decoded.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise errors.BadRequest(f"book_info.pictures.{n}: not valid base64")
    return decoded


def add_book(ctx, user_id, store_id, info, stock_level):
    """List a book in a store. ``info`` is a dict of book_info fields (id and title
    present). The catalog entry and pictures are written before the listing, so a
    crash in between leaves at worst an unlisted catalog entry, never a listing
    without its book."""
    owned_store(ctx, user_id, store_id)
    book_id = info["id"]
    lid = listing_id(store_id, book_id)
    if ctx.db.listings.find_one({"_id": lid}, {"_id": 1}) is not None:
        _mark_listed(ctx, book_id)  # repairs a crash between the listing and its flag
        raise errors.BookExists(book_id)
    pictures = _decode_pictures(book_id, info.get("pictures"))
    now = ctx.clock.now()
    catalog = {k: v for k, v in info.items() if k not in ("id", "pictures")}
    catalog["updated_at"] = now
    catalog.update(_search_fields(info))
    if pictures:
        catalog["picture_count"] = len(pictures)
        for n, data in enumerate(pictures):
            ctx.db.pictures.replace_one(
                {"_id": f"{book_id}#{n}"},
                {"book_id": book_id, "n": n, "data": data, "content_type": picture_type(data)},
                upsert=True)
        ctx.db.pictures.delete_many({"book_id": book_id, "n": {"$gte": len(pictures)}})
    ctx.db.books.update_one({"_id": book_id},
                            {"$set": catalog, "$setOnInsert": {"created_at": now}}, upsert=True)
    try:
        ctx.db.listings.insert_one({
            "_id": lid, "store_id": store_id, "book_id": book_id,
            "title": info["title"], "price": info.get("price") or 0,
            "stock_level": stock_level, "stock_added": stock_level, "created_at": now,
        })
    except DuplicateKeyError:
        raise errors.BookExists(book_id)
    _mark_listed(ctx, book_id)


def _search_fields(info):
    """Fields the search index reads; kept in step with the info on every write."""
    from be.model import search
    return search.index_fields(info)


def _mark_listed(ctx, book_id):
    """Site-wide search shows only listed books: flagged once a listing exists."""
    from be.model import search
    search.mark_listed(ctx, book_id)


def picture_type(data):
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def add_stock_level(ctx, user_id, store_id, book_id, add_stock_level):
    owned_store(ctx, user_id, store_id)
    result = ctx.db.listings.update_one(
        {"_id": listing_id(store_id, book_id), "stock_level": {"$lte": MAX_STOCK - add_stock_level}},
        {"$inc": {"stock_level": add_stock_level, "stock_added": add_stock_level}})
    if result.matched_count != 1:
        if ctx.db.listings.find_one({"_id": listing_id(store_id, book_id)}, {"_id": 1}) is None:
            raise errors.NoSuchBook(book_id)
        raise errors.BadRequest(f"add_stock_level would take the stock over {MAX_STOCK}")


def store_books(ctx, user_id, store_id, page, page_size, after=None):
    """The store's listings by book_id: a paging.Page (cursor: the last book_id)."""
    paging.check(page, page_size, after)
    start = None if after is None else paging.decode("books", after, str)[0]
    owned_store(ctx, user_id, store_id)
    query = {"store_id": store_id}
    find = query if start is None else dict(query, book_id={"$gt": start})
    rows = list(ctx.db.listings.find(
        find, {"book_id": 1, "title": 1, "price": 1, "stock_level": 1, "_id": 0},
        sort=[("store_id", 1), ("book_id", 1)], skip=paging.skip(page, page_size, after),
        limit=page_size + 1))
    return paging.finish(rows, page_size, lambda row: paging.encode("books", row["book_id"]),
                         paging.count(ctx.db.listings, query))
