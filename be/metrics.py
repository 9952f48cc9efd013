"""The process's Prometheus metrics (prometheus_client, default registry).

Only metric objects live here, so the model, the watcher and the HTTP edge can all
count into them without importing each other: the model counts order transitions
and fired timers, the sweep counts its runs and what they changed, the watcher its
events and heartbeat, the edge its requests (be.api.access) and the engine lock
wait. ``GET /metrics`` on the API server and ``--metrics-port`` on the watcher
(``python -m be.watcher``) expose them; the README's operator section says what to
watch. Names follow Prometheus conventions: ``_total`` counters, ``_seconds``
histograms (their ``_count`` is a counter of observations too).

Label values come from fixed sets (routes are url rules, never raw paths; actions,
timer kinds and sweep outcomes come from be.model.lifecycle), so the series stay
bounded whatever clients send.
"""
import time
import weakref

from prometheus_client import Counter, Gauge, Histogram

from be.model.lifecycle import ACTIONS, TIMERS



class Since:
    """A gauge of the seconds since ``mark()`` was last called, computed when scraped
    (monotonic time, so a wall-clock step does not make it jump); -1 before the
    first mark."""

    def __init__(self, name, documentation):
        self.at = None
        self.gauge = Gauge(name, documentation)
        self.gauge.set_function(self.age)

    def mark(self):
        self.at = time.monotonic()

    def age(self):
        return -1.0 if self.at is None else time.monotonic() - self.at


# Request latency: 1 ms (/ping, a cached balance) to 10 s (the request time budget).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# ---------------------------------------------------------------- HTTP (API server)

REQUESTS = Histogram(
    "bookstore_http_request_duration_seconds",
    "Time from the request reaching the app to its reply, by url rule (the route, e.g. "
    "/orders/<order_id>; <unmatched> for unknown paths), method and status. _count is "
    "the number of requests.",
    ["method", "route", "status"], buckets=LATENCY_BUCKETS)

REFUSED_BY_SERVER = Counter(
    "bookstore_http_refused_total",
    "Requests the HTTP server refused before the app saw them (malformed HTTP, "
    "headers over 256 KiB: 431), by status.",
    ["status"])

ENGINE_LOCK_WAIT = Histogram(
    "bookstore_engine_lock_wait_seconds",
    "Embedded engine only: how long a request waited for the engine lock (requests run "
    "one at a time there). Empty on MongoDB.",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))

QUEUE_DEPTH = Gauge(
    "bookstore_request_queue_depth",
    "Requests received and waiting for a free request thread (waitress's task queue), "
    "at scrape time.")

THREADS_BUSY = Gauge(
    "bookstore_request_threads_busy",
    "Request threads serving a request at scrape time.")

# The request dispatchers (waitress task queues) of this process's servers; the two
# gauges above add them up when scraped. Weak: a stopped server's goes away with it.
_DISPATCHERS = weakref.WeakSet()
QUEUE_DEPTH.set_function(lambda: sum(len(d.queue) for d in list(_DISPATCHERS)))
THREADS_BUSY.set_function(lambda: sum(d.active_count for d in list(_DISPATCHERS)))


def watch_dispatcher(dispatcher):
    """Count ``dispatcher`` (a waitress ThreadedTaskDispatcher) in the queue gauges."""
    _DISPATCHERS.add(dispatcher)

LOGIN_THROTTLED = Counter(
    "bookstore_login_throttled_total",
    "Password-carrying calls (login, payment, add_funds, password change, unregister) "
    "refused with 429 because their account or client address is closed for a while "
    "after repeated wrong passwords (be.model.throttle).")

LOGIN_LOCKOUTS = Counter(
    "bookstore_login_lockouts_total",
    "Wrong passwords that closed a throttle key, by what was closed: an account "
    "(guessing one user's password) or a client address (trying many accounts).",
    ["by"])

# ---------------------------------------------------------------- orders (model)

TRANSITIONS = Counter(
    "bookstore_order_transitions_total",
    "Order state changes by lifecycle action (place, pay, cancel, expire, ship, receive, "
    "auto_receive), whoever made them: a request, a timer or recovery.",
    ["action"])

