"""Crash safety: every write of every multi-document operation, as a crash point.

For each operation the harness first counts its writes on a fresh database, and
then, for every write k, runs it again on a fresh database with the process
"dying" before write k, after it (the reply is lost) and, for a bulk write of
several operations, after only part of it. Then it does what the running system
would: the clock moves past ``stuck_after_s``, the sweep runs (be.watcher.sweep:
recovery of busy orders, then the timeout handlers), and the client retries the
request where a client would. The audit must be clean and the outcome one of
the legal ones. Each test then also crashes the first sweep at each of its own
writes, sweeps again and audits, and finally drains every deadline.

The listings' own writes (issue 12: add_book and update_book store pictures,
then a description, then point the listing at it) are in the matrix too, next
to a rival store listing the same book id: at every crash point each listing
shows its old description or its new one, whole, and never the rival's.

The audit itself is tested at the end against planted violations, so a clean
audit means something.
"""
import base64
import json

import pytest

from be import errors
from be.audit import audit, summary
from be.backend import Backend
from be.clock import ManualClock
from be.config import Settings
from be.db import listing_id
from be.model import orders, search, sessions, stores, users
from be.tests.support.faults import (Crash, count_writes, crash_at, crash_points, faulty,
                                     sibling, snapshot)
from be.watcher import sweep

pytestmark = pytest.mark.embedded_only  # fault injection into the embedded engine's calls

FUNDS = 100_000
LINES = [("b1", 2), ("b2", 3)]  # two lines: every bulk write has two operations
TOTAL = 2 * 1000 + 3 * 250
STOCK = {"b1": 50, "b2": 50}
PASSWORD = "pw"
# 2 KiB: on a data folder each is kept in a file (be.embedded.blobs), so the
# folder's crash points (test_datadir_crashes) cover writing those files too
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048
PICTURES = [base64.b64encode(PNG + bytes([n])).decode() for n in range(3)]
ONE = {"id": "b1", "title": "One", "price": 1000, "pictures": PICTURES[:1]}
RIVAL_ONE = {"id": "b1", "title": "The rival's One", "author": "Rival", "price": 900,
             "pictures": PICTURES[2:]}
NEW_ONE = {"id": "b1", "title": "One, second edition", "price": 1200, "pictures": PICTURES[1:]}
THREE = {"id": "b3", "title": "Three", "price": 300, "pictures": PICTURES[1:]}


def fresh_ctx():
    settings = Settings.from_env(mongodb_uri="", data_dir=":memory:",
                                 password_method="pbkdf2:sha256:1000",
                                 pay_timeout_s=900, receive_timeout_s=604800,
                                 stuck_after_s=60, token_lifetime_s=10**7)
    return Backend(settings, clock=ManualClock())


def world(ctx):
    """A seller with a store of two books, a funded buyer, a poor buyer, a thief,
    and a rival seller whose store describes book b1 its own way."""
    w = {}
    for name, funds in (("seller", 0), ("buyer", FUNDS), ("poor", 100), ("thief", FUNDS),
                        ("rival", 0)):
        users.register(ctx, name, PASSWORD)
        w[name] = sessions.login(ctx, name, PASSWORD, "t")
        if funds:
            users.add_funds(ctx, name, funds)
    stores.create_store(ctx, "seller", "s1")
    stores.add_book(ctx, "seller", "s1", ONE, STOCK["b1"])
    stores.add_book(ctx, "seller", "s1", {"id": "b2", "title": "Two", "price": 250},
                    STOCK["b2"])
    stores.create_store(ctx, "rival", "s2")
    stores.add_book(ctx, "rival", "s2", RIVAL_ONE, 5)
    return w


def place(ctx, w, buyer="buyer"):
    return orders.new_order(ctx, buyer, "s1", LINES)


def to_paid(ctx, w):
    oid = place(ctx, w)
    orders.payment(ctx, "buyer", oid)
    return oid


def to_shipped(ctx, w):
    oid = to_paid(ctx, w)
    orders.ship(ctx, "seller", oid)
    return oid


def order_of(ctx, oid):
    return ctx.db.orders.find_one({"_id": oid})


def balance(ctx, uid):
    return ctx.db.users.find_one({"_id": uid})["balance"]


