"""``@idempotent``: an ``Idempotency-Key`` header makes a call safe to repeat.

Placed under the authentication decorator (keys belong to the authenticated
user), it runs the view at most once per (user, key): the first request claims
the key, runs, and its reply (status and JSON body) is stored; a repeat with the
same fields gets that reply again, with ``Idempotent-Replayed: true``, and
changes nothing; the same key with other fields gets 409. The store and its
rules (waiting for a concurrent first request, abandoned claims, 24 h) are in
``be.model.idempotency``. Without the header the view runs as before.

Which replies are stored: every reply of a call that ran, errors included (a
501-521 business refusal is the answer to that request; a 500, or a 503 because
the time budget ran out, may have left the call half-done, so it is not run
again either), except the model's 503 "being changed by another request;
retry", which changes nothing: then the claim is dropped so that the retry runs.
The password is not part of what must match (authentication checked it; no hash
of it is stored).
"""
import contextvars
import functools
import logging

from flask import current_app, jsonify, make_response, request
from pymongo.errors import PyMongoError

from be import budget, errors
from be.api.common import backend
from be.model import idempotency

log = logging.getLogger("bookstore")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_MARGIN_S = 1.0  # of the request's budget, kept for answering after a wait


def _wait_s(ctx):
    """How long a repeat may wait for the first request's reply: what the request's
    budget leaves (less a margin), at most MAX_WAIT_S. Nothing on the embedded
    engine: a request holds the engine for its whole run there, so a claim another
    request finds running belongs to no live request (and waiting would hold the
    engine)."""
    if ctx.engine.embedded is not None:
        return 0.0
    left = budget.remaining()
    if left is None:
        return idempotency.MAX_WAIT_S
    return max(0.0, min(idempotency.MAX_WAIT_S, left - _MARGIN_S))


def _unbudgeted(call, *args):
    """Run ``call`` outside the request's time budget: the reply of a request whose
    budget ran out is still stored (the write is guarded by the claim's owner, and
    on a real MongoDB the client's own timeoutMS still bounds it). If the database
    fails it, the reply still goes out; the claim stays running, which later
    repeats answer as a request that died (409)."""
    try:
        contextvars.Context().run(call, *args)
    except PyMongoError:
        log.warning("could not store or release an Idempotency-Key claim", exc_info=True)


def idempotent(operation):
    def wrap(view):
        @functools.wraps(view)
        def run(args, **path):
            key = request.headers.get(HEADER)
            if key is None:
                return view(args, **path)
            idempotency.check_key(key)
            ctx = backend()
            fields = args.model_dump(mode="json", exclude={"password"})
            got = idempotency.begin(ctx, args.user_id, key,
                                    idempotency.fingerprint(operation, fields), _wait_s(ctx))
            if isinstance(got, idempotency.Reply):
                response = jsonify(got.body)
                response.status_code = got.status
                response.headers[REPLAYED] = "true"
                return response
            try:
                response = make_response(view(args, **path))
            except errors.Busy:
                _unbudgeted(idempotency.release, ctx, args.user_id, key, got.owner)
                raise
            except Exception as exc:  # the reply the app gives for it, stored below
                response = make_response(current_app.handle_user_exception(exc))
            _unbudgeted(idempotency.finish, ctx, args.user_id, key, got.owner,
                        response.status_code, response.get_json())
            return response
        return run
    return wrap
