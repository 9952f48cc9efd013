"""How long importing a catalogue over the API takes, and a re-run that finds it done.

    python -m fe.bench --mode import [--rows 40000 --stores 4 --engines memory,folder]

Generates ``--rows`` books (be.sample_books, seed ``--seed``: the course's schema,
about 90% with a cover picture), deals them into ``--stores`` files (row i into
file i mod stores), and starts a fresh ``python app.py`` (``--memory``, then on
an empty ``--data-dir``) on a free port. Then, one store after another, the
importer a user runs (``python -m scripts.import_books --register``, its process
start-up and login included) lists each file in its own store; the
time of the whole is the import time (target: 30 s for 40,000 books). Then the
same commands again, which find every book listed: the re-run time (target: 5 s).

While the import runs, a probe sends a cheap request that needs the engine (GET
/books/<id> of an unknown id) every 20 ms and reports its latency: what a buyer
arriving during an import waits. Last, on an in-process engine, how long each
hold of the engine's lock lasts while add_books lists ``--hold-books`` books in
batches of 100 (the model called as a request calls it).

``--per-book`` sends one POST /seller/add_book per row instead (``--workers``
threads per store, as the importer did before add_books), for comparison.
``--url`` uses a running server instead of starting one (then only one engine).
"""
import argparse
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from be.sample_books import COLUMNS, generate
from fe.bench.procs import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMPORT_TARGET_S = 30.0
RERUN_TARGET_S = 5.0
PROBE_EVERY_S = 0.02


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fe.bench --mode import",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=40000, help="generated books (default 40000)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument("--stores", type=int, default=4, help="stores, one file each (default 4)")
    p.add_argument("--workers", type=int, default=None,
                   help="requests at a time per store (default: the importer's, 1 on the "
                        "embedded engine; 4 with --per-book, as the importer sent add_book)")
    p.add_argument("--batch", type=int, default=100,
                   help="the importer's books per request (default 100, its default)")
    p.add_argument("--engines", default="memory,folder",
                   help="servers to start, in turn: memory (--memory), folder (--data-dir)")
    p.add_argument("--data-dir", default=None,
                   help="the folder server's data folder (default: a temporary one, removed)")
    p.add_argument("--url", default=None, help="use this running server instead")
    p.add_argument("--per-book", action="store_true",
                   help="one add_book per row (the way before add_books), not the importer")
    p.add_argument("--hold-books", type=int, default=2000,
                   help="books listed to measure the engine lock holds (0: skip)")
    args = p.parse_args(argv)
    if args.workers is None and args.per_book:
        args.workers = 4
    if args.rows < 1 or args.stores < 1 or (args.workers is not None and args.workers < 1):
        p.error("--rows, --stores and --workers must be >= 1")
    args.engine_list = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not set(args.engine_list) <= {"memory", "folder"} or not args.engine_list:
        p.error("--engines: memory, folder or both")
    if os.environ.get("MONGODB_URI") and not args.url:
        p.error("the servers started here are embedded: unset MONGODB_URI or pass --url")
    return args


# ---------------------------------------------------------------- the files

def make_files(folder, rows, seed, n_stores, out=print):
    """``n_stores`` book.db files holding ``rows`` generated books between them."""
    source = os.path.join(folder, "books.db")
    started = time.perf_counter()
    generate(source, rows, seed)
    paths = []
    with sqlite3.connect(source) as src:
        create = src.execute("SELECT sql FROM sqlite_master WHERE name = 'book'").fetchone()[0]
        for k in range(n_stores):
            path = os.path.join(folder, f"store{k}.db")
            with sqlite3.connect(path) as part:
                part.execute(create)
            src.execute("ATTACH DATABASE ? AS part", (path,))
            src.execute(f"INSERT INTO part.book SELECT * FROM book "
                        f"WHERE (rowid - 1) % {n_stores} = {k} ORDER BY rowid")
            src.commit()
            src.execute("DETACH DATABASE part")
            paths.append(path)
    out(f"generated {rows:,} books (seed {seed}) in {n_stores} files in "
        f"{time.perf_counter() - started:.1f} s")
    return paths


# ---------------------------------------------------------------- the server

def start_server(engine, folder, log_path):
    """A fresh ``python app.py`` (``--memory`` or ``--data-dir folder``): (url, process)."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name in ("MONGODB_URI", "BOOKSTORE_DATA_DIR"):
        env.pop(name, None)
    where = ["--memory"] if engine == "memory" else ["--data-dir", folder]
    with open(log_path, "a") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), "--port",
                                 str(port), *where], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
        try:
            if requests.get(url + "ping", timeout=1).status_code == 200:
                return url, proc
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server not up within 120 s; see {log_path}")
        time.sleep(0.05)


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


# ---------------------------------------------------------------- the import

def import_store(url, store, path, workers, per_book, tag, batch=100):
    """One store's import as a user runs it; returns (seconds, what it printed)."""
    started = time.perf_counter()
    if per_book:
        return _per_book(url, store, path, workers, tag), ""
    done = subprocess.run(
        [sys.executable, "-m", "scripts.import_books", "--url", url, "--user",
         f"bench_{tag}_{store}", "--password", "bench-pw", "--store", f"{tag}_{store}",
         "--file", path, "--register", "--no-progress", "--batch", str(batch)]
        + ([] if workers is None else ["--workers", str(workers)]),
        cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"import of {path} failed ({done.returncode}): "
                           f"{done.stdout}{done.stderr}")
    return time.perf_counter() - started, done.stdout.strip()


