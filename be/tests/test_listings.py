"""Each store owns its listings (issue 12), at the model layer.

Two sellers list one book id, each in its own words and pictures: every read
path (the book by store, the book site-wide, its pictures, search site-wide and
in a store, snippets and ranking, the store's list, the price an order takes)
shows each store its own description, and nothing one seller does changes what
the other's listing shows. Identical descriptions are stored once. Sellers
update, reprice, restock and unlist their own listings and nobody else's;
oversized input is refused before anything is written.
"""
import base64

import pytest

from be import errors
from be.audit import audit
from be.db import listing_id
from be.model import catalogue, orders, search, stores
from be.tests.support.faults import count_writes, snapshot

PNG_A = b"\x89PNG\r\n\x1a\n" + b"A" * 40
JPEG_M = b"\xff\xd8\xff\xe0" + b"M" * 40
PNG_M = b"\x89PNG\r\n\x1a\n" + b"M" * 40


def b64(data):
    return base64.b64encode(data).decode()


SANMAO = {"id": "X", "title": "三毛流浪记", "author": "张乐平", "publisher": "少年儿童出版社",
          "tags": ["漫画", "经典"], "book_intro": "三毛在上海街头流浪的故事", "price": 1500,
          "pictures": [b64(PNG_A)]}
PHOTO = {"id": "X", "title": "Understanding Photography", "author": "Bryan Peterson",
         "publisher": "Amphoto", "tags": ["photography"],
         "book_intro": "light, aperture and exposure explained", "price": 4200,
         "pictures": [b64(JPEG_M), b64(PNG_M)]}


def clean(ctx):
    found = audit(ctx.db)
    assert not found, "\n".join(v.render() for v in found)


@pytest.fixture
def two(ctx, make_user):
    """Seller A (store "sa_...") and seller M (store "sm_...") both list book X:
    A as 三毛流浪记 at 1500 (10 copies), M as Understanding Photography at 4200
    (3 copies); A also lists a second book so searches have company."""
    a, _, _ = make_user("seller_a")
    m, _, _ = make_user("seller_m")
    buyer, _, _ = make_user("buyer", funds=10**6)
    sa, sm = "sa_" + a, "sm_" + m
    stores.create_store(ctx, a, sa)
    stores.create_store(ctx, m, sm)
    stores.add_book(ctx, a, sa, SANMAO, 10)
    stores.add_book(ctx, a, sa, {"id": "Y", "title": "三毛从军记", "author": "张乐平",
                                 "price": 900}, 5)
    stores.add_book(ctx, m, sm, PHOTO, 3)
    return type("Two", (), dict(ctx=ctx, a=a, m=m, sa=sa, sm=sm, buyer=buyer))


def hits(ctx, q, store_id=None, fields=None):
    return search.search_books(ctx, q, fields, store_id, 1, 100)[0]


def view(ctx, store_id, book_id="X"):
    """Everything the API shows of one store's listing of a book."""
    book = search.get_book(ctx, book_id, store_id)
    pictures = [search.get_picture(ctx, book_id, n, store_id)
                for n in range(book["picture_count"] + 1)]
    return book, pictures


# ---------------------------------------------------------------- isolation

