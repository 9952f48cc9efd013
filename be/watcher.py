"""Timeouts: the sweep, the change-stream watcher, and the in-process sweeper.

Every open deadline has a document in ``pending`` (``_id`` ``"pay:<order_id>"`` or
``"receive:<order_id>"``, ``due_at`` under a TTL index). On a real MongoDB the TTL
monitor deletes each one when it falls due; the watcher (``python -m be.watcher``,
its own process) follows the deletions on a change stream and fires the timer the
``_id`` names (``orders.fire``; the lifecycle table says which action each kind of
timer takes: expire, auto_receive). Each is state- and deadline-guarded, so a
deletion made by payment, receipt or cancel, an
event seen twice, or two watchers at once change nothing more than one would.

The resume token is stored in ``watcher_state`` after each event, and the stream
resumes from it after a restart. An event whose handler still fails after
``retries`` attempts (a poison event) is logged, counted (``Watcher.skipped``) and
passed: the sweep covers the same orders, and stopping there would replay it
forever. If the token has fallen out of the oplog (codes 280, 286) or the server
rejects it (InvalidResumeToken, 260), the watcher starts afresh and sweeps.

Invalidation: dropping or renaming ``pending`` (or dropping its database) ends the
stream with ``drop``/``rename``/``dropDatabase`` then ``invalidate``; the pipeline
lets these through. pymongo then marks the stream dead (``alive`` False: try_next
returns None at once, with no round trip) and its ``resume_token`` becomes the
invalidate token, which no later open accepts. So the watcher never saves a token
from a dead stream: it recreates the pending indexes (the TTL index is what makes
deadlines fall due), clears its token, reopens from now and sweeps.

The TTL monitor runs only about once a minute and a watcher can be down, so
``sweep`` finds overdue orders directly through the orders indexes: at start-up,
after a fresh start, and every ``BOOKSTORE_SWEEP_INTERVAL_S``. It also finishes
orders whose ``busy`` step was left by a dead request (``orders.recover``).
Correctness never waits for either: payment itself refuses an overdue order.

The embedded engine (mongomock) has no TTL monitor and no change streams, so there
``python app.py`` runs a ``Sweeper`` thread and the sweep is the only driver.

Whichever drives the timeouts writes a heartbeat (be.heartbeat) after each sweep and,
the watcher, every few seconds while it follows its stream; ``GET /ready`` of the API
servers reads it. Sweeps, events and restarts are counted in be.metrics;
``--metrics-port`` serves the watcher's own metrics.
"""
import argparse
import logging
import signal
import sys
import threading
import time
from datetime import timedelta

from pymongo.errors import OperationFailure, PyMongoError

from be import heartbeat, metrics
from be.db import INDEXES, ensure_indexes
from be.model import orders
from be.model.lifecycle import ACTIONS, TIMERS

log = logging.getLogger("bookstore.watcher")

STATE_COLLECTION = "watcher_state"
# ChangeStreamFatalError, ChangeStreamHistoryLost: the resume point is gone.
HISTORY_LOST = (280, 286)
# InvalidResumeToken: e.g. an invalidate token saved by an older version
INVALID_RESUME_TOKEN = (260,)
START_AFRESH = HISTORY_LOST + INVALID_RESUME_TOKEN
NOT_A_REPLICA_SET = (40573,)
# Events that end the stream: the collection or its database went away.
ENDING = ("invalidate", "drop", "rename", "dropDatabase")
PIPELINE = [{"$match": {"operationType": {"$in": ["delete", *ENDING]}}}]

EMBEDDED_MESSAGE = (
    "be.watcher needs a real MongoDB replica set (change streams and the TTL monitor): "
    "set MONGODB_URI, e.g. MONGODB_URI='mongodb://localhost:27017/?replicaSet=rs0'. "
    "With the embedded engine (no MONGODB_URI) `python app.py` already runs the "
    "timeout sweep in-process; no watcher is needed.")


# ---------------------------------------------------------------- sweep

def _decision_db(ctx):
    """The database the sweep decides from: majority-committed reads on a real
    MongoDB (a write a failover could roll back is not acted on), ``ctx.db`` itself
    on the embedded engine or for a context without an engine."""
    engine = getattr(ctx, "engine", None)
    return engine.majority_reads(ctx.db) if engine is not None else ctx.db


def _overdue(ctx, state, deadline_field, now, limit):
    # Served by the orders index (state, <deadline_field>); busy orders are left to recovery.
    return [d["_id"] for d in _decision_db(ctx).orders.find(
        {"state": state, deadline_field: {"$lte": now}, "busy": None}, {"_id": 1},
        sort=[(deadline_field, 1)], limit=limit)]


