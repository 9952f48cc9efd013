"""Concurrency: deterministic interleavings at every write, a mixed many-thread
run at the model level, and a smaller one over HTTP.

1. Interleavings. Every multi-document operation is paused before each of its
   writes while a competing call runs to completion on the same order (pay,
   cancel, ship, receive, the timeout handlers, the sweep, another buyer taking
   the stock, the buyer withdrawing everything); then it resumes. The audit must
   be clean at once and after recovery. The same pause with the lease run out
   (the clock past ``stuck_after_s``, then the sweep) shows where recovery taking
   over a request that is still alive is safe, and pins where it is not.

2. Many threads (THREADS x OPS_PER_THREAD calls) against shared buyers, listings
   and orders: new_order, payment, cancel, ship, receive, deposits and
   withdrawals, the timeout handlers and the sweep, the clock moved forward, and
   a few requests that die at a random write. Time jumps happen between requests
   (``Gate``): a live request never sees its lease expire, which is the design's
   assumption (see test 1); dead ones are recovered by the sweep. The audit is
   run at quiet points during the run and at the end; every success must match a
   state change that is really there; no exception other than a business error.

3. HTTP: client threads against a real server; no 5xx, audit clean.
"""
import collections
import contextlib
import random
import threading
import time

import pytest

from pymongo.errors import ExecutionTimeout

from be import errors
from be.budget import outside_budget, request_budget
from be.audit import audit
from be.backend import Backend
from be.clock import ManualClock
from be.config import Settings
from be.model import orders, stores, users
from be.tests.support.faults import Crash, FaultyDB, crash_at, pushed_markers, sibling
from be.tests.test_crash import (PASSWORD, SCENARIOS, WRITES, assert_clean, recover_like_the_system,
                                 run_op, setup_scenario)
from be.watcher import sweep
from fe.serving import ThreadedServer

pytestmark = pytest.mark.embedded_only  # stalls and crashes are injected through the embedded engine's observer


# ---------------------------------------------------------------- 1. interleavings

def _competitors(ctx, w, oid):
    """Calls that race the paused operation on the same order and the same goods."""
    def order_field(field):
        o = ctx.db.orders.find_one({"_id": oid}) if oid else None
        return o[field] if o else None

    def pay():
        buyer = order_field("buyer_id")
        if buyer:
            orders.payment(ctx, buyer, oid)

    def cancel():
        buyer = order_field("buyer_id")
        if buyer:
            orders.cancel_order(ctx, buyer, oid)

    return {
        "pay": pay,
        "cancel": cancel,
        "ship": lambda: oid and orders.ship(ctx, "seller", oid),
        "receive": lambda: oid and orders.receive(ctx, "buyer", oid),
        "expire": lambda: oid and orders.expire_payment(ctx, oid),
        "auto_receive": lambda: oid and orders.auto_receive(ctx, oid),
        "sweep": lambda: sweep(ctx),
        "take_stock": lambda: orders.new_order(ctx, "thief", "s1", [("b2", 49)]),
        "withdraw_all": lambda: users.add_funds(
            ctx, "buyer", -ctx.db.users.find_one({"_id": "buyer"})["balance"] or -1),
    }


COMPETITORS = list(_competitors(None, {}, None))
INTERLEAVINGS = [(name, n, rival) for name in SCENARIOS for n, *_ in WRITES[name]
                 for rival in COMPETITORS]


def _rival_action(ctx, w, oid, rival, advance=0):
    other = sibling(ctx, ctx.db)  # the real database (taken before wrapping): another process

    def action():
        ctx.engine.embedded.observer = None
        if advance:
            other.clock.advance(advance)
        try:
            with outside_budget():  # another process: the paused request's budget is not its own
                _competitors(other, w, oid)[rival]()
        except errors.BookstoreError:
            pass
    return action


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_interleaving_at_every_write(name):
    """For each write of ``name`` and each rival call: pause there, run the rival,
    resume. Only business errors; audit clean before and after recovery."""
    runs = 0
    for n, *_ in WRITES[name]:
        for rival in COMPETITORS:
            ctx, w, oid = setup_scenario(name)
            status, info = crash_at(ctx, lambda: run_op(name, ctx, w, oid), n, "stall",
                                    _rival_action(ctx, w, oid, rival))
            ctx.engine.embedded.observer = None
            assert status in ("ok", "error"), (status, info)
            if status == "error":
                assert isinstance(info, errors.BookstoreError), (rival, n, repr(info))
            assert_clean(ctx, settled=False)
            recover_like_the_system(ctx)
            assert_clean(ctx)
            runs += 1
    print(f"\n{name}: {runs} interleavings ({len(WRITES[name])} writes x {len(COMPETITORS)} rivals)")


