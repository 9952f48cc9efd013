"""No request may stall the shop: a victim's latency while others abuse the server.

    python -m fe.bench --mode abuse                       # 40,000 books, every abuse, 10 s each
    python -m fe.bench --mode abuse --abuses login,broad --seconds 5 --rounds 2
    python -m fe.bench --mode abuse --data-dir /tmp/shop  # on a data folder (journal, fsync)

One server in this process, made as ``python app.py`` makes it (waitress with
be.server's Channel, its default request threads unless ``--server-threads``, the
embedded engine in memory unless ``--data-dir``, the timeout sweep running).
``--rows`` generated books (be.sample_books) are listed in ``--stores`` stores
through the model layer's add_book, in this process (search terms computed as a
request computes them; 40,000 books take 40-90 s). Then a victim buyer is
registered, logged in and funded, and for the baseline and each abuse:

* the abuse starts in a client process of its own (real sockets, keep-alive
  sessions; a process of its own so its CPU does not share the server's GIL) and
  runs for a warm-up second,
* the victim, in another client process, reads ``GET /buyer/balance`` in a loop
  for ``--seconds``, one call after another,
* the abuse stops; its own calls are counted by reply status.

Abuses (``--abuses``, comma-separated):

* ``login``: ``--abuse-threads`` threads of wrong-password logins, each on an
  account that exists and has not logged in (each costs the server a full
  scrypt). The throttle (be.model.throttle) answers 429 at once from an account's
  6th failure and from an address's 51st, and exempts loopback: so, as a
  credential-stuffing client would, each thread moves to a fresh account after 5
  tries and each try comes from another address through ``X-Forwarded-For``
  (documentation addresses, 203.0.113.0/24 and 198.51.100.0/24; the server
  trusts one proxy hop, BOOKSTORE_PROXY_HOPS=1). Every try is a 401 after a
  full hash: the worst the throttle lets through.
* ``broad``: threads searching the broad words of fe.bench.search_bench
  (小说, 经典, the: thousands of hits each over 40,000 books).
* ``mixed``: threads searching the search bench's query mix (titles, title
  words, tags, authors, English words, content words, one store, broad words).
* ``big_book``: one client sending add_book with 11 text fields of 1,000,000 CJK
  characters each (``--text-chars``; the schema's limit per field): 33 MB of
  UTF-8 that the server must refuse (400: the description is over MongoDB's
  16 MiB document limit).
* ``long_book``: one client sending add_book with the 5 searched text fields
  (author, publisher, author_intro, book_intro, content) of 1,000,000 CJK
  characters each: 15 MB, accepted and stored (each call a new book).

Prints, per phase, the victim's p50/p99 (PASS when p99 is at most ``--target-ms``,
50 ms), the abuse's own calls per second and statuses, the longest hold of the
engine's lock during the phase and what held it, how late a server thread woke
from a 1 ms sleep (the GIL and the cores: what any request waits at each step,
whatever lock it holds), and the server's RSS. The machine is shared: the load
average is printed with the table, and figures are worth taking twice
(``--rounds 2``).
"""
import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter

from fe.bench import search_bench
from fe.bench.run import percentile

ABUSES = ("login", "broad", "mixed", "big_book", "long_book")
TARGET_MS = 50.0
VICTIM_PASSWORD = "victim-pw"
ABUSE_PASSWORD = "right-password"
WRONG_PASSWORD = "wrong-password"
# Text fields of book_info (be.api.schemas.BookInfo), each at most 1,000,000 characters
ALL_TEXTS = ("author", "publisher", "original_title", "translator", "pub_year",
             "currency_unit", "binding", "isbn", "author_intro", "book_intro", "content")