def test_each_store_shows_its_own_description_on_every_read_path(two):
    ctx = two.ctx
    a_book, a_pics = view(ctx, two.sa)
    m_book, m_pics = view(ctx, two.sm)
    for book, info, store, stock in ((a_book, SANMAO, two.sa, 10), (m_book, PHOTO, two.sm, 3)):
        assert {f: book[f] for f in ("title", "author", "publisher", "tags", "book_intro",
                                     "price")} == {f: info[f] for f in ("title", "author",
                                                                        "publisher", "tags",
                                                                        "book_intro", "price")}
        assert book["listings"] == [{"store_id": store, "price": info["price"],
                                     "stock_level": stock, "on_sale": True}]
        assert book["other_listings"] == []
    assert a_pics == [(PNG_A, "image/png"), None]
    assert m_pics == [(JPEG_M, "image/jpeg"), (PNG_M, "image/png"), None]

    # site-wide: one description per hit, found by its own words, with its store
    for q, fields, store, title in (("三毛流浪记", None, two.sa, SANMAO["title"]),
                                    ("漫画", "tags", two.sa, SANMAO["title"]),
                                    ("流浪", "book_intro", two.sa, SANMAO["title"]),
                                    ("Understanding Photography", None, two.sm, PHOTO["title"]),
                                    ("photography", "tags", two.sm, PHOTO["title"]),
                                    ("exposure", "book_intro", two.sm, PHOTO["title"]),
                                    ("Peterson", "author", two.sm, PHOTO["title"])):
        found = [h for h in hits(ctx, q, fields=fields) if h["book_id"] == "X"]
        assert [(h["title"], [r["store_id"] for r in h["listings"]]) for h in found] == \
            [(title, [store])], q
        assert found[0]["snippet"] and q.lower() in found[0]["snippet"].lower()
    # in a store: only that store's words
    assert [h["title"] for h in hits(ctx, "三毛", two.sa)] == ["三毛流浪记", "三毛从军记"]
    assert hits(ctx, "三毛", two.sm) == []
    assert hits(ctx, "photography", two.sa) == []
    (hit,) = hits(ctx, "photography", two.sm)
    assert (hit["title"], hit["price"], hit["stock_level"]) == (PHOTO["title"], 4200, 3)
    # the stores' lists and the price an order takes
    assert stores.store_books(ctx, two.a, two.sa, 1, 10)[0][0]["title"] == "三毛流浪记"
    assert stores.store_books(ctx, two.m, two.sm, 1, 10)[0][0]["title"] == PHOTO["title"]
    for store, price in ((two.sa, 1500), (two.sm, 4200)):
        oid = orders.new_order(ctx, two.buyer, store, [("X", 1)])
        assert orders.get_order(ctx, two.buyer, oid)["items"][0]["price"] == price
    clean(ctx)


def test_the_book_without_a_store_is_the_description_most_stores_show(two, make_user):
    ctx = two.ctx
    book = search.get_book(ctx, "X")  # one listing each: the first store by id, A
    assert book["title"] == SANMAO["title"]
    assert [r["store_id"] for r in book["listings"]] == [two.sa]
    assert [r["store_id"] for r in book["other_listings"]] == [two.sm]
    assert search.get_picture(ctx, "X", 0) == (PNG_A, "image/png")
    # a third store describes X as M does: M's description is now shown by most
    c, _, _ = make_user("seller_c")
    stores.create_store(ctx, c, "sc_" + c)
    stores.add_book(ctx, c, "sc_" + c, dict(PHOTO, price=3900), 1)
    book = search.get_book(ctx, "X")
    assert book["title"] == PHOTO["title"] and book["price"] == 3900  # the lowest of the two
    assert [r["store_id"] for r in book["listings"]] == sorted([two.sm, "sc_" + c])
    assert [r["store_id"] for r in book["other_listings"]] == [two.sa]
    assert search.get_picture(ctx, "X", 1) == (PNG_M, "image/png")
    with pytest.raises(errors.NoSuchBook):
        search.get_book(ctx, "X", "no_such_store")
    assert search.get_picture(ctx, "X", 0, "no_such_store") is None


def test_nothing_one_seller_does_changes_what_the_other_shows(ctx, make_user):
    """The issue's report: seller M lists A's book id in M's own words, then
    updates, reprices, restocks and unlists it. A's listing shows the same
    everywhere, search hits, snippets and ranking included, before and after."""
    a, _, _ = make_user("seller_a")
    m, _, _ = make_user("seller_m")
    sa, sm = "sa_" + a, "sm_" + m
    stores.create_store(ctx, a, sa)
    stores.create_store(ctx, m, sm)
    stores.add_book(ctx, a, sa, SANMAO, 10)
    stores.add_book(ctx, a, sa, {"id": "Y", "title": "三毛从军记", "tags": ["漫画"]}, 5)
    queries = [("三毛流浪记", None), ("三毛", None), ("漫画", "tags"), ("流浪", "book_intro"),
               ("上海", "title,book_intro")]

    def a_sees():
        return (view(ctx, sa), stores.store_books(ctx, a, sa, 1, 10),
                [hits(ctx, q, store, fields) for q, fields in queries for store in (None, sa)])

    before = a_sees()
    stores.add_book(ctx, m, sm, dict(PHOTO, tags=["漫画"]), 3)  # even sharing a tag
    assert a_sees()[:2] == before[:2]
    after = a_sees()[2]
    for (q, fields), old, new in zip([qf for qf in queries for _ in (None, sa)], before[2],
                                     after):
        assert [h for h in new if h["title"] != PHOTO["title"]] == old, q
    stores.update_book(ctx, m, sm, dict(SANMAO, title="三毛流浪记（改）", pictures=[b64(PNG_M)]))
    stores.set_price(ctx, m, sm, "X", 1)
    stores.set_stock_level(ctx, m, sm, "X", 0)
    stores.unlist_book(ctx, m, sm, "X")
    assert a_sees() == before
    clean(ctx)