def stock(ctx, book):
    return ctx.db.listings.find_one({"_id": listing_id("s1", book)})["stock_level"]


def shows(ctx, store, book):
    """What a store's listing shows of its book, read as the API reads it: the
    book_info fields with the price, and the pictures' bytes in base64."""
    book_info = search.get_book(ctx, book, store)
    pictures = [base64.b64encode(search.get_picture(ctx, book, n, store)[0]).decode()
                for n in range(book_info["picture_count"])]
    return {"id": book, "title": book_info["title"], "price": book_info["price"],
            "pictures": pictures, "author": book_info["author"]}


def described(info):
    return {"id": info["id"], "title": info["title"], "price": info["price"],
            "pictures": info.get("pictures") or [], "author": info.get("author")}


def _shows_one_of(store, book, *infos):
    """The listing shows one of ``infos`` whole (or is absent, if None is one),
    and the rival's b1 is untouched."""
    def check(ctx, w, oid=None):
        if ctx.db.listings.find_one({"_id": listing_id(store, book)}) is None:
            assert None in infos, (store, book)
        else:
            assert shows(ctx, store, book) in [described(i) for i in infos if i], (store, book)
        assert shows(ctx, "s2", "b1") == described(RIVAL_ONE)
    return check


def buyer_orders(ctx, uid="buyer"):
    return list(ctx.db.orders.find({"buyer_id": uid}))


# ---------------------------------------------------------------- scenarios
# prepare(ctx, w) -> order id or None; op(ctx, w, oid); retry(ctx, w, oid) (what a
# client or the watcher does again; may raise one of ``retry_errors``); check(ctx, w, oid).

def _steal_stock_during(ctx, w):
    """While new_order runs (at its first write), another buyer takes all of b2."""
    engine = ctx.engine.embedded
    other = sibling(ctx, ctx.db)
    fired = []

    def observer(coll, method, args, kwargs):
        if not fired and coll == "orders" and method == "insert_one":
            fired.append(True)
            orders.new_order(other, "thief", "s1", [("b2", STOCK["b2"])])

    engine.observer = observer


def _check_new_order(ctx, w, oid):
    mine = buyer_orders(ctx)
    assert 1 <= len(mine) <= 2, mine  # the retry's order, and the first if it survived
    assert all(o["state"] == "unpaid" and not o.get("busy") for o in mine)
    assert stock(ctx, "b1") == STOCK["b1"] - 2 * len(mine)


def _check_race(ctx, w, oid):
    if buyer_orders(ctx, "thief"):  # the racer ran: the short order is gone, b1 given back
        assert buyer_orders(ctx) == []
        assert stock(ctx, "b1") == STOCK["b1"]
    else:  # the crash came before the race could happen; the retry ordered normally
        [o] = buyer_orders(ctx)
        assert o["state"] == "unpaid" and stock(ctx, "b1") == STOCK["b1"] - 2


def _check_paid(ctx, w, oid):
    assert order_of(ctx, oid)["state"] == "paid"
    assert balance(ctx, "buyer") == FUNDS - TOTAL


def _check_unpaid_poor(ctx, w, oid):
    o = order_of(ctx, oid)
    assert o["state"] == "unpaid" and not o.get("busy")
    assert balance(ctx, "poor") == 100


def _check_cancelled(reason, refunded):
    def check(ctx, w, oid):
        o = order_of(ctx, oid)
        assert o["state"] == "cancelled" and o["cancel_reason"] == reason
        assert stock(ctx, "b1") == STOCK["b1"] and stock(ctx, "b2") == STOCK["b2"]
        assert balance(ctx, "buyer") == FUNDS  # refunded once, or never charged
    return check


def _check_shipped(ctx, w, oid):
    assert order_of(ctx, oid)["state"] == "shipped"


def _check_received(by):
    def check(ctx, w, oid):
        o = order_of(ctx, oid)
        assert o["state"] == "received" and o["history"][-1]["by"] == by
        assert balance(ctx, "seller") == TOTAL
        assert balance(ctx, "buyer") == FUNDS - TOTAL
    return check


def _check_funds(delta):
    def check(ctx, w, oid):
        u = ctx.db.users.find_one({"_id": "buyer"})
        assert u["balance"] in (FUNDS, FUNDS + delta)  # applied once or not at all
    return check