SEARCHED_TEXTS = ("author", "publisher", "author_intro", "book_intro", "content")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fe.bench --mode abuse",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=40000, help="generated books (default 40000)")
    p.add_argument("--stores", type=int, default=4, help="stores listing them (default 4)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument("--abuses", default=",".join(ABUSES),
                   help=f"comma-separated, from {', '.join(ABUSES)} (default: all)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="the victim's measuring time per phase (default 10)")
    p.add_argument("--rounds", type=int, default=1,
                   help="times each phase runs, all phases in turn (default 1)")
    p.add_argument("--abuse-threads", type=int, default=4,
                   help="threads of the login and search abuses (default 4)")
    p.add_argument("--text-chars", type=int, default=1_000_000,
                   help="characters of each long text of big_book and long_book (default "
                        "1,000,000: the schema's limit)")
    p.add_argument("--server-threads", type=int, default=None,
                   help="request threads (default: as python app.py, "
                        "be.server.default_threads)")
    p.add_argument("--data-dir", default=None,
                   help="keep the server's data in this folder (journal, fsync before each "
                        "reply) instead of in memory; it must not exist or be empty")
    p.add_argument("--target-ms", type=float, default=TARGET_MS,
                   help="the victim's p99 target (default 50)")
    args = p.parse_args(argv)
    args.abuse_list = [a.strip() for a in args.abuses.split(",") if a.strip()]
    unknown = [a for a in args.abuse_list if a not in ABUSES]
    if unknown:
        p.error(f"unknown abuse {unknown[0]!r}: choose from {', '.join(ABUSES)}")
    if args.rows < 1 or args.stores < 1 or args.seconds <= 0 or args.rounds < 1 \
            or args.abuse_threads < 1 or args.text_chars < 1:
        p.error("--rows, --stores, --rounds, --abuse-threads and --text-chars must be "
                "at least 1, --seconds positive")
    if os.environ.get("MONGODB_URI"):
        p.error("the abuse bench serves the embedded engine: unset MONGODB_URI")
    return args


# ---------------------------------------------------------------- the server's side

class LockWatch:
    """The engine lock's holds, by whoever held it outermost: a request (its path)
    or a thread of the server (the sweeper). Wraps the lock instance's acquire and
    release (the engine, cpu_work and every collection call go through them)."""

    def __init__(self, lock):
        from flask import has_request_context, request
        self.lock, self.holds = lock, []
        local = threading.local()
        real_acquire, real_release = lock.acquire, lock.release

        def acquire(blocking=True, timeout=-1):
            got = real_acquire(blocking, timeout)
            if got and lock._depth == 1:
                local.since = time.perf_counter()
            return got

        def release():
            if lock._depth == 1:
                held = time.perf_counter() - local.since
                who = (f"{request.method} {request.path}" if has_request_context()
                       else threading.current_thread().name)
                self.holds.append((held, who))
            real_release()

        lock.acquire, lock.release = acquire, release

    def take(self):
        """(the holds since the last take, as (seconds, holder) pairs)."""
        holds, self.holds = self.holds, []
        return holds


class GilWatch:
    """How late a thread of the server's process wakes from a 1 ms sleep: the
    longest the interpreter (GIL) or the machine's cores kept it waiting, what any
    request's thread may wait at each step whatever lock it holds."""

    def __init__(self, period=0.001):
        self.period, self.delays, self._stop = period, [], threading.Event()
        threading.Thread(target=self._run, name="bench-gil-watch", daemon=True).start()

    def _run(self):
        while not self._stop.is_set():
            t0 = time.perf_counter()
            time.sleep(self.period)
            self.delays.append(time.perf_counter() - t0 - self.period)

    def take(self):
        delays, self.delays = self.delays, []
        return delays

    def stop(self):
        self._stop.set()


@contextlib.contextmanager
def _with_hash(backend, password_hash):
    """Accounts made in bulk share one precomputed hash: register otherwise spends
    a scrypt (~100 ms) on each of hundreds of accounts."""
    real = backend.passwords.hash
    backend.passwords.hash = lambda password: password_hash
    try:
        yield
    finally:
        backend.passwords.hash = real


def setup(args, out):
    """The server, its catalogue and the accounts every phase uses."""
    from be.model import search, stores, users
    from fe.bench import run as orders_run

    os.environ["BOOKSTORE_PROXY_HOPS"] = "1"  # the login abuse's X-Forwarded-For
    srv, url, backend, sweeper = orders_run.start_server(args.server_threads, args.data_dir)
    out(f"server: {backend.engine.describe()}, {srv.adj.threads} request thread"
        f"{'s' if srv.adj.threads != 1 else ''}, {url}")
    books = search_bench.generated_books(args.rows, args.seed)
    out(f"loading {len(books)} generated books into {args.stores} stores (model layer) ...")
    store_ids, _, listings, load_s = search_bench.load_books(backend, books, args.stores,
                                                             out=out)
    out(f"  {listings} listings in {load_s:.0f} s; server RSS {rss_mb():.0f} MiB")

    ctx = backend
    users.register(ctx, "abuse_victim", VICTIM_PASSWORD)
    users.add_funds(ctx, "abuse_victim", 10**9)
    seller = "abuse_seller"
    users.register(ctx, seller, ABUSE_PASSWORD)
    stores.create_store(ctx, seller, "abuse_store")
    # Fresh accounts for every login phase of every round, at up to 40 tries/s per
    # thread (a scrypt is ~100 ms: 10/s) and 5 tries per account, so none is locked.
    accounts = [f"abuse_login_{n}" for n in range(
        int(args.abuse_threads * 40 * args.seconds * args.rounds / 5) + 50)]
    with _with_hash(ctx, ctx.passwords.hash(ABUSE_PASSWORD)):
        for account in accounts:
            users.register(ctx, account, ABUSE_PASSWORD)
    rng = random.Random(args.seed)
    queries = [(q, fields, store) for _, q, fields, store in search_bench.make_queries(
        _Books(books, store_ids), 400, rng)]
    search.search_books(ctx, "小说")  # warm
    return {"server": srv, "url": url, "backend": backend, "sweeper": sweeper,
            "accounts": accounts, "queries": queries, "store_ids": store_ids,
            "seller": seller}


class _Books:
    """What search_bench.make_queries reads of a dataset."""

    def __init__(self, books, store_ids):
        self.books, self.stores = books, store_ids


def rss_mb():
    return search_bench.rss_bytes() / 2**20


# ---------------------------------------------------------------- the clients

def _session():
    import requests
    return requests.Session()


def _victim(url, seconds, go, results):
    """The victim: log in, then GET /buyer/balance one call after another."""
    s = _session()
    r = s.post(url + "auth/login", json={"user_id": "abuse_victim", "password": VICTIM_PASSWORD,
                                         "terminal": "bench"})
    token = r.json()["token"]
    headers = {"token": token}
    params = {"user_id": "abuse_victim"}
    s.get(url + "buyer/balance", params=params, headers=headers)  # connected
    go.wait()
    latencies, statuses = [], Counter()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        try:
            code = s.get(url + "buyer/balance", params=params, headers=headers).status_code
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            code = type(exc).__name__
        latencies.append(time.perf_counter() - t0)
        statuses[code] += 1
    results.put(("victim", latencies, dict(statuses)))


def _big_body(fields, chars, seed):
    """An add_book body (JSON bytes) whose ``fields`` each hold ``chars`` CJK
    characters (common words and random characters, so segmentation has real
    work), with ``@@BOOK@@`` where the book id goes."""
    from be.sample_books import CONTENT_WORDS_ZH
    rng = random.Random(seed)
    pieces, size = [], 0
    while size < chars:
        piece = rng.choice(CONTENT_WORDS_ZH) if rng.random() < 0.7 else \
            "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 4)))
        pieces.append(piece)
        size += len(piece)
    text = "".join(pieces)[:chars]
    info = {"id": "@@BOOK@@", "title": "长书", "price": 100}
    for n, field in enumerate(fields):
        info[field] = text[n * 7:] + text[:n * 7]  # each field a rotation: no two alike
    body = {"user_id": "abuse_seller", "store_id": "abuse_store", "book_info": info,
            "stock_level": 1}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _abuse_thread(kind, n, spec, url, go, stop, out):
    s = _session()
    statuses, latencies = Counter(), []
    rng = random.Random(n)
    if kind in ("big_book", "long_book"):
        r = s.post(url + "auth/login", json={"user_id": spec["seller"],
                                             "password": ABUSE_PASSWORD, "terminal": "bench"})
        token = r.json()["token"]
        fields = ALL_TEXTS if kind == "big_book" else SEARCHED_TEXTS
        head, tail = _big_body(fields, spec["text_chars"], n).split(b"@@BOOK@@", 1)
    s.get(url + "ping")  # connected
    go.wait()
    tries = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            if kind == "login":  # 5 tries per account, each from another address
                accounts = spec["accounts"]
                account = accounts[(spec["first"] + tries // 5) % len(accounts)]
                k = spec["first"] * 5 + tries
                address = f"{'203.0.113' if k % 2 else '198.51.100'}.{k // 2 % 250 + 1}"
                r = s.post(url + "auth/login",
                           json={"user_id": account, "password": WRONG_PASSWORD,
                                 "terminal": "bench"},
                           headers={"X-Forwarded-For": address})
                tries += 1
            elif kind in ("broad", "mixed"):
                if kind == "broad":
                    q, fields, store = search_bench.BROAD_WORDS[rng.randrange(3)], None, None
                else:
                    q, fields, store = rng.choice(spec["queries"])
                params = {"q": q}
                if fields:
                    params["fields"] = fields
                if store:
                    params["store_id"] = store
                r = s.get(url + "search/books", params=params)
            else:
                book = f"long_{uuid.uuid4().hex[:12]}".encode()
                r = s.post(url + "seller/add_book", data=head + book + tail,
                           headers={"token": token, "Content-Type": "application/json"})
            code = r.status_code
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            code = type(exc).__name__
        latencies.append(time.perf_counter() - t0)
        statuses[code] += 1
    out.append((latencies, statuses))


def _abuser(kind, threads, spec, url, ready, go, stop, results):
    """One client process running ``threads`` threads of the abuse ``kind``."""
    out = []
    workers = []
    for n in range(threads):  # login: each thread on accounts of its own
        thread_spec = dict(spec, first=spec["first"] + n * spec["per_thread"])
        workers.append(threading.Thread(target=_abuse_thread, daemon=True,
                                        args=(kind, n, thread_spec, url, go, stop, out)))
    for w in workers:
        w.start()
    ready.set()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    latencies, statuses = [], Counter()
    for lat, st in out:
        latencies.extend(lat)
        statuses.update(st)
    results.put(("abuse", latencies, dict(statuses), elapsed))


# ---------------------------------------------------------------- a phase

def phase(kind, world, args, round_n, out):
    """Runs the abuse ``kind`` (None: the baseline) against the victim; a result row."""
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    go_abuse, go_victim, stop, ready = mp.Event(), mp.Event(), mp.Event(), mp.Event()
    url = world["url"]
    abuser = None
    if kind is not None:
        threads = 1 if kind in ("big_book", "long_book") else args.abuse_threads
        # each login thread of each round on accounts no other one used
        per_thread = len(world["accounts"]) // (threads * args.rounds)
        spec = {"accounts": world["accounts"], "queries": world["queries"],
                "seller": world["seller"], "text_chars": args.text_chars,
                "first": round_n * threads * per_thread, "per_thread": per_thread}
        abuser = mp.Process(target=_abuser, daemon=True, args=(
            kind, threads, spec, url, ready, go_abuse, stop, results))
        abuser.start()
    victim = mp.Process(target=_victim, daemon=True,
                        args=(url, args.seconds, go_victim, results))
    victim.start()
    if abuser is not None:
        ready.wait(120)
        time.sleep(1.0)  # the abusers connect and log in
    watch, gil = world["watch"], world["gil"]
    watch.take()
    gil.take()
    started = time.perf_counter()
    go_abuse.set()
    if abuser is not None:
        time.sleep(1.0)  # in full swing before the victim starts
    go_victim.set()
    rows = {}
    try:
        while "victim" not in rows:
            try:
                got = results.get(timeout=1)
            except queue.Empty:
                if not victim.is_alive():
                    raise RuntimeError("bench: the victim's process ended without its figures")
                continue
            rows[got[0]] = got
        stop.set()
        while abuser is not None and "abuse" not in rows:
            try:
                got = results.get(timeout=1)
            except queue.Empty:
                if not abuser.is_alive():
                    raise RuntimeError("bench: the abuse's process ended without its figures")
                continue
            rows[got[0]] = got
    finally:
        stop.set()
        for proc in (victim, abuser):
            if proc is not None:
                proc.join(timeout=60)
    window = time.perf_counter() - started
    holds, stalls = watch.take(), gil.take()
    _, latencies, statuses = rows["victim"]
    row = {"abuse": kind or "baseline", "round": round_n + 1, "victim_calls": len(latencies),
           "victim_p50_ms": percentile(latencies, 50) * 1000,
           "victim_p99_ms": percentile(latencies, 99) * 1000,
           "victim_max_ms": max(latencies) * 1000 if latencies else float("nan"),
           "victim_errors": {k: v for k, v in statuses.items() if k != 200},
           "rss_mb": rss_mb()}
    if "abuse" in rows:
        _, lat, st, elapsed = rows["abuse"]
        row.update(abuse_calls=len(lat), abuse_rate=len(lat) / elapsed if elapsed else 0.0,
                   abuse_p50_ms=percentile(lat, 50) * 1000, abuse_statuses=st)
    if stalls:
        row.update(stall_p99_ms=percentile(stalls, 99) * 1000, stall_max_ms=max(stalls) * 1000)
    if holds:
        longest = max(holds)
        row.update(lock_holds=len(holds), lock_p99_ms=percentile([h for h, _ in holds], 99) * 1000,
                   lock_max_ms=longest[0] * 1000, lock_max_by=longest[1],
                   lock_busy=sum(h for h, _ in holds) / window)
    print_row(row, args, out)
    return row


# ---------------------------------------------------------------- reporting

def print_row(r, args, out=print):
    verdict = "PASS" if r["victim_p99_ms"] <= args.target_ms else "MISSED"
    out(f"  {r['abuse']:<10} victim p50 {r['victim_p50_ms']:7.1f} ms  p99 "
        f"{r['victim_p99_ms']:7.1f} ms  max {r['victim_max_ms']:7.1f} ms  "
        f"({r['victim_calls']} calls{', errors ' + str(r['victim_errors']) if r['victim_errors'] else ''})"
        f"  {verdict}")
    if "abuse_calls" in r:
        out(f"             abuse: {r['abuse_rate']:.1f} calls/s (p50 {r['abuse_p50_ms']:.0f} ms),"
            f" statuses {r['abuse_statuses']}")
    if "lock_holds" in r:
        out(f"             engine lock: {r['lock_busy'] * 100:.0f}% held, {r['lock_holds']} holds,"
            f" p99 {r['lock_p99_ms']:.1f} ms, longest {r['lock_max_ms']:.1f} ms"
            f" ({r['lock_max_by']});  server RSS {r['rss_mb']:.0f} MiB")
    if "stall_max_ms" in r:
        out(f"             a server thread's wake-up late by: p99 {r['stall_p99_ms']:.1f} ms,"
            f" at most {r['stall_max_ms']:.1f} ms (GIL and cores)")


def print_table(rows, args, out=print):
    out(f"\nvictim GET /buyer/balance, p99 target {args.target_ms:g} ms "
        f"({args.seconds:g} s per phase, {args.abuse_threads} abuse threads, "
        f"{args.rows} books)")
    out(f"  {'abuse':<10}{'round':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'abuse/s':>9}{'lock max ms':>12}{'late p99':>9}{'RSS MiB':>9}  target")
    for r in rows:
        out(f"  {r['abuse']:<10}{r['round']:>6}{r['victim_p50_ms']:>9.1f}{r['victim_p99_ms']:>9.1f}"
            f"{r['victim_max_ms']:>9.1f}{r.get('abuse_rate', 0.0):>9.1f}"
            f"{r.get('lock_max_ms', 0.0):>12.1f}{r.get('stall_p99_ms', 0.0):>9.1f}"
            f"{r['rss_mb']:>9.0f}  "
            f"{'PASS' if r['victim_p99_ms'] <= args.target_ms else 'MISSED'}")
    out("  (lock max: the longest hold of the engine's lock; late p99: how late a server "
        "thread woke from a 1 ms sleep, p99; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def run(args, out=print):
    world = setup(args, out)
    world["watch"] = LockWatch(world["backend"].engine.embedded.lock)
    world["gil"] = GilWatch()
    rows = []
    try:
        for round_n in range(args.rounds):
            for kind in [None] + args.abuse_list:
                out(f"\n{kind or 'baseline'} (round {round_n + 1}) ...")
                rows.append(phase(kind, world, args, round_n, out))
        print_table(rows, args, out)
        return rows
    finally:
        world["gil"].stop()
        if world["sweeper"] is not None:
            world["sweeper"].stop()
        world["server"].task_dispatcher.shutdown()
        world["server"].close()
        world["backend"].close()


def main(argv=None):
    run(parse_args(argv))
    return 0
