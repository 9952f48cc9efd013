"""The change-stream watcher against scripted streams, its entry point, and the
in-process sweeper thread."""
import os
import subprocess
import sys
import threading

import pytest
from mongomock.filtering import filter_applies
from pymongo.errors import OperationFailure

from be import watcher as w
from be.model import orders
from be.tests.test_timeouts import (PAY_S, RECEIVE_S, at, order_doc, place, run_together,
                                    shipped, stock)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ScriptedStream:
    """pymongo ChangeStream's surface (try_next, iteration, resume_token, alive,
    close) over a FakeOplog read live from ``position``. A change is returned; an
    action (a one-shot callable or exception) runs or is raised where it stands, and
    counts as an empty wait. At the end, ``on_drained`` runs (tests stop the watcher
    there). An invalidate the pipeline filtered out kills the stream as pymongo
    does: try_next returns None, ``alive`` is False, ``resume_token`` is the
    invalidate token, and every later try_next returns None with no round trip (a
    watcher calling it again is busy-spinning: counted, and failed past a few)."""

    def __init__(self, oplog, position, on_drained):
        self._oplog = oplog
        self._position = position
        self._on_drained = on_drained
        self._token = None
        self.closed = False
        self.alive = True
        self.calls_when_dead = 0

    def try_next(self):
        assert not self.closed
        if not self.alive:
            self.calls_when_dead += 1
            assert self.calls_when_dead < 3, "busy-spinning on a dead change stream"
            return None
        items = self._oplog.items
        while self._position < len(items):
            item = items[self._position]
            self._position += 1
            if item.get("filtered_invalidate"):
                self._token = item["_id"]   # the post-batch token: the invalidate's
                self.alive = False
                return None
            if "action" not in item:
                self._token = item["_id"]
                return item
            if not item["done"]:
                item["done"] = True
                if isinstance(item["action"], BaseException):
                    raise item["action"]
                item["action"]()
                return None
        self._on_drained()
        return None

    @property
    def resume_token(self):
        return self._token

    def __iter__(self):
        return self

    def __next__(self):
        while self._position < len(self._oplog.items):
            change = self.try_next()
            if change is not None:
                return change
        raise StopIteration

    next = __next__

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeOplog:
    """What the server would send: changes in order, each with a resume token, and
    scripted actions between them. Opening resumes after a token, or from the end
    when there is none, or fails with ``lost_code`` if the token was trimmed."""

    def __init__(self):
        self.items = []
        self.first = 0          # items before this index have rolled out of the oplog
        self.opened = []        # resume_after of every open
        self.streams = []
        self.lost_code = 286
        self.on_open = None     # called with resume_after once a stream is open

    def invalidate(self, filtered=True):
        """The collection is dropped or renamed: the server ends the stream. Resuming
        after this token is refused (InvalidResumeToken, 260)."""
        token = {"_data": f"{len(self.items):08d}"}
        if filtered:  # the pipeline's $match did not let it through
            self.items.append({"_id": token, "filtered_invalidate": True})
        else:
            self.items.append({"_id": token, "operationType": "invalidate"})
        return token

    def delete(self, pending_id, op="delete"):
        token = {"_data": f"{len(self.items):08d}"}
        self.items.append({"_id": token, "operationType": op,
                           "ns": {"db": "bookstore", "coll": "pending"},
                           "documentKey": {"_id": pending_id}})
        return token

    def act(self, action):
        self.items.append({"action": action, "done": False})

    def last_token(self):
        return [i for i in self.items if "_id" in i][-1]["_id"]

    def trim(self):
        self.first = len(self.items)

    def opener(self, watcher_ref):
        def open_stream(resume_after):
            self.opened.append(resume_after)
            if resume_after is None:
                start = len(self.items)  # a fresh stream sees only what comes next
            else:
                where = [n for n, i in enumerate(self.items) if i.get("_id") == resume_after]
                if where and (self.items[where[0]].get("filtered_invalidate")
                              or self.items[where[0]].get("operationType") == "invalidate"):
                    raise OperationFailure("cannot resume after an invalidate event",
                                           code=260)
                if not where or where[0] < self.first:
                    raise OperationFailure("resume point no longer in the oplog",
                                           code=self.lost_code)
                start = where[0] + 1
            stream = ScriptedStream(self, start, lambda: watcher_ref[0].stop())
            self.streams.append(stream)
            if self.on_open:
                self.on_open(resume_after)
            return stream
        return open_stream