# Recovery taking over a request that is still alive (its lease ran out while it
# was paused before this write). The stock and money effects of a step (restore,
# refund, credit) are applied by the request with a guard that recovery cannot
# revoke: if recovery finishes the step and removes the markers while the request
# sleeps just before its apply, the request then applies it a second time. No fence
# on the target documents exists without transactions, so the design relies on
# stuck_after_s (60 s) exceeding any live request: these points (found from the
# writes themselves: the bulk writes that push a restore, refund or credit marker)
# are where that assumption is load-bearing. Every request now runs under a time
# budget (be.budget, request_timeout_s <= stuck_after_s / 3) after which the client
# refuses its calls: with it these points pass; without it they are pinned as
# expected failures. What the budget cannot stop (a write already sent that the
# server applies late) is in doc/design.md.
def _applies_effect(name):
    ctx, w, oid = setup_scenario(name)
    pushed = pushed_markers(ctx, lambda: run_op(name, ctx, w, oid))
    ctx.engine.embedded.observer = None
    return {n for n, marker in pushed.items()
            if str(marker).rsplit(":", 1)[-1] in ("restore", "refund", "credit")}


LEASE_UNSAFE = {(name, n) for name in SCENARIOS for n in _applies_effect(name)}
LEASE_POINTS = [(name, n) for name in SCENARIOS for n, *_ in WRITES[name]]


LEASE_UNSAFE_POINTS = sorted(LEASE_UNSAFE)


@pytest.mark.parametrize("name,n", [
    pytest.param(name, n, marks=pytest.mark.xfail(
        strict=True, reason="without a time budget, a live request outliving stuck_after_s "
                            "re-applies its effect after recovery finished it"))
    for name, n in LEASE_UNSAFE_POINTS], ids=[f"{name}-w{n}" for name, n in LEASE_UNSAFE_POINTS])
def test_request_outliving_its_lease_without_a_budget(name, n):
    """What the time budget is for: at the LEASE_UNSAFE writes, a request with no
    budget, paused past its lease while the sweep recovers its order, re-applies the
    effect when it resumes (no fence on the target documents without transactions)."""
    _outlive_the_lease(name, n, budgeted=False)


@pytest.mark.parametrize("name,n", LEASE_POINTS, ids=[f"{name}-w{n}" for name, n in LEASE_POINTS])
def test_request_outliving_its_lease(name, n):
    """Every write of every operation, the request under its time budget (as every
    HTTP request is): the stall moves the shared clock past the lease, so the
    budget's deadline, kept on the same clock, has passed when the request resumes."""
    _outlive_the_lease(name, n, budgeted=True)


def _outlive_the_lease(name, n, budgeted):
    ctx, w, oid = setup_scenario(name)
    assert ctx.settings.request_timeout_s * 3 <= ctx.settings.stuck_after_s

    def op():
        if not budgeted:
            return run_op(name, ctx, w, oid)
        with request_budget(ctx):
            return run_op(name, ctx, w, oid)

    status, info = crash_at(ctx, op, n, "stall",
                            _rival_action(ctx, w, oid, "sweep", ctx.settings.stuck_after_s + 1))
    ctx.engine.embedded.observer = None
    if status == "error":
        # it noticed and said "retry", or the client refused its next call
        assert isinstance(info, (errors.Busy, ExecutionTimeout)), repr(info)
    if budgeted and (name, n) in LEASE_UNSAFE:
        assert status == "error" and isinstance(info, ExecutionTimeout), (status, info)
    recover_like_the_system(ctx)
    assert_clean(ctx)


def test_pause_within_the_lease_is_never_taken_over():
    """The sweep running while a request is paused (lease not yet run out) leaves it
    alone at every write of every operation."""
    for name in SCENARIOS:
        for n, *_ in WRITES[name]:
            ctx, w, oid = setup_scenario(name)
            status, info = crash_at(ctx, lambda: run_op(name, ctx, w, oid), n, "stall",
                                    _rival_action(ctx, w, oid, "sweep",
                                                  ctx.settings.stuck_after_s - 1))
            ctx.engine.embedded.observer = None
            assert status in ("ok", "error") and not isinstance(info, errors.Busy), (name, n, info)
            assert_clean(ctx)


# ---------------------------------------------------------------- 2. many threads

THREADS = 16
OPS_PER_THREAD = 400
CRASH_RATE = 0.04