def test_identical_descriptions_are_stored_once_and_found_once(ctx, make_user):
    sellers = []
    for n, price in enumerate((1500, 1400, 1600)):
        uid, _, _ = make_user(f"seller{n}")
        stores.create_store(ctx, uid, f"s{n}_{uid}")
        stores.add_book(ctx, uid, f"s{n}_{uid}", dict(SANMAO, price=price,
                                                      pictures=[b64(PNG_A)] * 3), n + 1)
        sellers.append((uid, f"s{n}_{uid}"))
    assert ctx.db.descriptions.count_documents({}) == 1
    assert ctx.db.pictures.count_documents({}) == 1
    (hit,) = hits(ctx, "三毛流浪记")
    assert hit["price"] == 1400
    assert [(r["store_id"], r["price"], r["stock_level"]) for r in hit["listings"]] == \
        sorted([(s, p, n + 1) for n, ((_, s), p) in enumerate(zip(sellers, (1500, 1400, 1600)))])
    book = search.get_book(ctx, "X")
    assert len(book["listings"]) == 3 and book["other_listings"] == []
    # one of them changes its words: two descriptions, two hits, each with its stores
    uid, store = sellers[1]
    stores.update_book(ctx, uid, store, dict(SANMAO, title="三毛流浪记 新版"))
    assert ctx.db.descriptions.count_documents({}) == 2
    found = {h["title"]: [r["store_id"] for r in h["listings"]] for h in hits(ctx, "三毛流浪记")}
    assert found == {"三毛流浪记": sorted([sellers[0][1], sellers[2][1]]), "三毛流浪记 新版": [store]}


# ---------------------------------------------------------------- managing listings

def test_update_book_changes_the_description_and_price_of_that_listing_only(two):
    ctx = two.ctx
    placed = orders.new_order(ctx, two.buyer, two.sa, [("X", 2)])
    stores.update_book(ctx, two.a, two.sa, {"id": "X", "title": "三毛流浪记 彩图版",
                                             "price": 1800, "pictures": [b64(JPEG_M)]})
    book, pics = view(ctx, two.sa)
    assert (book["title"], book["author"], book["price"]) == ("三毛流浪记 彩图版", None, 1800)
    assert pics == [(JPEG_M, "image/jpeg"), None]
    assert [h["title"] for h in hits(ctx, "彩图")] == ["三毛流浪记 彩图版"]
    assert hits(ctx, "流浪", fields="book_intro") == []  # its old words are gone with it
    assert view(ctx, two.sm)[0]["title"] == PHOTO["title"]
    # orders keep the price they were placed at; new ones take the new price
    assert orders.get_order(ctx, two.buyer, placed)["items"][0]["price"] == 1500
    oid = orders.new_order(ctx, two.buyer, two.sa, [("X", 1)])
    assert orders.get_order(ctx, two.buyer, oid)["items"][0]["price"] == 1800
    # a book_info without a price keeps the price
    stores.update_book(ctx, two.a, two.sa, {"id": "X", "title": "三毛流浪记"})
    assert view(ctx, two.sa)[0]["price"] == 1800
    assert view(ctx, two.sa)[0]["picture_count"] == 0
    orders.payment(ctx, two.buyer, placed)  # the open order runs its course
    orders.ship(ctx, two.a, placed)
    orders.receive(ctx, two.buyer, placed)
    clean(ctx)


def test_set_price_is_for_new_orders(two):
    ctx = two.ctx
    placed = orders.new_order(ctx, two.buyer, two.sa, [("X", 1)])
    stores.set_price(ctx, two.a, two.sa, "X", 1234)
    assert view(ctx, two.sa)[0]["price"] == 1234
    assert hits(ctx, "三毛流浪记", two.sa)[0]["price"] == 1234
    assert orders.get_order(ctx, two.buyer, placed)["total_price"] == 1500
    oid = orders.new_order(ctx, two.buyer, two.sa, [("X", 1)])
    assert orders.get_order(ctx, two.buyer, oid)["total_price"] == 1234
    assert view(ctx, two.sm)[0]["price"] == 4200


def stock_of(ctx, store, book="X"):
    return ctx.db.listings.find_one({"_id": listing_id(store, book)})["stock_level"]