def make_watcher(ctx, oplog, **kwargs):
    ref = []
    watcher = w.Watcher(ctx, open_stream=oplog.opener(ref), retry_delay_s=0,
                        reconnect_delay_s=0, **kwargs)
    ref.append(watcher)
    return watcher


def saved_token(ctx, name="pending"):
    doc = ctx.db[w.STATE_COLLECTION].find_one({"_id": name})
    return doc and doc["token"]


def record_handlers(monkeypatch, ctx, fail=None):
    """Wrap the timer handler: record (kind, order_id, token saved at that moment),
    and raise for order ids in ``fail`` (a dict id -> failures left; -1 forever)."""
    calls = []
    fail = fail if fail is not None else {}
    real = orders.fire

    def wrapper(c, kind, order_id):
        calls.append((kind, order_id, saved_token(ctx)))
        if fail.get(order_id, 0):
            fail[order_id] -= 1
            raise RuntimeError(f"handler for {order_id} failed")
        return real(c, kind, order_id)

    monkeypatch.setattr(orders, "fire", wrapper)
    return calls


def no_sweep(monkeypatch):
    """Leave the timeouts to the events alone in this test."""
    monkeypatch.setattr(w, "sweep", lambda c, **k: dict.fromkeys(
        ("recovered", "expired", "received", "errors"), 0))


@pytest.fixture
def buyer(make_user):
    return make_user("buyer", funds=100000)


# ---------------------------------------------------------------- events

def test_events_are_handled_in_order_and_the_token_saved_after_each(
        ctx, shop, buyer, monkeypatch):
    overdue = place(ctx, buyer, shop, 2)
    paid = place(ctx, buyer, shop, 1)
    orders.payment(ctx, buyer[0], paid)
    sent = shipped(ctx, buyer, shop, 3)
    ctx.clock.advance(RECEIVE_S)
    calls = record_handlers(monkeypatch, ctx)
    no_sweep(monkeypatch)

    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    oplog.delete(f"pay:{overdue}")  # before the stream opens: a fresh start does not see it
    tokens = []

    def events(resume_after):
        tokens.extend([oplog.delete(f"pay:{overdue}"),
                       oplog.delete(f"pay:{paid}"),
                       oplog.delete("pay:zzz", op="insert"),
                       oplog.delete("bogus"),
                       oplog.delete(f"receive:{sent}")])

    oplog.on_open = events
    watcher.run()

    assert oplog.opened == [None]
    assert calls == [("pay", overdue, None),
                     ("pay", paid, tokens[0]),
                     ("receive", sent, tokens[3])]   # saved after every event, ours or not
    assert saved_token(ctx) == tokens[4]
    assert order_doc(ctx, overdue)["cancel_reason"] == "timeout"
    assert order_doc(ctx, paid)["state"] == "paid"
    assert order_doc(ctx, sent)["state"] == "received"
    assert stock(ctx, shop["store_id"]) == 10 - 1 - 3
    assert ctx.db.users.find_one({"_id": shop["seller"]})["balance"] == 3000
    assert oplog.streams[0].closed


def test_a_restarted_watcher_resumes_from_the_saved_token(ctx, shop, buyer, monkeypatch):
    a, b, c = (place(ctx, buyer, shop, 1) for _ in range(3))
    ctx.clock.advance(PAY_S)
    calls = record_handlers(monkeypatch, ctx)
    no_sweep(monkeypatch)
    oplog = FakeOplog()
    w.Watcher(ctx, open_stream=oplog.opener([])).save_token(oplog.delete("before"))
    oplog.delete(f"pay:{a}")
    oplog.delete(f"pay:{b}")
    make_watcher(ctx, oplog).run()
    first_token = saved_token(ctx)
    assert [x[1] for x in calls] == [a, b]

    oplog.delete(f"pay:{c}")               # happens while no watcher runs
    oplog.delete(f"pay:{a}")               # and a duplicate: harmless
    make_watcher(ctx, oplog).run()         # a new process
    assert oplog.opened[-1] == first_token
    assert [x[1] for x in calls] == [a, b, c, a]
    assert saved_token(ctx) == oplog.last_token()
    assert {order_doc(ctx, o)["cancel_reason"] for o in (a, b, c)} == {"timeout"}
    assert stock(ctx, shop["store_id"]) == 10


