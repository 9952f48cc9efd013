"""Stores, the books they list and their stock: each store owns its listings.

A listing (one store's copy of a book) is its own small document, keyed by
``listing_id``: ``price``, ``stock_level``/``stock_added``, ``on_sale``, and
``desc``, the id of the description it shows (``be.model.catalogue``: the
book_info fields and pictures, content addressed and shared by every listing
that says the same). Only the store's owner changes a listing, and a change to
one listing never reaches another: a new description is a new document, and
the listing's pointer moves to it in one update (after the description and its
pictures are stored), so a crash leaves the old description or the new one.

The seller's calls: ``add_book`` (the classic contract), ``add_books`` (up to
``MAX_BATCH`` of them in one call, each listed or refused on its own, for
importers), ``update_book`` (new description, and price if given),
``set_price``, ``add_stock_level``, ``set_stock_level`` (units held by orders
untouched), ``unlist_book`` and ``relist_book`` (off sale: not found by search,
new orders refused with 515; its open orders run their course);
``store_book_ids`` lists a store's ids for importers.
"""
from pymongo.errors import BulkWriteError, DuplicateKeyError

from be import errors
from be.db import listing_id
from be.model import catalogue, paging

MAX_STOCK = 10**9
SET_STOCK_ATTEMPTS = 20  # compare-and-set rounds before answering 503
# add_books: books per call, and how many of them are prepared (outside the
# embedded engine's lock) and then written (in one hold of it) at a time
MAX_BATCH = 100
BATCH_CHUNK = 25
BATCH_CHUNK_PICTURE_BYTES = 8 << 20  # a chunk also closes once its pictures hold this
MAX_ID_PAGE = 5_000  # store_book_ids: ids per page (~25 ms of engine time)


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
        ctx.db.listings.insert_one(
            _new_listing(store_id, info, prepared.id, stock_level, ctx.clock.now()))
    except DuplicateKeyError:
        raise errors.BookExists(book_id)


def _new_listing(store_id, info, desc_id, stock_level, now):
    book_id = info["id"]
    return {"_id": listing_id(store_id, book_id), "store_id": store_id, "book_id": book_id,
            "desc": desc_id, "price": info.get("price") or 0, "stock_level": stock_level,
            "stock_added": stock_level, "on_sale": True, "created_at": now}


def add_books(ctx, user_id, store_id, books):
    """List several books in a store: ``books`` is a list of (info, stock_level) as
    add_book takes them, at most MAX_BATCH. Returns one result per book, in order:
    None when it is listed now, else the error add_book would have raised for it
    alone (516 already listed, or listed earlier in this call; 400 for a picture or
    a description add_book would refuse), so that one bad book does not refuse
    the others. The store is checked first (513, 401): then nothing is written.

    Why in chunks: add_book costs ~1 ms per book at the model level, ~0.45 ms of
    it in its writes (an upsert per description through mongomock's update
    machinery, an insert per listing, a call each): 40 s for 40,000 books. Here
    each chunk of up to BATCH_CHUNK books is read once (which are listed
    already), prepared with the engine's lock let go (segmentation and picture
    decoding: ~0.3 ms per generated book, up to ~5 ms per book of the course's
    sample), then written in one hold of the lock: the pictures and descriptions
    not stored yet, then the listings, each kind in one unordered insert (~0.12
    ms a book in all). A hold lasts 2-6 ms for 25 generated books (python -m
    fe.bench --mode import measures it); a call never holds the lock for more
    than one chunk's writes at a time, so a batch keeps no other request waiting
    for long (with more than one request thread: in memory the server has one,
    and a request waits for the batch ahead of it, ~50 ms for 100 books).

    Crash safety as add_book's: a listing is written after its description and
    pictures, and listings are inserted one document each, so a crash (or the
    request's time budget running out, 503) leaves each book listed, complete,
    or not listed at all; sending the same batch again lists the rest and
    answers 516 for those listed already."""
    if len(books) > MAX_BATCH:
        raise errors.BadRequest(f"invalid field 'books': {len(books)} books, at most "
                                f"{MAX_BATCH} per call")
    owned_store(ctx, user_id, store_id)
    results = [None] * len(books)
    todo, seen = [], set()
    for n, (info, _) in enumerate(books):
        if info["id"] in seen:
            results[n] = errors.BookExists(info["id"])  # listed by its first occurrence
        else:
            seen.add(info["id"])
            todo.append(n)
    for chunk in _chunks(todo, books):
        _add_chunk(ctx, store_id, books, chunk, results)
    return results