def _per_book(url, store, path, workers, tag):
    """The way before add_books: the store's listings read 100 a page (GET
    /seller/books by cursor), then one add_book per row not listed, ``workers``
    at a time."""
    from fe.access.auth import Auth
    from fe.access.seller import Seller
    from scripts.import_books import book_info
    started = time.perf_counter()
    user, store_id = f"bench_{tag}_{store}", f"{tag}_{store}"
    Auth(url).register(user, "bench-pw")
    seller = Seller(url, user, "bench-pw")
    listed, after = set(), None
    if seller.create_store(store_id) != 200:
        while True:
            code, body = seller.books(store_id, page_size=100, after=after)
            listed.update(b["book_id"] for b in body["books"])
            after = body["next"]
            if not after:
                break
    with sqlite3.connect(path) as conn:
        rows = [row for row in conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM book ORDER BY rowid") if str(row[0]) not in listed]
    with ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(lambda row: seller.add_book(store_id, 100, book_info(row)), rows))
    if set(codes) - {200, 516}:
        raise RuntimeError(f"add_book answered {sorted(set(codes))}")
    return time.perf_counter() - started


class Probe:
    """A cheap request that needs the engine, every PROBE_EVERY_S: its latencies."""

    def __init__(self, url):
        self.url = url + "books/bench-probe-no-such-book"
        self.latencies = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        session = requests.Session()
        while not self._stop.is_set():
            started = time.perf_counter()
            session.get(self.url, timeout=60)
            self.latencies.append(time.perf_counter() - started)
            self._stop.wait(PROBE_EVERY_S)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(120)

    def summary(self):
        got = sorted(self.latencies)
        if not got:
            return "no probe answered"
        pick = lambda q: got[min(len(got) - 1, int(q * len(got)))] * 1000  # noqa: E731
        return (f"p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {got[-1] * 1000:.0f} ms "
                f"({len(got)} requests)")


