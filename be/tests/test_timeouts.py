"""Payment and receipt timeouts driven by the sweep, with the clock moved by hand;
races against the deadlines from many threads; recovery of half-done steps."""
import threading
from datetime import timedelta

import pytest

from be import errors
from be.backend import Backend
from be.clock import ManualClock
from be.db import INDEXES, listing_id
from be.model import orders
from be.watcher import sweep
from be.tests.support import engines

PAY_S = 900       # the ctx fixture's pay_timeout_s
RECEIVE_S = 604800
STUCK_S = 60      # Settings.stuck_after_s


# ---------------------------------------------------------------- helpers (test_watcher uses them)

def stock(ctx, store_id, book_id="b1"):
    return ctx.db.listings.find_one({"_id": listing_id(store_id, book_id)})["stock_level"]


def balance(ctx, user_id):
    return ctx.db.users.find_one({"_id": user_id})["balance"]


def order_doc(ctx, order_id):
    return ctx.db.orders.find_one({"_id": order_id})


def pending_ids(ctx):
    return {d["_id"] for d in ctx.db.pending.find({})}


def at(ctx, when):
    """Another service context on the same database whose clock reads ``when``:
    a request or a watcher in another process with its own view of the time."""
    return Backend(ctx.settings, clock=ManualClock(when), engine=ctx.engine)


def place(ctx, buyer, shop, count=1, book_id="b1"):
    user_id, _, token = buyer
    return orders.new_order(ctx, user_id, shop["store_id"], [(book_id, count)])


def shipped(ctx, buyer, shop, count=1):
    user_id, password, _ = buyer
    oid = place(ctx, buyer, shop, count)
    orders.payment(ctx, user_id, oid)
    orders.ship(ctx, shop["seller"], oid)
    return oid


def no_markers(ctx, buyer_id, shop):
    """Every exactly-once marker was cleaned up and no order is left busy."""
    docs = list(ctx.db.users.find({"_id": {"$in": [buyer_id, shop["seller"]]}}))
    docs += list(ctx.db.listings.find({"store_id": shop["store_id"]}))
    assert all(not d.get("ops") for d in docs)
    assert ctx.db.orders.count_documents({"busy": {"$ne": None}}) == 0


