"""How long a server on a large data folder takes to come back, and what it holds.

    python -m fe.bench --mode restart [--books 40000 --stores 4 --orders 100000]

Builds a data folder through the model layer: ``--books`` generated books
(be.sample_books, without pictures) spread over ``--stores`` stores of one
seller, ``--buyers`` funded buyers, and ``--orders`` paid orders (one real
new_order + payment, then copies of that order: fe.bench.workload.insert_copies).
Then a snapshot, and changes to the orders until the journal is just short of
the size at which a running server would replace it with a snapshot: the folder
a server killed at the worst moment leaves, the most a restart after a crash has
to replay. Then, twice, a real
``python app.py --data-dir`` starts on it and the bench measures the time from
launch until /ping answers (Python's start-up and imports included), the load
time the server logs, the server's memory (resident set) once up, and the folder's
size; a search and a buyer's order list show it serves. First the restart after
the crash (journal replay), then, after a clean shutdown (SIGTERM: a snapshot),
the restart from the snapshot. Target: at most 10 s.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import requests

from fe.bench.procs import free_port, rss_mib

TARGET_S = 10.0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST_HASH = "pbkdf2:sha256:1000"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fe.bench --mode restart",
                                description=__doc__.split("\n")[0])
    p.add_argument("--books", type=int, default=40000)
    p.add_argument("--stores", type=int, default=4)
    p.add_argument("--orders", type=int, default=100000)
    p.add_argument("--buyers", type=int, default=1000)
    p.add_argument("--data-dir", default=None,
                   help="build the folder here and keep it (default: a temporary one, removed)")
    args = p.parse_args(argv)
    if os.environ.get("MONGODB_URI"):
        p.error("the restart bench is for the embedded engine: unset MONGODB_URI")
    return args


def build(folder, books, n_stores, orders_count, buyers, out=print):
    """The data folder, written through the model layer, left without a snapshot."""
    from be.backend import Backend
    from be.config import Settings
    from be.model import orders, stores, users
    from fe.bench.search_bench import generated_books
    from fe.bench.workload import insert_copies

    settings = Settings.from_env(data_dir=folder, mongodb_uri="", password_method=FAST_HASH,
                                 journal_limit_mb=1 << 20)  # no snapshot while building
    default_limit = Settings.from_env(data_dir=folder).journal_limit_mb << 20
    ctx = Backend(settings)
    started = time.perf_counter()
    rows = generated_books(books, 1)
    users.register(ctx, "seller", "pw")
    names = [f"store{n}" for n in range(n_stores)]
    for name in names:
        stores.create_store(ctx, "seller", name)
    for i, info in enumerate(rows):
        stores.add_book(ctx, "seller", names[i % n_stores], info, 10**6)
        if (i + 1) % 10000 == 0:
            out(f"  ... {i + 1} books ({time.perf_counter() - started:.0f} s)")
    buyer_ids = [f"buyer{n}" for n in range(buyers)]
    for uid in buyer_ids:
        users.register(ctx, uid, "pw")
        users.add_funds(ctx, uid, 10**9)
    lines = [(rows[k]["id"], 1) for k in range(0, 3 * n_stores, n_stores)]
    order_id = orders.new_order(ctx, buyer_ids[0], names[0], lines)
    orders.payment(ctx, buyer_ids[0], order_id)
    template = ctx.db.orders.find_one({"_id": order_id})
    insert_copies(ctx.db, template, orders_count - 1, lambda n: buyer_ids[n % buyers])
    out(f"built {books:,} books in {n_stores} stores, {buyers:,} buyers, {orders_count:,} "
        f"paid orders in {time.perf_counter() - started:.0f} s")
    storage = ctx.engine.embedded.storage
    storage.snapshot()
    storage.journal_limit = default_limit  # the bound a server on the folder works with
    bound = storage.journal_bound()
    order_ids = [o["_id"] for o in ctx.db.orders.find({}, {"_id": 1})]
    touched = 0
    while storage.journal.size < bound * 0.97:
        ctx.db.orders.update_one({"_id": order_ids[touched % len(order_ids)]},
                                 {"$set": {"bench_touched": touched}})
        touched += 1
    out(f"then a snapshot ({storage.snapshot_size / 1e6:.0f} MB) and {touched:,} order "
        f"updates: a journal of {storage.journal.size / 1e6:.0f} MB (the bound is "
        f"{bound / 1e6:.0f} MB)")
    storage.close(snapshot=False)  # as a killed server leaves it
    return rows[0]["title"]


def folder_size(folder):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def restart(folder, log_path, query):
    """Start ``python app.py`` on ``folder``; returns (figures, process)."""
    port = free_port()
    env = dict(os.environ, BOOKSTORE_PASSWORD_METHOD=FAST_HASH, PYTHONUNBUFFERED="1")
    env.pop("MONGODB_URI", None)
    env.pop("BOOKSTORE_DATA_DIR", None)
    url = f"http://127.0.0.1:{port}/"
    started = time.perf_counter()
    with open(log_path, "a") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), "--data-dir",
                                 folder, "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
        try:
            if requests.get(url + "ping", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.perf_counter() - started > 600:
            proc.kill()
            raise RuntimeError(f"server not up within 600 s; see {log_path}")
        time.sleep(0.02)
    up_s = time.perf_counter() - started
    rss_up = rss_mib(proc.pid)
    # a large collection's index maps are filled in the background after start-up
    # (queries scan meanwhile): wait for the server to say they are all ready
    while True:
        with open(log_path) as f:
            text = f.read()
        if "all index maps ready" in text[text.rfind("data folder /"):]:
            break
        if proc.poll() is not None or time.perf_counter() - started > 600:
            proc.kill()
            raise RuntimeError(f"index maps not ready; see {log_path}")
        time.sleep(0.05)
    ready_s = time.perf_counter() - started
    rss = rss_mib(proc.pid)
    loads = re.findall(r"loaded in ([\d.]+) s", text)
    t0 = time.perf_counter()
    found = requests.get(url + "search/books", params={"q": query}, timeout=60).json()
    search_ms = (time.perf_counter() - t0) * 1000
    s = requests.Session()
    token = s.post(url + "auth/login", json={"user_id": "buyer1", "password": "pw",
                                              "terminal": "bench"}, timeout=60).json()["token"]
    t0 = time.perf_counter()
    listed = s.get(url + "buyer/orders", params={"user_id": "buyer1"},
                   headers={"token": token}, timeout=60).json()
    list_ms = (time.perf_counter() - t0) * 1000
    return {"up_s": up_s, "ready_s": ready_s, "rss_up_mb": rss_up,
            "load_s": float(loads[-1]) if loads else float("nan"), "rss_mb": rss, "search_ms": search_ms, "search_total": found.get("total"),
            "list_ms": list_ms, "buyer_orders": listed.get("total")}, proc


def run(args, out=print):
    folder = args.data_dir or tempfile.mkdtemp(prefix="bookstore-restart-")
    log_path = os.path.join(tempfile.gettempdir(), f"bookstore-restart-{os.getpid()}.log")
    results = {}
    try:
        if os.listdir(folder):
            raise SystemExit(f"{folder} is not empty: give an empty or new --data-dir")
        query = build(folder, args.books, args.stores, args.orders, args.buyers, out)
        for kind in ("after SIGKILL (snapshot + journal)", "after clean shutdown (snapshot)"):
            size = folder_size(folder)
            figures, proc = restart(folder, log_path, query.split()[0])
            figures["folder_mb"] = size / 1e6
            results[kind] = figures
            out(f"restart {kind}: up in {figures['up_s']:.1f} s (server's load "
                f"{figures['load_s']:.1f} s), every index map ready at "
                f"{figures['ready_s']:.1f} s, folder {figures['folder_mb']:.0f} MB, "
                f"server memory {figures['rss_mb']:.0f} MB; then a search in "
                f"{figures['search_ms']:.0f} ms ({figures['search_total']} books), a buyer's "
                f"list in {figures['list_ms']:.0f} ms ({figures['buyer_orders']} orders)")
            if kind.startswith("after SIGKILL"):
                proc.send_signal(signal.SIGTERM)  # clean: the snapshot for the next start
                proc.wait(600)
            else:
                proc.send_signal(signal.SIGKILL)
                proc.wait(60)
        out(f"\nrestart with {args.books:,} books in {args.stores} stores and {args.orders:,} "
            f"orders (target: up within {TARGET_S:g} s)")
        for kind, f in results.items():
            out(f"  {kind:<35} up {f['up_s']:5.1f} s  maps ready {f['ready_s']:5.1f} s  "
                f"folder {f['folder_mb']:4.0f} MB  memory {f['rss_mb']:5.0f} MB  "
                f"{'met' if f['up_s'] <= TARGET_S else 'MISSED'}")
        return results
    finally:
        if args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv=None):
    run(parse_args(argv))
    return 0
