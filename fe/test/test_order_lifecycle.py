"""The order lifecycle over HTTP (issue 3): ship, receive, cancel, with the money
and the stock checked after every step and after every refused step."""
import uuid

import pytest

from fe.access.new_buyer import register_new_buyer
from fe.access.new_seller import register_new_seller
from fe.test.gen_book_data import Shop, manual_clock


@pytest.fixture
def shop():
    return Shop("lifecycle")


def reserved(shop):
    """The store's stock after the buy list has been ordered once."""
    stock = dict(shop.gen.stock_levels)
    for book_id, count in shop.buy_list:
        stock[book_id] -= count
    return stock


def to_state(shop, state):
    order_id = shop.order()
    if state == "cancelled":
        assert shop.buyer.cancel_order(order_id) == 200
    if state in ("paid", "shipped", "received"):
        assert shop.buyer.payment(order_id) == 200
    if state in ("shipped", "received"):
        assert shop.seller.ship(order_id) == 200
    if state == "received":
        assert shop.buyer.receive(order_id) == 200
    assert shop.read(order_id)["state"] == state
    return order_id


# ---------------------------------------------------------------- the happy paths

def test_pay_ship_receive_credits_the_seller_exactly_the_total(shop):
    buyer0, seller0 = shop.balances()
    order_id = shop.order()
    assert shop.gen.stock() == reserved(shop)

    assert shop.buyer.payment(order_id) == 200
    assert shop.balances() == (buyer0 - shop.total, seller0)  # held in escrow

    assert shop.seller.ship(order_id) == 200
    order = shop.read(order_id)
    assert order["state"] == "shipped" and order["shipped_at"] is not None
    assert shop.balances() == (buyer0 - shop.total, seller0)

    assert shop.buyer.receive(order_id) == 200
    assert shop.balances() == (buyer0 - shop.total, seller0 + shop.total)
    assert shop.gen.stock() == reserved(shop)  # sold: the stock stays taken

    order = shop.read(order_id)
    assert order["state"] == "received" and order["total_price"] == shop.total
    assert [h["state"] for h in order["history"]] == ["unpaid", "paid", "shipped", "received"]
    times = [order[k] for k in ("created_at", "paid_at", "shipped_at", "received_at")]
    assert all(t and t.endswith("Z") for t in times) and times == sorted(times)
    assert order["cancelled_at"] is None and order["cancel_reason"] is None
    # the seller sees the same order
    code, seen = shop.seller.order(order_id)
    assert code == 200 and seen == order


def test_cancel_unpaid_gives_the_stock_back(shop):
    balances = shop.balances()
    order_id = shop.order()
    assert shop.buyer.cancel_order(order_id) == 200
    assert shop.gen.stock() == shop.gen.stock_levels
    assert shop.balances() == balances
    order = shop.read(order_id)
    assert order["state"] == "cancelled" and order["cancel_reason"] == "buyer"
    assert order["cancelled_at"] is not None and order["paid_at"] is None


def test_cancel_paid_refunds_exactly_and_gives_the_stock_back(shop):
    buyer0, seller0 = shop.balances()
    order_id = shop.order()
    assert shop.buyer.payment(order_id) == 200
    assert shop.balances() == (buyer0 - shop.total, seller0)
    assert shop.buyer.cancel_order(order_id) == 200
    assert shop.balances() == (buyer0, seller0)
    assert shop.gen.stock() == shop.gen.stock_levels
    order = shop.read(order_id)
    assert order["state"] == "cancelled" and order["cancel_reason"] == "buyer"
    assert [h["state"] for h in order["history"]] == ["unpaid", "paid", "cancelled"]


def test_payment_after_the_deadline_is_521_and_the_stock_comes_back(shop, backend):
    with manual_clock(backend) as clock:
        balances = shop.balances()
        order_id = shop.order()
        clock.advance(backend.settings.pay_timeout_s)
        assert shop.buyer.payment(order_id) == 521
        assert shop.balances() == balances
        assert shop.gen.stock() == shop.gen.stock_levels
        order = shop.read(order_id)
        assert order["state"] == "cancelled" and order["cancel_reason"] == "timeout"
        assert shop.buyer.payment(order_id) == 521
        assert shop.balances() == balances


# ---------------------------------------------------------------- refused calls