def one_shot_crash(monkeypatch, module, name):
    """Make ``module.name`` raise on its next call only (a request dying there)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError(f"simulated crash in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, crashing)


def run_together(*targets):
    """Run callables in threads released together by a barrier; their results
    (or the BookstoreError each raised) in order."""
    barrier = threading.Barrier(len(targets))
    results = [None] * len(targets)

    def body(i, fn):
        barrier.wait()
        try:
            results[i] = fn()
        except errors.BookstoreError as exc:
            results[i] = exc
        except BaseException as exc:  # surfaced by the assertion below
            results[i] = ("crashed", exc)

    threads = [threading.Thread(target=body, args=(i, fn)) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not [r for r in results if isinstance(r, tuple)], results
    return results


# ---------------------------------------------------------------- pay timeout

def test_sweep_cancels_overdue_unpaid_orders_and_gives_stock_back(ctx, make_user, shop):
    buyer = make_user("buyer", funds=100000)
    old = place(ctx, buyer, shop, 2)
    ctx.clock.advance(500)
    young = place(ctx, buyer, shop, 3)
    assert stock(ctx, shop["store_id"]) == 5
    assert pending_ids(ctx) == {f"pay:{old}", f"pay:{young}"}

    assert sweep(ctx)["expired"] == 0  # nothing is overdue yet
    ctx.clock.advance(PAY_S - 500)     # old's deadline, to the millisecond
    assert sweep(ctx) == {"recovered": 0, "expired": 1, "received": 0, "errors": 0}

    cancelled = order_doc(ctx, old)
    assert cancelled["state"] == "cancelled" and cancelled["cancel_reason"] == "timeout"
    assert cancelled["history"][-1]["reason"] == "timeout"
    assert order_doc(ctx, young)["state"] == "unpaid"
    assert stock(ctx, shop["store_id"]) == 7
    assert pending_ids(ctx) == {f"pay:{young}"}
    assert balance(ctx, buyer[0]) == 100000
    assert sweep(ctx)["expired"] == 0  # idempotent

    ctx.clock.advance(500)
    assert sweep(ctx)["expired"] == 1
    assert stock(ctx, shop["store_id"]) == 10
    assert pending_ids(ctx) == set()
    no_markers(ctx, buyer[0], shop)


def test_payment_after_the_deadline_is_refused_and_cancels(ctx, make_user, shop):
    buyer = make_user("buyer", funds=100000)
    oid = place(ctx, buyer, shop, 4)
    ctx.clock.advance(PAY_S)
    with pytest.raises(errors.OrderExpired):
        orders.payment(ctx, buyer[0], oid)
    assert order_doc(ctx, oid)["cancel_reason"] == "timeout"
    assert stock(ctx, shop["store_id"]) == 10
    assert balance(ctx, buyer[0]) == 100000
    assert sweep(ctx)["expired"] == 0


def test_expire_payment_is_idempotent_and_deadline_guarded(ctx, make_user, shop):
    buyer = make_user("buyer", funds=100000)
    oid = place(ctx, buyer, shop, 2)
    ctx.clock.advance(PAY_S - 1)
    assert orders.expire_payment(ctx, oid) is False  # early event (clock skew): no change
    assert order_doc(ctx, oid)["state"] == "unpaid"
    ctx.clock.advance(1)
    assert orders.expire_payment(ctx, oid) is True
    assert orders.expire_payment(ctx, oid) is False
    assert stock(ctx, shop["store_id"]) == 10
    assert [h["state"] for h in order_doc(ctx, oid)["history"]] == ["unpaid", "cancelled"]


def test_expire_payment_leaves_paid_and_cancelled_orders_alone(ctx, make_user, shop):
    buyer = make_user("buyer", funds=100000)
    paid = place(ctx, buyer, shop, 1)
    orders.payment(ctx, buyer[0], paid)
    mine = place(ctx, buyer, shop, 1)
    orders.cancel_order(ctx, buyer[0], mine)
    ctx.clock.advance(PAY_S + 1)
    assert orders.expire_payment(ctx, paid) is False
    assert orders.expire_payment(ctx, mine) is False
    assert sweep(ctx)["expired"] == 0
    assert order_doc(ctx, paid)["state"] == "paid"
    assert order_doc(ctx, mine)["cancel_reason"] == "buyer"
    assert stock(ctx, shop["store_id"]) == 9
    assert balance(ctx, buyer[0]) == 100000 - 1000


def test_sweep_works_in_bounded_batches(ctx, make_user, shop):
    buyer = make_user("buyer")
    oids = [place(ctx, buyer, shop, 1) for _ in range(5)]
    ctx.clock.advance(PAY_S)
    assert sweep(ctx, batch_size=2, max_batches=1)["expired"] == 2  # one bounded round
    assert stock(ctx, shop["store_id"]) == 7
    assert sweep(ctx, batch_size=2)["expired"] == 3                 # rounds until done
    assert {order_doc(ctx, o)["state"] for o in oids} == {"cancelled"}
    assert stock(ctx, shop["store_id"]) == 10


# ---------------------------------------------------------------- receive timeout

def test_sweep_receives_overdue_shipped_orders_and_credits_the_seller_once(ctx, make_user, shop):
    buyer = make_user("buyer", funds=100000)
    oid = shipped(ctx, buyer, shop, 3)
    assert pending_ids(ctx) == {f"receive:{oid}"}
    order = order_doc(ctx, oid)
    assert (order["receive_deadline"] - order["shipped_at"]).total_seconds() == RECEIVE_S

    ctx.clock.advance(RECEIVE_S - 1)
    assert sweep(ctx)["received"] == 0
    assert orders.auto_receive(ctx, oid) is False
    ctx.clock.advance(1)
    assert sweep(ctx)["received"] == 1
    received = order_doc(ctx, oid)
    assert received["state"] == "received" and received["history"][-1]["by"] == "timeout"
    assert balance(ctx, shop["seller"]) == 3000
    assert balance(ctx, buyer[0]) == 100000 - 3000

    assert sweep(ctx)["received"] == 0
    assert orders.auto_receive(ctx, oid) is False
    assert balance(ctx, shop["seller"]) == 3000
    assert pending_ids(ctx) == set()
    assert stock(ctx, shop["store_id"]) == 7
    no_markers(ctx, buyer[0], shop)


def test_receipt_by_the_buyer_leaves_nothing_for_the_timeout(ctx, make_user, shop):
    buyer = make_user("buyer", funds=100000)
    oid = shipped(ctx, buyer, shop, 1)
    orders.receive(ctx, buyer[0], oid)
    ctx.clock.advance(RECEIVE_S + 1)
    assert orders.auto_receive(ctx, oid) is False
    assert sweep(ctx)["received"] == 0
    assert balance(ctx, shop["seller"]) == 1000
    assert order_doc(ctx, oid)["history"][-1]["by"] == "buyer"


# ---------------------------------------------------------------- races

def test_payment_racing_the_pay_deadline_either_pays_or_cancels(ctx, make_user, shop):
    """Per order: a payment whose clock reads just before the deadline, against two
    watchers whose clocks read the deadline. Exactly one outcome each."""
    funds = 100000
    buyer = make_user("buyer", funds=funds)
    oids = [place(ctx, buyer, shop, 1) for _ in range(8)]
    deadline = order_doc(ctx, oids[0])["pay_deadline"]
    early = at(ctx, deadline - timedelta(milliseconds=1))
    late = [at(ctx, deadline), at(ctx, deadline)]

    targets = []
    for oid in oids:
        targets.append(lambda oid=oid: orders.payment(early, buyer[0], oid) or "paid")
        targets += [lambda oid=oid, w=w: orders.expire_payment(w, oid) for w in late]
    results = run_together(*targets)

    paid = 0
    for n, oid in enumerate(oids):
        pay, *expires = results[3 * n:3 * n + 3]
        doc = order_doc(ctx, oid)
        assert doc["state"] in ("paid", "cancelled")
        if doc["state"] == "paid":
            paid += 1
            assert pay == "paid" and expires == [False, False]
        else:
            assert sorted(expires) == [False, True]
            assert isinstance(pay, (errors.BadOrderState, errors.OrderExpired, errors.Busy))
            assert doc["cancel_reason"] == "timeout"
        assert len([h for h in doc["history"] if h["state"] != "unpaid"]) == 1
    assert balance(ctx, buyer[0]) == funds - paid * 1000            # money conserved
    assert stock(ctx, shop["store_id"]) == 10 - paid                # stock conserved
    assert balance(ctx, shop["seller"]) == 0
    assert pending_ids(ctx) == set()
    no_markers(ctx, buyer[0], shop)


def test_receipt_racing_the_receive_deadline_credits_the_seller_once(ctx, make_user, shop):
    funds = 100000
    buyer = make_user("buyer", funds=funds)
    oids = [shipped(ctx, buyer, shop, 1) for _ in range(8)]
    deadline = order_doc(ctx, oids[0])["receive_deadline"]
    early = at(ctx, deadline - timedelta(milliseconds=1))
    late = [at(ctx, deadline), at(ctx, deadline)]

    targets = []
    for oid in oids:
        targets.append(lambda oid=oid: orders.receive(early, buyer[0], oid) or "buyer")
        targets += [lambda oid=oid, w=w: orders.auto_receive(w, oid) for w in late]
    results = run_together(*targets)

    for n, oid in enumerate(oids):
        by_buyer, *autos = results[3 * n:3 * n + 3]
        doc = order_doc(ctx, oid)
        assert doc["state"] == "received"
        winners = [by_buyer == "buyer"] + autos
        assert winners.count(True) == 1, results[3 * n:3 * n + 3]
        assert [h["state"] for h in doc["history"]].count("received") == 1
        assert doc["history"][-1]["by"] == ("buyer" if by_buyer == "buyer" else "timeout")
    assert balance(ctx, shop["seller"]) == 8 * 1000                # credited once each
    assert balance(ctx, buyer[0]) == funds - 8 * 1000
    assert pending_ids(ctx) == set()
    no_markers(ctx, buyer[0], shop)


def test_concurrent_sweeps_give_one_outcome(ctx, make_user, shop):
    buyer = make_user("buyer", funds=100000)
    unpaid = [place(ctx, buyer, shop, 1) for _ in range(4)]
    sent = [shipped(ctx, buyer, shop, 1) for _ in range(3)]
    ctx.clock.advance(RECEIVE_S)
    sweepers = [at(ctx, ctx.clock.now()) for _ in range(3)]
    results = run_together(*[lambda w=w: sweep(w, batch_size=2) for w in sweepers])
    assert sum(r["expired"] for r in results) == 4
    assert sum(r["received"] for r in results) == 3
    assert sum(r["errors"] for r in results) == 0
    assert {order_doc(ctx, o)["state"] for o in unpaid} == {"cancelled"}
    assert {order_doc(ctx, o)["state"] for o in sent} == {"received"}
    assert stock(ctx, shop["store_id"]) == 10 - 3
    assert balance(ctx, shop["seller"]) == 3000
    no_markers(ctx, buyer[0], shop)


# ---------------------------------------------------------------- recovery of dead requests

def test_receipt_that_died_before_crediting_is_finished_after_stuck_after_s(
        ctx, make_user, shop, monkeypatch):
    buyer = make_user("buyer", funds=100000)
    oid = shipped(ctx, buyer, shop, 2)
    one_shot_crash(monkeypatch, orders, "_finish")
    with pytest.raises(RuntimeError):
        orders.receive(ctx, buyer[0], oid)
    doc = order_doc(ctx, oid)
    assert doc["state"] == "received" and doc["busy"]["todo"] == ["credit"]
    assert balance(ctx, shop["seller"]) == 0

    ctx.clock.advance(STUCK_S - 1)
    assert sweep(ctx)["recovered"] == 0       # its request may still be alive
    ctx.clock.advance(2)
    assert sweep(ctx)["recovered"] == 1
    assert balance(ctx, shop["seller"]) == 2000
    assert "busy" not in order_doc(ctx, oid)
    ctx.clock.advance(RECEIVE_S)              # the left-over timer does nothing more
    assert sweep(ctx) == {"recovered": 0, "expired": 0, "received": 0, "errors": 0}
    assert orders.auto_receive(ctx, oid) is False
    assert balance(ctx, shop["seller"]) == 2000
    no_markers(ctx, buyer[0], shop)


def test_payment_that_died_after_charging_is_completed_not_expired(
        ctx, make_user, shop, monkeypatch):
    buyer = make_user("buyer", funds=100000)
    oid = place(ctx, buyer, shop, 3)
    one_shot_crash(monkeypatch, orders, "_complete_payment")
    with pytest.raises(RuntimeError):
        orders.payment(ctx, buyer[0], oid)
    assert order_doc(ctx, oid)["busy"]["step"] == "pay"
    assert balance(ctx, buyer[0]) == 100000 - 3000

    ctx.clock.advance(PAY_S + 1)  # past the pay deadline too: the charge decides
    counts = sweep(ctx)
    assert counts["recovered"] == 1 and counts["expired"] == 0
    doc = order_doc(ctx, oid)
    assert doc["state"] == "paid" and "busy" not in doc
    assert balance(ctx, buyer[0]) == 100000 - 3000
    assert stock(ctx, shop["store_id"]) == 7
    assert pending_ids(ctx) == set()
    no_markers(ctx, buyer[0], shop)


def test_payment_that_died_before_charging_is_released_then_expired(ctx, make_user, shop):
    buyer = make_user("buyer", funds=100000)
    oid = place(ctx, buyer, shop, 3)
    # a payment claimed the order and died before charging
    ctx.db.orders.update_one({"_id": oid}, {"$set": {"busy": {
        "step": "pay", "owner": "dead", "attempt": "dead", "since": ctx.clock.now()}}})
    ctx.clock.advance(PAY_S)
    assert sweep(ctx) == {"recovered": 1, "expired": 1, "received": 0, "errors": 0}
    doc = order_doc(ctx, oid)
    assert doc["state"] == "cancelled" and doc["cancel_reason"] == "timeout"
    assert balance(ctx, buyer[0]) == 100000
    assert stock(ctx, shop["store_id"]) == 10
    no_markers(ctx, buyer[0], shop)


def test_order_that_died_while_reserving_is_recovered_then_times_out(
        ctx, make_user, shop, monkeypatch):
    buyer = make_user("buyer")
    one_shot_crash(monkeypatch, orders, "_finish")
    with pytest.raises(RuntimeError):
        place(ctx, buyer, shop, 4)
    (doc,) = ctx.db.orders.find({"buyer_id": buyer[0]})
    assert doc["busy"]["todo"] == ["~reserve"] and stock(ctx, shop["store_id"]) == 6
    assert pending_ids(ctx) == set()  # the request died before setting its timer

    ctx.clock.advance(STUCK_S + 1)
    assert sweep(ctx)["recovered"] == 1
    assert order_doc(ctx, doc["_id"])["state"] == "unpaid"
    ctx.clock.advance(PAY_S)  # no timer document: only the sweep can see it
    assert sweep(ctx)["expired"] == 1
    assert order_doc(ctx, doc["_id"])["cancel_reason"] == "timeout"
    assert stock(ctx, shop["store_id"]) == 10
    no_markers(ctx, buyer[0], shop)


# ---------------------------------------------------------------- indexes

def test_sweep_queries_are_served_by_declared_indexes(ctx, make_user, shop):
    """Each sweep query: equality on a key prefix, then a range and sort on the next
    key of one declared orders index (``busy: None`` is a residual filter on what
    the index bounds already selected)."""
    buyer = make_user("buyer", funds=100000)
    place(ctx, buyer, shop)
    shipped(ctx, buyer, shop)
    seen = []
    engines.embedded(ctx).observer = lambda coll, name, args, kwargs: (
        seen.append((args[0], kwargs.get("sort"))) if (coll, name) == ("orders", "find") else None)
    try:
        ctx.clock.advance(RECEIVE_S)
        sweep(ctx)
    finally:
        ctx.engine.embedded.observer = None
    declared = [[k for k, _ in keys] for keys, _ in INDEXES["orders"]]
    assert len(seen) == 3
    for query, sort in seen:
        ranged = [k for k, v in query.items() if isinstance(v, dict)]
        equal = [k for k, v in query.items() if not isinstance(v, dict) and k != "busy"]
        assert len(ranged) == 1 and [k for k, _ in sort] == ranged
        assert equal + ranged in declared, (query, sort)