@pytest.mark.parametrize("code", [286, 280, 260])
@pytest.mark.parametrize("where", ["open", "next"])
def test_a_token_lost_from_the_oplog_starts_afresh_and_sweeps(
        ctx, shop, buyer, monkeypatch, code, where):
    missed = place(ctx, buyer, shop, 2)
    ctx.clock.advance(PAY_S)
    later = place(ctx, buyer, shop, 1)
    monkeypatch.setattr(ctx.settings, "sweep_interval_s", 10 * PAY_S)  # no periodic sweeps
    sweeps = []
    real_sweep = w.sweep
    monkeypatch.setattr(w, "sweep",
                        lambda c, **k: sweeps.append(real_sweep(c, **k)) or sweeps[-1])
    handled = record_handlers(monkeypatch, ctx)

    oplog = FakeOplog()
    oplog.lost_code = code
    watcher = make_watcher(ctx, oplog)
    old = oplog.delete("pay:long-gone")
    watcher.save_token(old)
    if where == "open":   # the watcher was down while the oplog rolled over
        oplog.delete(f"pay:{missed}")
        oplog.trim()
    else:                 # the stream opens, then loses its place on the next read
        oplog.act(OperationFailure("history lost", code=code))
        oplog.delete(f"pay:{missed}")

    def after_fresh_start(resume_after):  # then, on the new stream, a new deadline falls due
        if resume_after is None:
            oplog.act(lambda: ctx.clock.advance(PAY_S))
            oplog.delete(f"pay:{later}")

    oplog.on_open = after_fresh_start
    watcher.run()

    assert oplog.opened == [old, None]
    assert order_doc(ctx, missed)["cancel_reason"] == "timeout"   # found by the sweep
    assert [x[1] for x in handled] == [missed, later]             # the sweep, then the event
    assert sum(x["expired"] for x in sweeps) == 1
    assert order_doc(ctx, later)["cancel_reason"] == "timeout"
    assert saved_token(ctx) == oplog.last_token()
    assert stock(ctx, shop["store_id"]) == 10


def test_a_poison_event_is_counted_and_passed_and_the_sweep_finishes_it(
        ctx, shop, buyer, monkeypatch):
    a, b, c = (place(ctx, buyer, shop, 1) for _ in range(3))
    ctx.clock.advance(PAY_S)
    calls = record_handlers(monkeypatch, ctx, {b: -1})  # b's handler always fails
    no_sweep(monkeypatch)
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog, retries=3)
    watcher.save_token(oplog.delete("start"))
    oplog.delete(f"pay:{a}")
    tb = oplog.delete(f"pay:{b}")
    oplog.delete(f"pay:{c}")

    watcher.run()                                    # does not exit on b
    assert [x[1] for x in calls] == [a, b, b, b, c]
    assert calls[-1][2] == tb                        # the token was saved past b
    assert watcher.skipped == 1
    assert saved_token(ctx) == oplog.last_token()
    assert order_doc(ctx, b)["state"] == "unpaid"
    assert {order_doc(ctx, o)["cancel_reason"] for o in (a, c)} == {"timeout"}

    make_watcher(ctx, oplog).run()                   # a restart does not replay b
    assert oplog.opened[-1] == oplog.last_token()
    assert [x[1] for x in calls] == [a, b, b, b, c]

    monkeypatch.undo()                               # the handler works again
    assert w.sweep(ctx)["expired"] == 1              # and the sweep finishes b
    assert order_doc(ctx, b)["cancel_reason"] == "timeout"
    assert stock(ctx, shop["store_id"]) == 10


def test_a_handler_that_fails_once_is_retried_in_place(ctx, shop, buyer, monkeypatch):
    a = place(ctx, buyer, shop, 1)
    ctx.clock.advance(PAY_S)
    calls = record_handlers(monkeypatch, ctx, {a: 1})
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    watcher.save_token(oplog.delete("start"))
    token = oplog.delete(f"pay:{a}")
    no_sweep(monkeypatch)
    watcher.run()
    assert [x[1] for x in calls] == [a, a]
    assert order_doc(ctx, a)["cancel_reason"] == "timeout"
    assert saved_token(ctx) == token


