"""Stores, listings and stock (be.model.stores) on the embedded engine."""
import base64

import pytest

from be import errors
from be.db import listing_id
from be.model import catalogue, sessions, stores
from be.tests.conftest import new_id

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 32


def listing(ctx, store_id, book_id):
    return ctx.db.listings.find_one({"_id": listing_id(store_id, book_id)})


def shown(ctx, store_id, book_id):
    """The description the store's listing shows."""
    return ctx.db.descriptions.find_one({"_id": listing(ctx, store_id, book_id)["desc"]})


def stock(ctx, store_id, book_id):
    return listing(ctx, store_id, book_id)["stock_level"]


@pytest.fixture
def seller(ctx, make_user):
    uid, _, token = make_user("seller")
    store_id = new_id("store")
    stores.create_store(ctx, uid, store_id)
    return uid, token, store_id


# ---------------------------------------------------------------- create_store

def test_create_store_records_owner(ctx, seller):
    uid, _, store_id = seller
    assert ctx.db.stores.find_one({"_id": store_id})["owner_id"] == uid


def test_create_store_existing_is_514_and_keeps_owner(ctx, seller, make_user):
    uid, token, store_id = seller
    with pytest.raises(errors.StoreExists) as exc:
        stores.create_store(ctx, uid, store_id)
    assert exc.value.code == 514
    other, _, other_token = make_user("other")
    with pytest.raises(errors.StoreExists):
        stores.create_store(ctx, other, store_id)
    assert ctx.db.stores.find_one({"_id": store_id})["owner_id"] == uid


def test_create_store_unknown_user_511_bad_token_401(ctx, make_user):
    uid, _, token = make_user()
    with pytest.raises(errors.NoSuchUser) as exc:
        sessions.authenticate(ctx, new_id("ghost"), token)  # the edge, before create_store
    assert exc.value.code == 511
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(ctx, uid, "bogus")
    assert ctx.db.stores.count_documents({}) == 0


# ---------------------------------------------------------------- add_book

def test_add_book_writes_catalog_and_listing(ctx, seller):
    uid, token, store_id = seller
    info = {"id": "b1", "title": "三体", "author": "刘慈欣", "price": 2300,
            "tags": ["科幻", "小说"], "pages": 302, "isbn": None}
    stores.add_book(ctx, uid, store_id, info, 7)
    row = listing(ctx, store_id, "b1")
    assert (row["store_id"], row["book_id"], row["on_sale"]) == (store_id, "b1", True)
    assert (row["price"], row["stock_level"]) == (2300, 7)
    book = shown(ctx, store_id, "b1")
    assert (book["book_id"], book["title"]) == ("b1", "三体")
    assert book["author"] == "刘慈欣" and book["tags"] == ["科幻", "小说"] and book["pages"] == 302
    assert book["_id"] == catalogue.description_id(book)  # content addressed
    assert "price" not in book  # the price is the listing's


def test_add_book_without_price_lists_it_at_zero(ctx, seller):
    uid, token, store_id = seller
    stores.add_book(ctx, uid, store_id, {"id": "free", "title": "Free"}, 1)
    assert listing(ctx, store_id, "free")["price"] == 0


def test_pictures_are_stored_apart_from_book_and_listing(ctx, seller):
    uid, token, store_id = seller
    pics = [base64.b64encode(PNG).decode(), base64.b64encode(JPEG).decode()]
    stores.add_book(ctx, uid, store_id,
                    {"id": "pic", "title": "Pictures", "price": 100, "pictures": pics}, 1)
    book = shown(ctx, store_id, "pic")
    assert book["pictures"] == [catalogue.picture_id(PNG), catalogue.picture_id(JPEG)]
    assert "pictures" not in listing(ctx, store_id, "pic")
    stored = [ctx.db.pictures.find_one({"_id": p}) for p in book["pictures"]]
    assert [bytes(d["data"]) for d in stored] == [PNG, JPEG]
    assert [d["content_type"] for d in stored] == ["image/png", "image/jpeg"]
    # the book's search/catalog doc carries no picture bytes at all
    assert not any(isinstance(v, (bytes, bytearray)) for v in book.values())