TIMERS_FIRED = Counter(
    "bookstore_timers_fired_total",
    "Timers that changed an order when they fell due, by kind (pay: the order expired; "
    "receive: it was received automatically).",
    ["kind"])

TIMER_LATENESS = Histogram(
    "bookstore_timer_lateness_seconds",
    "How long after its deadline each timer fired, by kind. The TTL monitor runs about "
    "once a minute and the sweep every BOOKSTORE_SWEEP_INTERVAL_S, so tens of seconds "
    "are normal on MongoDB.",
    ["kind"], buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))

# Scrape-time views of the database (be.api.monitoring refreshes them per scrape).
TIMERS_OVERDUE = Gauge(
    "bookstore_timers_overdue",
    "Orders past a deadline whose timer has not fired yet, by kind (counted up to "
    "10000): the unfired timer backlog.",
    ["kind"])

OLDEST_OVERDUE = Gauge(
    "bookstore_timers_oldest_overdue_seconds",
    "How far past its deadline the most overdue unfired timer is, by kind (0: none).",
    ["kind"])

DRIVER_HEARTBEAT_AGE = Gauge(
    "bookstore_timeout_driver_heartbeat_age_seconds",
    "Age of the timeout driver's last heartbeat as stored in the database (the watcher's "
    "on MongoDB, the in-process sweeper's on the embedded engine); -1: none yet.")

# ---------------------------------------------------------------- sweep and watcher

SWEEPS = Histogram(
    "bookstore_sweep_duration_seconds",
    "Duration of each sweep for overdue and half-done orders; _count is the number of "
    "sweeps run.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60))

SWEEP_CHANGES = Counter(
    "bookstore_sweep_changes_total",
    "What sweeps did, by outcome: recovered (a half-done step finished), expired, "
    "received, errors (a handler failed; the next sweep retries).",
    ["outcome"])

LAST_SWEEP = Since(
    "bookstore_sweep_last_run_age_seconds",
    "Seconds since the last sweep of this process ended (-1: none yet).")

WATCHER_EVENTS = Counter(
    "bookstore_watcher_events_total",
    "Change-stream events the watcher handled, by outcome: fired (the timer changed its "
    "order), noop (already paid, received or cancelled), ignored (not a timer), skipped "
    "(the handler failed every retry; the sweep finishes the order).",
    ["outcome"])

WATCHER_RESTARTS = Counter(
    "bookstore_watcher_restarts_total",
    "Times the watcher started its change stream afresh (resume token lost or refused, "
    "stream invalidated) or reopened it after an error.",
    ["reason"])

WATCHER_LAST_EVENT = Since(
    "bookstore_watcher_last_event_age_seconds",
    "Seconds since the watcher last handled a change-stream event (-1: none yet). Long "
    "quiet spells are normal in a quiet shop; compare with bookstore_timers_overdue.")

WATCHER_HEARTBEAT = Since(
    "bookstore_watcher_heartbeat_age_seconds",
    "Seconds since the watcher's last heartbeat (-1: none yet). It beats at most every "
    "few seconds while following its stream and after each sweep.")


def _zeroes():
    """Every labelled series from the fixed label sets, at 0 from the start: a rate
    or an alert over a series that does not exist yet sees nothing."""
    for action in ACTIONS:
        TRANSITIONS.labels(action)
    for kind in TIMERS:
        TIMERS_FIRED.labels(kind)
        TIMER_LATENESS.labels(kind)
        TIMERS_OVERDUE.labels(kind)
        OLDEST_OVERDUE.labels(kind)
    for outcome in ("recovered", *(t.counted for t in TIMERS.values()), "errors"):
        SWEEP_CHANGES.labels(outcome)
    for outcome in ("fired", "noop", "ignored", "skipped"):
        WATCHER_EVENTS.labels(outcome)
    for reason in ("history_lost", "token_refused", "invalidated", "error"):
        WATCHER_RESTARTS.labels(reason)
    for by in ("account", "address"):
        LOGIN_LOCKOUTS.labels(by)
    for status in ("400", "413", "431", "500"):  # what waitress answers itself
        REFUSED_BY_SERVER.labels(status)


_zeroes()
