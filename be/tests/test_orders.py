"""Orders (be.model.orders): new_order, payment, cancel, ship, receive, the
deadline handlers and the order queries, on the embedded engine with a
ManualClock. Every test checks state, balances and stock, and that no effect
marker (``ops``) or ``busy`` step is left behind by a completed operation."""
import contextlib
from datetime import timedelta

import pytest

from be import errors
from be.clock import iso
from be.db import INDEXES, listing_id
from be.model import lifecycle, orders, sessions, stores, users
from be.tests.conftest import new_id
from be.tests.support import engines

PRICE = {"b1": 1000, "b2": 250}  # the shop fixture's books (stock 10 and 5)


# ---------------------------------------------------------------- helpers

def stock(ctx, store_id, book_id):
    return ctx.db.listings.find_one({"_id": listing_id(store_id, book_id)})["stock_level"]


def stocks(ctx, shop):
    return {b: stock(ctx, shop["store_id"], b) for b in PRICE}


def balance(ctx, user_id):
    return ctx.db.users.find_one({"_id": user_id})["balance"]


def order_doc(ctx, order_id):
    return ctx.db.orders.find_one({"_id": order_id})


def assert_clean(ctx):
    """No effect marker on any user or listing, no order left mid-step."""
    for name in ("users", "listings"):
        for doc in ctx.db[name].find({}):
            assert not doc.get("ops"), (name, doc["_id"], doc.get("ops"))
    for doc in ctx.db.orders.find({}):
        assert doc.get("busy") is None, doc


def timers(ctx, order_id):
    return {d["_id"] for d in ctx.db.pending.find({"order_id": order_id})}


@contextlib.contextmanager
def before_call(ctx, collection, method, action):
    """Run ``action()`` once, just before the first ``collection.method`` call the
    models make inside the block (a deterministic stand-in for a racing request)."""
    engine = engines.embedded(ctx)
    fired = []

    def observer(coll, name, args, kwargs):
        if not fired and coll == collection and name == method:
            fired.append(True)
            engine.observer = None
            action()
    engine.observer = observer
    try:
        yield fired
    finally:
        engine.observer = None


@pytest.fixture
def buyer(make_user):
    uid, pw, token = make_user("buyer", funds=100_000)
    return {"id": uid, "pw": pw, "token": token}


@pytest.fixture
def other(make_user):
    uid, pw, token = make_user("other", funds=100_000)
    return {"id": uid, "pw": pw, "token": token}


def place(ctx, buyer, shop, lines=(("b1", 2), ("b2", 1))):
    return orders.new_order(ctx, buyer["id"], shop["store_id"], list(lines))


def pay(ctx, buyer, order_id):
    orders.payment(ctx, buyer["id"], order_id)


def snapshot(ctx, buyer, shop, order_id):
    return (order_doc(ctx, order_id), balance(ctx, buyer["id"]), balance(ctx, shop["seller"]),
            stocks(ctx, shop))


# ---------------------------------------------------------------- new_order