def _picture_bytes(info):
    return sum(len(p) * 3 // 4 for p in info.get("pictures") or [] if isinstance(p, str))


def _chunks(todo, books):
    """``todo`` (indexes into ``books``) cut into chunks of at most BATCH_CHUNK books
    and, past the first book of a chunk, BATCH_CHUNK_PICTURE_BYTES of pictures."""
    chunk, size = [], 0
    for n in todo:
        pictures = _picture_bytes(books[n][0])
        if chunk and (len(chunk) >= BATCH_CHUNK or size + pictures > BATCH_CHUNK_PICTURE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(n)
        size += pictures
    if chunk:
        yield chunk


def _add_chunk(ctx, store_id, books, chunk, results):
    lids = {n: listing_id(store_id, books[n][0]["id"]) for n in chunk}
    listed = {d["_id"] for d in ctx.db.listings.find({"_id": {"$in": list(lids.values())}},
                                                     {"_id": 1})}
    prepared = {}
    with ctx.cpu_work():  # segmentation and picture decoding: no data read
        for n in chunk:
            info = books[n][0]
            if lids[n] in listed:
                results[n] = errors.BookExists(info["id"])
                continue
            try:
                prepared[n] = catalogue.prepare(info["id"], info)
            except errors.BadRequest as exc:
                results[n] = exc
    if not prepared:
        return
    catalogue.store_many(ctx, list(prepared.values()))
    now = ctx.clock.now()
    order = list(prepared)
    try:
        ctx.db.listings.insert_many(
            [_new_listing(store_id, books[n][0], prepared[n].id, books[n][1], now)
             for n in order], ordered=False)
    except BulkWriteError as exc:
        if exc.details.get("writeConcernErrors"):
            raise
        for error in exc.details.get("writeErrors", []):
            if error.get("code") != 11000:
                raise
            n = order[error["index"]]  # listed meanwhile by another request
            results[n] = errors.BookExists(books[n][0]["id"])


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


def store_book_ids(ctx, user_id, store_id, page_size, after=None):
    """(ids, next): one page of the ids of the books the store lists (on sale or
    not), by book id, and the cursor after it (None at the end; as store_books',
    so either list's ``next`` continues the other); nothing counted.

    For importers, which must know what a store lists before sending: up to
    MAX_ID_PAGE ids a page (one ordered-index walk, ~5 us an id on the embedded
    engine: ~25 ms a page), so a store of 40,000 books is read in 8 requests,
    where store_books (100 rows a page, each with its title) takes 400."""
    if not 1 <= page_size <= MAX_ID_PAGE:
        raise errors.BadRequest(f"invalid field 'page_size': 1 to {MAX_ID_PAGE}")
    start = None if after is None else paging.decode("books", after, str)[0]
    owned_store(ctx, user_id, store_id)
    find = {"store_id": store_id}
    if start is not None:
        find["book_id"] = {"$gt": start}
    rows = ctx.db.listings.find(find, {"book_id": 1, "_id": 0},
                                sort=[("store_id", 1), ("book_id", 1)], limit=page_size + 1)
    ids = [r["book_id"] for r in rows]
    if len(ids) <= page_size:
        return ids, None
    return ids[:page_size], paging.encode("books", ids[page_size - 1])


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