def test_other_database_errors_propagate(ctx):
    def opener(resume_after):
        raise OperationFailure("not authorized", code=13)
    with pytest.raises(OperationFailure):
        w.Watcher(ctx, open_stream=opener).run()


def pending_has_its_ttl_index(ctx):
    return any(spec.get("expireAfterSeconds") == 0 and spec["key"] == [("due_at", 1)]
               for spec in ctx.db.pending.index_information().values())


def test_the_pipeline_lets_deletions_and_stream_endings_through():
    match = w.PIPELINE[0]["$match"]
    for op in ("delete", "invalidate", "drop", "rename", "dropDatabase"):
        assert filter_applies(match, {"operationType": op}), op
    for op in ("insert", "update", "replace"):
        assert not filter_applies(match, {"operationType": op}), op


@pytest.mark.parametrize("op", ["invalidate", "drop", "rename", "dropDatabase"])
def test_a_stream_ended_by_the_server_starts_afresh_with_the_ttl_index(
        ctx, shop, buyer, monkeypatch, op):
    missed = place(ctx, buyer, shop, 1)
    ctx.clock.advance(PAY_S)
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    start = oplog.delete("x")
    watcher.save_token(start)
    oplog.act(ctx.db.pending.drop)               # pending goes, with its TTL index
    if op == "invalidate":
        oplog.invalidate(filtered=False)
    else:
        oplog.delete(None, op=op)
        oplog.invalidate(filtered=False)
    watcher.run()
    assert oplog.opened == [start, None]
    assert saved_token(ctx) is None
    assert pending_has_its_ttl_index(ctx)        # recreated before reopening
    assert order_doc(ctx, missed)["cancel_reason"] == "timeout"   # the fresh start swept


def test_a_stream_killed_by_a_filtered_invalidate_is_not_spun_on_nor_its_token_saved(
        ctx, shop, buyer, monkeypatch):
    """pymongo's behaviour when the pipeline drops the invalidate: try_next returns
    None, ``alive`` goes False and ``resume_token`` is the invalidate token."""
    first = place(ctx, buyer, shop, 1)
    ctx.clock.advance(PAY_S)
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    saved = []
    real_save = watcher.save_token
    monkeypatch.setattr(watcher, "save_token", lambda t: (saved.append(t), real_save(t)))
    start = oplog.delete("x")
    watcher.save_token(start)
    oplog.act(ctx.db.pending.drop)
    dead = oplog.invalidate(filtered=True)
    after = []

    def on_open(resume_after):
        if resume_after is None:    # the fresh stream: a new deadline falls due on it
            after.append(place(ctx, buyer, shop, 2))
            oplog.act(lambda: ctx.clock.advance(PAY_S))
            after.append(oplog.delete(f"pay:{after[0]}"))

    oplog.on_open = on_open
    watcher.run()
    assert oplog.opened == [start, None]
    assert oplog.streams[0].calls_when_dead == 0   # left at once, not spun on
    assert dead not in saved                       # never saved the invalidate token
    assert saved_token(ctx) == after[1]
    assert pending_has_its_ttl_index(ctx)
    assert order_doc(ctx, first)["cancel_reason"] == "timeout"
    assert order_doc(ctx, after[0])["cancel_reason"] == "timeout"
    assert stock(ctx, shop["store_id"]) == 10


def test_an_invalidate_token_saved_earlier_is_refused_and_the_watcher_starts_afresh(
        ctx, shop, buyer):
    """A token saved by an older watcher from a dead stream: the open fails with
    InvalidResumeToken (260). The watcher starts afresh and sweeps, and does not
    exit before its start-up sweep."""
    missed = place(ctx, buyer, shop, 1)
    ctx.clock.advance(PAY_S)
    oplog = FakeOplog()
    bad = oplog.invalidate(filtered=True)
    watcher = make_watcher(ctx, oplog)
    watcher.save_token(bad)
    ctx.db.pending.drop()
    watcher.run()
    assert oplog.opened == [bad, None]
    assert saved_token(ctx) is None
    assert pending_has_its_ttl_index(ctx)
    assert order_doc(ctx, missed)["cancel_reason"] == "timeout"