def _check_unregistered(ctx, w, oid):
    u = ctx.db.users.find_one({"_id": "buyer"})
    assert u["closed_at"] is not None and "password_hash" not in u
    assert u["balance"] == FUNDS - TOTAL  # a tombstone keeps its money
    with pytest.raises((errors.NoSuchUser, errors.AuthorizationFailed)):
        sessions.authenticate(ctx, "buyer", w["buyer"])


def _expire_prepare(ctx, w):
    oid = place(ctx, w)
    ctx.clock.advance(ctx.settings.pay_timeout_s + 1)
    return oid


def _auto_receive_prepare(ctx, w):
    oid = to_shipped(ctx, w)
    ctx.clock.advance(ctx.settings.receive_timeout_s + 1)
    return oid


def _unregister_prepare(ctx, w):
    return to_paid(ctx, w)  # a paid order: its money must survive the closed account


def _check_updated(ctx, w, oid):
    _shows_one_of("s1", "b1", NEW_ONE)(ctx, w)
    assert order_of(ctx, oid)["items"][0]["price"] == ONE["price"]  # placed at the old price
    orders.cancel_order(ctx, "buyer", oid)  # and it runs its course
    assert stock(ctx, "b1") == STOCK["b1"]


def _check_stock_set(level):
    def check(ctx, w, oid):
        assert stock(ctx, "b1") == level and order_of(ctx, oid)["state"] == "unpaid"
        orders.cancel_order(ctx, "buyer", oid)  # its units come back to the shelf
        assert stock(ctx, "b1") == level + 2
    return check


def _check_unlisted(ctx, w, oid):
    assert search.search_books(ctx, "One", store_id="s1") == ([], 0)
    with pytest.raises(errors.NoSuchBook):
        orders.new_order(ctx, "buyer", "s1", [("b1", 1)])
    orders.payment(ctx, "buyer", oid)  # the open order runs its course
    assert order_of(ctx, oid)["state"] == "paid"


