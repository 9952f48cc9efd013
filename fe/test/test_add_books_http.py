"""POST /seller/add_books and GET /seller/book_ids over HTTP (fe.access.seller).

A batch answers 200 with one result per book: listed (200), already listed or
repeated (516), or not valid (400 naming the field as add_book does), so that one
bad book refuses nothing else; a refused call (token, owner, store, malformed
body, too many books) writes nothing. book_ids reads a store's ids by cursor.
"""
import base64
import uuid

import pytest
import requests

from be.sample_books import Book
from fe import conf
from fe.access.new_seller import register_new_seller
from fe.access.search import Search

PNG = b"\x89PNG\r\n\x1a\n" + b"\x03" * 30


def uid(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def info(book_id, **fields):
    return dict({"id": book_id, "title": f"书 {book_id}", "price": 500}, **fields)


def counts(backend):
    return {c: backend.db[c].count_documents({}) for c in ("listings", "descriptions", "pictures")}


@pytest.fixture
def seller():
    s = register_new_seller(uid("bulk"), "pw")
    store = uid("bulk_store")
    assert s.create_store(store) == 200
    return s, store


def post(seller, body, token=None):
    r = requests.post(conf.URL + "seller/add_books", json=body,
                      headers={"token": seller.token if token is None else token})
    return r.status_code, r.json()


def listed(seller, store):
    code, body = seller.books(store, page_size=100)
    assert code == 200
    return {b["book_id"]: (b["title"], b["price"], b["stock_level"]) for b in body["books"]}


def test_a_mixed_batch_lists_the_good_books_and_says_why_not_for_the_others(seller):
    s, store = seller
    assert s.add_book(store, 4, _book(info("old"))) == 200
    picture = base64.b64encode(PNG).decode()
    books = [
        (info("a1", pictures=[picture], tags=["科幻"]), 3),
        (info("old", title="changed"), 9),                 # listed before: 516
        (info("a2", price="12"), 1),                        # money as text: 400
        (info("a1", title="twice"), 1),                     # repeated: 516
        (info("a3", pictures=["not base64!"]), 1),          # a bad picture: 400
        (info("a4", price=None), 0),
    ]
    code, body = s.add_books(store, books)
    assert code == 200 and body["message"] == "ok" and body["listed"] == 2
    assert [(r["book_id"], r["code"]) for r in body["books"]] == [
        ("a1", 200), ("old", 516), ("a2", 400), ("a1", 516), ("a3", 400), ("a4", 200)]
    results = body["books"]
    assert results[0]["message"] == "ok"
    assert results[1]["message"] == "exist book id old"
    assert results[2]["message"] == ("invalid field 'book_info.price': money is a whole "
                                     "number of cents (23.50 is 2350), got '12'")
    assert results[4]["message"] == "book_info.pictures.0: not valid base64"
    assert listed(s, store) == {"old": ("书 old", 500, 4), "a1": ("书 a1", 500, 3),
                                "a4": ("书 a4", 0, 0)}
    assert Search(conf.URL).picture("a1", 0, store)[1] == PNG


def test_elements_that_are_not_books_are_refused_alone(seller):
    s, store = seller
    body = {"user_id": s.seller_id, "store_id": store, "books": [
        {"book_info": info("e1"), "stock_level": 1},
        "a string",
        {"book_info": info("e2")},                               # no stock_level
        {"book_info": {"id": 7, "title": "t"}, "stock_level": 1},  # id not a string
        {"book_info": info("e3", title=""), "stock_level": 1},
        {"book_info": info("e4"), "stock_level": -1},
        {"book_info": info("e5"), "stock_level": 2, "extra": "ignored"},
    ]}
    code, reply = post(s, body)
    assert code == 200 and reply["listed"] == 2
    assert [(r["book_id"], r["code"], r["message"].split(":")[0]) for r in reply["books"]] == [
        ("e1", 200, "ok"),
        (None, 400, "not an object"),
        ("e2", 400, "missing field 'stock_level'"),
        (None, 400, "invalid field 'book_info.id'"),
        ("e3", 400, "invalid field 'book_info.title'"),
        ("e4", 400, "invalid field 'stock_level'"),
        ("e5", 200, "ok")]
    assert sorted(listed(s, store)) == ["e1", "e5"]


def test_a_refused_call_writes_nothing(seller, backend):
    s, store = seller
    other = register_new_seller(uid("bulk_other"), "pw")
    picture = base64.b64encode(PNG + b"refused").decode()
    good = {"user_id": s.seller_id, "store_id": store,
            "books": [{"book_info": info(f"r{n}", pictures=[picture]), "stock_level": 1}
                      for n in range(3)]}
    before = counts(backend)
    cases = [
        (dict(good, store_id=uid("nostore")), None, 513),
        (dict(good, user_id=other.seller_id), other.token, 401),  # not the owner
        (good, "bogus", 401),
        (dict(good, user_id=uid("ghost")), None, 511),
        (dict(good, books=[]), None, 400),
        (dict(good, books=good["books"] * 34), None, 400),  # 102 books
        (dict(good, books={"book_info": info("r9"), "stock_level": 1}), None, 400),
        ({k: v for k, v in good.items() if k != "books"}, None, 400),
        (dict(good, store_id=5), None, 400),
    ]
    for body, token, expect in cases:
        code, reply = post(s, body, token)
        assert code == expect, (body.get("store_id"), code, reply)
        assert "books" not in reply
    code, reply = post(s, dict(good, books=good["books"] * 34))
    assert reply["message"] == ("invalid field 'books': List should have at most 100 items "
                                "after validation, not 102")
    r = requests.post(conf.URL + "seller/add_books", data=b"[1, 2]",
                      headers={"token": s.token, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert counts(backend) == before
    assert listed(s, store) == {}


def test_sending_a_batch_again_lists_nothing_twice(seller):
    s, store = seller
    books = [(info(f"t{n}"), n) for n in range(100)]  # the most one call takes
    code, body = s.add_books(store, books[:60])
    assert code == 200 and body["listed"] == 60
    code, body = s.add_books(store, books)  # e.g. after a lost reply
    assert code == 200 and body["listed"] == 40
    assert [r["code"] for r in body["books"]] == [516] * 60 + [200] * 40
    assert listed(s, store) == {f"t{n}": (f"书 t{n}", 500, n) for n in range(100)}


def test_large_bodies_are_parsed_and_listed(seller):
    """A body over PARSE_IN_ONE_BYTES is parsed in pieces, before the engine's lock
    is taken; the result is the same."""
    s, store = seller
    long_intro = "一本很长的书。" * 60_000  # ~1.3 MB of JSON
    code, body = s.add_books(store, [(info("big1", book_intro=long_intro), 1),
                                     (info("big2"), 1)])
    assert code == 200 and body["listed"] == 2
    code, r = Search(conf.URL).book("big1", store)
    assert code == 200 and r["book"]["book_intro"] == long_intro


def test_book_ids_read_every_listing_by_cursor(seller):
    s, store = seller
    ids = sorted(f"i{n:03d}" for n in range(130))
    for k in range(0, 130, 100):
        assert s.add_books(store, [(info(i), 1) for i in ids[k:k + 100]])[0] == 200
    assert s.unlist_book(store, "i007") == 200  # off sale, still listed
    seen, after = [], None
    while True:
        code, body = s.book_ids(store, after=after, page_size=50)
        assert code == 200 and len(body["book_ids"]) <= 50
        seen += body["book_ids"]
        after = body["next"]
        if after is None:
            break
    assert seen == ids
    code, body = s.book_ids(store)  # default page: 1,000
    assert (code, body["book_ids"], body["next"]) == (200, ids, None)
    # a /seller/books cursor continues here, and back
    code, page = s.books(store, page_size=10)
    code, body = s.book_ids(store, after=page["next"], page_size=5)
    assert body["book_ids"] == ids[10:15]
    code, page = s.books(store, page_size=3, after=body["next"])
    assert [b["book_id"] for b in page["books"]] == ids[15:18]


def test_book_ids_refusals(seller):
    s, store = seller
    other = register_new_seller(uid("bulk_other"), "pw")
    assert s.book_ids(store, page_size=5001)[0] == 400
    assert s.book_ids(store, page_size=0)[0] == 400
    assert s.book_ids(store, after="bogus")[0] == 400
    assert s.book_ids(uid("nostore"))[0] == 513
    assert other.book_ids(store)[0] == 401
    assert s.book_ids(store) == (200, {"message": "ok", "book_ids": [], "next": None})


def _book(fields):
    b = Book()
    for name, value in fields.items():
        setattr(b, name, value)
    return b