def _stuck(ctx, cutoff, limit):
    # Served by the sparse orders index on busy.since.
    return list(_decision_db(ctx).orders.find({"busy.since": {"$lt": cutoff}},
                                   sort=[("busy.since", 1)], limit=limit))


def _batches(fetch, act, batch_size, max_batches, counts, name):
    """Fetch up to ``batch_size`` items and act on each, again while batches come back
    full and something changed; at most ``max_batches`` rounds (the rest waits for
    the next sweep). An item whose handler raises is logged and counted, not retried."""
    for _ in range(max_batches):
        items = fetch(batch_size)
        progress = False
        for item in items:
            try:
                if act(item):
                    counts[name] += 1
                    progress = True
            except Exception:
                counts["errors"] += 1
                oid = item["_id"] if isinstance(item, dict) else item
                log.exception("sweep: %s of order %s failed; the next sweep retries it", name, oid)
        if len(items) < batch_size or not progress:
            return


def sweep(ctx, batch_size=100, max_batches=20):
    """Finish stuck steps, cancel overdue unpaid orders, receive overdue shipped ones.
    Every query is index-backed and bounded. Returns counts of what changed (also
    counted in be.metrics, with the sweep's duration)."""
    started = time.perf_counter()
    counts = {"recovered": 0, **{t.counted: 0 for t in TIMERS.values()}, "errors": 0}
    now = ctx.clock.now()
    cutoff = now - timedelta(seconds=ctx.settings.stuck_after_s)
    _batches(lambda n: _stuck(ctx, cutoff, n), lambda o: orders.recover(ctx, o) is not None,
             batch_size, max_batches, counts, "recovered")
    now = ctx.clock.now()
    for timer in TIMERS.values():
        for state in ACTIONS[timer.fires].leaves:
            _batches(lambda n: _overdue(ctx, state, timer.deadline, now, n),
                     lambda oid: orders.fire(ctx, timer.kind, oid),
                     batch_size, max_batches, counts, timer.counted)
    metrics.SWEEPS.observe(time.perf_counter() - started)
    for outcome, n in counts.items():
        metrics.SWEEP_CHANGES.labels(outcome).inc(n)
    metrics.LAST_SWEEP.mark()
    return counts


def _log_sweep(counts):
    if any(counts.values()):
        log.info("sweep: %d recovered, %d expired, %d received, %d errors",
                 counts["recovered"], counts["expired"], counts["received"], counts["errors"])


# ---------------------------------------------------------------- change stream

class HandlerFailed(Exception):
    """An event's handler kept failing (a poison event). The watcher logs and counts
    it and moves past it: the sweep finishes the same order."""


def parse_pending_id(pending_id):
    """``"pay:<order_id>"`` -> ("pay", order_id); (None, None) if not one of ours."""
    if not isinstance(pending_id, str):
        return None, None
    kind, sep, order_id = pending_id.partition(":")
    if not sep or not order_id or kind not in TIMERS:
        return None, None
    return kind, order_id


def default_stream_opener(ctx, max_await_ms=1000):
    """Open a pymongo change stream on ``pending`` that sees only deletions."""
    def open_stream(resume_after):
        return ctx.db.pending.watch(PIPELINE, resume_after=resume_after,
                                    max_await_time_ms=max_await_ms)
    return open_stream