def test_a_picture_is_stored_once_however_often_it_is_sent(ctx, seller):
    uid, token, store_id = seller
    other = new_id("store")
    stores.create_store(ctx, uid, other)
    pic = base64.b64encode(PNG).decode()
    stores.add_book(ctx, uid, store_id, {"id": "p1", "title": "A", "pictures": [pic] * 9}, 1)
    stores.add_book(ctx, uid, other, {"id": "p2", "title": "B", "pictures": [pic]}, 1)
    assert ctx.db.pictures.count_documents({}) == 1
    assert shown(ctx, store_id, "p1")["pictures"] == [catalogue.picture_id(PNG)] * 9


def test_bad_base64_picture_is_400_and_writes_nothing(ctx, seller):
    uid, token, store_id = seller
    with pytest.raises(errors.BadRequest) as exc:
        stores.add_book(ctx, uid, store_id,
                        {"id": "bad", "title": "Bad", "pictures": ["!!not base64!!"]}, 1)
    assert exc.value.code == 400 and "pictures" in exc.value.message
    assert listing(ctx, store_id, "bad") is None
    assert ctx.db.descriptions.count_documents({}) == 0
    assert ctx.db.pictures.count_documents({}) == 0


def test_add_book_twice_is_516_and_keeps_stock(ctx, seller):
    uid, token, store_id = seller
    stores.add_book(ctx, uid, store_id, {"id": "b1", "title": "T", "price": 5}, 3)
    with pytest.raises(errors.BookExists) as exc:
        stores.add_book(ctx, uid, store_id, {"id": "b1", "title": "T2", "price": 9}, 99)
    assert exc.value.code == 516
    row = listing(ctx, store_id, "b1")
    assert (row["stock_level"], row["price"], shown(ctx, store_id, "b1")["title"]) == (3, 5, "T")


def test_same_book_in_two_stores_is_two_listings(ctx, seller):
    uid, token, store_id = seller
    second = new_id("store")
    stores.create_store(ctx, uid, second)
    stores.add_book(ctx, uid, store_id, {"id": "b1", "title": "T", "price": 5}, 3)
    stores.add_book(ctx, uid, second, {"id": "b1", "title": "T", "price": 7}, 4)
    assert (stock(ctx, store_id, "b1"), stock(ctx, second, "b1")) == (3, 4)
    assert listing(ctx, second, "b1")["price"] == 7


def test_add_book_errors(ctx, seller, make_user):
    uid, token, store_id = seller
    info = {"id": "b1", "title": "T"}
    with pytest.raises(errors.NoSuchUser):  # the edge's checks, before add_book
        sessions.authenticate(ctx, new_id("ghost"), token)
    with pytest.raises(errors.NoSuchStore) as exc:
        stores.add_book(ctx, uid, new_id("nostore"), info, 1)
    assert exc.value.code == 513
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(ctx, uid, "bogus")
    other, _, other_token = make_user("other")
    with pytest.raises(errors.AuthorizationFailed):  # another seller's store
        stores.add_book(ctx, other, store_id, info, 1)
    with pytest.raises(errors.AuthorizationFailed):  # someone else's token
        sessions.authenticate(ctx, uid, other_token)
    assert ctx.db.listings.count_documents({}) == 0
    assert ctx.db.descriptions.count_documents({}) == 0


# ---------------------------------------------------------------- add_stock_level

def test_add_stock_level_adds(ctx, seller):
    uid, token, store_id = seller
    stores.add_book(ctx, uid, store_id, {"id": "b1", "title": "T"}, 3)
    stores.add_stock_level(ctx, uid, store_id, "b1", 10)
    stores.add_stock_level(ctx, uid, store_id, "b1", 0)
    assert stock(ctx, store_id, "b1") == 13


