"""CORS: which browser pages on other origins may call the API.

Browsers send a preflight OPTIONS before any call carrying a ``token``,
``Authorization`` or JSON ``Content-Type`` header, and let the page read the reply
only if it names the page's origin. BOOKSTORE_CORS_ORIGINS lists the allowed origins
(comma-separated, e.g. ``https://shop.example,http://localhost:3000``; ``*`` for
any); unset, no CORS header is sent and only same-origin pages can call. Tokens
travel in headers, never cookies, so credentials mode is not needed and ``*`` is
safe for a public API.

An allowed origin's replies carry ``Access-Control-Allow-Origin`` and expose
``X-Request-ID``; its preflights also get the route's methods (Flask's ``Allow``),
the headers below and a 10-minute ``Access-Control-Max-Age``. Every reply says
``Vary: Origin`` so a cache never hands one origin's answer to another.
"""
from flask import request

ALLOWED_HEADERS = "token, Authorization, Idempotency-Key, Content-Type, X-Request-ID"
EXPOSED_HEADERS = "X-Request-ID"
MAX_AGE_S = 600


def install(app, origins):
    """Answer CORS for ``origins`` (a sequence; empty: do nothing)."""
    if not origins:
        return
    any_origin = "*" in origins
    allowed = frozenset(origins)

    @app.after_request
    def cors_headers(response):
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin is None or not (any_origin or origin in allowed):
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response.headers["Access-Control-Allow-Methods"] = (
                response.headers.get("Allow") or "GET, POST, OPTIONS")
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
        return response
