"""The timeout driver's heartbeat and what reads it, without HTTP: the watcher beats
while it follows its stream and after each sweep (throttled on clock time), the
readiness checks on a MongoDB-shaped context (database down, watcher silent), the
watcher's own metrics endpoint, and the logging helpers (JSON lines, the waitress
queue notice)."""
import io
import json
import logging
import types
from datetime import timedelta

import pytest
import requests
from pymongo.errors import ServerSelectionTimeoutError

from be import heartbeat, logs, metrics
from be import watcher as w
from be.api.health import readiness
from be.tests.test_timeouts import PAY_S, place
from be.tests.test_watcher import FakeOplog, make_watcher


@pytest.fixture
def buyer(make_user):
    return make_user("buyer", funds=100000)


def beat_doc(ctx):
    return heartbeat.read(ctx)


def orders_state(ctx, oid):
    return ctx.db.orders.find_one({"_id": oid})["state"]


# ---------------------------------------------------------------- the watcher's beat

def test_the_watcher_beats_after_sweeping_and_events_and_counts_them(ctx, shop, buyer):
    oid = place(ctx, buyer, shop, 1)
    ctx.clock.advance(PAY_S)
    fired = metrics.WATCHER_EVENTS.labels("fired")._value.get()
    noop = metrics.WATCHER_EVENTS.labels("noop")._value.get()
    ignored = metrics.WATCHER_EVENTS.labels("ignored")._value.get()
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    watcher.save_token(oplog.delete("start"))
    oplog.delete(f"pay:{oid}")             # the start-up sweep has expired it: a noop
    oplog.delete("pay:no-such-order")      # a noop too
    oplog.delete("not-a-timer")            # ignored
    events_at = ctx.clock.now()
    oplog.act(lambda: ctx.clock.advance(heartbeat.BEAT_EVERY_S))  # a quiet wait
    watcher.run()
    assert orders_state(ctx, oid) == "cancelled"
    doc = beat_doc(ctx)
    assert doc["driver"] == "watcher" and doc["at"] == ctx.clock.now()
    assert doc["last_event_at"] == events_at and doc["last_sweep_at"] == ctx.clock.now()
    assert metrics.WATCHER_EVENTS.labels("noop")._value.get() - noop == 2
    assert metrics.WATCHER_EVENTS.labels("ignored")._value.get() - ignored == 1
    assert metrics.WATCHER_EVENTS.labels("fired")._value.get() == fired
    assert 0 <= metrics.WATCHER_HEARTBEAT.age() < 60
    assert 0 <= metrics.WATCHER_LAST_EVENT.age() < 60


def test_an_event_that_fires_a_timer_is_counted(ctx, shop, buyer, monkeypatch):
    monkeypatch.setattr(w, "sweep", lambda c, **k: dict.fromkeys(
        ("recovered", "expired", "received", "errors"), 0))  # the event alone
    oid = place(ctx, buyer, shop, 1)
    ctx.clock.advance(PAY_S)
    fired = metrics.WATCHER_EVENTS.labels("fired")._value.get()
    timers = metrics.TIMERS_FIRED.labels("pay")._value.get()
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    watcher.save_token(oplog.delete("start"))
    oplog.delete(f"pay:{oid}")
    watcher.run()
    assert orders_state(ctx, oid) == "cancelled"
    assert metrics.WATCHER_EVENTS.labels("fired")._value.get() - fired == 1
    assert metrics.TIMERS_FIRED.labels("pay")._value.get() - timers == 1


def test_an_idle_watcher_beats_at_most_every_few_seconds_of_clock_time(ctx, monkeypatch):
    beats = []
    real = heartbeat.beat
    monkeypatch.setattr(heartbeat, "beat", lambda c, d, **f: beats.append(d) or real(c, d, **f))
    ctx.settings.sweep_interval_s = 3600  # no sweep after the start-up one
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    watcher.save_token(oplog.delete("start"))
    quiet = heartbeat.BEAT_EVERY_S / 2
    for _ in range(4):  # idle waits, each half a beat interval apart
        oplog.act(lambda: ctx.clock.advance(quiet))
    watcher.run()
    # the start-up sweep's beat, then one more per full interval of quiet
    assert beats == ["watcher"] * 3
    assert (ctx.clock.now() - beat_doc(ctx)["at"]).total_seconds() < heartbeat.BEAT_EVERY_S


def test_restarts_are_counted_by_reason(ctx):
    before = metrics.WATCHER_RESTARTS.labels("history_lost")._value.get()
    oplog = FakeOplog()
    watcher = make_watcher(ctx, oplog)
    watcher.save_token(oplog.delete("start"))
    oplog.trim()  # the saved token has rolled out of the oplog
    oplog.act(lambda: None)
    watcher.run()
    assert metrics.WATCHER_RESTARTS.labels("history_lost")._value.get() - before == 1


def test_sweep_once_beats_too(ctx, monkeypatch):
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.invalid:27017/?replicaSet=rs0")
    assert w.main(["--sweep-once"], backend_factory=lambda settings: ctx) == 0
    assert beat_doc(ctx)["driver"] == "sweep-once"


# ---------------------------------------------------------------- readiness on MongoDB

class Db:
    """A pymongo Database's surface for the readiness check: ``command`` and the
    heartbeat collection, over the embedded engine's data."""

    def __init__(self, real, down=False):
        self.real, self.down, self.commands = real, down, []

    def command(self, name):
        self.commands.append(name)
        if self.down:
            raise ServerSelectionTimeoutError("no primary available")
        return {"ok": 1}

    def __getitem__(self, name):
        return self.real[name]