SCENARIOS = {
    "new_order": dict(
        prepare=lambda ctx, w: None,
        op=lambda ctx, w, oid: place(ctx, w),
        retry=lambda ctx, w, oid: place(ctx, w), retry_errors=(),
        check=_check_new_order),
    "new_order_stock_race": dict(  # the undo path: a line loses its stock to a racer
        prepare=lambda ctx, w: _steal_stock_during(ctx, w),
        op=lambda ctx, w, oid: place(ctx, w),
        retry=lambda ctx, w, oid: place(ctx, w), retry_errors=(errors.StockTooLow,),
        check=_check_race, op_errors=(errors.StockTooLow,)),
    "payment": dict(
        prepare=place,
        op=lambda ctx, w, oid: orders.payment(ctx, "buyer", oid),
        retry=lambda ctx, w, oid: orders.payment(ctx, "buyer", oid),
        retry_errors=(errors.BadOrderState,), check=_check_paid),
    "payment_overdue": dict(  # payment itself cancels an overdue order (521)
        prepare=_expire_prepare,
        op=lambda ctx, w, oid: orders.payment(ctx, "buyer", oid),
        retry=lambda ctx, w, oid: orders.payment(ctx, "buyer", oid),
        retry_errors=(errors.OrderExpired,), check=_check_cancelled("timeout", False),
        op_errors=(errors.OrderExpired,)),
    "payment_funds_too_low": dict(
        prepare=lambda ctx, w: place(ctx, w, "poor"),
        op=lambda ctx, w, oid: orders.payment(ctx, "poor", oid),
        retry=lambda ctx, w, oid: orders.payment(ctx, "poor", oid),
        retry_errors=(errors.FundsTooLow,), check=_check_unpaid_poor,
        op_errors=(errors.FundsTooLow,)),
    "cancel_unpaid": dict(
        prepare=place,
        op=lambda ctx, w, oid: orders.cancel_order(ctx, "buyer", oid),
        retry=lambda ctx, w, oid: orders.cancel_order(ctx, "buyer", oid),
        retry_errors=(errors.BadOrderState,), check=_check_cancelled("buyer", False)),
    "cancel_paid": dict(
        prepare=to_paid,
        op=lambda ctx, w, oid: orders.cancel_order(ctx, "buyer", oid),
        retry=lambda ctx, w, oid: orders.cancel_order(ctx, "buyer", oid),
        retry_errors=(errors.BadOrderState,), check=_check_cancelled("buyer", True)),
    "ship": dict(
        prepare=to_paid,
        op=lambda ctx, w, oid: orders.ship(ctx, "seller", oid),
        retry=lambda ctx, w, oid: orders.ship(ctx, "seller", oid),
        retry_errors=(errors.BadOrderState,), check=_check_shipped),
    "receive": dict(
        prepare=to_shipped,
        op=lambda ctx, w, oid: orders.receive(ctx, "buyer", oid),
        retry=lambda ctx, w, oid: orders.receive(ctx, "buyer", oid),
        retry_errors=(errors.BadOrderState,), check=_check_received("buyer")),
    "expire_payment": dict(  # the watcher sees the event again / the sweep finds it
        prepare=_expire_prepare,
        op=lambda ctx, w, oid: orders.expire_payment(ctx, oid),
        retry=lambda ctx, w, oid: orders.expire_payment(ctx, oid), retry_errors=(),
        check=_check_cancelled("timeout", False)),
    "auto_receive": dict(
        prepare=_auto_receive_prepare,
        op=lambda ctx, w, oid: orders.auto_receive(ctx, oid),
        retry=lambda ctx, w, oid: orders.auto_receive(ctx, oid), retry_errors=(),
        check=_check_received("timeout")),
    # add_funds carries no request id, so a client that lost the reply checks its
    # balance instead of sending it again: no retry here.
    "add_funds": dict(
        prepare=lambda ctx, w: None,
        op=lambda ctx, w, oid: users.add_funds(ctx, "buyer", 500),
        retry=None, retry_errors=(), check=_check_funds(500)),
    "withdraw": dict(
        prepare=lambda ctx, w: None,
        op=lambda ctx, w, oid: users.add_funds(ctx, "buyer", -500),
        retry=None, retry_errors=(), check=_check_funds(-500)),
    "unregister": dict(
        prepare=_unregister_prepare,
        op=lambda ctx, w, oid: users.unregister(ctx, "buyer", PASSWORD),
        retry=lambda ctx, w, oid: users.unregister(ctx, "buyer", PASSWORD),
        retry_errors=(errors.AuthorizationFailed,), check=_check_unregistered),
    # issue 12: a store's listings (``during``: what holds right after the crash)
    "add_book": dict(
        prepare=lambda ctx, w: None,
        op=lambda ctx, w, oid: stores.add_book(ctx, "seller", "s1", THREE, 7),
        retry=lambda ctx, w, oid: stores.add_book(ctx, "seller", "s1", THREE, 7),
        retry_errors=(errors.BookExists,), during=_shows_one_of("s1", "b3", None, THREE),
        check=_shows_one_of("s1", "b3", THREE)),
    "add_book_as_described_elsewhere": dict(  # the rival's words, stored once
        prepare=lambda ctx, w: None,
        op=lambda ctx, w, oid: stores.add_book(ctx, "seller", "s1", dict(RIVAL_ONE, id="b3"), 7),
        retry=lambda ctx, w, oid: stores.add_book(ctx, "seller", "s1",
                                                  dict(RIVAL_ONE, id="b3"), 7),
        retry_errors=(errors.BookExists,),
        during=_shows_one_of("s1", "b3", None, dict(RIVAL_ONE, id="b3")),
        check=_shows_one_of("s1", "b3", dict(RIVAL_ONE, id="b3"))),
    "update_book": dict(  # with an order open on the old description and price
        prepare=place,
        op=lambda ctx, w, oid: stores.update_book(ctx, "seller", "s1", NEW_ONE),
        retry=lambda ctx, w, oid: stores.update_book(ctx, "seller", "s1", NEW_ONE),
        retry_errors=(), during=_shows_one_of("s1", "b1", ONE, NEW_ONE), check=_check_updated),
    "set_stock_level": dict(  # down to 0 while an order holds 2 units
        prepare=place,
        op=lambda ctx, w, oid: stores.set_stock_level(ctx, "seller", "s1", "b1", 0),
        retry=lambda ctx, w, oid: stores.set_stock_level(ctx, "seller", "s1", "b1", 0),
        retry_errors=(), check=_check_stock_set(0)),
    "unlist_book": dict(
        prepare=place,
        op=lambda ctx, w, oid: stores.unlist_book(ctx, "seller", "s1", "b1"),
        retry=lambda ctx, w, oid: stores.unlist_book(ctx, "seller", "s1", "b1"),
        retry_errors=(), check=_check_unlisted),
}


