"""Password storage: salted scrypt hashes (werkzeug), with a per-process cache so
that calls which send the password every time (payment, add_funds) stay cheap.

The cache maps a user to (stored hash, HMAC of the password under a key that
exists only in this process's memory). Nothing it holds reveals the password,
it is never written anywhere, and it dies with the process; a changed stored
hash (new password) makes the entry stale automatically.
"""
import hashlib
import hmac
import secrets
import threading

from werkzeug.security import check_password_hash, generate_password_hash


class PasswordHasher:
    def __init__(self, method="scrypt:32768:8:1", cache_size=100_000):
        self.method = method
        self._key = secrets.token_bytes(32)
        self._verified = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def hash(self, password):
        return generate_password_hash(password, method=self.method)

    def _tag(self, password):
        return hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()

    def verify(self, user_id, stored_hash, password):
        if not stored_hash:
            return False
        tag = self._tag(password)
        cached = self._verified.get(user_id)
        if cached is not None and cached[0] == stored_hash:
            return hmac.compare_digest(cached[1], tag)
        if not check_password_hash(stored_hash, password):
            return False
        with self._lock:
            if len(self._verified) >= self._cache_size:
                self._verified.clear()
            self._verified[user_id] = (stored_hash, tag)
        return True
