"""Entry point: ``python app.py [--host H] [--port P] [--demo]``.

Serves the API with waitress (a production WSGI server that runs on Linux,
macOS and Windows). Without MONGODB_URI the embedded engine is used and the
timeout watcher runs in this process.
"""
import argparse
import logging
import signal
import threading

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
    if args.demo:
        from be import demo
        print(demo.instructions(demo.setup(backend), f"http://{args.host}:{args.port}/"), flush=True)
    sweeper = _start_sweeper(backend)
    log.info("serving on http://%s:%d/", args.host, args.port)
    try:
        serve(app, host=args.host, port=args.port, threads=args.threads, ident="bookstore")
    finally:
        if sweeper is not None:
            sweeper.stop()
            log.info("timeouts: sweeper stopped")


def _start_sweeper(backend):
    """Embedded engine: no TTL monitor, no change streams, so a thread here sweeps for
    overdue orders. With MongoDB the separate watcher (python -m be.watcher) does it.
    SIGTERM stops the server like Ctrl-C does, so the thread is stopped cleanly."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_exit)
    if not backend.settings.embedded:
        log.info("timeouts: run the watcher (python -m be.watcher) next to this server")
        return None
    from be.watcher import Sweeper
    interval = backend.settings.sweep_interval_s
    log.info("timeouts: embedded engine has no TTL monitor or change streams; a sweep every "
             "%ss in this process is the only driver of payment and receipt timeouts", interval)
    return Sweeper(backend, interval).start()


def _raise_exit(signum, frame):
    raise SystemExit(0)


if __name__ == "__main__":
    main()