def test_set_stock_level_leaves_what_orders_hold_alone(two):
    ctx = two.ctx
    held = orders.new_order(ctx, two.buyer, two.sa, [("X", 4)])
    assert stock_of(ctx, two.sa) == 6
    stores.set_stock_level(ctx, two.a, two.sa, "X", 0)
    assert stock_of(ctx, two.sa) == 0
    clean(ctx)  # stock_added moved with the shelf: added == shelf + held
    with pytest.raises(errors.StockTooLow):
        orders.new_order(ctx, two.buyer, two.sa, [("X", 1)])
    orders.cancel_order(ctx, two.buyer, held)  # its 4 units come back to the shelf
    assert stock_of(ctx, two.sa) == 4
    stores.set_stock_level(ctx, two.a, two.sa, "X", 25)
    assert stock_of(ctx, two.sa) == 25 and stock_of(ctx, two.sm) == 3
    clean(ctx)


def test_set_stock_level_retries_when_an_order_moves_the_stock_meanwhile(two, make_user):
    ctx = two.ctx
    engine = ctx.engine.embedded
    raced = []

    def observer(coll, method, args, kwargs):  # an order lands between read and write
        if coll == "listings" and method == "update_one" and not raced:
            raced.append(orders.new_order(ctx, two.buyer, two.sa, [("X", 3)]))

    engine.observer = observer
    try:
        stores.set_stock_level(ctx, two.a, two.sa, "X", 2)
    finally:
        engine.observer = None
    assert raced and stock_of(ctx, two.sa) == 2
    clean(ctx)
    # an order that moves it every time: 503 after the attempts, nothing broken
    engine.observer = lambda coll, method, args, kwargs: (
        coll == "listings" and method == "update_one" and "stock_level" in args[0] and
        ctx.db.listings.update_one({"_id": listing_id(two.sa, "X")},  # (a restock, say)
                                   {"$inc": {"stock_level": 1, "stock_added": 1}}))
    try:
        with pytest.raises(errors.ListingBusy) as exc:
            stores.set_stock_level(ctx, two.a, two.sa, "X", 0)
    finally:
        engine.observer = None
    assert exc.value.code == 503
    clean(ctx)


def test_unlisted_books_are_not_found_nor_ordered_but_open_orders_finish(two):
    ctx = two.ctx
    paid = orders.new_order(ctx, two.buyer, two.sa, [("X", 1), ("Y", 1)])
    orders.payment(ctx, two.buyer, paid)
    unpaid = orders.new_order(ctx, two.buyer, two.sa, [("X", 2)])
    stores.unlist_book(ctx, two.a, two.sa, "X")
    stores.unlist_book(ctx, two.a, two.sa, "X")  # idempotent
    assert [h["book_id"] for h in hits(ctx, "三毛")] == ["Y"]
    assert [h["book_id"] for h in hits(ctx, "三毛", two.sa)] == ["Y"]
    with pytest.raises(errors.NoSuchBook) as exc:
        orders.new_order(ctx, two.buyer, two.sa, [("Y", 1), ("X", 1)])
    assert exc.value.code == 515
    book = search.get_book(ctx, "X")  # site-wide: M's listing only now
    assert book["title"] == PHOTO["title"] and book["other_listings"] == []
    assert search.get_book(ctx, "X", two.sa)["listings"][0]["on_sale"] is False
    assert [b["book_id"] for b in stores.store_books(ctx, two.a, two.sa, 1, 10, on_sale=False)[0]] == ["X"]
    assert [b["book_id"] for b in stores.store_books(ctx, two.a, two.sa, 1, 10, on_sale=True)[0]] == ["Y"]
    assert stores.store_books(ctx, two.a, two.sa, 1, 10)[1] == 2
    orders.ship(ctx, two.a, paid)
    orders.receive(ctx, two.buyer, paid)
    orders.cancel_order(ctx, two.buyer, unpaid)
    assert stock_of(ctx, two.sa) == 9  # 10 - the one received; the cancelled two came back
    clean(ctx)
    stores.relist_book(ctx, two.a, two.sa, "X")
    assert [h["book_id"] for h in hits(ctx, "三毛", two.sa)] == ["X", "Y"]
    orders.new_order(ctx, two.buyer, two.sa, [("X", 9)])
    clean(ctx)


def test_a_listing_unlisted_while_an_order_is_placed_refuses_it(two):
    ctx = two.ctx
    engine = ctx.engine.embedded

    def observer(coll, method, args, kwargs):  # the seller unlists after new_order read
        if coll == "orders" and method == "insert_one":
            engine.observer = None
            stores.unlist_book(ctx, two.a, two.sa, "X")

    engine.observer = observer
    with pytest.raises(errors.NoSuchBook):
        orders.new_order(ctx, two.buyer, two.sa, [("Y", 1), ("X", 1)])
    assert ctx.db.orders.count_documents({}) == 0
    assert (stock_of(ctx, two.sa), stock_of(ctx, two.sa, "Y")) == (10, 5)
    clean(ctx)