class Watcher:
    """Follows the pending collection's deletions and runs their handlers.

    ``open_stream(resume_after)`` returns an object with pymongo ChangeStream's
    surface (``try_next()``, ``resume_token``, ``close()``); tests pass scripted ones.
    """

    def __init__(self, ctx, open_stream=None, name="pending", retries=3, retry_delay_s=1.0,
                 reconnect_delay_s=5.0, batch_size=100):
        self.ctx = ctx
        self.open_stream = open_stream or default_stream_opener(ctx)
        self.name = name
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.reconnect_delay_s = reconnect_delay_s
        self.batch_size = batch_size
        self.stop_event = threading.Event()
        self._sweep_due = True  # at start-up, once the stream is open
        self._next_sweep = None
        self._saved = None
        self._last_beat = None      # clock time of this watcher's last heartbeat
        self._last_event_at = None  # clock time of the last event handled
        # events whose handler failed every retry and were passed (tests, metrics)
        self.skipped = 0

    # -- resume token

    @property
    def _state(self):
        return self.ctx.db[STATE_COLLECTION]

    def load_token(self):
        doc = self._state.find_one({"_id": self.name})
        self._saved = doc.get("token") if doc else None
        return self._saved

    def save_token(self, token):
        if token is None or token == self._saved:
            return
        self._state.update_one({"_id": self.name},
                               {"$set": {"token": token, "updated_at": self.ctx.clock.now()}},
                               upsert=True)
        self._saved = token

    def clear_token(self):
        self._state.update_one({"_id": self.name},
                               {"$set": {"token": None, "updated_at": self.ctx.clock.now()}},
                               upsert=True)
        self._saved = None

    # -- control

    def stop(self):
        self.stop_event.set()

    @property
    def stopped(self):
        return self.stop_event.is_set()

    def sweep(self):
        counts = sweep(self.ctx, batch_size=self.batch_size)
        _log_sweep(counts)
        self._sweep_due = False
        self._next_sweep = self.ctx.clock.now() + timedelta(
            seconds=self.ctx.settings.sweep_interval_s)
        self.beat(last_sweep_at=self.ctx.clock.now(), last_sweep=counts)
        return counts

    def beat(self, **fields):
        """Write the heartbeat (be.heartbeat) that GET /ready of the API servers reads:
        after each sweep (``fields`` given) and otherwise at most every
        ``heartbeat.BEAT_EVERY_S`` seconds of clock time, busy or idle."""
        now = self.ctx.clock.now()
        if (not fields and self._last_beat is not None
                and (now - self._last_beat).total_seconds() < heartbeat.BEAT_EVERY_S):
            return
        self._last_beat = heartbeat.beat(self.ctx, "watcher",
                                         last_event_at=self._last_event_at, **fields)
        metrics.WATCHER_HEARTBEAT.mark()

    # -- events

    def handle(self, change):
        """Run the handler an event names. Retries a failing handler, then raises
        HandlerFailed. Returns the handler's result (None for an event not ours)."""
        if change.get("operationType") != "delete":
            return None
        self._last_event_at = self.ctx.clock.now()
        metrics.WATCHER_LAST_EVENT.mark()
        pending_id = (change.get("documentKey") or {}).get("_id")
        kind, order_id = parse_pending_id(pending_id)
        if kind is None:
            log.warning("ignoring deletion of pending %r: not a known timer id", pending_id)
            metrics.WATCHER_EVENTS.labels("ignored").inc()
            return None
        for attempt in range(1, self.retries + 1):
            try:
                fired = orders.fire(self.ctx, kind, order_id)
                metrics.WATCHER_EVENTS.labels("fired" if fired else "noop").inc()
                return fired
            except Exception:
                log.exception("%s timer of order %s failed (attempt %d of %d)",
                              kind, order_id, attempt, self.retries)
                if attempt < self.retries:
                    self.stop_event.wait(self.retry_delay_s)
        raise HandlerFailed(f"{pending_id}: handler failed {self.retries} times")

    def start_afresh(self, reason):
        """Forget the resume point; the next open starts from now and sweeps first
        for what fell between. Recreates the pending indexes, which a drop of the
        collection or database took away with it (no TTL index: no deletions).
        ``reason`` labels bookstore_watcher_restarts_total."""
        metrics.WATCHER_RESTARTS.labels(reason).inc()
        ensure_indexes(self.ctx.db, {"pending": INDEXES["pending"]})
        self.clear_token()
        self._sweep_due = True

    def run(self):
        """Follow the stream until stopped. Raises the OperationFailures it cannot
        recover from (not a replica set, not authorized...)."""
        while not self.stopped:
            token = self.load_token()
            try:
                self._follow(token)
            except OperationFailure as exc:
                if exc.code not in START_AFRESH:
                    raise
                log.warning("resume token %s (code %s): starting afresh and sweeping "
                            "for what was missed",
                            "rejected" if exc.code in INVALID_RESUME_TOKEN
                            else "no longer in the oplog", exc.code)
                self.start_afresh("token_refused" if exc.code in INVALID_RESUME_TOKEN
                                  else "history_lost")
            except PyMongoError as exc:
                log.warning("change stream interrupted (%s); reopening in %ss",
                            exc, self.reconnect_delay_s)
                metrics.WATCHER_RESTARTS.labels("error").inc()
                self.stop_event.wait(self.reconnect_delay_s)

    def _follow(self, token):
        stream = self.open_stream(token)
        try:
            log.info("watching %s deletions%s", self.ctx.db.pending.name,
                     " from the saved resume token" if token else " from now")
            if self._sweep_due:
                self.sweep()  # after opening, so nothing falls between the two
            while not self.stopped:
                change = stream.try_next()
                if change is None:
                    if not getattr(stream, "alive", True):
                        # pymongo closed it (an invalidate, possibly filtered out):
                        # every further try_next is None without a round trip, and
                        # its resume_token is the invalidate token. Do not save it.
                        log.warning("change stream closed by the server: recreating the "
                                    "pending indexes and starting afresh")
                        self.start_afresh("invalidated")
                        return
                    self._idle(stream)
                    continue
                op = change.get("operationType")
                if op in ENDING:
                    log.warning("change stream ended by %r on %s: recreating the pending "
                                "indexes and starting afresh", op, change.get("ns"))
                    self.start_afresh("invalidated")
                    return
                try:
                    self.handle(change)
                except HandlerFailed as exc:
                    self.skipped += 1
                    metrics.WATCHER_EVENTS.labels("skipped").inc()
                    log.error("%s; passing it (%d so far): the sweep finishes the order",
                              exc, self.skipped)
                self.save_token(stream.resume_token or change.get("_id"))
                self.beat()
        finally:
            stream.close()

    def _idle(self, stream):
        if self._next_sweep is None or self.ctx.clock.now() >= self._next_sweep:
            self.sweep()
            # keep the saved position fresh through quiet spells (post-batch token;
            # the stream was alive when it returned, so this is not an invalidate)
            self.save_token(stream.resume_token)
        else:
            self.beat()