def test_sweeps_at_start_and_every_interval_of_clock_time(ctx, shop, buyer, monkeypatch):
    overdue_at_start = place(ctx, buyer, shop, 1)
    ctx.clock.advance(PAY_S)
    later = place(ctx, buyer, shop, 2)
    sweeps = []
    real_sweep = w.sweep
    monkeypatch.setattr(w, "sweep",
                        lambda c, **k: sweeps.append(real_sweep(c, **k)) or sweeps[-1])
    interval = ctx.settings.sweep_interval_s
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    watcher.save_token(oplog.delete("start"))
    oplog.act(lambda: None)                                 # a quiet wait: no sweep yet
    oplog.act(lambda: ctx.clock.advance(interval))          # interval up: sweep
    oplog.act(lambda: ctx.clock.advance(PAY_S - interval))  # later overdue, sweep due
    watcher.run()
    assert [s["expired"] for s in sweeps] == [1, 0, 1]      # start-up, then each interval
    assert order_doc(ctx, overdue_at_start)["cancel_reason"] == "timeout"
    assert order_doc(ctx, later)["cancel_reason"] == "timeout"
    assert stock(ctx, shop["store_id"]) == 10


def test_two_watchers_handling_one_deadline_give_one_outcome(ctx, shop, buyer):
    oids = [place(ctx, buyer, shop, 1) for _ in range(5)]
    deadline = order_doc(ctx, oids[0])["pay_deadline"]
    watchers = [w.Watcher(at(ctx, deadline), open_stream=lambda t: None) for _ in range(2)]
    targets = []
    for oid in oids:
        change = {"_id": {"_data": oid}, "operationType": "delete",
                  "documentKey": {"_id": f"pay:{oid}"}}
        targets += [lambda x=x, change=change: x.handle(change) for x in watchers]
    results = run_together(*targets)
    for n, oid in enumerate(oids):
        assert sorted(results[2 * n:2 * n + 2]) == [False, True]
        assert order_doc(ctx, oid)["cancel_reason"] == "timeout"
    assert stock(ctx, shop["store_id"]) == 10


def test_parse_pending_id():
    assert w.parse_pending_id("pay:abc") == ("pay", "abc")
    assert w.parse_pending_id("receive:a:b") == ("receive", "a:b")
    for bad in ("pay:", "other:x", "pay", None, 5, {"x": 1}):
        assert w.parse_pending_id(bad) == (None, None)


# ---------------------------------------------------------------- in-process sweeper

def test_the_sweeper_thread_sweeps_at_start_and_stops_cleanly(ctx, shop, buyer):
    oid = place(ctx, buyer, shop, 3)
    ctx.clock.advance(PAY_S)
    swept = threading.Event()
    seen = []
    sweeper = w.Sweeper(ctx, interval_s=3600,
                        on_sweep=lambda counts: (seen.append(counts), swept.set())).start()
    try:
        assert swept.wait(30)  # the start-up sweep, observed, not slept for
    finally:
        assert sweeper.stop(timeout=30)  # wakes it from its interval wait
    assert not sweeper.thread.is_alive()
    assert seen[0]["expired"] == 1
    assert order_doc(ctx, oid)["cancel_reason"] == "timeout"
    assert stock(ctx, shop["store_id"]) == 10


# ---------------------------------------------------------------- entry point

def test_the_watcher_refuses_the_embedded_engine(monkeypatch, capsys):
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert w.main([]) == 2
    err = capsys.readouterr().err
    assert "replica set" in err and "python app.py" in err


def test_the_script_refuses_the_embedded_engine():
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    proc = subprocess.run([sys.executable, "-m", "scripts.watcher"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "replica set" in proc.stderr and "python app.py" in proc.stderr


def test_sweep_once_against_a_configured_database(ctx, shop, buyer, monkeypatch):
    oid = place(ctx, buyer, shop, 1)
    ctx.clock.advance(PAY_S)
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.invalid:27017/?replicaSet=rs0")
    assert w.main(["--sweep-once"], backend_factory=lambda settings: ctx) == 0
    assert order_doc(ctx, oid)["cancel_reason"] == "timeout"