def setup_scenario(name):
    ctx = fresh_ctx()
    w = world(ctx)
    oid = SCENARIOS[name]["prepare"](ctx, w)
    return ctx, w, oid


def run_op(name, ctx, w, oid):
    sc = SCENARIOS[name]
    try:
        return sc["op"](ctx, w, oid)
    except sc.get("op_errors", ()):
        return None


def writes_of(name):
    ctx, w, oid = setup_scenario(name)
    return count_writes(ctx, lambda: run_op(name, ctx, w, oid))


WRITES = {name: writes_of(name) for name in SCENARIOS}
POINTS = [(name, k, mode) for name in SCENARIOS for k, mode in crash_points(WRITES[name])]


def recover_like_the_system(ctx):
    """What the running system does after a request died: time passes beyond the
    lease, and the sweep runs (recovery first, then overdue deadlines)."""
    ctx.clock.advance(ctx.settings.stuck_after_s + 1)
    return sweep(ctx)


def retry(name, ctx, w, oid):
    """Send the request again as a client would. Returns False if the server said
    to come back later (503 busy, or 520 while a payment is in flight)."""
    sc = SCENARIOS[name]
    if sc["retry"] is None:
        return True
    try:
        sc["retry"](ctx, w, oid)
    except errors.Busy:
        return False
    except errors.BadOrderState as exc:
        if "being paid" in exc.message:
            return False
        if not isinstance(exc, sc["retry_errors"]):
            raise
    except sc["retry_errors"]:
        pass
    return True


def assert_clean(ctx, settled=True):
    found = audit(ctx.db, settled=settled)
    assert not found, "\n".join(v.render() for v in found)


def drain(ctx):
    """Move past every deadline and sweep until nothing is left to do."""
    ctx.clock.advance(ctx.settings.pay_timeout_s + ctx.settings.receive_timeout_s + 1)
    for _ in range(3):
        sweep(ctx)
    assert_clean(ctx)
    for o in ctx.db.orders.find({}):
        assert o["state"] in ("paid", "received", "cancelled"), o  # nothing left to time out


def test_every_operation_has_crash_points():
    """The matrix covers every multi-document operation and every one of its writes."""
    assert set(name for name, _, _ in POINTS) == set(SCENARIOS)
    counts = {name: len(w) for name, w in WRITES.items()}
    print("\nwrites per operation:", json.dumps(counts))
    print("crash points (operation, write, mode):", len(POINTS))
    # the multi-document steps really are several writes
    for name in ("new_order", "payment", "cancel_unpaid", "cancel_paid", "receive",
                 "expire_payment", "auto_receive"):
        assert counts[name] >= 5, (name, WRITES[name])
    assert counts["cancel_paid"] > counts["cancel_unpaid"]
    # a listing's writes: its pictures (one bulk), its description, then the listing
    for name in ("add_book", "update_book"):
        assert [(c, m, size) for _, c, m, size in WRITES[name]] == [
            ("pictures", "bulk_write", 2), ("descriptions", "insert_one", None),
            ("listings", "insert_one" if name == "add_book" else "update_one", None)], name


@pytest.mark.parametrize("name,k,mode", POINTS, ids=[f"{n}-w{k}-{m}" for n, k, m in POINTS])
def test_crash_then_recover(name, k, mode):
    ctx, w, oid = setup_scenario(name)
    status, info = crash_at(ctx, lambda: run_op(name, ctx, w, oid), k, mode)
    assert status == "crashed", (status, info)
    ctx.engine.embedded.observer = None  # a racer fires once at most
    assert_clean(ctx, settled=False)  # consistent even mid-step, before any recovery
    if "during" in SCENARIOS[name]:
        SCENARIOS[name]["during"](ctx, w, oid)
    recover_like_the_system(ctx)
    assert_clean(ctx)
    assert retry(name, ctx, w, oid)  # nothing is busy after the sweep
    assert_clean(ctx)
    SCENARIOS[name]["check"](ctx, w, oid)
    drain(ctx)


