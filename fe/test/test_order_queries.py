"""Order queries over HTTP (issue 3): GET /buyer/orders, GET /seller/orders,
GET /orders/<order_id>: newest first, state filter, paging, and errors."""
import uuid

import pytest

from fe.access.new_buyer import register_new_buyer
from fe.access.new_seller import register_new_seller
from fe.test.gen_book_data import Shop, manual_clock

ORDER_FIELDS = {
    "order_id", "buyer_id", "store_id", "state", "items", "total_price", "created_at",
    "pay_deadline", "paid_at", "shipped_at", "receive_deadline", "received_at",
    "cancelled_at", "cancel_reason", "history"}


@pytest.fixture
def placed(backend):
    """A shop whose buyer placed five orders a second apart (oldest first):
    unpaid, paid, shipped, cancelled, unpaid. The server's clock is a
    ManualClock meanwhile, so "newest first" is exact, not a race."""
    with manual_clock(backend) as clock:
        shop = Shop("queries")
        made = []
        for state in ("unpaid", "paid", "shipped", "cancelled", "unpaid"):
            order_id = shop.order()
            if state == "cancelled":
                assert shop.buyer.cancel_order(order_id) == 200
            if state in ("paid", "shipped"):
                assert shop.buyer.payment(order_id) == 200
            if state == "shipped":
                assert shop.seller.ship(order_id) == 200
            made.append(order_id)
            clock.advance(1)
        yield shop, made


def ids(body):
    return [o["order_id"] for o in body["orders"]]


# ---------------------------------------------------------------- buyer

def test_buyer_orders_newest_first(placed):
    shop, made = placed
    code, body = shop.buyer.orders()
    assert code == 200 and body["message"] == "ok"
    assert ids(body) == made[::-1]
    assert (body["total"], body["page"], body["page_size"]) == (5, 1, 20)
    assert [o["state"] for o in body["orders"]] == [
        "unpaid", "cancelled", "shipped", "paid", "unpaid"]
    first = body["orders"][0]
    assert set(first) == ORDER_FIELDS
    assert first["buyer_id"] == shop.buyer.user_id and first["store_id"] == shop.store_id
    assert first["total_price"] == shop.total


def test_buyer_orders_state_filter(placed):
    shop, made = placed
    code, body = shop.buyer.orders(state="unpaid")
    assert code == 200 and ids(body) == [made[4], made[0]] and body["total"] == 2
    code, body = shop.buyer.orders(state="shipped")
    assert ids(body) == [made[2]] and body["orders"][0]["shipped_at"] is not None
    code, body = shop.buyer.orders(state="received")
    assert code == 200 and body["orders"] == [] and body["total"] == 0


def test_buyer_orders_paging_and_page_past_end(placed):
    shop, made = placed
    newest = made[::-1]
    seen = []
    for page in (1, 2, 3):
        code, body = shop.buyer.orders(page=page, page_size=2)
        assert code == 200 and body["total"] == 5
        assert (body["page"], body["page_size"]) == (page, 2)
        seen.append(ids(body))
    assert seen == [newest[0:2], newest[2:4], newest[4:5]]
    code, body = shop.buyer.orders(page=4, page_size=2)
    assert code == 200 and body["orders"] == [] and body["total"] == 5
    code, body = shop.buyer.orders(state="unpaid", page=2, page_size=1)
    assert ids(body) == [made[0]] and body["total"] == 2


@pytest.mark.parametrize("params, field", [
    ({"state": "delivered"}, "state"),
    ({"page": 0}, "page"),
    ({"page": "abc"}, "page"),
    ({"page_size": 0}, "page_size"),
    ({"page_size": 101}, "page_size"),
])
def test_buyer_orders_bad_state_or_page_is_400(placed, params, field):
    shop, _ = placed
    code, body = shop.buyer.orders(**params)
    assert code == 400 and field in body["message"]


def test_buyer_orders_errors(placed):
    shop, _ = placed
    other = register_new_buyer("queries_other_" + uuid.uuid4().hex, "pw")
    code, body = other.orders()
    assert code == 200 and body["orders"] == [] and body["total"] == 0
    shop.buyer.token = other.token
    code, body = shop.buyer.orders()
    assert code == 401 and "orders" not in body


def test_buyer_orders_by_cursor(placed):
    """``next`` leads through the list a page at a time, each row once, in order;
    an order placed meanwhile (newer than the cursor) does not shift the pages."""
    shop, made = placed
    code, body = shop.buyer.orders(page_size=2)
    assert code == 200 and body["next"] and body["total_is_lower_bound"] is False
    seen = ids(body)
    assert shop.order()  # a new order between two pages
    while body["next"]:
        code, body = shop.buyer.orders(page_size=2, after=body["next"])
        assert code == 200 and body["total"] == 6 and body["page"] == 1
        seen += ids(body)
    assert seen == made[::-1] and body["next"] is None
    code, body = shop.buyer.orders(state="unpaid", page_size=1)
    code, body = shop.buyer.orders(state="unpaid", page_size=1, after=body["next"])
    assert ids(body) == [made[4]] and body["next"]  # the new order came first