class Gate:
    """Requests run side by side; a clock jump or a quiet-point audit waits for all
    of them to leave and holds new ones back (writer preference)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextlib.contextmanager
    def request(self):
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def stress_ctx():
    settings = Settings.from_env(mongodb_uri="", data_dir=":memory:",
                                 password_method="pbkdf2:sha256:1000",
                                 pay_timeout_s=600, receive_timeout_s=1200, stuck_after_s=60,
                                 token_lifetime_s=10**9)
    return Backend(settings, clock=ManualClock())


class Stress:
    BUYERS = 6
    BOOKS = {"s1": {"b1": (1000, 400), "b2": (250, 250), "b3": (99, 500)},
             "s2": {"b1": (1200, 300), "b4": (5000, 60)}}

    def __init__(self, seed):
        self.ctx = stress_ctx()
        self.gate = Gate()
        self.seed = seed
        self.log = []           # (op, key, outcome)
        self.unexpected = []    # (op, repr(exception))
        self.orders = []        # order ids, shared by every thread
        self.order_lock = threading.Lock()
        self.deposits = collections.Counter()  # user -> sum of successful add_funds
        self.counts = collections.Counter()
        ctx = self.ctx
        for seller, store in (("seller1", "s1"), ("seller2", "s2")):
            users.register(ctx, seller, PASSWORD)
            stores.create_store(ctx, seller, store)
            for book, (price, stock_level) in self.BOOKS[store].items():
                stores.add_book(ctx, seller, store,
                                {"id": book, "title": book, "price": price}, stock_level)
        self.buyers = [f"buyer{i}" for i in range(self.BUYERS)]
        for b in self.buyers:
            users.register(ctx, b, PASSWORD)
            users.add_funds(ctx, b, 20_000)
        self.initial = {u["_id"]: u["deposited"] - u["withdrawn"] for u in ctx.db.users.find({})}
        self.audits = 0

    # -- one call

    def call(self, rng, op, key, fn, crashable=True):
        db = self.ctx.db
        if crashable and rng.random() < CRASH_RATE:
            db = FaultyDB(db, at=rng.randint(1, 6), when=rng.choice(("before", "after")))
        tctx = sibling(self.ctx, db)
        with self.gate.request():
            try:
                result = fn(tctx)
            except Crash:
                outcome = "crash"
            except errors.BookstoreError as exc:
                outcome = type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - the test's point
                self.unexpected.append((op, repr(exc)))
                outcome = "UNEXPECTED"
            else:
                outcome = ("ok", result)
        self.log.append((op, key, outcome))
        return outcome

    def pick_order(self, rng):
        with self.order_lock:  # mostly recent orders: they are the ones still moving
            pool = self.orders[-30:] if rng.random() < 0.8 else self.orders
            return rng.choice(pool) if pool else None

    def parties(self, oid):
        o = self.ctx.db.orders.find_one({"_id": oid}, {"buyer_id": 1, "seller_id": 1})
        return (o["buyer_id"], o["seller_id"]) if o else (None, None)

    def step(self, rng):
        op = rng.choices(
            ["new_order", "payment", "cancel", "ship", "receive", "add_funds", "withdraw",
             "expire", "auto_receive", "sweep", "tick", "read", "wrong_party", "audit"],
            weights=[24, 20, 6, 12, 10, 4, 4, 3, 3, 3, 4, 4, 2, 0.3])[0]
        self.counts[op] += 1
        if op == "new_order":
            buyer = rng.choice(self.buyers)
            store = rng.choice(list(self.BOOKS))
            books = rng.sample(list(self.BOOKS[store]), rng.randint(1, len(self.BOOKS[store])))
            lines = [(b, rng.randint(1, 4)) for b in books]
            outcome = self.call(rng, op, buyer, lambda c: orders.new_order(
                c, buyer, store, lines))
            if isinstance(outcome, tuple):
                oid = outcome[1]
                with self.order_lock:
                    self.orders.append(oid)
            return
        if op in ("add_funds", "withdraw"):
            buyer = rng.choice(self.buyers + ["seller1"])
            amount = rng.randint(1, 8000) * (1 if op == "add_funds" else -1)
            outcome = self.call(rng, op, buyer,
                                lambda c: users.add_funds(c, buyer, amount),
                                crashable=False)
            if isinstance(outcome, tuple):
                with self.order_lock:
                    self.deposits[buyer] += amount
            return
        if op == "tick":
            with self.gate.exclusive():
                self.ctx.clock.advance(rng.choices([5, 20, 61, 300, 601], [8, 6, 3, 1, 1])[0])
            return
        if op == "audit":
            with self.gate.exclusive():
                found = audit(self.ctx.db)
                self.audits += 1
            assert not found, "\n".join(v.render() for v in found)
            return
        if op == "sweep":
            outcome = self.call(rng, op, None, lambda c: sweep(c))
            if isinstance(outcome, tuple):
                assert outcome[1]["errors"] == 0, outcome
            return
        oid = self.pick_order(rng)
        if oid is None:
            return
        buyer, seller = self.parties(oid)
        if buyer is None:
            return
        if op == "payment":
            self.call(rng, op, oid, lambda c: orders.payment(c, buyer, oid))
        elif op == "cancel":
            self.call(rng, op, oid, lambda c: orders.cancel_order(c, buyer, oid))
        elif op == "ship":
            self.call(rng, op, oid, lambda c: orders.ship(c, seller, oid))
        elif op == "receive":
            self.call(rng, op, oid, lambda c: orders.receive(c, buyer, oid))
        elif op == "expire":
            self.call(rng, op, oid, lambda c: orders.expire_payment(c, oid))
        elif op == "auto_receive":
            self.call(rng, op, oid, lambda c: orders.auto_receive(c, oid))
        elif op == "read":
            self.call(rng, op, oid, lambda c: orders.get_order(c, buyer, oid),
                      crashable=False)
        elif op == "wrong_party":
            other = rng.choice([b for b in self.buyers if b != buyer])
            which = rng.choice(["pay", "cancel", "ship", "receive", "read"])
            fn = {"pay": lambda c: orders.payment(c, other, oid),
                  "cancel": lambda c: orders.cancel_order(c, other, oid),
                  "ship": lambda c: orders.ship(c, other, oid),
                  "receive": lambda c: orders.receive(c, other, oid),
                  "read": lambda c: orders.get_order(c, other, oid)}[which]
            self.call(rng, "wrong_party", oid, fn, crashable=False)

    def worker(self, n, ops):
        rng = random.Random(self.seed * 1000 + n)
        try:
            for _ in range(ops):
                self.step(rng)
        except BaseException as exc:  # surfaced by the main thread
            self.unexpected.append(("worker", repr(exc)))

    def run(self, threads, ops):
        pool = [threading.Thread(target=self.worker, args=(n, ops)) for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    def drain(self):
        ctx = self.ctx
        recover_like_the_system(ctx)
        ctx.clock.advance(ctx.settings.pay_timeout_s + ctx.settings.receive_timeout_s + 1)
        sweep(ctx)
        sweep(ctx)


def outcome_checks(s):
    """Every success is a state change really there; exclusive steps succeed once."""
    db = s.ctx.db
    docs = {o["_id"]: o for o in db.orders.find({})}
    ok = collections.defaultdict(collections.Counter)
    for op, key, outcome in s.log:
        if isinstance(outcome, tuple) and outcome[0] == "ok":
            ok[key][op] += 1
            if op == "expire" and outcome[1] is not True:
                ok[key][op] -= 1
            if op == "auto_receive" and outcome[1] is not True:
                ok[key][op] -= 1
    for oid in s.orders:
        assert oid in docs, f"a successful new_order {oid} left no order"
    for oid, c in ok.items():
        if oid not in docs:
            continue
        o = docs[oid]
        states = [h["state"] for h in o["history"]]
        assert c["payment"] <= 1, (oid, c)
        if c["payment"]:
            assert "paid" in states, (oid, states)
        if c["ship"]:
            assert c["ship"] == 1 and "shipped" in states, (oid, c, states)
        assert c["cancel"] + c["expire"] <= 1, (oid, c)
        if c["cancel"]:
            assert o["state"] == "cancelled" and o["cancel_reason"] == "buyer", (oid, o)
        if c["expire"]:
            assert o["state"] == "cancelled" and o["cancel_reason"] == "timeout", (oid, o)
            assert "paid" not in states
        assert c["receive"] + c["auto_receive"] <= 1, (oid, c)
        if c["receive"]:
            assert o["state"] == "received" and o["history"][-1]["by"] == "buyer", (oid, o)
        if c["auto_receive"]:
            assert o["state"] == "received" and o["history"][-1]["by"] == "timeout", (oid, o)
        assert c["wrong_party"] == 0, (oid, c)
    for u in db.users.find({}):
        assert u["deposited"] - u["withdrawn"] == s.initial[u["_id"]] + s.deposits[u["_id"]], u


def test_many_threads_mixed_calls_keep_every_invariant():
    s = Stress(seed=6)
    started = time.perf_counter()
    s.run(THREADS, OPS_PER_THREAD)
    elapsed = time.perf_counter() - started
    assert not s.unexpected, s.unexpected[:10]
    found = audit(s.ctx.db)  # quiet now, but crashed requests may still be busy
    assert not found, "\n".join(v.render() for v in found)
    s.drain()
    assert_clean(s.ctx)
    outcome_checks(s)
    outcomes = collections.Counter((op, o if isinstance(o, str) else "ok") for op, _, o in s.log)
    states = collections.Counter(o["state"] for o in s.ctx.db.orders.find({}))
    print(f"\nstress: {THREADS} threads x {OPS_PER_THREAD} = {THREADS * OPS_PER_THREAD} calls "
          f"in {elapsed:.1f}s; {len(s.orders)} orders; states {dict(states)}; "
          f"{sum(1 for *_, o in s.log if o == 'crash')} crashed requests; "
          f"{s.audits} quiet-point audits")
    print("calls:", dict(s.counts))
    print("outcomes:", dict(sorted(outcomes.items())))
    # the mix really exercised the interesting paths
    assert outcomes[("payment", "ok")] and outcomes[("cancel", "ok")]
    assert outcomes[("receive", "ok")] and outcomes[("ship", "ok")]
    assert states["cancelled"] and states["received"]


# ---------------------------------------------------------------- 3. over HTTP

HTTP_THREADS = 8
HTTP_OPS = 60
# the contract's business codes (511-521) and 503 "busy, retry"; anything else >= 500 is a failure
BUSINESS_CODES = {503} | set(range(511, 522))


@pytest.fixture
def http_server():
    settings = Settings.from_env(mongodb_uri="", data_dir=":memory:",
                                 password_method="pbkdf2:sha256:1000",
                                 token_lifetime_s=10**9)
    backend = Backend(settings, clock=ManualClock())
    srv = ThreadedServer(backend)
    yield backend, srv.url
    srv.stop()


def test_http_stress_no_5xx(http_server):
    from fe.access.auth import Auth
    from fe.access.buyer import Buyer
    from fe.access.client import get, post
    from fe.access.seller import Seller

    backend, url = http_server
    auth = Auth(url)
    assert auth.register("hs_seller", PASSWORD) == 200
    seller = Seller(url, "hs_seller", PASSWORD)
    assert seller.create_store("hs_store") == 200
    for book, price, level in (("h1", 700, 30), ("h2", 150, 20)):
        r = post(url + "seller/add_book", {"user_id": "hs_seller", "store_id": "hs_store",
                                           "book_info": {"id": book, "title": book, "price": price},
                                           "stock_level": level}, seller.token)
        assert r.status_code == 200
    buyers = []
    for i in range(4):
        assert auth.register(f"hs_buyer{i}", PASSWORD) == 200
        b = Buyer(url, f"hs_buyer{i}", PASSWORD)
        assert b.add_funds(10_000) == 200
        buyers.append(b)
    order_ids, lock = [], threading.Lock()
    statuses = collections.Counter()
    bad = []

    def worker(n):
        rng = random.Random(n)
        for _ in range(HTTP_OPS):
            b = rng.choice(buyers)
            op = rng.choice(["new_order", "new_order", "payment", "cancel", "ship", "receive",
                             "funds", "read", "list"])
            with lock:
                oid = rng.choice(order_ids) if order_ids else None
            if op == "new_order":
                code, new = b.new_order("hs_store", [("h1", rng.randint(1, 3)),
                                                     ("h2", rng.randint(1, 3))])
                if code == 200:
                    with lock:
                        order_ids.append(new)
            elif oid is None:
                continue
            elif op == "payment":
                code = rng.choice(buyers).payment(oid)
            elif op == "cancel":
                code = rng.choice(buyers).cancel_order(oid)
            elif op == "ship":
                code = seller.ship(oid)
            elif op == "receive":
                code = rng.choice(buyers).receive(oid)
            elif op == "funds":
                code = b.add_funds(rng.randint(-3000, 3000))
            elif op == "read":
                r = get(url + f"orders/{oid}", {"user_id": b.user_id}, b.token)
                code = r.status_code
            else:
                code, _ = b.orders(page_size=5)
            statuses[code] += 1
            if code >= 500 and code not in BUSINESS_CODES:
                bad.append((op, code))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(HTTP_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, bad
    backend.clock.advance(backend.settings.pay_timeout_s + backend.settings.receive_timeout_s + 61)
    sweep(backend)
    found = audit(backend.db, settled=True)
    assert not found, "\n".join(v.render() for v in found)
    print(f"\nhttp stress: {HTTP_THREADS} threads x {HTTP_OPS} calls, statuses {dict(statuses)}")
