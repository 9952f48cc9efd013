"""The per-request time budget (client-side operation timeout, CSOT).

A request's steps hold an order under a lease of ``stuck_after_s`` (60 s): after
that the sweep takes the order over and finishes or undoes the step. A request
still alive past its lease could then apply an effect recovery already applied.
So every request runs under a budget of ``request_timeout_s`` (10 s, at most a
third of the lease, checked at start-up by ``Settings.check``):

- on a real MongoDB, ``pymongo.timeout(seconds)``: pymongo refuses to send any
  command once the deadline has passed (``ExecutionTimeout``, code 50, raised by
  the connection's ``apply_timeout`` before the command is written), bounds server
  selection, retries and socket reads by what is left, and sends the rest as
  ``maxTimeMS``;
- on the embedded engine, which ignores pymongo's context, ``check()`` raises the
  same error from the one wrapper every database call goes through.

The embedded deadline is kept on the Backend's clock (not ``time.monotonic``, which
pymongo uses), so tests that stall a request by moving a ``ManualClock`` past the
lease see its next call refused exactly as a real client would refuse it after a
real stall. ``request_budget`` sets both deadlines.
"""
import contextlib
import contextvars
from datetime import timedelta

import pymongo
from pymongo.errors import ExecutionTimeout

# (clock, deadline on that clock) of the request this thread is serving, or None
_DEADLINE = contextvars.ContextVar("bookstore_request_deadline", default=None)

TIMEOUT_CODE = 50  # MaxTimeMSExpired: what pymongo's CSOT raises


@contextlib.contextmanager
def request_budget(ctx, seconds=None):
    """Run the block under a time budget (default ``ctx.settings.request_timeout_s``)."""
    if seconds is None:
        seconds = ctx.settings.request_timeout_s
    token = _DEADLINE.set((ctx.clock, ctx.clock.now() + timedelta(seconds=seconds)))
    try:
        with pymongo.timeout(seconds):
            yield
    finally:
        _DEADLINE.reset(token)


@contextlib.contextmanager
def outside_budget():
    """Run the block as if no request were being served (tests: another process's
    calls made from inside a stalled request)."""
    token = _DEADLINE.set(None)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining():
    """Seconds left of the request's budget on its clock (None outside a request)."""
    budget = _DEADLINE.get()
    if budget is None:
        return None
    clock, deadline = budget
    return (deadline - clock.now()).total_seconds()


def check():
    """Raise what pymongo raises for a call started after the budget's deadline."""
    budget = _DEADLINE.get()
    if budget is None:
        return
    clock, deadline = budget
    now = clock.now()
    if now > deadline:
        late = (now - deadline).total_seconds()
        message = (f"operation would exceed time limit: the request's time budget ran "
                   f"out {late:.3f} s ago")
        raise ExecutionTimeout(message, TIMEOUT_CODE,
                               {"ok": 0, "errmsg": message, "code": TIMEOUT_CODE})
