"""Helpers every view uses: parse the request into a schema, authenticate its
user (once, here at the edge: the model only ever sees an authenticated user id),
reach the Backend, shape the JSON reply.

Every view declares the schema it parses (``parsed``, ``signed_in``,
``password_checked``), so the request can be parsed and validated before the view
runs: on the embedded engine that is before the engine's lock is taken
(``parse_ahead``, called by be.api._one_request_at_a_time), so a large body (an
add_book of 11 texts of 1,000,000 characters is 33 MB of JSON: 130 ms to parse
and 85 ms to validate) never holds up the other requests' database calls, and a
malformed request is refused without waiting for the engine at all.
"""
import codecs
import functools
import json
import json.scanner

from flask import current_app, g, jsonify, request
from pydantic import ValidationError

from be import errors
from be.api.schemas import describe
from be.model import sessions, users

# Bodies up to this size are parsed by one call of the C parser (a few ms); larger
# ones in pieces (``loads``).
PARSE_IN_ONE_BYTES = 1 << 20
_DECODE_CHUNK = 1 << 20


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


def loads(data):
    """JSON bytes -> value, as ``json.loads`` (ValueError when not JSON), without
    holding the interpreter for long: a C call runs with the GIL held, so one
    ``json.loads`` of a 33 MB body stalls every thread of the server for 130 ms,
    whatever locks they wait for. A body over PARSE_IN_ONE_BYTES is decoded 1 MiB
    at a time and parsed by the json module's Python scanner, which hands each
    string to the C ``scanstring`` on its own: the longest single call is then
    one string (1,000,000 CJK characters: about 10 ms), and other threads run in
    between. Small bodies, nearly all, take the C parser as before."""
    if len(data) <= PARSE_IN_ONE_BYTES:
        return json.loads(data)
    decoder = codecs.getincrementaldecoder(json.detect_encoding(data))("surrogatepass")
    view = memoryview(data)
    text = "".join([decoder.decode(view[at:at + _DECODE_CHUNK])
                    for at in range(0, len(data), _DECODE_CHUNK)] + [decoder.decode(b"", True)])
    parser = json.JSONDecoder()  # one per call: the Python scanner's memo is not shared
    parser.scan_once = json.scanner.py_make_scanner(parser)
    return parser.decode(text)


def body(schema):
    try:
        data = loads(request.get_data())
    except RecursionError:  # a body nested thousands deep: not a 500
        raise errors.BadRequest("request body is nested too deeply")
    except ValueError:  # not JSON, or not in a Unicode encoding
        data = None
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


_PARSED = "bookstore_parsed"  # flask.g: the request parsed ahead (parse_ahead)


def parse_ahead(view):
    """Parse and validate the request as ``view`` (a view function declaring its
    schema through the decorators below) will, now, and keep the result for it:
    the embedded engine's lock wrapper calls this before taking the lock. A bad
    request raises its 400 here. Views declaring nothing are left alone."""
    declared = getattr(view, "parses", None)
    if declared is not None:
        schema, source = declared
        setattr(g, _PARSED, (declared, source(schema)))


def _checked(schema, source, check=None):
    """Decorator: parse the request into ``schema`` (400 first: a malformed request
    is refused before anyone is looked up), run ``check(backend, args)``, then call
    the view with the parsed arguments. The request is parsed here unless
    ``parse_ahead`` parsed it already."""
    declared = (schema, source)

    def wrap(view):
        @functools.wraps(view)
        def run(**path):
            ahead = g.pop(_PARSED, None)
            args = ahead[1] if ahead is not None and ahead[0] == declared else source(schema)
            if check is not None:
                check(backend(), args)
            return view(args, **path)
        run.parses = declared
        return run
    return wrap


def searching(view):
    """Mark a view as a search: on the embedded engine searches run one at a time
    (be.api._one_search_at_a_time) and hold its lock per database call, not for
    the whole request (they only read)."""
    view.searching = True
    return view


def parsed(schema, source=body):
    """Decorator: the view is called with the request parsed into ``schema`` (from
    the JSON body, or with ``source=query`` the query string) and its path
    parameters."""
    return _checked(schema, source)


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
