"""What every request gets at the edge: a request id, an access log line, its
request metrics, and JSON for the one reply werkzeug would answer in HTML.

- ``X-Request-ID``: the client's, if it sends a plausible one (1-128 characters of
  letters, digits and ``._:@/+=-``), else a fresh uuid4 hex; echoed on every reply,
  written in the access log line, readable in views as ``request_id()``.
- One access log line per request on the ``bookstore.access`` logger (INFO): method,
  path, route (the url rule, e.g. ``/orders/<order_id>``), status, duration in ms,
  request id and client address; with BOOKSTORE_LOG_FORMAT=json these are fields
  of the JSON line (be.logs).
- be.metrics.REQUESTS observes the duration by method, route and status. Routes are
  url rules (``<unmatched>`` for a path no rule matches) and unknown methods count
  as ``other``, so a client cannot mint new series.
- A path with a doubled slash (``/buyer//balance``) is redirected by werkzeug
  (merge_slashes) to the single-slash path with 308, the method and body kept;
  Flask sends that redirect as an HTML page, outside the app's error handlers. Here
  it is answered with the same 308 and ``Location``, and a JSON body naming the
  path to use, so clients that follow redirects work as before and the others can
  read why.
"""
import logging
import re
import time
import uuid
from urllib.parse import urlsplit

from flask import g, jsonify, request
from werkzeug.routing import RequestRedirect

from be import metrics

log = logging.getLogger("bookstore.access")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
METHODS = frozenset(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"))
UNMATCHED = "<unmatched>"


def request_id():
    """The current request's id (set before any view runs)."""
    return g.request_id


def _printable(text, limit=300):
    """``text`` for a log line: control characters escaped, at most ``limit`` chars."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def install(app):
    @app.before_request
    def start():
        g.started = time.perf_counter()
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex

    @app.before_request
    def json_redirect():
        exc = request.routing_exception
        if isinstance(exc, RequestRedirect):
            target = urlsplit(exc.new_url)
            where = target.path + (f"?{target.query}" if target.query else "")
            response = jsonify(message=f"this path has an empty segment (a doubled slash); "
                                       f"the call is at {where}")
            response.status_code = exc.code
            response.headers["Location"] = exc.new_url
            return response
        return None

    @app.after_request
    def finish(response):
        started = g.pop("started", None)
        rid = g.get("request_id") or uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = rid
        if started is None:  # a before_request hook failed before ours ran
            return response
        seconds = time.perf_counter() - started
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        metrics.REQUESTS.labels(method, route, str(response.status_code)).observe(seconds)
        if log.isEnabledFor(logging.INFO):
            path = _printable(request.path)
            fields = {"method": method, "path": path, "route": route,
                      "status": response.status_code, "duration_ms": round(seconds * 1000, 2),
                      "request_id": rid, "remote": request.remote_addr}
            log.info("%s %s %d %.1fms route=%s id=%s", method, path, response.status_code,
                     seconds * 1000, route, rid, extra={"fields": fields})
        return response
