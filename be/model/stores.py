"""Stores, the books they list and their stock: each store owns its listings.

A listing (one store's copy of a book) is its own small document, keyed by
``listing_id``: ``price``, ``stock_level``/``stock_added``, ``on_sale``, and
``desc``, the id of the description it shows (``be.model.catalogue``: the
book_info fields and pictures, content addressed and shared by every listing
that says the same). Only the store's owner changes a listing, and a change to
one listing never reaches another: a new description is a new document, and
the listing's pointer moves to it in one update (after the description and its
pictures are stored), so a crash leaves the old description or the new one.

The seller's calls: ``add_book`` (the classic contract), ``update_book`` (new
description, and price if given), ``set_price``, ``add_stock_level``,
``set_stock_level`` (units held by orders untouched), ``unlist_book`` and
``relist_book`` (off sale: not found by search, new orders refused with 515;
its open orders run their course).
"""
from pymongo.errors import DuplicateKeyError

from be import errors
from be.db import listing_id
from be.model import catalogue, paging

MAX_STOCK = 10**9
SET_STOCK_ATTEMPTS = 20  # compare-and-set rounds before answering 503


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


def _listing(ctx, store_id, book_id, projection=None):
    """The store's listing of the book, or 515."""
    doc = ctx.db.listings.find_one({"_id": listing_id(store_id, book_id)},
                                   projection or {"_id": 1})
    if doc is None:
        raise errors.NoSuchBook(book_id)
    return doc


def add_book(ctx, user_id, store_id, info, stock_level):
    """List a book in a store. ``info`` is a dict of book_info fields (id and title
    present): the store's own description, stored (once per content) before the
    listing that points to it, so a listing never shows an incomplete one."""
    owned_store(ctx, user_id, store_id)
    book_id = info["id"]
    lid = listing_id(store_id, book_id)
    if ctx.db.listings.find_one({"_id": lid}, {"_id": 1}) is not None:
        raise errors.BookExists(book_id)
    with ctx.cpu_work():  # segmentation and picture decoding: no data read
        prepared = catalogue.prepare(book_id, info)
    catalogue.store(ctx, prepared)
    try:
        ctx.db.listings.insert_one({
            "_id": lid, "store_id": store_id, "book_id": book_id, "desc": prepared.id,
            "price": info.get("price") or 0, "stock_level": stock_level,
            "stock_added": stock_level, "on_sale": True, "created_at": ctx.clock.now(),
        })
    except DuplicateKeyError:
        raise errors.BookExists(book_id)


def update_book(ctx, user_id, store_id, info):
    """Replace the store's description of a listed book by ``info`` (as add_book
    takes it; pictures absent means none) and, when ``info`` has a price, its
    price. Other stores' listings of the book keep theirs; orders keep the price
    they were placed at."""
    owned_store(ctx, user_id, store_id)
    book_id = info["id"]
    _listing(ctx, store_id, book_id)
    with ctx.cpu_work():  # segmentation and picture decoding: no data read
        prepared = catalogue.prepare(book_id, info)
    catalogue.store(ctx, prepared)
    change = {"desc": prepared.id, "updated_at": ctx.clock.now()}
    if info.get("price") is not None:
        change["price"] = info["price"]
    ctx.db.listings.update_one({"_id": listing_id(store_id, book_id)}, {"$set": change})


def _set(ctx, user_id, store_id, book_id, change):
    owned_store(ctx, user_id, store_id)
    result = ctx.db.listings.update_one({"_id": listing_id(store_id, book_id)},
                                        {"$set": dict(change, updated_at=ctx.clock.now())})
    if result.matched_count != 1:
        raise errors.NoSuchBook(book_id)


def set_price(ctx, user_id, store_id, book_id, price):
    """The listing's price for orders placed from now on."""
    _set(ctx, user_id, store_id, book_id, {"price": price})


def unlist_book(ctx, user_id, store_id, book_id):
    """Take the listing off sale: search no longer finds it and new orders get
    515; orders already placed run their course (their stock stays held, a
    cancellation gives it back to the listing)."""
    _set(ctx, user_id, store_id, book_id, {"on_sale": False})


def relist_book(ctx, user_id, store_id, book_id):
    """Put an unlisted listing back on sale, as it was."""
    _set(ctx, user_id, store_id, book_id, {"on_sale": True})


def add_stock_level(ctx, user_id, store_id, book_id, add_stock_level):
    owned_store(ctx, user_id, store_id)
    result = ctx.db.listings.update_one(
        {"_id": listing_id(store_id, book_id), "stock_level": {"$lte": MAX_STOCK - add_stock_level}},
        {"$inc": {"stock_level": add_stock_level, "stock_added": add_stock_level}})
    if result.matched_count != 1:
        _listing(ctx, store_id, book_id)
        raise errors.BadRequest(f"add_stock_level would take the stock over {MAX_STOCK}")


def set_stock_level(ctx, user_id, store_id, book_id, stock_level):
    """Set the stock on the shelf to ``stock_level`` (0..10^9). Units that orders
    hold are not on the shelf and stay theirs. ``stock_added`` moves by the same
    amount, so the audit's ``stock_added == stock_level + held`` still holds: a
    compare-and-set on the level read, retried when an order moved it meanwhile."""
    owned_store(ctx, user_id, store_id)
    lid = listing_id(store_id, book_id)
    for _ in range(SET_STOCK_ATTEMPTS):
        level = _listing(ctx, store_id, book_id, {"stock_level": 1})["stock_level"]
        result = ctx.db.listings.update_one(
            {"_id": lid, "stock_level": level},
            {"$inc": {"stock_level": stock_level - level, "stock_added": stock_level - level}})
        if result.matched_count == 1:
            return
    raise errors.ListingBusy(book_id)


def store_books(ctx, user_id, store_id, page, page_size, after=None, *, on_sale=None):
    """One page of the store's listings by book_id (a paging.Page; cursor: the last
    book_id): title (from each listing's description), price and stock; only those
    on sale (or off sale) when ``on_sale`` is True (or False)."""
    paging.check(page, page_size, after)
    start = None if after is None else paging.decode("books", after, str)[0]
    owned_store(ctx, user_id, store_id)
    query = {"store_id": store_id}
    if on_sale is not None:
        query["on_sale"] = on_sale
    find = query if start is None else dict(query, book_id={"$gt": start})
    rows = list(ctx.db.listings.find(
        find, {"book_id": 1, "desc": 1, "price": 1, "stock_level": 1, "_id": 0},
        sort=[("store_id", 1), ("book_id", 1)], skip=paging.skip(page, page_size, after),
        limit=page_size + 1))
    found = paging.finish(rows, page_size, lambda row: paging.encode("books", row["book_id"]),
                          paging.count(ctx.db.listings, query))
    titles = {}
    if found.rows:
        titles = {d["_id"]: d["title"] for d in ctx.db.descriptions.find(
            {"_id": {"$in": list({r["desc"] for r in found.rows})}}, {"title": 1})}
    books = [{"book_id": r["book_id"], "title": titles[r["desc"]], "price": r["price"],
              "stock_level": r["stock_level"]} for r in found.rows]
    return found._replace(rows=books)