def test_add_stock_level_errors_change_nothing(ctx, seller, make_user):
    uid, token, store_id = seller
    stores.add_book(ctx, uid, store_id, {"id": "b1", "title": "T"}, 3)
    with pytest.raises(errors.NoSuchBook) as exc:
        stores.add_stock_level(ctx, uid, store_id, "b1_x", 1)
    assert exc.value.code == 515
    with pytest.raises(errors.NoSuchStore):
        stores.add_stock_level(ctx, uid, new_id("nostore"), "b1", 1)
    with pytest.raises(errors.NoSuchUser):  # the edge's checks, before add_stock_level
        sessions.authenticate(ctx, new_id("ghost"), token)
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(ctx, uid, "bogus")
    other, _, other_token = make_user("other")
    with pytest.raises(errors.AuthorizationFailed):
        stores.add_stock_level(ctx, other, store_id, "b1", 1)
    with pytest.raises(errors.BadRequest):
        stores.add_stock_level(ctx, uid, store_id, "b1", stores.MAX_STOCK)
    assert stock(ctx, store_id, "b1") == 3


def test_book_in_another_store_is_515_here(ctx, seller):
    uid, token, store_id = seller
    second = new_id("store")
    stores.create_store(ctx, uid, second)
    stores.add_book(ctx, uid, second, {"id": "b1", "title": "T"}, 3)
    with pytest.raises(errors.NoSuchBook):
        stores.add_stock_level(ctx, uid, store_id, "b1", 1)
    assert stock(ctx, second, "b1") == 3


# ---------------------------------------------------------------- store_books

def test_store_books_pages_in_book_id_order(ctx, seller):
    uid, token, store_id = seller
    for n in (3, 1, 4, 0, 2):
        stores.add_book(ctx, uid, store_id,
                        {"id": f"b{n}", "title": f"T{n}", "price": 100 * n}, n + 1)
    rows, total = stores.store_books(ctx, uid, store_id, 1, 2)[:2]
    assert total == 5
    assert rows == [{"book_id": "b0", "title": "T0", "price": 0, "stock_level": 1},
                    {"book_id": "b1", "title": "T1", "price": 100, "stock_level": 2}]
    rows, _ = stores.store_books(ctx, uid, store_id, 3, 2)[:2]
    assert [r["book_id"] for r in rows] == ["b4"]
    rows, total = stores.store_books(ctx, uid, store_id, 4, 2)[:2]
    assert rows == [] and total == 5


def test_store_books_by_cursor_every_book_once_despite_inserts(ctx, seller, monkeypatch):
    """Follow ``next`` with books listed between pages: rows before the cursor
    never come back, rows after it show up in their place, none twice."""
    from be.model import paging
    uid, token, store_id = seller
    for n in (0, 2, 4, 6, 8):
        stores.add_book(ctx, uid, store_id, {"id": f"b{n}", "title": f"T{n}"}, 1)
    seen, cursor, inserts = [], None, iter([("b1", "before the cursor"), ("b7", "after it")])
    while True:
        found = stores.store_books(ctx, uid, store_id, 1, 2, cursor)
        seen += [r["book_id"] for r in found.rows]
        if found.next is None:
            break
        cursor = found.next
        book = next(inserts, None)
        if book:
            stores.add_book(ctx, uid, store_id, {"id": book[0], "title": book[1]}, 1)
    assert seen == ["b0", "b2", "b4", "b6", "b7", "b8"]
    found = stores.store_books(ctx, uid, store_id, 1, 100)
    assert (found.total, found.total_is_lower_bound, found.next) == (7, False, None)
    monkeypatch.setattr(paging, "COUNT_BOUND", 3)
    found = stores.store_books(ctx, uid, store_id, 1, 2)
    assert (found.total, found.total_is_lower_bound) == (3, True)
    with pytest.raises(errors.BadRequest) as exc:
        stores.store_books(ctx, uid, store_id, 101, 100)
    assert "'page'" in exc.value.message and "after" in exc.value.message
    with pytest.raises(errors.BadRequest) as exc:
        stores.store_books(ctx, uid, store_id, 1, 2, "b3")
    assert "'after'" in exc.value.message


def test_store_books_errors(ctx, seller, make_user):
    uid, token, store_id = seller
    with pytest.raises(errors.NoSuchStore):
        stores.store_books(ctx, uid, new_id("nostore"), 1, 20)
    other, _, other_token = make_user("other")
    with pytest.raises(errors.AuthorizationFailed):
        stores.store_books(ctx, other, store_id, 1, 20)
    with pytest.raises(errors.AuthorizationFailed):  # the edge, before store_books
        sessions.authenticate(ctx, uid, "bogus")
