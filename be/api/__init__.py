"""Flask application factory: blueprints in, JSON out, whatever happens.

Order matters: the edge hooks first (request id, access log and metrics:
be.api.access; CORS: be.api.cors), then the API's blueprints, which on the
embedded engine run under its lock; then the operator's routes (/ping, /health,
/ready, /metrics, /docs, /openapi.*), which do not take that lock for the
request; then every view under the request's time budget.
"""
import functools
import logging
import threading
import time

from flask import Flask, jsonify, request
from pymongo.errors import PyMongoError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.middleware.proxy_fix import ProxyFix

from be import budget, errors, metrics
from be.api import access, auth, buyer, cors, docs, health, monitoring, orders, search, seller
from be.api.common import parse_ahead

log = logging.getLogger("bookstore")


def create_app(backend):
    app = Flask("bookstore")
    app.extensions["bookstore"] = backend
    app.config["MAX_CONTENT_LENGTH"] = backend.settings.max_body_bytes
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.config["BOOKSTORE_STARTED"] = time.monotonic()
    access.install(app)
    cors.install(app, backend.settings.cors_origins)
    if backend.settings.proxy_hops:  # the client's address from X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=backend.settings.proxy_hops)
    for module in (auth, seller, buyer, orders, search):
        app.register_blueprint(module.bp)
    if backend.engine.embedded is not None:
        _one_request_at_a_time(app, backend.engine.embedded)
        _one_search_at_a_time(app)

    @app.get("/ping")
    def ping():
        """Trivial endpoint: the ceiling the bench compares every call against."""
        return jsonify(message="ok")

    for module in (health, monitoring, docs):
        app.register_blueprint(module.bp)
    _time_budget(app, backend)

    @app.after_request
    def json_options(response):
        # Flask answers OPTIONS itself with an empty text/html 200: keep its Allow
        # header, but make the body JSON like every other reply.
        if request.method == "OPTIONS" and not response.is_json:
            response.set_data(app.json.dumps({"message": "ok"}) + "\n")
            response.mimetype = "application/json"
        return response

    @app.errorhandler(errors.BookstoreError)
    def business_error(exc):
        response = jsonify(message=exc.message)
        if isinstance(exc, errors.TooManyAttempts):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response, exc.code

    @app.errorhandler(HTTPException)
    def http_error(exc):
        response = jsonify(message=exc.description or exc.name)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # RFC 9110: 405 lists them
        return response, exc.code

    @app.errorhandler(PyMongoError)
    def database_error(exc):
        if exc.timeout:  # the request's time budget ran out (CSOT) or a network timeout
            log.warning("request timed out in the database: %s", exc)
            return jsonify(message="the database did not answer within the request's time "
                                   "budget; retry"), 503
        log.exception("database error")
        return jsonify(message="internal error"), 500

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("unhandled error")
        return jsonify(message="internal error"), 500

    return app


def _one_request_at_a_time(app, engine):
    """Embedded engine: each view holds the engine's lock for its whole request
    (``engine.request()``; with a data folder the reply then waits, lock released,
    until the request's changes are on disk: be.embedded.engine).

    The engine runs one database call at a time anyway (one process-wide lock, and
    one GIL for all of it). Taken per call, the lock changes hands between request
    threads up to ten times per request, and each hand-off is a GIL hand-off and a
    thread switch: at 8 request threads that cost 30-40% of the throughput of
    new_order + payment (issue 7). Taken once per request, it changes hands once.
    A real MongoDB serves requests concurrently and needs none of this. CPU work
    that reads no data (hashing, segmentation, decoding) lets go of the lock
    meanwhile (EmbeddedEngine.cpu_work), and the request is parsed and validated
    before the lock is taken (be.api.common.parse_ahead: a 33 MB add_book body
    took 215 ms to parse and validate, all of it under the lock). Searches
    (``searching`` views, which only read) hold the lock per database call instead
    (EmbeddedEngine.reading): over 40,000 books a search reads for 5-10 ms, and
    other requests get the engine between its reads. /ping and
    the operator's routes are registered after this and run without the lock. The
    wait for the lock is observed in bookstore_engine_lock_wait_seconds.
    """
    def serialized(view):
        if getattr(view, "searching", False):
            return reading(view)

        @functools.wraps(view)
        def run(*args, **kwargs):
            parse_ahead(view)
            asked = time.perf_counter()
            with engine.request():
                metrics.ENGINE_LOCK_WAIT.observe(time.perf_counter() - asked)
                return view(*args, **kwargs)
        return run

    def reading(view):
        @functools.wraps(view)
        def run(*args, **kwargs):
            parse_ahead(view)
            with engine.reading():
                return view(*args, **kwargs)
        return run

    for name, view in list(app.view_functions.items()):
        app.view_functions[name] = serialized(view)


def _one_search_at_a_time(app):
    """Embedded engine: views marked ``searching`` (be.api.common.searching: book
    search) run one at a time in the process, queued before the engine's lock is
    asked for. (On MongoDB a search waits for the database part of its time, and
    searches overlap those waits.)

    A search is 10-20 ms of Python over 40,000 books, all of it needing the one
    GIL, and on the embedded engine most of it the engine too. Run side by side,
    searches only take turns on both; meanwhile every other request waited for
    its turn behind all of them (4 threads of searches for broad words held a
    GET /buyer/balance up 170 ms at p50, 620 ms at p99: the engine's lock is not
    first come, first served, so it could lose to search after search). Queued
    here, at most one search is in the way of any other request, and searches
    lose nothing: one process ran only one of them at a time anyway."""
    app.extensions["bookstore_search_lane"] = threading.Lock()

    def queued(view):
        @functools.wraps(view)
        def run(*args, **kwargs):
            with app.extensions["bookstore_search_lane"]:
                return view(*args, **kwargs)
        return run

    for name, view in list(app.view_functions.items()):
        if getattr(view, "searching", False):
            app.view_functions[name] = queued(view)


def _time_budget(app, backend):
    """Each view runs under the request's time budget (be.budget, CSOT): a database
    call started after ``request_timeout_s`` is refused by the client, so a request
    stalled past its lease never writes after recovery took its order over. Applied
    outside the embedded engine's lock, so waiting for the lock counts too, as
    queueing for a connection does on a real MongoDB."""
    def budgeted(view):
        @functools.wraps(view)
        def run(*args, **kwargs):
            with budget.request_budget(backend):
                return view(*args, **kwargs)
        return run

    for name, view in list(app.view_functions.items()):
        app.view_functions[name] = budgeted(view)
