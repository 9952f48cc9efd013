"""Entry point: ``python app.py [--host H] [--port P] [--demo]``.

Serves the API with waitress (a production WSGI server that runs on Linux,
macOS and Windows). Without MONGODB_URI the embedded engine is used and the
timeout watcher runs in this process.
"""
import argparse
import logging

from waitress import serve

from be.api import create_app
from be.backend import Backend

log = logging.getLogger("bookstore")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Bookstore API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8, help="request threads")
    parser.add_argument("--demo", action="store_true",
                        help="start with a generated store, a seller and a funded buyer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    backend = Backend()
    log.info("engine: %s", backend.engine.describe())
    app = create_app(backend)
    log.info("serving on http://%s:%d/", args.host, args.port)
    serve(app, host=args.host, port=args.port, threads=args.threads, ident="bookstore")


if __name__ == "__main__":
    main()
