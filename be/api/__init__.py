"""Flask application factory: blueprints in, JSON out, whatever happens."""
import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from be import errors
from be.api import auth, buyer, orders, search, seller

log = logging.getLogger("bookstore")


def create_app(backend):
    app = Flask("bookstore")
    app.extensions["bookstore"] = backend
    app.config["MAX_CONTENT_LENGTH"] = backend.settings.max_body_bytes
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    for module in (auth, seller, buyer, orders, search):
        app.register_blueprint(module.bp)

    @app.get("/ping")
    def ping():
        """Trivial endpoint: the ceiling the bench compares every call against."""
        return jsonify(message="ok")

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
        return jsonify(message=exc.message), exc.code

    @app.errorhandler(HTTPException)
    def http_error(exc):
        response = jsonify(message=exc.description or exc.name)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # RFC 9110: 405 lists them
        return response, exc.code

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("unhandled error")
        return jsonify(message="internal error"), 500

    return app
