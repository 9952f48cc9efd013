"""add_books (be.model.stores): many add_books in one call, each book listed or
refused on its own; and store_book_ids, the importer's view of a store."""
import base64
import threading

import pytest

from be import errors
from be.audit import audit
from be.db import listing_id
from be.model import catalogue, stores
from be.tests.conftest import new_id
from be.tests.support.faults import count_writes, crash_at, faulty

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 32


def pic(data):
    return base64.b64encode(data).decode()


def book(book_id, **fields):
    return dict({"id": book_id, "title": f"书 {book_id}", "price": 100}, **fields)


def codes(results):
    return [None if r is None else r.code for r in results]


def counts(ctx):
    return {c: ctx.db[c].count_documents({}) for c in ("listings", "descriptions", "pictures")}


@pytest.fixture
def seller(ctx, make_user):
    uid, _, _ = make_user("seller")
    store_id = new_id("store")
    stores.create_store(ctx, uid, store_id)
    return uid, store_id


def test_every_book_is_listed_as_add_book_lists_it(ctx, seller, make_user):
    """A batch writes what add_book writes: the same listings (price, stock, on sale)
    pointing to the same descriptions, pictures stored once by content."""
    uid, store_id = seller
    infos = [book("b1", author="刘慈欣", tags=["科幻"], pictures=[pic(PNG), pic(JPEG)]),
             book("b2", price=None, pictures=[pic(PNG)]),
             book("b3", book_intro="an intro", pages=300)]
    results = stores.add_books(ctx, uid, store_id, [(info, n + 1) for n, info in enumerate(infos)])
    assert results == [None, None, None]
    other = new_id("store")
    stores.create_store(ctx, uid, other)
    for n, info in enumerate(infos):
        stores.add_book(ctx, uid, other, info, n + 1)
    for info in infos:
        batched = ctx.db.listings.find_one({"_id": listing_id(store_id, info["id"])})
        single = ctx.db.listings.find_one({"_id": listing_id(other, info["id"])})
        for listing in (batched, single):
            del listing["_id"], listing["store_id"]
        assert batched == single
        assert set(batched) == {"book_id", "desc", "price", "stock_level", "stock_added",
                                "on_sale", "created_at"}
        assert ctx.db.descriptions.find_one({"_id": batched["desc"]}) == \
            catalogue.prepare(info["id"], info).doc  # the description add_book stores
    assert ctx.db.listings.find_one({"_id": listing_id(store_id, "b2")})["price"] == 0
    assert counts(ctx) == {"listings": 6, "descriptions": 3, "pictures": 2}
    assert audit(ctx.db) == []


def test_one_bad_book_refuses_nothing_else(ctx, seller):
    """Already listed (516), repeated in the batch (516: the first is listed), a bad
    picture or too many (400, as add_book says it): each refused alone."""
    uid, store_id = seller
    stores.add_book(ctx, uid, store_id, book("old", title="Old"), 4)
    batch = [(book("n1"), 1), (book("old", title="New"), 9), (book("n2", pictures=["***"]), 1),
             (book("n1", title="again"), 2), (book("n3", pictures=[pic(PNG)] * 11), 1),
             (book("n4"), 3)]
    results = stores.add_books(ctx, uid, store_id, batch)
    assert codes(results) == [None, 516, 400, 516, 400, None]
    assert results[1].message == "exist book id old"
    assert results[2].message == "book_info.pictures.0: not valid base64"
    assert "11 pictures, at most 10" in results[4].message
    listed = {d["book_id"]: d for d in ctx.db.listings.find({"store_id": store_id})}
    assert sorted(listed) == ["n1", "n4", "old"]
    assert listed["old"]["stock_level"] == 4  # the listing already there is untouched
    assert catalogue.description(ctx, listed["old"]["desc"])["title"] == "Old"
    assert catalogue.description(ctx, listed["n1"]["desc"])["title"] == "书 n1"  # the first
    assert listed["n1"]["stock_level"] == 1
    assert ctx.db.pictures.count_documents({}) == 0  # refused books stored nothing


def test_refused_call_writes_nothing(ctx, seller, make_user):
    uid, store_id = seller
    other, _, _ = make_user("other")
    batch = [(book(f"b{n}", pictures=[pic(PNG)]), 1) for n in range(3)]
    before = counts(ctx)
    with pytest.raises(errors.NoSuchStore):
        stores.add_books(ctx, uid, new_id("nostore"), batch)
    with pytest.raises(errors.AuthorizationFailed):
        stores.add_books(ctx, other, store_id, batch)
    with pytest.raises(errors.BadRequest) as exc:
        stores.add_books(ctx, uid, store_id, batch * 34)  # 102 books
    assert "at most 100" in exc.value.message
    assert counts(ctx) == before
    assert stores.add_books(ctx, uid, store_id, []) == []


