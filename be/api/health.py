"""``GET /health``: the process is up. ``GET /ready``: it can do its work.

Ready means both of:
- the engine answers a query within ``ready_timeout_s`` (2 s, BOOKSTORE_READY_TIMEOUT_S):
  on MongoDB a ``ping`` and the heartbeat read under that client-side timeout; on
  the embedded engine the engine lock taken within it (a request that holds it
  longer has stalled every other request) and the heartbeat read;
- the timeout driver ran recently: its heartbeat (be.heartbeat, written by the
  in-process sweeper on the embedded engine, by ``python -m be.watcher`` on MongoDB)
  is at most ``Settings.driver_max_age`` seconds old (13 s embedded, 100 s MongoDB).
  Without it unpaid orders never expire and shipped ones are never received.

Both replies are JSON with the details; /ready answers 503 and says why when a
check fails. These views take no engine lock for the request (be.api registers
them after ``_one_request_at_a_time``): /ready takes it itself, with a timeout.
On the embedded engine a request that never ends holds the lock: /ready, on
another request thread, answers 503 after its timeout (when every request thread
is taken, it is not answered at all: the probe's own timeout is then the answer).
"""
import time

import pymongo
from flask import Blueprint, current_app, jsonify
from pymongo.errors import PyMongoError

from be import heartbeat
from be.api.common import backend
from be.clock import iso

bp = Blueprint("health", __name__)


def _engine_kind(ctx):
    return "embedded" if ctx.engine.embedded is not None else "mongodb"


@bp.get("/health")
def health():
    """Answered by the process alone: no database call."""
    ctx = backend()
    started = current_app.config["BOOKSTORE_STARTED"]
    return jsonify(message="ok", status="up", engine=_engine_kind(ctx),
                   uptime_s=round(time.monotonic() - started, 3))


def check_engine(ctx):
    """(engine report, heartbeat document or None): the heartbeat read is the query
    that must be answered in time."""
    limit = ctx.settings.ready_timeout_s
    report = {"ok": False, "kind": _engine_kind(ctx), "timeout_s": limit,
              "answered_ms": None, "error": None}
    started = time.perf_counter()
    doc = None
    if ctx.engine.embedded is not None:
        lock = ctx.engine.embedded.lock
        if not lock.acquire(timeout=limit):
            report["error"] = (f"the embedded engine did not answer within {limit:g} s: a "
                               f"request has held it longer")
            return report, None
        try:
            doc = heartbeat.read(ctx)
        finally:
            lock.release()
    else:
        try:
            with pymongo.timeout(limit):
                ctx.db.command("ping")
                doc = heartbeat.read(ctx)
        except PyMongoError as exc:
            report["error"] = f"the database did not answer within {limit:g} s: {exc}"
            return report, None
    report["ok"] = True
    report["answered_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return report, doc


def check_driver(ctx, doc):
    """The timeout driver's report from its heartbeat document ``doc``."""
    max_age = ctx.settings.driver_max_age
    report = {"ok": False, "driver": None, "host": None, "pid": None, "last_beat": None,
              "age_s": None, "max_age_s": max_age, "last_sweep_at": None,
              "last_sweep": None, "last_event_at": None, "error": None}
    if doc is None:
        report["error"] = ("no timeout driver has run yet: start the watcher "
                           "(python -m be.watcher)" if ctx.engine.embedded is None else
                           "no timeout sweep has run yet in this process")
        return report
    age = heartbeat.age_s(ctx, doc)
    report.update(driver=doc.get("driver"), host=doc.get("host"), pid=doc.get("pid"),
                  last_beat=iso(doc["at"]), age_s=round(age, 3),
                  last_sweep_at=iso(doc.get("last_sweep_at")),
                  last_sweep=doc.get("last_sweep"), last_event_at=iso(doc.get("last_event_at")))
    if age > max_age:
        report["error"] = (f"the timeout driver ({doc.get('driver')} on {doc.get('host')}) "
                           f"last ran {age:.0f} s ago, more than {max_age} s: unpaid orders "
                           f"are not expiring and shipped ones not being received")
        return report
    report["ok"] = True
    return report


def readiness(ctx):
    """(ready, reply body) for ``ctx``."""
    engine, doc = check_engine(ctx)
    if engine["ok"]:
        driver = check_driver(ctx, doc)
    else:
        driver = dict(check_driver(ctx, None), error="not checked: the engine did not answer")
    ready = engine["ok"] and driver["ok"]
    problems = [r["error"] for r in (engine, driver) if r["error"]]
    message = "ok" if ready else "not ready: " + "; ".join(problems)
    return ready, {"message": message, "ready": ready, "engine": engine, "timeouts": driver}


@bp.get("/ready")
def ready():
    ok, body = readiness(backend())
    return jsonify(body), 200 if ok else 503
