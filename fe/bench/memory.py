"""What a real server holds in memory with a large catalogue, loaded over HTTP.

    python -m fe.bench --mode memory [--rows 40000 --stores 4]        # python app.py --memory
    python -m fe.bench --mode memory --pictures --data-dir DIR --restart

Starts ``python app.py`` (``--memory``, or on ``--data-dir``, which must be empty
or new), registers a seller with ``--stores`` stores and adds ``--rows`` generated
books (be.sample_books) with ``POST /seller/add_book`` from 4 client threads: book
i in store i mod stores, every tenth also in store (i // 10) mod stores (as the
search bench spreads them: 40,000 books make 43,000 listings). Each book is the
generated row; with ``--pictures`` it carries a picture of its own of about 30 KB
(the course sample's pictures, ../shared/data/book.db, cycled, each made
distinct by 4 bytes at its end; random bytes of that size without the sample).
Then 30 searches (the first builds the index maps), a few pictures read back,
and with ``--restart`` a clean stop (a snapshot) and a start on the folder, the
maps awaited and the searches again. It prints the server's resident set size
(VmRSS) at each step: the figure issue "No request may stall the shop" sets at
400 MB for 40,000 books in 4 stores (doc/scaling.md, section 1).
"""
import argparse
import base64
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from be.sample_books import COLUMNS, generate, row_to_book
from fe.bench.procs import free_port, rss_mib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.environ.get("BOOKSTORE_SAMPLE_DB") or os.path.join(ROOT, "..", "shared", "data",
                                                                "book.db")
FAST_HASH = "pbkdf2:sha256:1000"
QUERIES = ("小说", "经典", "the", "python", "历史", "中国", "文学", "管理", "life", "数据")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fe.bench --mode memory",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=40000, help="generated books (default 40000)")
    p.add_argument("--stores", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pictures", action="store_true",
                   help="a distinct picture of about 30 KB with every book")
    p.add_argument("--data-dir", help="serve from this (empty or new) data folder, kept "
                                      "afterwards (default: --memory)")
    p.add_argument("--restart", action="store_true",
                   help="then stop cleanly and start again on the folder (needs --data-dir)")
    args = p.parse_args(argv)
    if args.restart and not args.data_dir:
        p.error("--restart needs --data-dir")
    if args.rows < 1 or args.stores < 1:
        p.error("--rows and --stores must be >= 1")
    if os.environ.get("MONGODB_URI"):
        p.error("the memory bench is for the embedded engine: unset MONGODB_URI")
    if args.data_dir and os.path.isdir(args.data_dir) and os.listdir(args.data_dir):
        p.error(f"{args.data_dir} is not empty: give an empty or new --data-dir")
    return args


class Server:
    def __init__(self, data_dir, log_path):
        self.data_dir, self.log_path = data_dir, log_path
        self.proc = self.url = None

    def start(self):
        port = free_port()
        env = dict(os.environ, BOOKSTORE_PASSWORD_METHOD=FAST_HASH, PYTHONUNBUFFERED="1")
        env.pop("BOOKSTORE_DATA_DIR", None)
        where = ["--data-dir", self.data_dir] if self.data_dir else ["--memory"]
        with open(self.log_path, "a") as log:
            self.mark = log.tell()
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "app.py"), *where, "--port", str(port)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: "
                                   f"see {self.log_path}")
            try:
                if requests.get(self.url + "ping", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)  # polling for the server to listen, with a deadline
        self.proc.kill()
        raise RuntimeError(f"server not up within 600 s: see {self.log_path}")

    def wait_for_maps(self):
        """A loaded folder's large index maps are filled in the background."""
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                f.seek(self.mark)
                if "all index maps ready" in f.read():
                    return
            time.sleep(0.1)  # polling the server's log, with a deadline
        raise RuntimeError(f"index maps not ready within 600 s: see {self.log_path}")

    def rss(self):
        return rss_mib(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(600)


def books(rows, seed):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "books.db")
        generate(path, rows, seed)
        with sqlite3.connect(path) as conn:
            return conn.execute(f"SELECT {', '.join(COLUMNS)} FROM book ORDER BY id").fetchall()


def pictures_source(rng):
    if os.path.exists(SAMPLE):
        with sqlite3.connect(SAMPLE) as conn:
            found = [r[0] for r in conn.execute("SELECT picture FROM book") if r[0]]
        if found:
            return found
    return [b"\x89PNG\r\n\x1a\n" + rng.randbytes(30_000) for _ in range(100)]