def test_only_the_owner_manages_a_listing(two):
    ctx = two.ctx
    calls = {
        "update_book": lambda user, store, book: stores.update_book(
            ctx, user, store, dict(SANMAO, id=book, title="defaced")),
        "set_price": lambda user, store, book: stores.set_price(ctx, user, store, book, 1),
        "set_stock_level": lambda user, store, book: stores.set_stock_level(
            ctx, user, store, book, 0),
        "unlist_book": lambda user, store, book: stores.unlist_book(ctx, user, store, book),
        "relist_book": lambda user, store, book: stores.relist_book(ctx, user, store, book),
        "add_stock_level": lambda user, store, book: stores.add_stock_level(
            ctx, user, store, book, 1),
    }
    before = snapshot(ctx.db)
    for name, call in calls.items():
        with pytest.raises(errors.AuthorizationFailed):  # M on A's store, even naming M's book
            call(two.m, two.sa, "X")
        with pytest.raises(errors.NoSuchStore):
            call(two.a, "no_such_store", "X")
        with pytest.raises(errors.NoSuchBook) as exc:  # a book A's store does not list
            call(two.a, two.sa, "Z")
        assert exc.value.code == 515, name
    assert snapshot(ctx.db) == before


# ---------------------------------------------------------------- limits

@pytest.mark.parametrize("change, field", [
    ({"pictures": [b64(PNG_A)] * (catalogue.MAX_PICTURES + 1)}, "book_info.pictures"),
    ({"pictures": [b64(PNG_A), b64(b"\x00" * (catalogue.MAX_PICTURE_BYTES + 1))]},
     "book_info.pictures.1"),
    ({"pictures": [b64(PNG_A), "A" * (catalogue.MAX_PICTURE_BYTES * 2)]},
     "book_info.pictures.1"),  # refused on its length, before decoding
    ({"pictures": ["not base64!"]}, "book_info.pictures.0"),
    ({"content": "x" * (catalogue.MAX_DOCUMENT_BYTES + 1)}, "book_info.content"),
    ({"book_intro": "y" * 9 * 2**20, "author_intro": "z" * 8 * 2**20}, "book_info.book_intro"),
])
def test_oversized_input_is_refused_before_any_write(two, change, field):
    ctx = two.ctx
    before = snapshot(ctx.db)
    for call in (lambda: stores.add_book(ctx, two.a, two.sa, dict(SANMAO, id="new", **change), 1),
                 lambda: stores.update_book(ctx, two.a, two.sa, dict(SANMAO, **change))):
        with pytest.raises(errors.BadRequest) as exc:
            assert count_writes(ctx, call) == []
        assert exc.value.code == 400 and exc.value.message.startswith(field + ":"), \
            exc.value.message
    assert snapshot(ctx.db) == before


def test_a_description_over_the_document_limit_is_refused_before_it_is_segmented(two,
                                                                               monkeypatch):
    """11 texts of 1,000,000 CJK characters (33 MB): refused on their size, without
    the seconds that segmenting them for search would take."""
    def segment(info):
        raise AssertionError("segmented before the size check")

    monkeypatch.setattr(search, "index_fields", segment)
    long_text = "长" * 1_000_000
    info = dict(SANMAO, id="huge", **{f: long_text for f in (
        "author", "publisher", "original_title", "translator", "pub_year", "currency_unit",
        "binding", "isbn", "author_intro", "book_intro", "content")})
    with pytest.raises(errors.BadRequest) as exc:
        catalogue.prepare("huge", info)
    assert exc.value.message.startswith("book_info.author: the book's description would take")


def test_the_largest_input_within_the_limits_is_stored(two):
    ctx = two.ctx
    big = b"\x89PNG" + b"\x07" * (catalogue.MAX_PICTURE_BYTES - 4)
    info = dict(SANMAO, id="big", pictures=[b64(big)] * catalogue.MAX_PICTURES,
                content="w" * (catalogue.MAX_DOCUMENT_BYTES - 64 * 1024))
    stores.add_book(ctx, two.a, two.sa, info, 1)
    book, _ = view(ctx, two.sa, "big")
    assert book["picture_count"] == catalogue.MAX_PICTURES and len(book["content"]) == \
        len(info["content"])
    assert search.get_picture(ctx, "big", 9, two.sa) == (big, "image/png")
    clean(ctx)
