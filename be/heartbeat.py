"""The timeout driver's heartbeat: one document, ``watcher_state`` ``_id: "heartbeat"``.

Payment and receive timeouts fire only while a driver runs: the watcher process on
MongoDB (``python -m be.watcher``), the in-process sweeper on the embedded engine.
Each writes this document, on the Backend's clock, after every sweep and (the
watcher) at most every ``BEAT_EVERY_S`` seconds while it follows its change stream.
``GET /ready`` of any API server reads it: a driver whose last beat is older than
``Settings.driver_max_age`` (three sweep intervals plus 10 s: 13 s embedded, 100 s
on MongoDB by default) is taken as stopped, and the server answers 503. It lives in
the database because on MongoDB the watcher is another process, often on another
host; several watchers simply overwrite each other's beat.
"""
import os
import socket

COLLECTION = "watcher_state"
ID = "heartbeat"
# The watcher's beat while idle or busy with events: a write every 5 s at most.
BEAT_EVERY_S = 5


def beat(ctx, driver, **fields):
    """Record that ``driver`` ("watcher" or "sweeper") is alive now, with ``fields``
    (``last_sweep_at`` and ``last_sweep`` counts, ``last_event_at``). Returns now."""
    now = ctx.clock.now()
    ctx.db[COLLECTION].update_one(
        {"_id": ID},
        {"$set": {"driver": driver, "at": now, "host": socket.gethostname(),
                  "pid": os.getpid(), **fields}},
        upsert=True)
    return now


def read(ctx):
    """The last beat's document, or None if no driver has beaten yet."""
    return ctx.db[COLLECTION].find_one({"_id": ID})


def age_s(ctx, doc):
    """Seconds since the beat in ``doc`` on ``ctx``'s clock; a beat from a host whose
    clock runs ahead counts as fresh (0), never as negative."""
    return max(0.0, (ctx.clock.now() - doc["at"]).total_seconds())
