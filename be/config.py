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


@dataclass
class Settings:
    mongodb_uri: str = ""
    db_name: str = "bookstore"
    token_lifetime_s: int = 3600
    pay_timeout_s: int = 900
    receive_timeout_s: int = 604800
    sweep_interval_s: int = 1
    # Requests that die half-way leave their order marked; the sweep finishes
    # them once they are this old (long enough that no live request owns them).
    stuck_after_s: int = 60
    # werkzeug hash method; tests lower the scrypt cost to stay fast.
    password_method: str = "scrypt:32768:8:1"
    max_body_bytes: int = 64 * 1024 * 1024

    @property
    def embedded(self):
        return not self.mongodb_uri

    @classmethod
    def from_env(cls, **overrides):
        uri = os.environ.get("MONGODB_URI", "")
        values = dict(
            mongodb_uri=uri,
            db_name=os.environ.get("BOOKSTORE_DB", "bookstore"),
            token_lifetime_s=_int_env("BOOKSTORE_TOKEN_LIFETIME_S", 3600),
            pay_timeout_s=_int_env("BOOKSTORE_PAY_TIMEOUT_S", 900),
            receive_timeout_s=_int_env("BOOKSTORE_RECEIVE_TIMEOUT_S", 604800),
            sweep_interval_s=_int_env("BOOKSTORE_SWEEP_INTERVAL_S", 30 if uri else 1),
            stuck_after_s=_int_env("BOOKSTORE_STUCK_AFTER_S", 60),
            password_method=os.environ.get("BOOKSTORE_PASSWORD_METHOD", "scrypt:32768:8:1"),
        )
        values.update(overrides)
        return cls(**values)