@pytest.mark.parametrize("params, field", [
    ({"page": 501, "page_size": 20}, "'page'"),                   # past row 10,000
    ({"page": 2, "after": "WyJvcmRlcnMiLDAsIiJd"}, "'page'"),      # a cursor and a page
    ({"after": "not-a-cursor"}, "'after'"),
    ({"after": "WyJib29rcyIsImIxIl0"}, "'after'"),                 # a store books cursor
    ({"after": "x" * 1025}, "after"),
])
def test_buyer_orders_deep_pages_and_bad_cursors_are_400(placed, params, field):
    shop, _ = placed
    code, body = shop.buyer.orders(**params)
    assert code == 400 and field in body["message"]
    if params.get("page") == 501:
        assert "'next'" in body["message"] and "after" in body["message"]


def test_order_list_totals_are_capped(placed, monkeypatch):
    from be.model import paging
    shop, made = placed
    monkeypatch.setattr(paging, "COUNT_BOUND", 3)  # the server runs in this process
    code, body = shop.buyer.orders(page_size=1)
    assert code == 200 and (body["total"], body["total_is_lower_bound"]) == (3, True)
    assert ids(body) == [made[4]]
    code, body = shop.seller.orders(state="unpaid")
    assert code == 200 and (body["total"], body["total_is_lower_bound"]) == (2, False)


# ---------------------------------------------------------------- seller

def test_seller_orders_all_stores_or_one(placed, backend):
    shop, made = placed
    second = "queries_second_" + uuid.uuid4().hex
    assert shop.seller.create_store(second) == 200
    book_id, _ = shop.buy_list[0]
    info = shop.gen.buy_book_info_list[0][0]
    assert shop.seller.add_book(second, 5, info) == 200
    with manual_clock(backend) as clock:
        clock.advance(60)  # after every order of the fixture
        code, newest = shop.buyer.new_order(second, [(book_id, 2)])
        assert code == 200

    code, body = shop.seller.orders()
    assert code == 200 and ids(body) == [newest] + made[::-1] and body["total"] == 6
    code, body = shop.seller.orders(store_id=second)
    assert ids(body) == [newest] and body["total"] == 1
    code, body = shop.seller.orders(store_id=shop.store_id)
    assert ids(body) == made[::-1] and body["total"] == 5
    code, body = shop.seller.orders(state="unpaid")
    assert ids(body) == [newest, made[4], made[0]]
    code, body = shop.seller.orders(store_id=shop.store_id, state="paid")
    assert ids(body) == [made[1]]
    code, body = shop.seller.orders(page=2, page_size=4)
    assert ids(body) == made[1::-1] and body["total"] == 6
    code, body = shop.seller.orders(page=3, page_size=4)
    assert code == 200 and body["orders"] == [] and body["total"] == 6


def test_seller_orders_errors(placed):
    shop, _ = placed
    code, body = shop.seller.orders(store_id=shop.store_id + "_x")
    assert code == 513
    rival = register_new_seller("queries_rival_" + uuid.uuid4().hex, "pw")
    code, body = rival.orders(store_id=shop.store_id)
    assert code == 401 and "orders" not in body
    code, body = rival.orders()  # no stores: no orders
    assert code == 200 and body["orders"] == [] and body["total"] == 0
    code, body = shop.seller.orders(state="nope")
    assert code == 400 and "state" in body["message"]
    code, body = shop.seller.orders(page_size=1000)
    assert code == 400 and "page_size" in body["message"]
    shop.seller.token = "bogus"
    assert shop.seller.orders()[0] == 401


# ---------------------------------------------------------------- one order

def test_get_order_for_buyer_and_seller(placed):
    shop, made = placed
    code, order = shop.buyer.order(made[2])
    assert code == 200 and set(order) == ORDER_FIELDS
    assert order["state"] == "shipped" and order["order_id"] == made[2]
    assert order["items"] == [{"book_id": b, "count": c,
                               "price": next(bk.price for bk, _ in shop.gen.buy_book_info_list
                                             if bk.id == b)}
                              for b, c in shop.buy_list]
    assert order["received_at"] is None and order["cancelled_at"] is None
    assert [h["state"] for h in order["history"]] == ["unpaid", "paid", "shipped"]
    assert order["created_at"] <= order["paid_at"] <= order["shipped_at"]
    code, seen = shop.seller.order(made[2])
    assert code == 200 and seen == order
    code, cancelled = shop.buyer.order(made[3])
    assert cancelled["cancel_reason"] == "buyer" and cancelled["cancelled_at"] is not None


def test_get_order_third_user_401_unknown_518(placed):
    shop, made = placed
    third = register_new_buyer("queries_third_" + uuid.uuid4().hex, "pw")
    code, order = third.order(made[0])
    assert code == 401 and order is None
    rival = register_new_seller("queries_rival_" + uuid.uuid4().hex, "pw")
    assert rival.order(made[0])[0] == 401
    assert shop.buyer.order(made[0] + "_x")[0] == 518
    shop.buyer.token = third.token
    assert shop.buyer.order(made[0])[0] == 401
