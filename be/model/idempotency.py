"""Idempotency keys: the first reply to a request, kept per (user, key) for a day.

A client that loses a reply and sends the request again (add_funds, new_order,
payment) must not deposit, order or pay twice. With a key, the first request
claims it and its reply is stored; a repeat gets that reply back. This module is
the store; it knows nothing of HTTP: a reply is a plain ``(status, body)``. The
edge (``be.api.idempotency``) decides what to claim and what to store.

One document per ``(user_id, key)`` in ``idempotency``, ``_id`` the pair:

* ``begin`` claims the key with an insert (the unique ``_id`` makes one claim of
  two concurrent ones win, on a real MongoDB as here, without transactions). The
  loser reads the document: another request's (a different ``fingerprint``: a
  hash of the operation and the request's fields) is a 409; a stored reply is
  returned to be replayed; a claim still running is polled (every 10-200 ms) for
  at most ``wait_s`` seconds (the edge passes what the request's time budget
  leaves, at most 5 s; nothing on the embedded engine, where requests run one at
  a time), then 409 "in progress: retry".
* ``finish`` stores the reply, guarded by the claim's owner; ``release`` drops a
  claim whose call changed nothing (the model's 503 "retry"), so a retry runs.
* A claim whose request died before ``finish`` (a crash, a killed process) stays
  ``running``. Once it is older than the lease ``stuck_after_s`` (60 s; a live
  request gives up after ``request_timeout_s``, 10 s) it is *abandoned*: nothing
  tells whether its call took effect (add_funds leaves no trace of which request
  deposited), so running it again could deposit twice. It answers 409 "abandoned"
  (check the balance or the order list, then use a new key) until it expires.
* Every document expires ``KEEP`` (24 h) after its claim or its reply: a TTL
  index on ``expires_at`` deletes it (MongoDB's TTL monitor runs every 60 s, so
  it lives at least 24 h); until then a document past ``expires_at`` is treated
  as absent and taken over with a guarded replace.
"""
import hashlib
import json
import re
import time
import uuid
from datetime import timedelta
from typing import NamedTuple

from pymongo.errors import DuplicateKeyError

from be import errors

KEEP = timedelta(hours=24)
MAX_WAIT_S = 5.0
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII: UUIDs, ULIDs, base64...
_FIRST_PAUSE_S, _LAST_PAUSE_S = 0.01, 0.2

# what waiting uses; tests replace them (no test sleeps)
monotonic = time.monotonic
sleep = time.sleep


class Claim(NamedTuple):
    """The key is ours: run the call, then ``finish`` (or ``release``)."""
    owner: str


class Reply(NamedTuple):
    """The first request's reply, to be returned again."""
    status: int
    body: dict


def check_key(key):
    """400 unless ``key`` is 1 to 255 visible ASCII characters."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise errors.BadRequest("invalid header 'Idempotency-Key': 1 to 255 visible ASCII "
                                "characters (no spaces), e.g. a UUID")


def fingerprint(operation, fields):
    """What makes two requests the same: the operation and its fields (the caller
    leaves out secrets such as the password; authentication checked them)."""
    text = json.dumps([operation, fields], sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _record_id(user_id, key):
    return json.dumps([user_id, key], ensure_ascii=False)


def _claim_doc(ctx, user_id, key, request, owner):
    now = ctx.clock.now()
    return {"user_id": user_id, "key": key, "fingerprint": request, "state": "running",
            "owner": owner, "since": now, "expires_at": now + KEEP}


def begin(ctx, user_id, key, request, wait_s):
    """Claim ``key`` for ``user_id``'s request with fingerprint ``request``: a Claim
    to run the call, or the Reply stored for it. 409 (``errors.KeyConflict``) for
    a key of another request, or whose first request is still running after
    ``wait_s`` seconds, or was abandoned."""
    records = ctx.db.idempotency
    rid = _record_id(user_id, key)
    give_up = monotonic() + max(wait_s, 0.0)
    pause = _FIRST_PAUSE_S
    vanished = 0
    while True:
        owner = uuid.uuid4().hex
        claim = _claim_doc(ctx, user_id, key, request, owner)
        try:
            records.insert_one(dict(claim, _id=rid))
            return Claim(owner)
        except DuplicateKeyError:
            pass
        found = records.find_one({"_id": rid})
        if found is None and vanished < 3:
            vanished += 1
            continue  # it expired just now: claim again
        if found is None:
            raise errors.KeyConflict("this Idempotency-Key is changing hands; retry")
        now = ctx.clock.now()
        if found["expires_at"] <= now:
            # kept long enough; the TTL monitor has not deleted it yet: take it over
            if records.replace_one({"_id": rid, "owner": found["owner"],
                                    "expires_at": found["expires_at"]},
                                   claim).matched_count == 1:
                return Claim(owner)
            vanished += 1
            if vanished > 3:
                raise errors.KeyConflict("this Idempotency-Key is changing hands; retry")
            continue
        if found["fingerprint"] != request:
            raise errors.KeyConflict(
                "this Idempotency-Key was used for a different request; use a new key")
        if found["state"] == "done":
            return Reply(found["status"], found["body"])
        if (now - found["since"]).total_seconds() >= ctx.settings.stuck_after_s:
            raise errors.KeyConflict(
                "the first request with this Idempotency-Key ended without a reply; whether "
                "it took effect is unknown: check, then use a new key")
        left = give_up - monotonic()
        if left <= 0:
            raise errors.KeyConflict(
                "the first request with this Idempotency-Key is still in progress; retry")
        sleep(min(pause, left))
        pause = min(pause * 2, _LAST_PAUSE_S)


def finish(ctx, user_id, key, owner, status, body):
    """Store the reply of the call ``owner`` ran; False if the claim is no longer
    ours (it expired and was taken over)."""
    now = ctx.clock.now()
    return ctx.db.idempotency.update_one(
        {"_id": _record_id(user_id, key), "owner": owner, "state": "running"},
        {"$set": {"state": "done", "status": status, "body": body, "done_at": now,
                  "expires_at": now + KEEP}}).matched_count == 1


def release(ctx, user_id, key, owner):
    """Drop the claim of a call that changed nothing, so that a retry runs it."""
    ctx.db.idempotency.delete_one(
        {"_id": _record_id(user_id, key), "owner": owner, "state": "running"})