def search_all(url):
    started = time.perf_counter()
    for q in QUERIES * 3:
        reply = requests.get(url + "search/books", params={"q": q}, timeout=120)
        if reply.status_code != 200:
            raise RuntimeError(f"search {q!r} answered {reply.status_code}")
    return (time.perf_counter() - started) / (3 * len(QUERIES)) * 1000


def run(args, out=print):
    rng = random.Random(args.seed)
    rows = books(args.rows, args.seed)
    source = pictures_source(rng) if args.pictures else None

    def picture(i):
        return source[i % len(source)] + i.to_bytes(4, "big")

    log_path = os.path.join(tempfile.gettempdir(), f"bookstore-memory-{os.getpid()}.log")
    server = Server(args.data_dir, log_path).start()
    figures = {"start": server.rss()}
    try:
        s = requests.Session()
        seller = "memory_seller"
        s.post(server.url + "auth/register", json={"user_id": seller, "password": "pw"})
        token = s.post(server.url + "auth/login", json={
            "user_id": seller, "password": "pw", "terminal": "bench"}).json()["token"]
        stores = [f"memory_store{n}" for n in range(args.stores)]
        for store in stores:
            s.post(server.url + "seller/create_store", json={"user_id": seller, "store_id": store},
                   headers={"token": token})
        requests.get(server.url + "search/books", params={"q": QUERIES[0]})  # jieba loaded
        figures["empty"] = server.rss()
        out(f"server up: RSS {figures['start']:.0f} MiB, {figures['empty']:.0f} MiB with "
            f"jieba's dictionary loaded (a first search)")
        local = threading.local()

        def add(i):
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            info = dict(row_to_book(rows[i], pictures=0).__dict__)
            if source is not None:
                info["pictures"] = [base64.b64encode(picture(i)).decode()]
            n = len(stores)
            chosen = sorted({stores[i % n], stores[(i // 10) % n]}) if i % 10 == 0 \
                else [stores[i % n]]
            for store in chosen:
                reply = session.post(server.url + "seller/add_book", json={
                    "user_id": seller, "store_id": store, "book_info": info,
                    "stock_level": 1000}, headers={"token": token}, timeout=120)
                if reply.status_code != 200:
                    raise RuntimeError(f"add_book answered {reply.status_code}: {reply.text}")
            return len(chosen)

        started, listings = time.perf_counter(), 0
        with ThreadPoolExecutor(4) as pool:
            for n, count in enumerate(pool.map(add, range(len(rows))), 1):
                listings += count
                if n % 10000 == 0:
                    out(f"  ... {n} books ({time.perf_counter() - started:.0f} s): RSS "
                        f"{server.rss():.0f} MiB")
        figures["loaded"] = server.rss()
        out(f"{len(rows):,} books, {listings:,} listings in {args.stores} stores added in "
            f"{time.perf_counter() - started:.0f} s: RSS {figures['loaded']:.0f} MiB")
        ms = search_all(server.url)
        figures["searched"] = server.rss()
        out(f"after {3 * len(QUERIES)} searches ({ms:.0f} ms each; the first builds the index "
            f"maps): RSS {figures['searched']:.0f} MiB")
        if source is not None:
            for i in range(0, len(rows), max(1, len(rows) // 40)):
                reply = requests.get(server.url + f"books/{rows[i][0]}/pictures/0", timeout=60)
                if reply.status_code != 200 or reply.content != picture(i):
                    raise RuntimeError(f"picture of book {rows[i][0]} not served back")
            figures["pictures"] = server.rss()
            out(f"after reading pictures back: RSS {figures['pictures']:.0f} MiB")
        if args.restart:
            server.stop()
            started = time.perf_counter()
            server.start()
            up = time.perf_counter() - started
            figures["restarted"] = server.rss()
            server.wait_for_maps()
            search_all(server.url)
            figures["restarted_searched"] = server.rss()
            out(f"restarted in {up:.1f} s: RSS {figures['restarted']:.0f} MiB; maps ready and "
                f"{3 * len(QUERIES)} searches: RSS {figures['restarted_searched']:.0f} MiB")
    finally:
        if server.proc.poll() is None:
            server.stop()
    out(f"\nmemory with {args.rows:,} books in {args.stores} stores "
        f"({'data folder' if args.data_dir else '--memory'}"
        f"{', a picture each' if args.pictures else ''}): loaded {figures['loaded']:.0f} MiB, "
        f"searched {figures['searched']:.0f} MiB"
        + (f", restarted and searched {figures['restarted_searched']:.0f} MiB"
           if args.restart else ""))
    return figures


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