def test_new_order_reserves_stock_and_records_unpaid_order(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    doc = order_doc(ctx, oid)
    assert doc["state"] == "unpaid"
    assert (doc["buyer_id"], doc["store_id"], doc["seller_id"]) == (
        buyer["id"], shop["store_id"], shop["seller"])
    assert doc["items"] == [{"book_id": "b1", "count": 2, "price": 1000},
                            {"book_id": "b2", "count": 1, "price": 250}]
    assert doc["total_price"] == 2250
    now = ctx.clock.now()
    assert doc["created_at"] == now
    assert doc["pay_deadline"] == now + timedelta(seconds=ctx.settings.pay_timeout_s)
    assert [h["state"] for h in doc["history"]] == ["unpaid"]
    assert stocks(ctx, shop) == {"b1": 8, "b2": 4}
    assert balance(ctx, buyer["id"]) == 100_000  # nothing charged yet
    assert timers(ctx, oid) == {f"pay:{oid}"}
    assert_clean(ctx)


def test_duplicate_lines_are_merged(ctx, buyer, shop):
    oid = place(ctx, buyer, shop, [("b1", 2), ("b2", 1), ("b1", 3)])
    doc = order_doc(ctx, oid)
    assert doc["items"] == [{"book_id": "b1", "count": 5, "price": 1000},
                            {"book_id": "b2", "count": 1, "price": 250}]
    assert doc["total_price"] == 5250
    assert stocks(ctx, shop) == {"b1": 5, "b2": 4}
    assert_clean(ctx)


@pytest.mark.parametrize("lines, short", [
    ([("b1", 1), ("b2", 6)], "b2"),           # one line short
    ([("b2", 3), ("b1", 1), ("b2", 3)], "b2"),  # short only once merged
    ([("b1", 11)], "b1"),
])
def test_short_line_is_517_and_leaves_every_stock_untouched(ctx, buyer, shop, lines, short):
    with pytest.raises(errors.StockTooLow) as exc:
        place(ctx, buyer, shop, lines)
    assert exc.value.code == 517 and short in exc.value.message
    assert stocks(ctx, shop) == {"b1": 10, "b2": 5}
    assert ctx.db.orders.count_documents({}) == 0
    assert_clean(ctx)


def test_exact_stock_can_be_ordered(ctx, buyer, shop):
    place(ctx, buyer, shop, [("b1", 10), ("b2", 5)])
    assert stocks(ctx, shop) == {"b1": 0, "b2": 0}
    with pytest.raises(errors.StockTooLow):
        place(ctx, buyer, shop, [("b2", 1)])


def test_stock_lost_to_a_racing_order_undoes_the_lines_already_taken(ctx, buyer, shop):
    """Stock checked fine, then another request takes b2 before the reservation:
    b1, already reserved, must be given back and no order kept."""
    lid = listing_id(shop["store_id"], "b2")

    def rival():
        ctx.db.listings.update_one({"_id": lid}, {"$inc": {"stock_level": -5}})

    with before_call(ctx, "listings", "bulk_write", rival) as fired:
        with pytest.raises(errors.StockTooLow) as exc:
            place(ctx, buyer, shop, [("b1", 3), ("b2", 1)])
    assert fired and "b2" in exc.value.message
    assert stocks(ctx, shop) == {"b1": 10, "b2": 0}
    assert ctx.db.orders.count_documents({}) == 0
    assert_clean(ctx)


def test_new_order_errors_take_nothing(ctx, buyer, shop, make_user):
    sid = shop["store_id"]
    with pytest.raises(errors.NoSuchBook) as exc:
        orders.new_order(ctx, buyer["id"], sid, [("b1", 1), ("b9", 1)])
    assert exc.value.code == 515
    with pytest.raises(errors.NoSuchStore) as exc:
        orders.new_order(ctx, buyer["id"], new_id("nostore"), [("b1", 1)])
    assert exc.value.code == 513
    # the edge's checks, made before new_order is called
    with pytest.raises(errors.NoSuchUser) as exc:
        sessions.authenticate(ctx, new_id("ghost"), buyer["token"])
    assert exc.value.code == 511
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(ctx, buyer["id"], "bogus")
    with pytest.raises(errors.AuthorizationFailed):  # the seller's token
        sessions.authenticate(ctx, buyer["id"], shop["token"])
    assert stocks(ctx, shop) == {"b1": 10, "b2": 5}
    assert ctx.db.orders.count_documents({}) == 0
    assert_clean(ctx)


# ---------------------------------------------------------------- payment

def test_payment_moves_total_into_escrow(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    ctx.clock.advance(5)
    pay(ctx, buyer, oid)
    doc = order_doc(ctx, oid)
    assert doc["state"] == "paid" and doc["paid_at"] == ctx.clock.now()
    assert [h["state"] for h in doc["history"]] == ["unpaid", "paid"]
    assert balance(ctx, buyer["id"]) == 100_000 - 2250
    assert balance(ctx, shop["seller"]) == 0  # the seller is paid on receipt
    assert stocks(ctx, shop) == {"b1": 8, "b2": 4}
    assert timers(ctx, oid) == set()
    assert_clean(ctx)


def test_payment_with_too_little_money_is_519_and_order_stays_payable(ctx, make_user, shop):
    uid, pw, token = make_user("poor", funds=2249)
    poor = {"id": uid, "pw": pw, "token": token}
    oid = place(ctx, poor, shop)
    with pytest.raises(errors.FundsTooLow) as exc:
        pay(ctx, poor, oid)
    assert exc.value.code == 519
    doc = order_doc(ctx, oid)
    assert doc["state"] == "unpaid" and doc.get("busy") is None
    assert balance(ctx, uid) == 2249
    assert_clean(ctx)
    users.add_funds(ctx, uid, 1)
    pay(ctx, poor, oid)
    assert balance(ctx, uid) == 0 and order_doc(ctx, oid)["state"] == "paid"
    assert_clean(ctx)


def test_payment_errors_change_nothing(ctx, buyer, other, shop):
    oid = place(ctx, buyer, shop)
    before = snapshot(ctx, buyer, shop, oid)
    with pytest.raises(errors.NoSuchOrder) as exc:
        pay(ctx, buyer, new_id("noorder"))
    assert exc.value.code == 518
    with pytest.raises(errors.AuthorizationFailed):  # wrong password (checked at the edge)
        users.check_password(ctx, buyer["id"], buyer["pw"] + "x")
    with pytest.raises(errors.AuthorizationFailed):  # not the order's buyer
        pay(ctx, other, oid)
    with pytest.raises(errors.AuthorizationFailed):  # unknown user (at the edge)
        users.check_password(ctx, new_id("ghost"), buyer["pw"])
    with pytest.raises(errors.AuthorizationFailed):  # unknown user (the model alone)
        orders.payment(ctx, new_id("ghost"), oid)
    assert snapshot(ctx, buyer, shop, oid) == before
    assert balance(ctx, other["id"]) == 100_000


def test_repeated_payment_is_520_and_charges_once(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    pay(ctx, buyer, oid)
    before = snapshot(ctx, buyer, shop, oid)
    with pytest.raises(errors.BadOrderState) as exc:
        pay(ctx, buyer, oid)
    assert exc.value.code == 520
    assert snapshot(ctx, buyer, shop, oid) == before
    assert balance(ctx, buyer["id"]) == 100_000 - 2250


def test_payment_racing_a_payment_in_flight_is_refused_and_charges_once(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    second = []

    def rival():
        with pytest.raises(errors.BadOrderState) as exc:
            pay(ctx, buyer, oid)
        second.append(exc.value.code)

    # the first payment has claimed the order and is about to charge the buyer
    with before_call(ctx, "users", "update_one", rival):
        pay(ctx, buyer, oid)
    assert second == [520]
    assert balance(ctx, buyer["id"]) == 100_000 - 2250
    assert order_doc(ctx, oid)["state"] == "paid"
    assert_clean(ctx)


def test_payment_before_deadline_succeeds(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    ctx.clock.advance(ctx.settings.pay_timeout_s - 1)
    pay(ctx, buyer, oid)
    assert order_doc(ctx, oid)["state"] == "paid"


def test_payment_after_deadline_is_521_and_cancels_with_stock_back(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    ctx.clock.advance(ctx.settings.pay_timeout_s)
    with pytest.raises(errors.OrderExpired) as exc:
        pay(ctx, buyer, oid)
    assert exc.value.code == 521
    doc = order_doc(ctx, oid)
    assert doc["state"] == "cancelled" and doc["cancel_reason"] == "timeout"
    assert doc["cancelled_at"] == ctx.clock.now()
    assert stocks(ctx, shop) == {"b1": 10, "b2": 5}
    assert balance(ctx, buyer["id"]) == 100_000
    assert timers(ctx, oid) == set()
    assert_clean(ctx)
    with pytest.raises(errors.OrderExpired):  # and it stays cancelled (still 521)
        pay(ctx, buyer, oid)
    assert order_doc(ctx, oid)["state"] == "cancelled"
    assert stocks(ctx, shop) == {"b1": 10, "b2": 5}


def test_expire_payment_handler_is_idempotent_and_respects_the_deadline(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    assert orders.expire_payment(ctx, oid) is False  # not due yet
    assert order_doc(ctx, oid)["state"] == "unpaid"
    ctx.clock.advance(ctx.settings.pay_timeout_s + 1)
    assert orders.expire_payment(ctx, oid) is True
    assert orders.expire_payment(ctx, oid) is False
    assert stocks(ctx, shop) == {"b1": 10, "b2": 5}  # given back once
    assert order_doc(ctx, oid)["cancel_reason"] == "timeout"
    assert_clean(ctx)


def test_expire_payment_leaves_a_paid_order_alone(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    pay(ctx, buyer, oid)
    ctx.clock.advance(ctx.settings.pay_timeout_s + 1)
    before = snapshot(ctx, buyer, shop, oid)
    assert orders.expire_payment(ctx, oid) is False
    assert snapshot(ctx, buyer, shop, oid) == before


# ---------------------------------------------------------------- cancel

def test_cancel_unpaid_gives_stock_back(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    ctx.clock.advance(3)
    orders.cancel_order(ctx, buyer["id"], oid)
    doc = order_doc(ctx, oid)
    assert doc["state"] == "cancelled" and doc["cancel_reason"] == "buyer"
    assert doc["cancelled_at"] == ctx.clock.now()
    assert doc["history"][-1]["state"] == "cancelled"
    assert doc["history"][-1]["reason"] == "buyer"
    assert stocks(ctx, shop) == {"b1": 10, "b2": 5}
    assert balance(ctx, buyer["id"]) == 100_000
    assert timers(ctx, oid) == set()
    assert_clean(ctx)


def test_cancel_paid_refunds_exactly_and_gives_stock_back(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    pay(ctx, buyer, oid)
    assert balance(ctx, buyer["id"]) == 100_000 - 2250
    orders.cancel_order(ctx, buyer["id"], oid)
    doc = order_doc(ctx, oid)
    assert doc["state"] == "cancelled" and doc["cancel_reason"] == "buyer"
    assert [h["state"] for h in doc["history"]] == ["unpaid", "paid", "cancelled"]
    assert balance(ctx, buyer["id"]) == 100_000
    assert balance(ctx, shop["seller"]) == 0
    assert stocks(ctx, shop) == {"b1": 10, "b2": 5}
    assert_clean(ctx)


def test_cancel_errors_change_nothing(ctx, buyer, other, shop):
    oid = place(ctx, buyer, shop)
    before = snapshot(ctx, buyer, shop, oid)
    with pytest.raises(errors.AuthorizationFailed):
        orders.cancel_order(ctx, other["id"], oid)
    with pytest.raises(errors.AuthorizationFailed):  # the seller may not cancel
        orders.cancel_order(ctx, shop["seller"], oid)
    with pytest.raises(errors.AuthorizationFailed):  # a bogus token, at the edge
        sessions.authenticate(ctx, buyer["id"], "bogus")
    with pytest.raises(errors.NoSuchOrder):
        orders.cancel_order(ctx, buyer["id"], new_id("noorder"))
    assert snapshot(ctx, buyer, shop, oid) == before


# ---------------------------------------------------------------- ship / receive

def test_ship_and_receive_credit_the_seller_exactly_the_total(ctx, buyer, shop):
    oid = place(ctx, buyer, shop, [("b1", 3), ("b2", 2)])
    total = 3 * 1000 + 2 * 250
    t0 = ctx.clock.now()
    ctx.clock.advance(1)
    pay(ctx, buyer, oid)
    t1 = ctx.clock.now()
    ctx.clock.advance(60)
    orders.ship(ctx, shop["seller"], oid)
    t2 = ctx.clock.now()
    doc = order_doc(ctx, oid)
    assert doc["state"] == "shipped" and doc["shipped_at"] == t2
    assert doc["receive_deadline"] == t2 + timedelta(seconds=ctx.settings.receive_timeout_s)
    assert timers(ctx, oid) == {f"receive:{oid}"}
    assert balance(ctx, shop["seller"]) == 0
    ctx.clock.advance(600)
    orders.receive(ctx, buyer["id"], oid)
    t3 = ctx.clock.now()
    doc = order_doc(ctx, oid)
    assert doc["state"] == "received" and doc["received_at"] == t3
    assert balance(ctx, shop["seller"]) == total
    assert balance(ctx, buyer["id"]) == 100_000 - total
    assert stocks(ctx, shop) == {"b1": 7, "b2": 3}
    assert timers(ctx, oid) == set()
    assert [(h["state"], h["at"]) for h in doc["history"]] == [
        ("unpaid", t0), ("paid", t1), ("shipped", t2), ("received", t3)]
    assert doc["history"][-1]["by"] == "buyer"
    assert_clean(ctx)


def test_auto_receive_pays_the_seller_once_after_the_deadline(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    pay(ctx, buyer, oid)
    orders.ship(ctx, shop["seller"], oid)
    assert orders.auto_receive(ctx, oid) is False
    assert order_doc(ctx, oid)["state"] == "shipped"
    ctx.clock.advance(ctx.settings.receive_timeout_s)
    assert orders.auto_receive(ctx, oid) is True
    assert orders.auto_receive(ctx, oid) is False
    doc = order_doc(ctx, oid)
    assert doc["state"] == "received" and doc["history"][-1]["by"] == "timeout"
    assert balance(ctx, shop["seller"]) == 2250
    assert_clean(ctx)


def test_ship_and_receive_by_the_wrong_user_are_401(ctx, buyer, other, shop, make_user):
    oid = place(ctx, buyer, shop)
    pay(ctx, buyer, oid)
    before = snapshot(ctx, buyer, shop, oid)
    rival, _, rival_token = make_user("rival_seller")
    stores.create_store(ctx, rival, new_id("store"))
    for uid in (buyer["id"], rival):
        with pytest.raises(errors.AuthorizationFailed):
            orders.ship(ctx, uid, oid)
    with pytest.raises(errors.AuthorizationFailed):  # a bogus token, at the edge
        sessions.authenticate(ctx, shop["seller"], "bogus")
    assert snapshot(ctx, buyer, shop, oid) == before
    orders.ship(ctx, shop["seller"], oid)
    before = snapshot(ctx, buyer, shop, oid)
    for uid in (shop["seller"], other["id"]):
        with pytest.raises(errors.AuthorizationFailed):
            orders.receive(ctx, uid, oid)
    assert snapshot(ctx, buyer, shop, oid) == before


def test_ship_and_receive_unknown_order_is_518(ctx, buyer, shop):
    with pytest.raises(errors.NoSuchOrder):
        orders.ship(ctx, shop["seller"], new_id("noorder"))
    with pytest.raises(errors.NoSuchOrder):
        orders.receive(ctx, buyer["id"], new_id("noorder"))


# ---------------------------------------------------------------- forbidden transitions

def _to_state(ctx, buyer, shop, state):
    oid = place(ctx, buyer, shop)
    if state == "cancelled":
        orders.cancel_order(ctx, buyer["id"], oid)
    if state in ("paid", "shipped", "received"):
        pay(ctx, buyer, oid)
    if state in ("shipped", "received"):
        orders.ship(ctx, shop["seller"], oid)
    if state == "received":
        orders.receive(ctx, buyer["id"], oid)
    assert order_doc(ctx, oid)["state"] == state
    return oid


FORBIDDEN = [
    ("unpaid", "ship"), ("unpaid", "receive"),
    ("paid", "pay"), ("paid", "receive"),
    ("shipped", "pay"), ("shipped", "ship"), ("shipped", "cancel"),
    ("received", "pay"), ("received", "ship"), ("received", "receive"), ("received", "cancel"),
    ("cancelled", "pay"), ("cancelled", "ship"), ("cancelled", "receive"),
    ("cancelled", "cancel"),
]


@pytest.mark.parametrize("state, action", FORBIDDEN)
def test_forbidden_transition_is_520_and_changes_nothing(ctx, buyer, shop, state, action):
    oid = _to_state(ctx, buyer, shop, state)
    before = snapshot(ctx, buyer, shop, oid)
    pending_before = timers(ctx, oid)
    call = {
        "pay": lambda: pay(ctx, buyer, oid),
        "ship": lambda: orders.ship(ctx, shop["seller"], oid),
        "receive": lambda: orders.receive(ctx, buyer["id"], oid),
        "cancel": lambda: orders.cancel_order(ctx, buyer["id"], oid),
    }[action]
    with pytest.raises(errors.BadOrderState) as exc:
        call()
    assert exc.value.code == 520 and state in exc.value.message
    assert snapshot(ctx, buyer, shop, oid) == before
    assert timers(ctx, oid) == pending_before
    assert_clean(ctx)


# ---------------------------------------------------------------- reading one order

def test_get_order_for_buyer_and_seller_in_public_shape(ctx, buyer, shop):
    oid = place(ctx, buyer, shop)
    created = ctx.clock.now()
    ctx.clock.advance(2)
    pay(ctx, buyer, oid)
    for uid, token in ((buyer["id"], buyer["token"]), (shop["seller"], shop["token"])):
        got = orders.get_order(ctx, uid, oid)
        assert set(got) == {
            "order_id", "buyer_id", "store_id", "state", "items", "total_price", "created_at",
            "pay_deadline", "paid_at", "shipped_at", "receive_deadline", "received_at",
            "cancelled_at", "cancel_reason", "history"}
        assert got["order_id"] == oid and got["state"] == "paid"
        assert got["items"] == [{"book_id": "b1", "count": 2, "price": 1000},
                                {"book_id": "b2", "count": 1, "price": 250}]
        assert got["total_price"] == 2250
        assert got["created_at"] == iso(created) and got["created_at"].endswith("Z")
        assert got["paid_at"] == iso(created + timedelta(seconds=2))
        assert got["shipped_at"] is None and got["received_at"] is None
        assert got["cancelled_at"] is None and got["cancel_reason"] is None
        assert [h["state"] for h in got["history"]] == ["unpaid", "paid"]
        assert got["history"][0]["at"] == iso(created)
        assert "seller_id" not in got and "busy" not in got


def test_get_order_for_anyone_else_is_401_unknown_is_518(ctx, buyer, other, shop):
    oid = place(ctx, buyer, shop)
    with pytest.raises(errors.AuthorizationFailed):
        orders.get_order(ctx, other["id"], oid)
    with pytest.raises(errors.AuthorizationFailed):  # another's token, at the edge
        sessions.authenticate(ctx, buyer["id"], other["token"])
    with pytest.raises(errors.NoSuchOrder):
        orders.get_order(ctx, buyer["id"], new_id("noorder"))


# ---------------------------------------------------------------- lists

@pytest.fixture
def history(ctx, buyer, shop):
    """Five orders a second apart, oldest first: unpaid, paid, shipped, cancelled, unpaid."""
    made = []
    for state in ("unpaid", "paid", "shipped", "cancelled", "unpaid"):
        made.append(_to_state(ctx, buyer, shop, state))
        ctx.clock.advance(1)
    return made


def test_buyer_orders_newest_first_with_state_filter(ctx, buyer, shop, history):
    rows, total = orders.buyer_orders(ctx, buyer["id"], None, 1, 20)[:2]
    assert total == 5 and [r["order_id"] for r in rows] == history[::-1]
    assert rows[0]["state"] == "unpaid" and rows[1]["state"] == "cancelled"
    rows, total = orders.buyer_orders(ctx, buyer["id"], "unpaid", 1, 20)[:2]
    assert total == 2 and [r["order_id"] for r in rows] == [history[4], history[0]]
    rows, total = orders.buyer_orders(ctx, buyer["id"], "received", 1, 20)[:2]
    assert (rows, total) == ([], 0)


def test_buyer_orders_paging_and_page_past_end(ctx, buyer, shop, history):
    newest = history[::-1]
    pages = [orders.buyer_orders(ctx, buyer["id"], None, p, 2)[:2] for p in (1, 2, 3)]
    assert [[r["order_id"] for r in rows] for rows, _ in pages] == [
        newest[0:2], newest[2:4], newest[4:5]]
    assert all(total == 5 for _, total in pages)
    rows, total = orders.buyer_orders(ctx, buyer["id"], None, 4, 2)[:2]
    assert (rows, total) == ([], 5)


def test_orders_created_in_the_same_millisecond_have_a_stable_order(ctx, buyer, shop):
    made = [place(ctx, buyer, shop, [("b2", 1)]) for _ in range(3)]
    rows, _ = orders.buyer_orders(ctx, buyer["id"], None, 1, 20)[:2]
    assert [r["order_id"] for r in rows] == sorted(made, reverse=True)
    first, _ = orders.buyer_orders(ctx, buyer["id"], None, 1, 2)[:2]
    second, _ = orders.buyer_orders(ctx, buyer["id"], None, 2, 2)[:2]
    assert [r["order_id"] for r in first + second] == sorted(made, reverse=True)


def test_buyer_orders_shows_only_own_orders(ctx, buyer, other, shop, history):
    rows, total = orders.buyer_orders(ctx, other["id"], None, 1, 20)[:2]
    assert (rows, total) == ([], 0)
    with pytest.raises(errors.AuthorizationFailed):  # another's token, at the edge
        sessions.authenticate(ctx, buyer["id"], other["token"])


def test_seller_orders_all_stores_or_one(ctx, buyer, shop, history):
    seller = shop["seller"]
    second = new_id("store")
    stores.create_store(ctx, seller, second)
    stores.add_book(ctx, seller, second, {"id": "b1", "title": "T", "price": 7}, 9)
    ctx.clock.advance(1)
    newest = orders.new_order(ctx, buyer["id"], second, [("b1", 2)])
    rows, total = orders.seller_orders(ctx, seller, None, None, 1, 20)[:2]
    assert total == 6 and [r["order_id"] for r in rows] == [newest] + history[::-1]
    rows, total = orders.seller_orders(ctx, seller, second, None, 1, 20)[:2]
    assert total == 1 and rows[0]["order_id"] == newest and rows[0]["total_price"] == 14
    rows, total = orders.seller_orders(ctx, seller, shop["store_id"], "unpaid", 1, 1)[:2]
    assert total == 2 and [r["order_id"] for r in rows] == [history[4]]
    rows, total = orders.seller_orders(ctx, seller, None, "unpaid", 1, 20)[:2]
    assert total == 3
    rows, total = orders.seller_orders(ctx, seller, None, None, 2, 20)[:2]
    assert (rows, total) == ([], 6)


def test_seller_orders_errors(ctx, buyer, shop, make_user, history):
    rival, _, rival_token = make_user("rival")
    with pytest.raises(errors.NoSuchStore):
        orders.seller_orders(ctx, shop["seller"], new_id("nostore"), None, 1, 20)
    with pytest.raises(errors.AuthorizationFailed):  # another seller's store
        orders.seller_orders(ctx, rival, shop["store_id"], None, 1, 20)
    with pytest.raises(errors.AuthorizationFailed):  # the rival's token, at the edge
        sessions.authenticate(ctx, shop["seller"], rival_token)
    # a user without stores sees no orders, and the buyer sees none as a seller
    assert orders.seller_orders(ctx, rival, None, None, 1, 20)[:2] == ([], 0)
    assert orders.seller_orders(ctx, buyer["id"], None, None, 1, 20)[:2] == ([], 0)


# ---------------------------------------------------------------- cursors and bounds

def _follow(call, page_size, between=None):
    """Every row of a list, page by page through ``next``; ``between(n)`` runs
    before page n + 1 is read."""
    seen, cursor, n = [], None, 0
    while True:
        found = call(1, page_size, cursor)
        assert len(found.rows) <= page_size
        seen += [r["order_id"] for r in found.rows]
        if found.next is None:
            return seen
        n += 1
        if between:
            between(n)
        cursor = found.next


def test_cursor_paging_returns_every_row_once_in_order_despite_inserts(ctx, buyer, shop):
    """Seven orders, three of them in one millisecond (the cursor's tie-break on
    _id), and a new order placed between every two pages: the walk returns the
    seven once each, newest first, and none of the new ones (they are newer than
    any cursor). Offset paging would have shown a row twice."""
    made = []
    for n in range(7):
        made.append(place(ctx, buyer, shop, [("b2", 1)] if n % 2 else [("b1", 1)]))
        if n not in (2, 3):
            ctx.clock.advance(1)
    stores.add_stock_level(ctx, shop["seller"], shop["store_id"], "b1", 100)
    expected = [r["order_id"] for r in orders.buyer_orders(ctx, buyer["id"], None, 1, 20).rows]
    assert sorted(expected) == sorted(made)
    placed_between = []

    def insert(n):
        ctx.clock.advance(1)
        placed_between.append(place(ctx, buyer, shop, [("b1", 1)]))

    for size in (1, 2, 3, 7):
        before = len(placed_between)
        seen = _follow(lambda p, s, a: orders.buyer_orders(ctx, buyer["id"], None, p, s, a),
                       size, insert)
        assert seen == expected  # every row there at the first page, once, in order
        new = placed_between[before:]
        expected = [r["order_id"] for r in
                    orders.buyer_orders(ctx, buyer["id"], None, 1, 100).rows]
        assert new and expected == new[::-1] + seen  # the new ones were all newer
    # the seller's lists, per store and per state, walk alike
    walked = _follow(lambda p, s, a: orders.seller_orders(ctx, shop["seller"], shop["store_id"],
                                                          "unpaid", p, s, a), 2)
    assert walked == [r["order_id"] for r in orders.seller_orders(
        ctx, shop["seller"], None, "unpaid", 1, 100).rows]
    # and offset paging, for comparison, shows a row twice after an insert
    first = orders.buyer_orders(ctx, buyer["id"], None, 1, 2).rows
    insert(0)
    second = orders.buyer_orders(ctx, buyer["id"], None, 2, 2).rows
    assert first[-1]["order_id"] == second[0]["order_id"]


def test_a_page_says_where_the_next_starts(ctx, buyer, shop, history):
    found = orders.buyer_orders(ctx, buyer["id"], None, 1, 2)
    assert found.next is not None and (found.total, found.total_is_lower_bound) == (5, False)
    assert orders.buyer_orders(ctx, buyer["id"], None, 1, 5).next is None  # exactly the rest
    assert orders.buyer_orders(ctx, buyer["id"], None, 3, 2).next is None
    # page 2 by number and the page after page 1's cursor are the same rows
    by_number = orders.buyer_orders(ctx, buyer["id"], None, 2, 2)
    by_cursor = orders.buyer_orders(ctx, buyer["id"], None, 1, 2, found.next)
    assert by_number.rows == by_cursor.rows and by_number.next == by_cursor.next
    assert by_cursor.total == 5  # total counts the whole list, not what is left


def test_deep_pages_bad_cursors_and_mixed_paging_are_400(ctx, buyer, shop, history):
    assert orders.buyer_orders(ctx, buyer["id"], None, 500, 20).rows == []  # row 10,000: fine
    with pytest.raises(errors.BadRequest) as exc:
        orders.buyer_orders(ctx, buyer["id"], None, 501, 20)
    assert "'page'" in exc.value.message and "after" in exc.value.message
    with pytest.raises(errors.BadRequest):
        orders.seller_orders(ctx, shop["seller"], None, None, 10**6, 100)
    cursor = orders.buyer_orders(ctx, buyer["id"], None, 1, 2).next
    with pytest.raises(errors.BadRequest) as exc:
        orders.buyer_orders(ctx, buyer["id"], None, 2, 2, cursor)
    assert "'page'" in exc.value.message
    books_cursor = stores.store_books(ctx, shop["seller"], shop["store_id"], 1, 1).next
    for bad in ("", "!!", "bm90IGpzb24", books_cursor, cursor[:-2]):
        with pytest.raises(errors.BadRequest) as exc:
            orders.buyer_orders(ctx, buyer["id"], None, 1, 2, bad)
        assert "'after'" in exc.value.message
    with pytest.raises(errors.BadRequest):  # 400 before the store is looked up
        orders.seller_orders(ctx, shop["seller"], new_id("nostore"), None, 1, 2, "junk")


def test_total_is_capped_past_the_count_bound(ctx, buyer, shop, history, monkeypatch):
    from be.model import paging
    monkeypatch.setattr(paging, "COUNT_BOUND", 4)
    found = orders.buyer_orders(ctx, buyer["id"], None, 1, 2)
    assert (found.total, found.total_is_lower_bound) == (4, True)
    found = orders.seller_orders(ctx, shop["seller"], None, "unpaid", 1, 2)
    assert (found.total, found.total_is_lower_bound) == (2, False)
    monkeypatch.setattr(paging, "COUNT_BOUND", 5)  # exactly the bound: still exact
    found = orders.buyer_orders(ctx, buyer["id"], None, 1, 2)
    assert (found.total, found.total_is_lower_bound) == (5, False)
    # the count asks the database for at most bound + 1 entries
    seen = []
    ctx.engine.embedded.observer = lambda coll, name, args, kwargs: seen.append((name, kwargs))
    try:
        orders.buyer_orders(ctx, buyer["id"], None, 1, 2)
    finally:
        ctx.engine.embedded.observer = None
    assert [k.get("limit") for n, k in seen if n == "count_documents"] == [6]


def test_state_filter_accepts_states_and_refuses_others():
    """The order lists' state filter is checked when the query is parsed, before the
    token: one of the lifecycle's states, or empty for all."""
    from pydantic import ValidationError
    from be.api.common import _bad
    from be.api.schemas import OrdersQuery

    def state(value):
        return OrdersQuery.model_validate({"user_id": "u", "state": value}).state

    assert state(None) is None and state("") is None
    for s in lifecycle.STATES:
        assert state(s) == s
    with pytest.raises(ValidationError) as exc:
        state("delivered")
    assert _bad(exc.value).message == ("invalid field 'state': must be one of unpaid, paid, "
                                       "shipped, received, cancelled")


# ---------------------------------------------------------------- indexes

def _index_for(query, sort):
    """The declared orders index that serves ``find(query).sort(sort)`` with no
    in-memory sort: equality fields first (any order), then the sort keys."""
    eq = set(query)
    for keys, _ in INDEXES["orders"]:
        if set(k for k, _ in keys[:len(eq)]) == eq and list(keys[len(eq):]) == list(sort):
            return [k for k, _ in keys]
    return None


@pytest.mark.parametrize("call, expected", [
    (lambda c, b, s: orders.buyer_orders(c, b["id"], None, 1, 20),
     ["buyer_id", "created_at", "_id"]),
    (lambda c, b, s: orders.buyer_orders(c, b["id"], "paid", 1, 20),
     ["buyer_id", "state", "created_at", "_id"]),
    (lambda c, b, s: orders.seller_orders(c, s["seller"], None, None, 1, 20),
     ["seller_id", "created_at", "_id"]),
    (lambda c, b, s: orders.seller_orders(c, s["seller"], None, "paid", 1, 20),
     ["seller_id", "state", "created_at", "_id"]),
    (lambda c, b, s: orders.seller_orders(c, s["seller"], s["store_id"], None, 1, 20),
     ["store_id", "created_at", "_id"]),
    (lambda c, b, s: orders.seller_orders(c, s["seller"], s["store_id"], "paid",
                                          1, 20),
     ["store_id", "state", "created_at", "_id"]),
])
def test_list_queries_are_served_by_a_declared_index(ctx, buyer, shop, call, expected):
    place(ctx, buyer, shop)
    seen = []

    def observer(coll, name, args, kwargs):
        if coll == "orders":
            seen.append((name, args, kwargs))
    engines.embedded(ctx).observer = observer
    try:
        call(ctx, buyer, shop)
    finally:
        ctx.engine.embedded.observer = None
    finds = [(a, k) for n, a, k in seen if n == "find"]
    counts = [(a, k) for n, a, k in seen if n == "count_documents"]
    assert len(finds) == 1 and len(counts) == 1
    (query,), kwargs = finds[0]
    assert _index_for(query, kwargs["sort"]) == expected
    assert counts[0][0][0] == query  # the count uses the same (indexed) filter


def test_an_order_whose_total_overflows_is_400_before_any_write(ctx, buyer, make_user):
    """10 lines at the highest price and count total 10^19 cents: past int64, which
    MongoDB stores (the server used to answer 500 at the insert)."""
    seller, _, _ = make_user("seller")
    sid = new_id("store")
    stores.create_store(ctx, seller, sid)
    for n in range(10):
        stores.add_book(ctx, seller, sid, {"id": f"x{n}", "title": "T", "price": 10**12}, 10**6)
    before = list(ctx.db.listings.find({}, sort=[("_id", 1)]))
    with pytest.raises(errors.BadRequest) as exc:
        orders.new_order(ctx, buyer["id"], sid, [(f"x{n}", 10**6) for n in range(10)])
    assert "'books'" in exc.value.message and "10000000000000000000 cents" in exc.value.message
    assert ctx.db.orders.count_documents({}) == 0
    assert list(ctx.db.listings.find({}, sort=[("_id", 1)])) == before
    # the largest total any balance can pay is accepted
    oid = orders.new_order(ctx, buyer["id"], sid, [("x0", 1000)])
    assert order_doc(ctx, oid)["total_price"] == users.MAX_BALANCE
