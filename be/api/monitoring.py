"""``GET /metrics``: this process's metrics (be.metrics) in the Prometheus text format.

Most figures are counted as things happen. Three are views of the database, read
on each scrape (index-backed, bounded queries):
- ``bookstore_timers_overdue{kind}``: orders past their deadline whose timer has
  not fired (still unpaid past the payment window, still shipped past the receive
  window), counted up to ``OVERDUE_COUNT_CAP``;
- ``bookstore_timers_oldest_overdue_seconds{kind}``: how late the oldest of them is;
- ``bookstore_timeout_driver_heartbeat_age_seconds``: the age of the watcher's or
  sweeper's last heartbeat (be.heartbeat).
On MongoDB every API server reports the same three (aggregate them with max()).
"""
from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from be import heartbeat, metrics
from be.api.common import backend
from be.model.lifecycle import ACTIONS, TIMERS

bp = Blueprint("monitoring", __name__)

OVERDUE_COUNT_CAP = 10_000


def refresh(ctx):
    """Set the database-derived gauges from ``ctx``'s database and clock."""
    now = ctx.clock.now()
    for kind, timer in TIMERS.items():
        count, oldest = 0, None
        for state in ACTIONS[timer.fires].leaves:
            # the sweep's own index (state, <deadline>); busy orders included: a
            # timer that cannot fire because its order is stuck is late all the same
            query = {"state": state, timer.deadline: {"$lte": now}}
            count += ctx.db.orders.count_documents(query, limit=OVERDUE_COUNT_CAP)
            first = ctx.db.orders.find_one(query, {timer.deadline: 1},
                                           sort=[(timer.deadline, 1)])
            if first is not None and (oldest is None or first[timer.deadline] < oldest):
                oldest = first[timer.deadline]
        metrics.TIMERS_OVERDUE.labels(kind).set(min(count, OVERDUE_COUNT_CAP))
        metrics.OLDEST_OVERDUE.labels(kind).set(
            0 if oldest is None else (now - oldest).total_seconds())
    doc = heartbeat.read(ctx)
    metrics.DRIVER_HEARTBEAT_AGE.set(-1 if doc is None else heartbeat.age_s(ctx, doc))


@bp.get("/metrics")
def prometheus():
    refresh(backend())
    return Response(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
