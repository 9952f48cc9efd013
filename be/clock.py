"""Time source. Everything that compares against deadlines asks a Clock, so tests
move time forward instead of sleeping."""
import threading
from datetime import datetime, timedelta, timezone


def _utc_ms(dt):
    # MongoDB keeps milliseconds; truncate so stored and computed times agree.
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000, tzinfo=None)


class Clock:
    """Wall clock, naive UTC datetimes as pymongo returns them."""

    def now(self):
        return _utc_ms(datetime.now(timezone.utc))


class ManualClock(Clock):
    """A clock that starts at the wall time and moves only when told to."""

    def __init__(self, start=None):
        self._now = start or Clock().now()
        self._lock = threading.Lock()

    def now(self):
        with self._lock:
            return self._now

    def advance(self, seconds):
        with self._lock:
            self._now = _utc_ms(self._now + timedelta(seconds=seconds))
            return self._now


def iso(dt):
    """ISO-8601 UTC for replies; None stays None."""
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