# ---------------------------------------------------------------- embedded sweeper

class Sweeper:
    """A daemon thread that sweeps at start and then every ``interval_s`` seconds:
    the only timeout driver for the embedded engine. After each sweep it writes the
    heartbeat (be.heartbeat) that GET /ready reads. ``stop()`` ends it cleanly."""

    def __init__(self, ctx, interval_s=None, on_sweep=None):
        self.ctx = ctx
        self.interval_s = ctx.settings.sweep_interval_s if interval_s is None else interval_s
        self.on_sweep = on_sweep
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="timeout-sweeper", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self, timeout=10):
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def run_once(self):
        """One sweep, its log line and heartbeat; returns its counts."""
        counts = sweep(self.ctx)
        _log_sweep(counts)
        heartbeat.beat(self.ctx, "sweeper", last_sweep_at=self.ctx.clock.now(),
                       last_sweep=counts)
        if self.on_sweep:
            self.on_sweep(counts)
        return counts

    def _run(self):
        while not self.stop_event.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("sweep failed; retrying in %ss", self.interval_s)
            self.stop_event.wait(self.interval_s)


# ---------------------------------------------------------------- entry point

def main(argv=None, backend_factory=None):
    parser = argparse.ArgumentParser(
        prog="python -m be.watcher",
        description="Timeout watcher: follows TTL deletions of pending deadlines on a "
                    "MongoDB replica set and sweeps for overdue orders.")
    parser.add_argument("--sweep-once", action="store_true",
                        help="run one sweep and exit (no change stream)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve this process's Prometheus metrics on this port "
                             "(GET /metrics; default: not served)")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 for "
                             "a Prometheus on another host)")
    args = parser.parse_args(argv)
    from be import logs
    logs.configure()

    from be.config import Settings
    settings = Settings.from_env()
    if settings.embedded:
        print(EMBEDDED_MESSAGE, file=sys.stderr)
        return 2

    from be.backend import Backend
    from be.errors import StartupError
    try:
        backend = (backend_factory or Backend)(settings)
    except StartupError as exc:
        print(f"be.watcher: {exc}", file=sys.stderr, flush=True)
        return 2
    if args.metrics_port is not None:
        port = serve_metrics(args.metrics_host, args.metrics_port)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, port)
    if args.sweep_once:
        counts = sweep(backend)
        heartbeat.beat(backend, "sweep-once", last_sweep_at=backend.clock.now(),
                       last_sweep=counts)
        log.info("sweep: %s", counts)
        return 0

    watcher = Watcher(backend)

    def on_signal(signum, frame):
        log.info("signal %d: stopping after the current event", signum)
        watcher.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("watcher on %s; sweep every %ss", backend.engine.describe(),
             settings.sweep_interval_s)
    try:
        watcher.run()
    except OperationFailure as exc:
        if exc.code in NOT_A_REPLICA_SET:
            print("be.watcher: MongoDB at MONGODB_URI is not a replica set, so it has no "
                  "change streams. Start mongod with --replSet rs0 and run rs.initiate().",
                  file=sys.stderr)
            return 2
        log.error("change stream failed: %s", exc)
        return 1
    log.info("watcher stopped")
    return 0


def serve_metrics(host, port):
    """prometheus_client's HTTP server for this process's metrics, in a daemon
    thread; returns the port it listens on (``port`` 0: a free one)."""
    from prometheus_client import start_http_server
    server, _thread = start_http_server(port, addr=host)
    return server.server_port


if __name__ == "__main__":
    sys.exit(main())