def sweep_crash_cases(name, k, mode):
    """After the crash, the first sweep itself dies at each of its writes."""
    ctx, w, oid = setup_scenario(name)
    crash_at(ctx, lambda: run_op(name, ctx, w, oid), k, mode)
    ctx.engine.embedded.observer = None
    ctx.clock.advance(ctx.settings.stuck_after_s + 1)
    return ctx, w, oid


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_crash_then_sweep_crashes_too(name):
    """Every crash point of ``name``, then every crash point of the sweep that
    recovers it, then a second sweep: still clean and legal."""
    tested = 0
    for k, mode in crash_points(WRITES[name]):
        ctx, w, oid = sweep_crash_cases(name, k, mode)
        sweep_writes = count_writes(ctx, lambda: sweep(ctx))
        for k2, mode2 in crash_points(sweep_writes):
            ctx, w, oid = sweep_crash_cases(name, k, mode)
            status, info = crash_at(ctx, lambda: sweep(ctx), k2, mode2)
            assert status == "crashed", (name, k, mode, k2, mode2, status, info)
            assert_clean(ctx, settled=False)
            recover_like_the_system(ctx)
            assert_clean(ctx)
            assert retry(name, ctx, w, oid)
            SCENARIOS[name]["check"](ctx, w, oid)
            assert_clean(ctx)
            tested += 1
    print(f"\n{name}: {tested} (operation crash, sweep crash) pairs")


@pytest.mark.parametrize("name,k,mode", [p for p in POINTS if p[2] == "before"],
                         ids=[f"{n}-w{k}" for n, k, m in POINTS if m == "before"])
def test_crash_then_retry_before_the_sweep(name, k, mode):
    """The client retries at once, before any sweep: the retry must not do
    anything twice. What it cannot do yet (503 busy, 520 being paid) it does
    again after the sweep has finished or undone the dead step."""
    ctx, w, oid = setup_scenario(name)
    crash_at(ctx, lambda: run_op(name, ctx, w, oid), k, mode)
    ctx.engine.embedded.observer = None
    later = not retry(name, ctx, w, oid)
    assert_clean(ctx, settled=False)
    recover_like_the_system(ctx)
    if later:
        retry(name, ctx, w, oid)
    assert_clean(ctx)
    SCENARIOS[name]["check"](ctx, w, oid)


def test_operations_without_crash_are_clean():
    for name in SCENARIOS:
        ctx, w, oid = setup_scenario(name)
        run_op(name, ctx, w, oid)
        ctx.engine.embedded.observer = None
        assert_clean(ctx)
        SCENARIOS[name]["check"](ctx, w, oid)


# ---------------------------------------------------------------- the audit finds things

@pytest.fixture
def busy_world():
    """Orders in every state, audited clean."""
    ctx = fresh_ctx()
    w = world(ctx)
    ids = {"unpaid": place(ctx, w), "paid": to_paid(ctx, w), "shipped": to_shipped(ctx, w)}
    ids["received"] = to_shipped(ctx, w)
    orders.receive(ctx, "buyer", ids["received"])
    ids["cancelled"] = to_paid(ctx, w)
    orders.cancel_order(ctx, "buyer", ids["cancelled"])
    assert_clean(ctx)
    return ctx, w, ids


def kinds(ctx, **kw):
    return {v.kind for v in audit(ctx.db, **kw)}


def test_audit_finds_money_created(busy_world):
    ctx, w, ids = busy_world
    ctx.db.users.update_one({"_id": "buyer"}, {"$inc": {"balance": 1}})
    found = audit(ctx.db)
    assert {"money", "money-total"} <= {v.kind for v in found}
    assert any(d.get("_id") == "buyer" for v in found for d in v.documents)
    assert all("password_hash" not in d for v in found for d in v.documents)