def _cpu_s(pid):
    """CPU seconds (user + system) process ``pid`` has used so far (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _children_cpu_s():
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


class Cpu:
    """CPU seconds the server and the importer processes used in a block: the
    machine may be shared, so wall time alone says little about what it costs."""

    def __init__(self, server_pid):
        self.pid = server_pid

    def __enter__(self):
        self.server, self.clients = _cpu_s(self.pid) if self.pid else None, _children_cpu_s()
        return self

    def __exit__(self, *exc):
        server = _cpu_s(self.pid) if self.pid else None
        self.server = None if server is None or self.server is None else server - self.server
        self.clients = _children_cpu_s() - self.clients

    def __str__(self):
        server = "" if self.server is None else f"server {self.server:.1f} s, "
        return f"CPU used: {server}importers {self.clients:.1f} s"


def run_engine(args, label, url, paths, tag, out=print, server_pid=None):
    """Import every file, then again; returns {import_s, rerun_s, *_cpu_s}."""
    figures = {}
    with Probe(url) as probe, Cpu(server_pid) as cpu:
        started = time.perf_counter()
        parts = [import_store(url, f"store{k}", path, args.workers, args.per_book, tag,
                              args.batch) for k, path in enumerate(paths)]
        figures["import_s"] = time.perf_counter() - started
    figures["import_server_cpu_s"] = cpu.server
    books = args.rows
    out(f"  import:  {figures['import_s']:.1f} s, {books / figures['import_s']:,.0f} books/s "
        f"(per store: {', '.join(f'{s:.1f}' for s, _ in parts)} s)"
        f"{_verdict(figures['import_s'], IMPORT_TARGET_S)}")
    out(f"           {cpu}" + (" (one add_book per row: the bench's own threads)"
                              if args.per_book else ""))
    for _, said in parts[:1]:
        if said:
            out(f"           the importer said: {said}")
    out(f"  a request during the import (GET /books/<id>, every {PROBE_EVERY_S * 1000:.0f} ms): "
        f"{probe.summary()}")
    with Cpu(server_pid) as cpu:
        started = time.perf_counter()
        again = [import_store(url, f"store{k}", path, args.workers, args.per_book, tag,
                              args.batch) for k, path in enumerate(paths)]
        figures["rerun_s"] = time.perf_counter() - started
    out(f"  re-run:  {figures['rerun_s']:.1f} s (per store: "
        f"{', '.join(f'{s:.1f}' for s, _ in again)} s)"
        f"{_verdict(figures['rerun_s'], RERUN_TARGET_S)}; {cpu}")
    if again[0][1]:
        out(f"           the importer said: {again[0][1]}")
    return figures


def _verdict(seconds, target):
    return f"   target <= {target:g} s: {'ok' if seconds <= target else 'MISSED'}"


# ---------------------------------------------------------------- lock holds

def lock_holds(path, books, out=print):
    """Each hold of the engine's lock while add_books lists ``books`` books of
    ``path`` in batches of 100 inside engine.request(), as the API runs it."""
    from be.backend import Backend
    from be.config import MEMORY, Settings
    from be.embedded import engine as embedded_engine
    from be.model import search, stores, users
    from scripts.import_books import book_info

    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM book ORDER BY rowid "
                            f"LIMIT {int(books)}").fetchall()
    infos = [book_info(row).__dict__ for row in rows]
    ctx = Backend(Settings.from_env(data_dir=MEMORY, mongodb_uri="",
                                    password_method="pbkdf2:sha256:1000"))
    search._jieba()
    users.register(ctx, "holds", "pw")
    stores.create_store(ctx, "holds", "holds")
    lock = embedded_engine._LOCK
    holds, cpu, per_request, since = [], [], [], {}
    acquire, release = lock.acquire, lock.release

    def timed_acquire(*a, **kw):
        got = acquire(*a, **kw)
        if got and lock._depth == 1:
            since["t"], since["cpu"] = time.perf_counter(), time.thread_time()
        return got

    def timed_release():
        if lock._depth == 1:
            holds.append(time.perf_counter() - since["t"])
            cpu.append(time.thread_time() - since["cpu"])
        release()

    lock.acquire, lock.release = timed_acquire, timed_release
    try:
        for k in range(0, len(infos), 100):
            first = len(holds)
            with ctx.engine.embedded.request():
                stores.add_books(ctx, "holds", "holds", [(i, 1) for i in infos[k:k + 100]])
            per_request.append(sum(holds[first:]))
    finally:
        del lock.acquire, lock.release
    holds.sort()
    cpu.sort()
    per_request.sort()

    def ms(values, q):
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    out(f"engine lock held by add_books ({len(infos):,} books in {len(per_request)} requests "
        f"of 100, {stores.BATCH_CHUNK} books per chunk): each hold p50 {ms(holds, 0.5):.1f} ms, "
        f"p99 {ms(holds, 0.99):.1f} ms, max {holds[-1] * 1000:.1f} ms; held per request in all "
        f"p50 {ms(per_request, 0.5):.0f} ms, max {per_request[-1] * 1000:.0f} ms; CPU per hold "
        f"p50 {ms(cpu, 0.5):.1f} ms, max {cpu[-1] * 1000:.1f} ms (wall above CPU: the machine "
        f"is shared)")
    return {"hold_max_ms": holds[-1] * 1000, "hold_p50_ms": ms(holds, 0.5),
            "hold_cpu_max_ms": cpu[-1] * 1000}


# ---------------------------------------------------------------- main

def run(args, out=print):
    work = tempfile.mkdtemp(prefix="bookstore-import-bench-")
    results = {}
    try:
        paths = make_files(work, args.rows, args.seed, args.stores, out)
        how = ("one POST /seller/add_book per row" if args.per_book else
               f"python -m scripts.import_books, {args.batch} books per request")
        out(f"import: {args.rows:,} books into {args.stores} stores, one store after another, "
            f"{how}, " + ("the importer's requests at a time (1 on the embedded engine)"
                          if args.workers is None else f"{args.workers} requests at a time"))
        if args.url:
            out(f"server {args.url}")
            results["given"] = run_engine(args, "given", args.url.rstrip("/") + "/", paths,
                                          f"b{uuid.uuid4().hex[:8]}", out)
        else:
            log_path = os.path.join(work, "server.log")
            for engine in args.engine_list:
                folder = None
                if engine == "folder":
                    folder = args.data_dir or os.path.join(work, "data")
                    if os.path.isdir(folder) and os.listdir(folder):
                        raise SystemExit(f"{folder} is not empty: give an empty --data-dir")
                url, proc = start_server(engine, folder, log_path)
                try:
                    out("fresh server: python app.py " + (
                        "--memory" if folder is None else f"--data-dir {folder}"))
                    results[engine] = run_engine(args, engine, url, paths, engine, out,
                                                 server_pid=proc.pid)
                finally:
                    stop_server(proc)
                if folder is not None and args.data_dir is None:
                    shutil.rmtree(folder, ignore_errors=True)
                with open(log_path) as f:
                    refused = re.findall(r"(POST /seller/add_books (?:5\d\d))", f.read())
                if refused:
                    out(f"  the server answered {len(refused)} batches with {refused[0][-3:]}")
        if args.hold_books:
            results["holds"] = lock_holds(paths[0], args.hold_books, out)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