def test_ship_errors(shop):
    unpaid = shop.order()
    before = shop.snapshot(unpaid)
    assert shop.seller.ship(unpaid) == 520                 # not paid
    assert shop.seller.ship(unpaid + "_x") == 518
    assert shop.snapshot(unpaid) == before

    paid = to_state(shop, "paid")
    before = shop.snapshot(paid)
    rival = register_new_seller("lifecycle_rival_" + uuid.uuid4().hex, "pw")
    assert rival.create_store("lifecycle_rival_store_" + uuid.uuid4().hex) == 200
    assert rival.ship(paid) == 401                          # not the store's owner
    assert shop.buyer.receive(paid) == 520                 # not shipped yet
    token, shop.seller.token = shop.seller.token, shop.seller.token + "_x"
    assert shop.seller.ship(paid) == 401                    # bad token
    shop.seller.token = token
    assert shop.snapshot(paid) == before


def test_receive_errors(shop):
    shipped = to_state(shop, "shipped")
    before = shop.snapshot(shipped)
    other = register_new_buyer("lifecycle_other_" + uuid.uuid4().hex, "pw")
    assert other.receive(shipped) == 401                    # not the order's buyer
    code = shop.buyer.receive(shipped + "_x")
    assert code == 518
    token, shop.buyer.token = shop.buyer.token, "bogus"
    assert shop.buyer.receive(shipped) == 401
    shop.buyer.token = token
    assert shop.snapshot(shipped) == before


def test_cancel_errors(shop):
    paid = to_state(shop, "paid")
    before = shop.snapshot(paid)
    other = register_new_buyer("lifecycle_other_" + uuid.uuid4().hex, "pw")
    assert other.cancel_order(paid) == 401
    assert shop.buyer.cancel_order(paid + "_x") == 518
    assert shop.snapshot(paid) == before


FORBIDDEN = [
    ("unpaid", "ship"), ("unpaid", "receive"),
    ("paid", "payment"), ("paid", "receive"),
    ("shipped", "payment"), ("shipped", "ship"), ("shipped", "cancel_order"),
    ("received", "payment"), ("received", "ship"), ("received", "receive"),
    ("received", "cancel_order"),
    ("cancelled", "payment"), ("cancelled", "ship"), ("cancelled", "receive"),
    ("cancelled", "cancel_order"),
]


@pytest.mark.parametrize("state, call", FORBIDDEN)
def test_forbidden_transition_is_520_and_changes_nothing(shop, state, call):
    order_id = to_state(shop, state)
    before = shop.snapshot(order_id)
    actor = shop.seller if call == "ship" else shop.buyer
    assert getattr(actor, call)(order_id) == 520
    assert shop.snapshot(order_id) == before


# ---------------------------------------------------------------- balance and store books

def test_balance_follows_funds_and_needs_the_users_token(shop):
    code, balance = shop.buyer.balance()
    assert code == 200 and balance == 10_000_000
    assert shop.buyer.add_funds(-5) == 200
    assert shop.buyer.balance() == (200, 10_000_000 - 5)
    shop.buyer.token = shop.seller.token
    code, balance = shop.buyer.balance()
    assert code == 401 and balance is None


def test_store_books_pages_and_errors(shop):
    n = len(shop.gen.stock_levels)
    code, body = shop.seller.books(shop.store_id, page=1, page_size=1)
    assert code == 200 and body["total"] == n and len(body["books"]) == 1
    row = body["books"][0]
    assert set(row) == {"book_id", "title", "price", "stock_level"}
    code, body = shop.seller.books(shop.store_id, page=n + 1, page_size=1)
    assert code == 200 and body["books"] == [] and body["total"] == n
    assert shop.seller.books(shop.store_id + "_x")[0] == 513
    rival = register_new_seller("lifecycle_rival_" + uuid.uuid4().hex, "pw")
    assert rival.books(shop.store_id)[0] == 401
    assert shop.seller.books(shop.store_id, page=0)[0] == 400
    assert shop.seller.books(shop.store_id, page_size=101)[0] == 400
    assert shop.seller.books(shop.store_id, page=101, page_size=100)[0] == 400
    assert shop.seller.books(shop.store_id, after="WyJvcmRlcnMiLDAsIiJd")[0] == 400


def test_store_books_by_cursor(shop):
    n = len(shop.gen.stock_levels)
    code, body = shop.seller.books(shop.store_id, page_size=1)
    seen = [row["book_id"] for row in body["books"]]
    while body["next"]:
        code, body = shop.seller.books(shop.store_id, page_size=1, after=body["next"])
        assert code == 200 and body["total"] == n and body["total_is_lower_bound"] is False
        seen += [row["book_id"] for row in body["books"]]
    assert seen == sorted(seen) and len(seen) == n
