"""Helpers every view uses: parse the request into a schema, authenticate its
user (once, here at the edge: the model only ever sees an authenticated user id),
reach the Backend, shape the JSON reply."""
import functools

from flask import current_app, jsonify, request
from pydantic import ValidationError

from be import errors
from be.api.schemas import describe
from be.model import sessions, users

# A body larger than this is parsed (JSON, then the schema) with the embedded
# engine's lock let go: json.loads and pydantic take 1-8 ms per MiB (8 for a
# batch of 100 generated books, 140 KiB; 1.3 for 100 of the course's sample, 4.3
# MiB mostly of pictures), so a 64 MiB add_book or add_books would otherwise hold
# every other request back for 0.1-0.5 s. Smaller bodies (nearly all) parse in
# half a millisecond or less, about what the lock hand-off would cost.
LARGE_BODY_BYTES = 64 * 1024


def backend():
    return current_app.extensions["bookstore"]


def token():
    """The session token: the ``token`` header of the classic contract or, as most
    HTTP clients send it, ``Authorization: Bearer <token>`` (the ``token`` header
    wins when both are sent). "" when neither is."""
    value = request.headers.get("token", "")
    if value:
        return value
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _bad(exc):
    return errors.BadRequest(describe(exc))


def body(schema):
    if (request.content_length or 0) > LARGE_BODY_BYTES:
        with backend().cpu_work():  # reads no data (see LARGE_BODY_BYTES)
            return _body(schema)
    return _body(schema)


def _body(schema):
    try:
        data = request.get_json(force=True, silent=True)
    except RecursionError:  # json.loads of a body nested thousands deep: not a 500
        raise errors.BadRequest("request body is nested too deeply")
    if not isinstance(data, dict):
        raise errors.BadRequest("request body must be a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _bad(exc)


def query(schema):
    try:
        return schema.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise _bad(exc)


def ok(**fields):
    return jsonify(message="ok", **fields), 200


def page_fields(found, q):
    """What a list reply says besides its rows (a be.model.paging.Page)."""
    return {"total": found.total, "total_is_lower_bound": found.total_is_lower_bound,
            "page": q.page, "page_size": q.page_size, "next": found.next}


def _checked(schema, source, check):
    """Decorator: parse the request into ``schema`` (400 first: a malformed request
    is refused before anyone is looked up), run ``check(backend, args)``, then call
    the view with the parsed arguments."""
    def wrap(view):
        @functools.wraps(view)
        def run(**path):
            args = source(schema)
            check(backend(), args)
            return view(args, **path)
        return run
    return wrap


def signed_in(schema, source=body):
    """The request's ``token`` header must be a live session of its ``user_id``:
    511 for an unknown user, 401 otherwise."""
    return _checked(schema, source,
                    lambda ctx, args: sessions.authenticate(ctx, args.user_id, token()))


def client_address():
    """The caller's address, for login throttling (be.model.throttle). Behind a
    proxy this is the proxy's address unless the proxy is trusted (see README)."""
    return request.remote_addr


def password_checked(schema):
    """The body's ``password`` must be ``user_id``'s (401 otherwise; 429 while
    throttled): payment and add_funds are authenticated this way, as in the
    classic contract."""
    return _checked(schema, body, lambda ctx, args: users.check_password(
        ctx, args.user_id, args.password, client_address()))