def test_shared_content_is_stored_once(ctx, seller, make_user):
    """Descriptions and pictures are content addressed: what another store (or an
    earlier call) stored already is not written again, nor changed."""
    uid, store_id = seller
    other, _, _ = make_user("other")
    theirs = new_id("store")
    stores.create_store(ctx, other, theirs)
    same = book("s1", pictures=[pic(PNG)])
    stores.add_book(ctx, other, theirs, same, 1)
    stored = ctx.db.descriptions.find_one({})
    results = stores.add_books(ctx, uid, store_id, [
        (same, 2), (book("s2", pictures=[pic(PNG), pic(JPEG)]), 2),
        (book("s3", pictures=[pic(JPEG)]), 2)])
    assert results == [None, None, None]
    assert counts(ctx) == {"listings": 4, "descriptions": 3, "pictures": 2}
    assert ctx.db.descriptions.find_one({"_id": stored["_id"]}) == stored
    assert audit(ctx.db) == []


def test_a_book_listed_meanwhile_by_another_request_is_516(ctx, seller, monkeypatch):
    """Between the chunk's read of what is listed and its insert another request
    lists one of its books: the insert's duplicate key is that book's 516, the
    others are listed."""
    uid, store_id = seller
    real = catalogue.store_many

    def racing(ctx_, prepared):
        real(ctx_, prepared)
        stores.add_book(ctx, uid, store_id, book("r2", title="theirs"), 7)

    monkeypatch.setattr(catalogue, "store_many", racing)
    results = stores.add_books(ctx, uid, store_id, [(book(f"r{n}"), 1) for n in range(4)])
    assert codes(results) == [None, None, 516, None]
    listing = ctx.db.listings.find_one({"_id": listing_id(store_id, "r2")})
    assert listing["stock_level"] == 7
    assert catalogue.description(ctx, listing["desc"])["title"] == "theirs"


def test_content_stored_meanwhile_by_another_request_is_kept(ctx, seller):
    """store_many reads which pictures and descriptions are stored, then inserts the
    rest: one stored in between by another request (same id, same content) is a
    duplicate key it ignores, for pictures and descriptions alike."""
    prepared = [catalogue.prepare("c1", book("c1", pictures=[pic(PNG)])),
                catalogue.prepare("c2", book("c2", pictures=[pic(JPEG)]))]
    for write in (1, 2):  # pictures.insert_many, then descriptions.insert_many
        ctx.db.pictures.delete_many({})
        ctx.db.descriptions.delete_many({})
        with faulty(ctx, at=write, when="stall",
                    action=lambda: catalogue.store(ctx, prepared[0])) as db:
            catalogue.store_many(ctx, prepared)
        assert [w[1:3] for w in db.writes][write - 1] == (
            ("pictures", "descriptions")[write - 1], "insert_many")
        assert db.fired
        assert ctx.db.pictures.count_documents({}) == 2
        assert ctx.db.descriptions.count_documents({}) == 2
    assert audit(ctx.db) == []


@pytest.mark.embedded_only
def test_a_batch_lets_other_requests_in_between_chunks(ctx, seller, monkeypatch):
    """The engine's lock is let go while each chunk is prepared, so a request
    arriving during a batch runs before the batch's next chunk, not after the whole
    batch; each chunk's writes are made in one hold."""
    uid, store_id = seller
    monkeypatch.setattr(stores, "BATCH_CHUNK", 2)
    engine = ctx.engine.embedded
    chunk_started, probe_done = threading.Event(), threading.Event()
    prepared_chunks = []
    real = catalogue.prepare

    def prepare(book_id, info):
        if book_id == "p2":  # the second chunk's first book: let another request in
            chunk_started.set()
            assert probe_done.wait(30)
        prepared_chunks.append(book_id)
        return real(book_id, info)

    monkeypatch.setattr(catalogue, "prepare", prepare)
    errors_ = []

    def run():
        try:
            with engine.request():
                stores.add_books(ctx, uid, store_id, [(book(f"p{n}"), 1) for n in range(5)])
        except Exception as exc:  # reported below
            errors_.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert chunk_started.wait(30)
    seen = []

    def probe():
        with engine.request():
            seen.extend(d["book_id"] for d in ctx.db.listings.find({"store_id": store_id}))
        probe_done.set()

    other = threading.Thread(target=probe)
    other.start()
    other.join(30)
    worker.join(30)
    assert not errors_, errors_
    assert sorted(seen) == ["p0", "p1"]  # the first chunk, written whole; nothing more
    assert ctx.db.listings.count_documents({"store_id": store_id}) == 5


