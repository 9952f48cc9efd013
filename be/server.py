"""The API server: waitress with a quieter connection (``Channel``), the request
thread default, and the serve loop ``python app.py`` (or ``bookstore-server``) runs.

Apart from app.py so the bench (fe.bench.run), the REST tests (fe.serving) and the
console script build the same server from a be module: app.py is only the
``python app.py`` spelling of ``main``. Without MONGODB_URI the embedded engine is
used and the timeout sweep runs in this process.
"""
import argparse
import errno
import logging
import signal
import sys
import threading
import time

from waitress.channel import HTTPChannel
from waitress.server import create_server

from be.api import create_app
from be.backend import Backend
from be.config import MEMORY, Settings
from be.errors import StartupError

log = logging.getLogger("bookstore")


class Channel(HTTPChannel):
    """waitress's connection without its busy loop (issue 7).

    While a request runs, its thread sends the reply itself (waitress flushes on
    each write) and wakes the main loop at the end, which sends whatever is left.
    Stock waitress also reports the socket writable whenever reply bytes are
    buffered, so during every reply's send() select() returns at once and the main
    loop spins over all connections, taking the GIL from the request threads: at 64
    keep-alive clients ~100 loop turns per request instead of under one, the main
    loop on 50-80% of a core, and ~75 paid orders/s instead of ~250 whenever a
    second core was free (hence the bimodal bench runs). Here the main loop writes
    during a request only if the connection is closing or the reply has passed the
    high watermark (the request thread then waits for the main loop to drain it).
    Uses waitress 3's channel attributes; fe/test/test_server_channel.py covers
    the paths that still need the main loop.
    """

    def writable(self):
        if (self.requests and not (self.will_close or self.close_when_flushed)
                and self.total_outbufs_len <= self.adj.outbuf_high_watermark):
            return False
        return super().writable()


class OncePer(logging.Filter):
    """Lets one record through per ``seconds``. waitress warns "Task queue depth is
    N" for each request that waits for a thread: with more clients than threads
    that is most requests, each line written under the task queue's lock."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.last = seconds, float("-inf")

    def filter(self, record):
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


def default_threads(backend):
    """Request threads when --threads is not given. A real MongoDB serves requests
    concurrently: 8. The embedded engine runs one request at a time (its lock,
    be.api._one_request_at_a_time): in memory 1, since every further thread only
    adds lock and GIL hand-offs (the bench at 16 and 64 clients: 225-285 paid
    orders/s with 8 threads, 265-320 with 2, 300-370 with 1). With a data folder
    8: each reply waits for its journal fsync with the engine released (1 ms on an
    idle development machine, 5-10 ms under load), and the other threads' requests
    run meanwhile and share the next fsync; with 1 thread every request pays a whole
    fsync alone (the bench at 16 clients: 64 paid orders/s with 1 thread, 80-110
    with 4 or 8, against 85-150 in memory on the same busy machine). waitress reads
    and buffers every request and reply in its own I/O thread, so a slow client
    never holds it."""
    if not backend.settings.embedded:
        return 8
    return 8 if backend.settings.persistent else 1


def make_server(app, host="127.0.0.1", port=0, threads=8, **options):
    """A waitress server (start it with ``.run()``) whose connections are Channels;
    the bench serves through this too."""
    sockets = {}
    server = create_server(app, map=sockets, host=host, port=port, threads=threads,
                           ident="bookstore", **options)
    for listener in sockets.values():  # one per address ("localhost" may give two)
        if hasattr(listener, "channel_class"):
            listener.channel_class = Channel
    return server


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Bookstore API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=None,
                        help="request threads (default: 8 with MongoDB, 1 on the embedded "
                             "engine, which runs one request at a time)")
    parser.add_argument("--demo", action="store_true",
                        help="start with a generated store, a seller and a funded buyer")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", metavar="DIR", default=None,
                       help="embedded engine: the folder that keeps the shop's data across "
                            "restarts (default: BOOKSTORE_DATA_DIR, else ./data)")
    where.add_argument("--memory", action="store_true",
                       help="embedded engine: keep everything in memory only (lost at exit)")
    return parser.parse_args(argv)


def settings_from(args):
    """The environment's settings with the data folder flags applied; the flags
    name where the embedded engine keeps its data, so they refuse MONGODB_URI."""
    overrides = {}
    if args.memory:
        overrides["data_dir"] = MEMORY
    elif args.data_dir:
        overrides["data_dir"] = args.data_dir
    settings = Settings.from_env(**overrides)
    if overrides and not settings.embedded:
        raise StartupError("--data-dir and --memory are for the embedded engine; "
                           "MONGODB_URI is set, so the data lives in MongoDB")
    return settings


def main(argv=None):
    """``python app.py`` and ``bookstore-server``: parse the flags, then serve.
    A start-up failure (database unreachable, port taken) is one line on stderr
    and exit status 2."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        backend = Backend(settings_from(args))
        try:
            serve(backend, args.host, args.port, args.threads, demo=args.demo)
        finally:
            backend.close()  # the data folder's snapshot, at Ctrl-C or SIGTERM
    except StartupError as exc:
        print(f"bookstore: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def serve(backend, host="127.0.0.1", port=5000, threads=None, demo=False):
    """Serve ``backend`` until Ctrl-C or SIGTERM; ``threads`` None: default_threads.
    With ``demo`` the store is filled first (be.demo) and the way to try it printed."""
    log.info("engine: %s", backend.engine.describe())
    app = create_app(backend)
    if demo:
        from be import demo as demo_data
        print(demo_data.instructions(demo_data.setup(backend), f"http://{host}:{port}/"),
              flush=True)
    threads = threads or default_threads(backend)
    try:
        server = make_server(app, host, port, threads)
    except OSError as exc:
        hint = (": another process is listening there (stop it or pass --port)"
                if exc.errno == errno.EADDRINUSE else f": {exc.strerror or exc}")
        raise StartupError(f"cannot listen on {host}:{port}{hint}") from None
    logging.getLogger("waitress.queue").addFilter(OncePer(10))
    sweeper = _start_sweeper(backend)
    log.info("serving on http://%s:%d/ with %d request thread%s", host, port, threads,
             "" if threads == 1 else "s")
    server.print_listen("Serving on http://{}:{}")
    try:
        server.run()
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
