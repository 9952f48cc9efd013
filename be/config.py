"""Settings read once from the environment, so every process agrees on them."""
import os
from dataclasses import dataclass


def _int_env(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}")


def _float_env(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number of seconds, got {raw!r}")
    if not value > 0 or value == float("inf"):
        raise SystemExit(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _list_env(name):
    """A comma-separated list; blanks around items and empty items dropped."""
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


# Where ``python app.py`` keeps the embedded engine's data unless told otherwise
# (BOOKSTORE_DATA_DIR, --data-dir): relative to the working directory.
DEFAULT_DATA_DIR = "data"
MEMORY = ":memory:"  # no folder: the data lives as long as the process


@dataclass
class Settings:
    mongodb_uri: str = ""
    db_name: str = "bookstore"
    # The embedded engine's data folder (no MONGODB_URI): journal and snapshots,
    # be.embedded.datadir. MEMORY keeps everything in the process only. A Settings
    # made directly is in memory; from_env (the server) defaults to DEFAULT_DATA_DIR.
    data_dir: str = MEMORY
    # A snapshot is written once the journal outgrows this (or a quarter of the last
    # snapshot, whichever is larger), bounding the folder and the replay at start-up.
    journal_limit_mb: int = 64
    token_lifetime_s: int = 3600
    pay_timeout_s: int = 900
    receive_timeout_s: int = 604800
    sweep_interval_s: int = 1
    # Requests that die half-way leave their order marked; the sweep finishes
    # them once they are this old (long enough that no live request owns them).
    stuck_after_s: int = 60
    # Client-side time budget of one request (CSOT, pymongo ``timeout``): every
    # database call a request makes after this many seconds is refused by the
    # client. It must stay well inside the lease above, so that a request stalled
    # past it cannot write after recovery took its order over (see ``check``).
    request_timeout_s: float = 10.0
    # How long start-up waits for MongoDB to answer before giving up with one line.
    connect_timeout_s: float = 5.0
    # Reverse proxies in front of the server that append to X-Forwarded-For: the
    # client address (login throttling, logs) is taken that many hops back.
    proxy_hops: int = 0
    # werkzeug hash method; tests lower the scrypt cost to stay fast.
    password_method: str = "scrypt:32768:8:1"
    max_body_bytes: int = 64 * 1024 * 1024
    # GET /ready: the engine must answer within this many seconds...
    ready_timeout_s: float = 2.0
    # ...and the timeout driver (watcher or in-process sweeper) must have beaten
    # within this many; 0: three sweep intervals plus 10 s (see driver_max_age).
    driver_max_age_s: int = 0
    # Browser origins allowed to call the API (CORS), e.g. ("https://shop.example",);
    # ("*",) allows any. Empty: no CORS headers, browsers allow same-origin calls only.
    cors_origins: tuple = ()

    # A request may take up to its budget, and a retryable write sent just before
    # the deadline may still be applied by the server a little later: a third of the
    # lease leaves two thirds as margin (10 s of 60 s by default).
    LEASE_FRACTION = 3

    def check(self):
        """Refuse settings under which a live request could outlive its lease.
        Raises SystemExit with a message naming both variables."""
        if not self.request_timeout_s > 0:
            raise SystemExit(f"BOOKSTORE_REQUEST_TIMEOUT_S must be positive, "
                             f"got {self.request_timeout_s}")
        if self.request_timeout_s * self.LEASE_FRACTION > self.stuck_after_s:
            raise SystemExit(
                f"BOOKSTORE_REQUEST_TIMEOUT_S={self.request_timeout_s:g} is more than a "
                f"third of BOOKSTORE_STUCK_AFTER_S={self.stuck_after_s}: a request could "
                f"still be writing when recovery takes its order over. Lower the request "
                f"timeout to at most {self.stuck_after_s / self.LEASE_FRACTION:g} s or "
                f"raise the lease to at least "
                f"{self.request_timeout_s * self.LEASE_FRACTION:g} s.")
        return self

    @property
    def embedded(self):
        return not self.mongodb_uri

    @property
    def driver_max_age(self):
        """Seconds after which the timeout driver's last heartbeat (be.heartbeat) counts
        as stale: a driver beats after every sweep, so three missed sweeps plus 10 s of
        slack for a slow one (13 s embedded, 100 s on MongoDB by default)."""
        return self.driver_max_age_s or 3 * self.sweep_interval_s + 10

    @property
    def persistent(self):
        """True when the embedded engine keeps its data in a folder."""
        return self.embedded and self.data_dir != MEMORY

    @classmethod
    def from_env(cls, **overrides):
        uri = os.environ.get("MONGODB_URI", "")
        values = dict(
            mongodb_uri=uri,
            db_name=os.environ.get("BOOKSTORE_DB", "bookstore"),
            data_dir=os.environ.get("BOOKSTORE_DATA_DIR") or DEFAULT_DATA_DIR,
            journal_limit_mb=_int_env("BOOKSTORE_JOURNAL_LIMIT_MB", 64),
            token_lifetime_s=_int_env("BOOKSTORE_TOKEN_LIFETIME_S", 3600),
            pay_timeout_s=_int_env("BOOKSTORE_PAY_TIMEOUT_S", 900),
            receive_timeout_s=_int_env("BOOKSTORE_RECEIVE_TIMEOUT_S", 604800),
            sweep_interval_s=_int_env("BOOKSTORE_SWEEP_INTERVAL_S", 30 if uri else 1),
            stuck_after_s=_int_env("BOOKSTORE_STUCK_AFTER_S", 60),
            password_method=os.environ.get("BOOKSTORE_PASSWORD_METHOD", "scrypt:32768:8:1"),
            request_timeout_s=_float_env("BOOKSTORE_REQUEST_TIMEOUT_S", 10.0),
            ready_timeout_s=_float_env("BOOKSTORE_READY_TIMEOUT_S", 2.0),
            driver_max_age_s=_int_env("BOOKSTORE_DRIVER_MAX_AGE_S", 0),
            cors_origins=_list_env("BOOKSTORE_CORS_ORIGINS"),
            connect_timeout_s=_float_env("BOOKSTORE_CONNECT_TIMEOUT_S", 5.0),
            proxy_hops=int(os.environ.get("BOOKSTORE_PROXY_HOPS", "0") or 0),
        )
        values.update(overrides)
        return cls(**values).check()