def mongodb_ctx(ctx, down=False):
    return types.SimpleNamespace(db=Db(ctx.db, down), clock=ctx.clock, settings=ctx.settings,
                                 engine=types.SimpleNamespace(embedded=None))


def test_on_mongodb_ready_needs_a_ping_and_a_fresh_watcher_heartbeat(ctx):
    mctx = mongodb_ctx(ctx)
    ok, body = readiness(mctx)
    assert not ok and body["engine"]["ok"] and body["engine"]["kind"] == "mongodb"
    assert "start the watcher (python -m be.watcher)" in body["message"]
    assert mctx.db.commands == ["ping"]
    heartbeat.beat(ctx, "watcher", last_event_at=ctx.clock.now())
    ok, body = readiness(mctx)
    assert ok and body["timeouts"]["driver"] == "watcher"
    ctx.clock.advance(ctx.settings.driver_max_age + 1)
    ok, body = readiness(mctx)
    assert not ok and "the timeout driver (watcher on " in body["message"]


def test_on_mongodb_a_database_that_does_not_answer_is_not_ready(ctx):
    heartbeat.beat(ctx, "watcher")
    ok, body = readiness(mongodb_ctx(ctx, down=True))
    assert not ok and not body["engine"]["ok"]
    assert body["message"].startswith("not ready: the database did not answer within 2 s")
    assert "no primary available" in body["engine"]["error"]


def test_a_beat_from_a_host_whose_clock_runs_ahead_counts_as_fresh(ctx):
    heartbeat.beat(ctx, "watcher")
    ctx.db[heartbeat.COLLECTION].update_one(
        {"_id": heartbeat.ID}, {"$set": {"at": ctx.clock.now() + timedelta(seconds=30)}})
    assert heartbeat.age_s(ctx, beat_doc(ctx)) == 0
    assert readiness(ctx)[0]


def test_the_driver_age_bound_follows_the_sweep_interval(ctx):
    from be.config import Settings
    assert Settings(sweep_interval_s=1).driver_max_age == 13
    assert Settings(sweep_interval_s=30).driver_max_age == 100
    assert Settings(sweep_interval_s=30, driver_max_age_s=45).driver_max_age == 45


# ---------------------------------------------------------------- the watcher's metrics

def test_the_watcher_serves_its_metrics():
    port = w.serve_metrics("127.0.0.1", 0)
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    for name in ("bookstore_watcher_heartbeat_age_seconds", "bookstore_watcher_events_total",
                 "bookstore_watcher_last_event_age_seconds", "bookstore_sweep_duration_seconds",
                 "bookstore_timers_fired_total"):
        assert name in text, name


def test_metrics_port_flag(ctx, monkeypatch):
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.invalid:27017/?replicaSet=rs0")
    served = []
    monkeypatch.setattr(w, "serve_metrics", lambda host, port: served.append((host, port)) or 1)
    assert w.main(["--sweep-once", "--metrics-port", "9105", "--metrics-host", "0.0.0.0"],
                  backend_factory=lambda settings: ctx) == 0
    assert served == [("0.0.0.0", 9105)]


# ---------------------------------------------------------------- logging

def test_json_log_lines(monkeypatch):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    try:
        root.handlers[:] = []  # configure leaves a logging set-up it finds alone
        logs.configure("json", out)
        logging.getLogger("bookstore.test").info("hello %s", "world",
                                                 extra={"fields": {"request_id": "r1"}})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("bookstore.test").exception("failed")
    finally:
        root.handlers[:], root.level = saved
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {k: first[k] for k in ("level", "logger", "message", "request_id")} == {
        "level": "INFO", "logger": "bookstore.test", "message": "hello world",
        "request_id": "r1"}
    assert first["time"].endswith("Z") and len(first["time"]) == 24
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_the_log_format_is_checked(monkeypatch):
    monkeypatch.setenv("BOOKSTORE_LOG_FORMAT", "json")
    assert logs.log_format() == "json"
    monkeypatch.setenv("BOOKSTORE_LOG_FORMAT", "")
    assert logs.log_format() == "text"
    monkeypatch.setenv("BOOKSTORE_LOG_FORMAT", "xml")
    with pytest.raises(SystemExit, match="BOOKSTORE_LOG_FORMAT must be one of text, json"):
        logs.log_format()


def queue_record(depth):
    return logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1,
                             "Task queue depth is %d", (depth,), None)


def test_waitress_queue_warnings_become_one_info_line_a_minute():
    now = [0.0]
    notice = logs.QueueNotice(threads=1, hint=": expected under load", clock=lambda: now[0])
    first = queue_record(1)
    assert notice.filter(first)
    assert first.levelno == logging.INFO and first.getMessage() == (
        "1 request waited for a free request thread (at most 1 at once; 1 request thread)"
        ": expected under load")
    passed = []
    for depth in (3, 7, 2):
        now[0] += 10
        passed.append(notice.filter(queue_record(depth)))
    assert passed == [False, False, False]
    now[0] = 60
    record = queue_record(1)
    assert notice.filter(record)
    assert record.getMessage() == ("4 requests waited for a free request thread in the last "
                                   "60 s (at most 7 at once; 1 request thread): expected "
                                   "under load")
