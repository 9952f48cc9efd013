"""Each store owns its listings (issue 12), over HTTP with the fe.access client.

Two sellers list one book id in their own words and pictures: each store's
description on every read path, managing a listing (update, price, stock, off
sale and back) by its owner only, and oversized input refused with 400 naming
the field before anything is written.
"""
import base64
import json
import uuid

import pytest
import requests

from be.sample_books import Book
from fe import conf
from fe.access.new_buyer import register_new_buyer
from fe.access.new_seller import register_new_seller
from fe.access.search import Search

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 30
JPEG = b"\xff\xd8\xff\xe0" + b"\x02" * 30


def uid(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def book(**fields):
    b = Book()
    for name, value in fields.items():
        setattr(b, name, value)
    return b


@pytest.fixture
def two():
    """Sellers A and M list one new book id: A as 三毛流浪记 (a PNG, 1500 cents, 10
    copies), M as Understanding Photography (a JPEG, 4200 cents, 3 copies)."""
    book_id = uid("X")
    a, m = register_new_seller(uid("http_a"), "pw"), register_new_seller(uid("http_m"), "pw")
    sa, sm = uid("sa"), uid("sm")
    assert a.create_store(sa) == 200 and m.create_store(sm) == 200
    mine = book(id=book_id, title="三毛流浪记 " + book_id, author="张乐平", tags=["漫画"],
                book_intro="三毛在上海流浪", price=1500,
                pictures=[base64.b64encode(PNG).decode()])
    theirs = book(id=book_id, title="Understanding Photography " + book_id,
                  author="Bryan Peterson", tags=["photography"], book_intro="exposure",
                  price=4200, pictures=[base64.b64encode(JPEG).decode()])
    assert a.add_book(sa, 10, mine) == 200
    assert m.add_book(sm, 3, theirs) == 200
    buyer = register_new_buyer(uid("http_buyer"), "pw")
    assert buyer.add_funds(10**6) == 200
    return type("Two", (), dict(a=a, m=m, sa=sa, sm=sm, mine=mine, theirs=theirs,
                                book_id=book_id, buyer=buyer, api=Search(conf.URL)))


def shown(two, store):
    """What GET /books/<id>?store_id= and its pictures show."""
    code, r = two.api.book(two.book_id, store)
    assert code == 200
    detail = r["book"]
    pictures = [two.api.picture(two.book_id, n, store)[1:]
                for n in range(detail["picture_count"])]
    return detail, pictures


def test_two_sellers_one_book_id_every_read_path(two):
    for store, info, stock, picture in ((two.sa, two.mine, 10, (PNG, "image/png")),
                                        (two.sm, two.theirs, 3, (JPEG, "image/jpeg"))):
        detail, pictures = shown(two, store)
        assert (detail["title"], detail["author"], detail["tags"], detail["book_intro"],
                detail["price"]) == (info.title, info.author, info.tags, info.book_intro,
                                     info.price)
        assert detail["listings"] == [{"store_id": store, "price": info.price,
                                       "stock_level": stock, "on_sale": True}]
        assert pictures == [picture]
        # site-wide, each description is found by its own words and names its store
        code, r = two.api.books(info.title)
        assert code == 200
        assert [(h["title"], h["listings"]) for h in r["books"] if h["book_id"] == two.book_id] \
            == [(info.title, [{"store_id": store, "price": info.price, "stock_level": stock}])]
        # in the store, only its own words
        code, r = two.api.books(info.title, store_id=store)
        assert [h["title"] for h in r["books"]] == [info.title]
        other = two.sm if store == two.sa else two.sa
        assert two.api.books(info.title, store_id=other)[1]["books"] == []
    code, r = two.api.book(two.book_id)  # no store: one description, the other listing named
    assert code == 200
    stores_seen = [x["store_id"] for x in r["book"]["listings"] + r["book"]["other_listings"]]
    assert sorted(stores_seen) == sorted([two.sa, two.sm])
    assert two.api.book(two.book_id, uid("nostore"))[0] == 515
    assert two.api.picture(two.book_id, 1, two.sa)[0] == 404
    assert two.a.books(two.sa)[1]["books"][0]["title"] == two.mine.title
    assert two.m.books(two.sm)[1]["books"][0]["title"] == two.theirs.title
    for store, price in ((two.sa, 1500), (two.sm, 4200)):
        code, order_id = two.buyer.new_order(store, [(two.book_id, 1)])
        assert code == 200
        assert two.buyer.order(order_id)[1]["total_price"] == price


def test_the_owner_manages_a_listing_and_the_other_store_is_untouched(two):
    theirs = shown(two, two.sm)
    code, held = two.buyer.new_order(two.sa, [(two.book_id, 4)])
    assert code == 200
    new = book(id=two.book_id, title="三毛流浪记 彩图版 " + two.book_id, price=1800)
    assert two.a.update_book(two.sa, new) == 200
    detail, pictures = shown(two, two.sa)
    assert (detail["title"], detail["price"], pictures) == (new.title, 1800, [])
    assert two.a.set_price(two.sa, two.book_id, 1700) == 200
    assert two.a.set_stock_level(two.sa, two.book_id, 0) == 200
    assert shown(two, two.sa)[0]["listings"][0]["stock_level"] == 0
    assert two.buyer.new_order(two.sa, [(two.book_id, 1)])[0] == 517
    assert two.buyer.cancel_order(held) == 200  # the 4 held units come back
    assert shown(two, two.sa)[0]["listings"][0]["stock_level"] == 4
    code, held = two.buyer.new_order(two.sa, [(two.book_id, 1)])
    assert code == 200 and two.buyer.order(held)[1]["total_price"] == 1700

    assert two.a.unlist_book(two.sa, two.book_id) == 200
    assert two.buyer.new_order(two.sa, [(two.book_id, 1)])[0] == 515
    assert two.api.books(new.title)[1]["books"] == []
    assert [b["book_id"] for b in two.a.books(two.sa, on_sale=False)[1]["books"]] == \
        [two.book_id]
    assert two.a.books(two.sa, on_sale=True)[1]["books"] == []
    assert two.buyer.payment(held) == 200  # the open order runs its course
    assert two.a.ship(held) == 200
    assert two.buyer.receive(held) == 200
    assert two.a.relist_book(two.sa, two.book_id) == 200
    assert two.api.books(new.title)[1]["total"] == 1
    assert shown(two, two.sm) == theirs  # nothing A did reached M's listing


def test_another_seller_gets_401_and_changes_nothing(two):
    before = shown(two, two.sa)
    forged = book(id=two.book_id, title="defaced", price=1)
    assert two.m.update_book(two.sa, forged) == 401
    assert two.m.set_price(two.sa, two.book_id, 1) == 401
    assert two.m.set_stock_level(two.sa, two.book_id, 0) == 401
    assert two.m.unlist_book(two.sa, two.book_id) == 401
    assert two.m.relist_book(two.sa, two.book_id) == 401
    assert two.m.add_book(two.sa, 1, forged) == 401
    assert two.a.update_book(two.sa, book(id=uid("nobook"), title="t")) == 515
    assert two.a.set_price(uid("nostore"), two.book_id, 1) == 513
    assert shown(two, two.sa) == before


def _post(path, body, token, raw=False):
    headers = {"token": token, "Content-Type": "application/json"}
    data = json.dumps(body, ensure_ascii=not raw).encode()
    return requests.post(conf.URL + path, data=data, headers=headers)


@pytest.mark.parametrize("change, field", [
    ({"pictures": [base64.b64encode(PNG).decode()] * 11}, "book_info.pictures"),
    ({"pictures": [base64.b64encode(PNG + b"\x00" * (4 * 2**20)).decode()]},
     "book_info.pictures.0"),
    # five fields of a million 4-byte characters: 20 MB, over the 16 MiB document
    ({f: "\U0001d4b3" * 1_000_000 for f in ("author_intro", "book_intro", "content",
                                             "author", "publisher")}, "book_info."),
])
def test_oversized_input_is_400_naming_the_field_and_writes_nothing(two, change, field):
    before = shown(two, two.sa)
    info = dict(two.mine.__dict__, **change)
    for path, body in (("seller/add_book", {"user_id": two.a.seller_id, "store_id": two.sa,
                                            "book_info": dict(info, id=uid("big")),
                                            "stock_level": 1}),
                       ("seller/update_book", {"user_id": two.a.seller_id, "store_id": two.sa,
                                               "book_info": info})):
        r = _post(path, body, two.a.token, raw=True)
        assert r.status_code == 400 and r.json()["message"].startswith(field), r.text[:200]
    assert shown(two, two.sa) == before
    assert two.a.books(two.sa)[1]["total"] == 1
