"""Login throttling: repeated wrong passwords slow the guesser down, per account and
per client address, for every call that carries a password (login, payment,
add_funds, password change, unregister).

A key (``user:<id>``, ``addr:<address>``) may fail ``FREE`` times (5 for an
account, 50 for an address, which NAT may share); each failure after that closes
the key for a delay that doubles, 1 s, 2 s, 4 s ... up to ``MAX_DELAY_S`` (15
minutes). While a key is closed every attempt gets 429 with ``Retry-After`` and
changes nothing, the right password included; once it reopens the right password
works, and a success forgets the account's failures. Failures are forgotten after
``FORGET_S`` (an hour) without one, by a TTL index.

Unknown accounts are counted exactly like real ones, and a wrong password costs
one full hash whether or not the account exists (be.passwords), so neither the
replies nor their timing tell a guesser which accounts exist. Figures: 5 free
guesses, then 1+2+...+512 s before the next ten are allowed; about 20 guesses in
the first hour instead of ~700 per second.

The counters live in the database (the ``throttle`` collection), so several
server processes share them; a password check reads them once (one round trip)
and writes only on a failure or on the first success after failures.
"""
import ipaddress
import math
from datetime import timedelta

from pymongo import ReturnDocument

from be import errors, metrics

FREE = {"user": 5, "addr": 50}
BASE_DELAY_S = 1
MAX_DELAY_S = 900
FORGET_S = 3600


def keys(user_id, address):
    """The throttle keys of an attempt: its account, and its client address if known
    and not loopback (a local reverse proxy, or tools on the machine itself: their
    accounts are still throttled; set BOOKSTORE_PROXY_HOPS behind a proxy so the
    address is the client's)."""
    out = [f"user:{user_id}"]
    if address and not _loopback(address):
        out.append(f"addr:{address}")
    return out


def _loopback(address):
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _delay(kind, failures):
    over = failures - FREE[kind]
    if over < 0:
        return 0
    return min(BASE_DELAY_S * 2 ** min(over, 20), MAX_DELAY_S)


def check(ctx, attempt_keys):
    """429 if any key is closed now; otherwise the keys' current documents (so that
    ``succeeded`` writes only when there is something to forget)."""
    now = ctx.clock.now()
    docs = list(ctx.db.throttle.find({"_id": {"$in": attempt_keys}}))
    waits = [(d["blocked_until"] - now).total_seconds() for d in docs
             if d.get("blocked_until") and d["blocked_until"] > now]
    if waits:
        metrics.LOGIN_THROTTLED.inc()
        raise errors.TooManyAttempts(max(1, math.ceil(max(waits))))
    return docs


def failed(ctx, attempt_keys):
    """Count a wrong password against every key, closing those past their free tries."""
    now = ctx.clock.now()
    for key in attempt_keys:
        doc = ctx.db.throttle.find_one_and_update(
            {"_id": key}, {"$inc": {"failures": 1},
                           "$set": {"expires_at": now + timedelta(seconds=FORGET_S)}},
            upsert=True, return_document=ReturnDocument.AFTER)
        kind = key.split(":", 1)[0]
        delay = _delay(kind, doc["failures"])
        if delay:
            metrics.LOGIN_LOCKOUTS.labels("account" if kind == "user" else "address").inc()
            ctx.db.throttle.update_one(
                {"_id": key}, {"$max": {"blocked_until": now + timedelta(seconds=delay)}})


def succeeded(ctx, docs):
    """The right password: forget the account's failures (the address keeps its own,
    so one good account does not reset a guesser's address)."""
    for doc in docs:
        if doc["_id"].startswith("user:"):
            ctx.db.throttle.delete_one({"_id": doc["_id"]})
