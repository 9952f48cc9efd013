"""Logging for the server and the watcher: plain lines, or one JSON object per line
when ``BOOKSTORE_LOG_FORMAT=json`` (for a log shipper), and waitress's queue warnings
turned into a periodic notice an operator can read."""
import json
import logging
import os
import time
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """time (ISO-8601 UTC, ms), level, logger and message, plus the record's
    ``fields`` dict (the access log puts method, route, status, duration_ms and
    request_id there) and the traceback, if any, as ``exception``."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
                            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format(value=None):
    """``value`` or BOOKSTORE_LOG_FORMAT, checked: "text" (default) or "json"."""
    value = (value if value is not None else os.environ.get("BOOKSTORE_LOG_FORMAT", "")) or "text"
    if value not in FORMATS:
        raise SystemExit(f"BOOKSTORE_LOG_FORMAT must be one of {', '.join(FORMATS)}, "
                         f"got {value!r}")
    return value


def configure(fmt=None, stream=None):
    """INFO and above to stderr (or ``stream``) in the chosen format, unless the root
    logger already has handlers (logging.basicConfig's rule: a program that set up
    logging itself keeps its set-up)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format(fmt) == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


class QueueNotice(logging.Filter):
    """For waitress's ``waitress.queue`` logger. waitress warns "Task queue depth is
    N" whenever a request arrives while every request thread is busy. With more
    clients than threads that is most requests (on the embedded engine, one thread,
    any two clients at once), each a WARNING that reads like a fault. This lets one
    INFO line through per ``seconds`` (60), saying how many requests waited and the
    most that waited at once since the last one; the live figure is the metric
    bookstore_request_queue_depth."""

    def __init__(self, threads, seconds=60, hint="", clock=time.monotonic):
        super().__init__()
        self.threads, self.seconds, self.hint, self.clock = threads, seconds, hint, clock
        self.last = None
        self.waited = self.peak = 0

    def filter(self, record):
        depth = record.args[0] if isinstance(record.args, tuple) and record.args else 1
        self.waited += 1
        self.peak = max(self.peak, depth if isinstance(depth, int) else 1)
        now = self.clock()
        if self.last is not None and now - self.last < self.seconds:
            return False
        since = "" if self.last is None else f" in the last {now - self.last:.0f} s"
        self.last = now
        record.msg = ("%d request%s waited for a free request thread%s (at most %d at once; "
                      "%d request thread%s)%s")
        record.args = (self.waited, "" if self.waited == 1 else "s", since, self.peak,
                       self.threads, "" if self.threads == 1 else "s", self.hint)
        record.levelno, record.levelname = logging.INFO, "INFO"
        self.waited = self.peak = 0
        return True