def test_chunks_bound_books_and_picture_bytes(monkeypatch):
    monkeypatch.setattr(stores, "BATCH_CHUNK", 3)
    monkeypatch.setattr(stores, "BATCH_CHUNK_PICTURE_BYTES", 3000)
    big = pic(b"x" * 2000)
    books = [(book("a"), 1), (book("b", pictures=[big]), 1), (book("c", pictures=[big]), 1),
             (book("d"), 1), (book("e"), 1), (book("f"), 1), (book("g", pictures=[big, big]), 1)]
    assert list(stores._chunks(range(7), books)) == [[0, 1], [2, 3, 4], [5], [6]]


@pytest.mark.embedded_only
@pytest.mark.parametrize("when", ["before", "after", "first", "last"])
def test_a_crash_leaves_each_book_listed_or_not_and_a_retry_lists_the_rest(
        ctx, seller, monkeypatch, when):
    """A crash at each write of a batch of two chunks with pictures (or, "first" and
    "last", in the middle of each insert of several documents): every listing stored
    is complete (the audit: its description and pictures are stored), and sending
    the batch again lists the rest, answering 516 for the books listed before."""
    uid, _ = seller
    monkeypatch.setattr(stores, "BATCH_CHUNK", 3)

    def fresh():
        """A new store and a batch whose content no other store has (so every
        batch makes the same writes)."""
        sid = new_id("store")
        stores.create_store(ctx, uid, sid)
        return sid, [(book(f"k{n}", title=f"{sid} {n}",
                           pictures=[pic(PNG + sid.encode() + bytes([n % 4]))]), n)
                     for n in range(5)]

    sid, batch = fresh()
    plan = count_writes(ctx, lambda: stores.add_books(ctx, uid, sid, batch))
    points = [n for n, _, _, size in plan if when in ("before", "after") or (size or 0) > 1]
    assert len(plan) == 6 and len(points) >= 4
    for point in points:
        sid, batch = fresh()
        outcome, _ = crash_at(ctx, lambda: stores.add_books(ctx, uid, sid, batch), point, when)
        assert outcome == "crashed"
        assert audit(ctx.db) == []
        listed = {d["book_id"] for d in ctx.db.listings.find({"store_id": sid})}
        results = stores.add_books(ctx, uid, sid, batch)
        assert codes(results) == [516 if f"k{n}" in listed else None for n in range(5)]
        assert ctx.db.listings.count_documents({"store_id": sid}) == 5
        assert audit(ctx.db) == []


# ---------------------------------------------------------------- store_book_ids

def test_book_ids_page_by_cursor_through_every_listing(ctx, seller, monkeypatch):
    uid, store_id = seller
    ids = [f"id{n:02d}" for n in range(23)]
    assert stores.add_books(ctx, uid, store_id, [(book(i), 1) for i in ids]) == [None] * 23
    stores.unlist_book(ctx, uid, store_id, "id05")  # off sale: still listed
    seen, after, pages = [], None, 0
    while True:
        page, after = stores.store_book_ids(ctx, uid, store_id, 5, after)
        seen += page
        pages += 1
        if after is None:
            break
    assert seen == ids and pages == 5
    assert stores.store_book_ids(ctx, uid, store_id, 23) == (ids, None)
    # either list's cursor continues the other
    found = stores.store_books(ctx, uid, store_id, 1, 3)
    assert stores.store_book_ids(ctx, uid, store_id, 2, found.next) == (
        ids[3:5], stores.paging.encode("books", "id04"))
    assert [b["book_id"] for b in stores.store_books(
        ctx, uid, store_id, 1, 2, stores.store_book_ids(ctx, uid, store_id, 3)[1]).rows] == \
        ids[3:5]


def test_book_ids_refusals(ctx, seller, make_user):
    uid, store_id = seller
    other, _, _ = make_user("other")
    with pytest.raises(errors.NoSuchStore):
        stores.store_book_ids(ctx, uid, new_id("nostore"), 10)
    with pytest.raises(errors.AuthorizationFailed):
        stores.store_book_ids(ctx, other, store_id, 10)
    for size in (0, stores.MAX_ID_PAGE + 1):
        with pytest.raises(errors.BadRequest):
            stores.store_book_ids(ctx, uid, store_id, size)
    with pytest.raises(errors.BadRequest) as exc:
        stores.store_book_ids(ctx, uid, store_id, 10, "bogus")
    assert "'after'" in exc.value.message
    assert stores.store_book_ids(ctx, uid, store_id, 10) == ([], None)
