"""Password storage: salted scrypt hashes (werkzeug), with a per-process cache so
that calls which send the password every time (payment, add_funds) stay cheap.

The cache maps a user to (stored hash, HMAC of the password under a key that
exists only in this process's memory). Nothing it holds reveals the password,
it is never written anywhere, and it dies with the process; a changed stored
hash (new password) makes the entry stale automatically.
"""
import contextlib
import hashlib
import hmac
import os
import secrets
import threading

from werkzeug.security import check_password_hash, generate_password_hash


def default_slots():
    """Slow hashes run at once: every core but one (at least one), so a flood of
    logins with wrong passwords (each a full scrypt, ~100 ms of a core) leaves a
    core to everything else. On 2 cores, 4 threads of such logins held the other
    requests up 300-600 ms at p50 when all four hashed at once."""
    return max(1, (os.cpu_count() or 2) - 1)


class PasswordHasher:
    def __init__(self, method="scrypt:32768:8:1", cache_size=100_000, outside=None,
                 slots=None):
        self.method = method
        # the slow hash runs inside ``outside()``: the embedded engine's lock let go;
        # and holding one of ``slots`` (default_slots): the others queue for it
        self._outside = outside or contextlib.nullcontext
        self._slots = threading.BoundedSemaphore(slots or default_slots())
        self._key = secrets.token_bytes(32)
        self._verified = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._dummy_hash = None

    def hash(self, password):
        with self._outside(), self._slots:
            return generate_password_hash(password, method=self.method)

    def _check(self, stored_hash, password):
        with self._outside(), self._slots:
            return check_password_hash(stored_hash, password)

    def _dummy(self):
        """A hash of a random password with this method, made once: what a check
        without a stored hash compares against."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _tag(self, password):
        return hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()

    def verify(self, user_id, stored_hash, password):
        """True if ``password`` matches ``stored_hash``. Only a match can be fast (the
        cache); a wrong password always costs one full hash, against a dummy hash
        when there is no stored one (unknown user, closed account), so the time of
        a failure does not tell whether the account exists or logged in lately."""
        tag = self._tag(password)
        cached = self._verified.get(user_id)
        if stored_hash and cached is not None and cached[0] == stored_hash and \
                hmac.compare_digest(cached[1], tag):
            return True
        if not stored_hash:
            self._check(self._dummy(), password)
            return False
        if not self._check(stored_hash, password):
            return False
        with self._lock:
            if len(self._verified) >= self._cache_size:
                self._verified.clear()
            self._verified[user_id] = (stored_hash, tag)
        return True