def test_audit_finds_stock_lost(busy_world):
    ctx, w, ids = busy_world
    ctx.db.listings.update_one({"book_id": "b2"}, {"$inc": {"stock_level": -1}})
    assert "stock" in kinds(ctx)


def test_audit_finds_negative_balance_and_float_money(busy_world):
    ctx, w, ids = busy_world
    ctx.db.users.update_one({"_id": "poor"}, {"$set": {"balance": -5, "deposited": -5}})
    assert "money" in kinds(ctx)
    ctx, w, ids = busy_world
    ctx.db.users.update_one({"_id": "poor"}, {"$set": {"balance": 100.0}})
    assert "money" in kinds(ctx)


def test_audit_finds_illegal_history(busy_world):
    ctx, w, ids = busy_world
    ctx.db.orders.update_one({"_id": ids["received"]},
                             {"$push": {"history": {"state": "cancelled", "at": ctx.clock.now()}},
                              "$set": {"state": "cancelled"}})
    assert "order-history" in kinds(ctx)


def test_audit_finds_timestamps_backwards(busy_world):
    ctx, w, ids = busy_world
    o = order_of(ctx, ids["shipped"])
    earlier = o["created_at"].replace(year=o["created_at"].year - 1)
    ctx.db.orders.update_one({"_id": ids["shipped"]},
                             {"$set": {"shipped_at": earlier, "history.2.at": earlier}})
    assert "order-time" in kinds(ctx)


def test_audit_finds_unknown_state_and_bad_total(busy_world):
    ctx, w, ids = busy_world
    ctx.db.orders.update_one({"_id": ids["paid"]}, {"$set": {"state": "lost"}})
    assert "order-state" in kinds(ctx)
    ctx.db.orders.update_one({"_id": ids["paid"]}, {"$set": {"state": "paid"},
                                                    "$inc": {"total_price": 1}})
    assert "order-total" in kinds(ctx)


def test_audit_finds_leftover_marker_and_double_payout(busy_world):
    ctx, w, ids = busy_world
    oid = ids["received"]
    ctx.db.users.update_one({"_id": "buyer"}, {"$push": {"ops": f"{oid}:refund"},
                                               "$inc": {"balance": TOTAL}})
    ctx.db.users.update_one({"_id": "seller"}, {"$push": {"ops": f"{oid}:credit"}})
    found = kinds(ctx)
    assert {"leftover-marker", "refund-and-credit", "money"} <= found


def test_audit_counts_in_flight_steps_as_held(busy_world):
    """Half-done steps are consistent: a cancel whose refund is owed, a receive
    whose credit is owed, a payment whose debit is applied."""
    ctx, w, ids = busy_world
    # cancel the paid order, dying right after the state change (refund owed)
    assert crash_at(ctx, lambda: orders.cancel_order(ctx, "buyer", ids["paid"]),
                    2, "before")[0] == "crashed"
    # receive the shipped order, dying after the credit landed (its marker is there)
    assert crash_at(ctx, lambda: orders.receive(ctx, "buyer", ids["shipped"]),
                    2, "after")[0] == "crashed"
    # pay the unpaid order, dying after the debit
    assert crash_at(ctx, lambda: orders.payment(ctx, "buyer", ids["unpaid"]),
                    2, "after")[0] == "crashed"
    assert_clean(ctx, settled=False)
    assert {"busy"} == kinds(ctx, settled=True)
    # and the same documents with the todo lost would not add up
    ctx.db.orders.update_one({"_id": ids["paid"]}, {"$set": {"busy.todo": ["~restore", "~refund"]}})
    assert {"money", "money-total", "stock"} <= kinds(ctx)


def test_audit_summary(busy_world):
    ctx, w, ids = busy_world
    s = summary(ctx.db)
    assert s["violations"] == 0 and s["orders"]["cancelled"] == 1
    assert s["money"]["added"] == s["money"]["balances"] + s["money"]["held"]
    assert s["money"]["held"] == 2 * TOTAL  # the paid and the shipped order


def test_audit_command_line(busy_world, capsys, monkeypatch):
    from be import audit_cli
    ctx, w, ids = busy_world
    assert audit_cli.run(ctx.db, "embedded") == 0
    assert "no violations" in capsys.readouterr().out
    ctx.db.users.update_one({"_id": "seller"}, {"$inc": {"balance": 7}})
    assert audit_cli.run(ctx.db, "embedded") == 1
    out = capsys.readouterr().out
    assert "seller" in out and "off by 7" in out and "password_hash" not in out
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert audit_cli.main([]) == 2
    assert "MONGODB_URI" in capsys.readouterr().err


def test_audit_finds_a_listing_showing_a_mix_or_another_book(busy_world):
    ctx, w, ids = busy_world
    lid = listing_id("s1", "b1")
    mine = ctx.db.listings.find_one({"_id": lid})["desc"]
    # the description changed in place after it was written
    ctx.db.descriptions.update_one({"_id": mine}, {"$set": {"title": "Defaced"}})
    assert "catalogue" in kinds(ctx)
    ctx.db.descriptions.update_one({"_id": mine}, {"$set": {"title": "One"}})
    assert_clean(ctx)
    # a listing pointing at another book's description, or at none
    rival = ctx.db.listings.find_one({"_id": listing_id("s2", "b1")})["desc"]
    two = ctx.db.listings.find_one({"_id": listing_id("s1", "b2")})["desc"]
    ctx.db.listings.update_one({"_id": lid}, {"$set": {"desc": two}})
    assert "catalogue" in kinds(ctx)
    ctx.db.listings.update_one({"_id": lid}, {"$set": {"desc": "0" * 64}})
    assert "catalogue" in kinds(ctx)
    ctx.db.listings.update_one({"_id": lid}, {"$set": {"desc": rival}})
    assert not kinds(ctx)  # the rival's words are a legal description of b1
    ctx.db.listings.update_one({"_id": lid}, {"$set": {"desc": mine}})
    # a picture lost or changed
    (pid,) = ctx.db.descriptions.find_one({"_id": mine})["pictures"]
    ctx.db.pictures.update_one({"_id": pid}, {"$set": {"data": b"not it"}})
    assert "catalogue" in kinds(ctx)
    ctx.db.pictures.delete_one({"_id": pid})
    assert "catalogue" in kinds(ctx)


def test_audit_summary_counts_what_updates_left_behind(busy_world):
    ctx, w, ids = busy_world
    assert summary(ctx.db)["unreferenced"] == {"descriptions": 0, "pictures": 0}
    stores.update_book(ctx, "seller", "s1", NEW_ONE)  # pictures 1 and 2 for picture 0
    assert summary(ctx.db)["unreferenced"] == {"descriptions": 1, "pictures": 1}
    stores.update_book(ctx, "seller", "s1", dict(NEW_ONE, pictures=[]))  # 2: the rival's
    assert summary(ctx.db)["unreferenced"] == {"descriptions": 2, "pictures": 2}
    assert_clean(ctx)


def test_snapshot_helper_sees_every_change(busy_world):
    ctx, w, ids = busy_world
    before = snapshot(ctx.db)
    assert snapshot(ctx.db) == before
    ctx.db.listings.update_one({"book_id": "b1"}, {"$set": {"title": "x"}})
    assert snapshot(ctx.db) != before


def test_fault_wrapper_modes():
    ctx, w, oid = setup_scenario("cancel_paid")
    writes = WRITES["cancel_paid"]
    bulk = next(n for n, _, m, size in writes if m == "bulk_write" and size == 2)
    assert crash_at(ctx, lambda: orders.cancel_order(ctx, "buyer", oid),
                    bulk, "first")[0] == "crashed"
    marked = [d["book_id"] for d in ctx.db.listings.find({"ops": f"{oid}:restore"})]
    assert marked == ["b1"]  # only the first of the two listings got its stock back
    with pytest.raises(Crash):
        with faulty(ctx, 1, "before"):
            ctx.db.users.update_one({"_id": "nobody"}, {"$set": {"x": 1}}, upsert=True)
    assert ctx.db.users.find_one({"_id": "nobody"}) is None  # "before": never sent
    with pytest.raises(Crash):
        with faulty(ctx, 1, "after"):
            ctx.db.users.update_one({"_id": "nobody"}, {"$set": {"x": 1}}, upsert=True)
    assert ctx.db.users.find_one({"_id": "nobody"}) == {"_id": "nobody", "x": 1}  # sent, reply lost
