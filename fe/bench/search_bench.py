"""Search bench (issue 5): search latency over the real sample and 40,000 generated books.

    python -m fe.bench.search_bench                   # model layer, engine from the environment
    python -m fe.bench --mode search --rows 40000 --queries 200
    python -m fe.bench.search_bench --http            # the same queries over HTTP

Two datasets, each in a fresh database: the 100-row sample (../shared/data/book.db,
skipped when absent) listed in ``--stores`` stores (each store lists every book),
and ``--rows`` books made by be.sample_books.generate, spread over the stores
(each book in one store, every tenth in two). Books are loaded through the model
layer's add_book (so add_book computes their search terms; without pictures,
which search never reads). Then ``--queries`` searches of mixed kinds run one
after another (full titles, two-character title words, tags, authors, English
words in random case, content-only words with fields=content, and title words
scoped to one store), driving be.model.search.search_books directly, or with
``--http`` GET /search/books on an in-process server (waitress) through
fe.access.search. Prints p50/p99 per dataset and per kind.

The engine is the embedded mongomock one unless MONGODB_URI is set; with a real
MongoDB each dataset gets its own database (BOOKSTORE_DB + a random suffix),
dropped at the end. mongomock scans every book for every query (it has no
indexes), so its figures grow with the catalogue; a real MongoDB serves the
same queries from the multikey ``books.terms`` index.

Memory: each dataset reports the process's resident set size (VmRSS) before and
after loading it, and after its searches, each after a garbage collection; on the
embedded engine the difference is what the catalogue costs the server (its
documents, then the index maps the first searches build), the figure issues 12
and "No request may stall the shop" compare (40,000 books in 4 stores). Each book
is handed to add_book as a fresh copy (a JSON round trip, as a request body is
parsed), so the stored documents share no string with the bench's own list.
"""
import argparse
import gc
import json
import os
import random
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import defaultdict

from be.backend import Backend
from be.config import MEMORY, Settings
from be.model import search, stores, users
from be.sample_books import COLUMNS, CONTENT_WORDS_EN, CONTENT_WORDS_ZH, generate, row_to_book
from fe.bench.run import percentile

DEFAULT_SAMPLE = os.environ.get("BOOKSTORE_SAMPLE_DB") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "data", "book.db")
KINDS = ("title", "title word", "tag", "author", "english", "content", "store", "broad")
# words in thousands of books (issue 15: 3,500-11,000 hits over 40,000 books)
BROAD_WORDS = ("小说", "经典", "the")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fe.bench.search_bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=40000, help="generated books (default 40000)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument("--stores", type=int, default=4, help="stores per dataset (default 4)")
    p.add_argument("--sample", default=DEFAULT_SAMPLE,
                   help="the real 100-row book.db (default ../shared/data/book.db)")
    p.add_argument("--no-sample", action="store_true", help="skip the sample dataset")
    p.add_argument("--queries", type=int, default=140,
                   help="searches per dataset, the kinds in turn (default 140)")
    p.add_argument("--page-size", type=int, default=20, help="page_size of each search")
    p.add_argument("--http", action="store_true",
                   help="query over HTTP (in-process waitress server) instead of the model layer")
    args = p.parse_args(argv)
    if args.rows < 0 or args.stores < 1 or args.queries < 1:
        p.error("--rows must be >= 0, --stores and --queries >= 1")
    if not 1 <= args.page_size <= 100:
        p.error("--page-size must be between 1 and 100")
    return args


# ---------------------------------------------------------------- datasets

def rss_bytes():
    """This process's resident set size now (Linux /proc; peak RSS elsewhere)."""
    gc.collect()
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sample_books(path):
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM book ORDER BY id").fetchall()
    return [row_to_book(row, pictures=0).__dict__ for row in rows]


def generated_books(rows, seed):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "books.db")
        generate(path, rows, seed)
        return sample_books(path)


def load_books(ctx, books, n_stores, everywhere=False, out=print):
    """Register a seller with ``n_stores`` stores and list ``books`` through the model
    layer's add_book (so each book's search terms are computed as a request would):
    every store lists every book with ``everywhere``, else each book is in one
    store and every tenth in two. Returns (store ids, {store: [books]}, listings,
    seconds)."""
    seller = f"search_bench_{uuid.uuid4().hex[:8]}"
    users.register(ctx, seller, "bench-pw")
    store_ids = [f"{seller}_s{n}" for n in range(n_stores)]
    for store in store_ids:
        stores.create_store(ctx, seller, store)
    store_books = defaultdict(list)
    search.index_fields({"title": "预热 warm-up"})  # jieba's dictionary, loaded once
    started = time.perf_counter()
    listings = 0
    for i, info in enumerate(books):
        chosen = store_ids if everywhere else sorted(
            {store_ids[i % n_stores], store_ids[(i // 10) % n_stores]} if i % 10 == 0
            else {store_ids[i % n_stores]})
        for store in chosen:
            # a fresh copy, as a request body parsed from JSON is
            stores.add_book(ctx, seller, store, json.loads(json.dumps(info)), 1000)
            store_books[store].append(info)
            listings += 1
        if (i + 1) % 5000 == 0:
            out(f"  ... {i + 1} books loaded ({time.perf_counter() - started:.0f} s)")
    return store_ids, store_books, listings, time.perf_counter() - started


class Dataset:
    """A fresh database holding ``books`` in ``n_stores`` stores, loaded via add_book."""

    def __init__(self, name, books, n_stores, everywhere, out):
        base = Settings.from_env(data_dir=MEMORY)
        db_name = base.db_name if base.embedded else f"{base.db_name}_searchbench_{uuid.uuid4().hex[:8]}"
        self.backend = Backend(Settings.from_env(db_name=db_name, data_dir=MEMORY))
        self.name, self.books = name, books
        ctx = self.backend
        search.index_fields({"title": "预热 warm-up"})  # jieba's dictionary, loaded once
        self.rss_before = rss_bytes()
        self.stores, self.store_books, self.listings, self.load_s = load_books(
            ctx, books, n_stores, everywhere, out)
        self.rss_after = rss_bytes()
        terms = [len(d.get("terms", ()))
                 for d in ctx.db.descriptions.find({}, {"terms": 1, "_id": 0})]
        self.terms_per_book = sum(terms) / max(1, len(terms))

    def drop(self):
        if not self.backend.settings.embedded:
            self.backend.engine.client.drop_database(self.backend.settings.db_name)


def _cjk_words(text):
    out = []
    for cjk, run in search._tokens(search.normalize(text)):
        if cjk:
            out += [w for w in search._jieba().cut(run, HMM=False) if len(w) == 2]
    return out


def make_queries(ds, count, rng):
    """``count`` (kind, q, fields, store_id) tuples, the kinds taken in turn."""
    books = ds.books
    english = [b for b in books if re.search(r"[A-Za-z]{4,}", b["title"])]
    content_words = [w for w in CONTENT_WORDS_ZH + CONTENT_WORDS_EN
                     if any(w in (b["content"] or "") for b in books[:2000])]
    if not content_words:  # the sample: two-character words of its contents
        content_words = [w for b in books for w in _cjk_words((b["content"] or "")[:40])[:1]]
    queries = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        book = rng.choice(books)
        store = None
        if kind == "title":
            q = book["title"]
        elif kind in ("title word", "store"):
            words = _cjk_words(book["title"]) or re.findall(r"[A-Za-z]{3,}", book["title"])
            q = rng.choice(words) if words else book["title"]
            if kind == "store":
                store = rng.choice(ds.stores)
        elif kind == "tag":
            q = rng.choice(book["tags"]) if book["tags"] else book["title"]
        elif kind == "author":
            q = book["author"] or book["title"]
        elif kind == "english":
            source = rng.choice(english) if english else book
            words = re.findall(r"[A-Za-z]{4,}", source["title"]) or [source["title"]]
            q = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in rng.choice(words))
        elif kind == "broad":
            q = rng.choice(BROAD_WORDS)
        else:
            q = rng.choice(content_words) if content_words else book["title"]
        fields = "content" if kind == "content" else None
        queries.append((kind, q, fields, store))
    return queries


# ---------------------------------------------------------------- measuring

class Runner:
    """Calls one search, through the model layer or over HTTP; (seconds, total)."""

    def __init__(self, backend, http, page_size):
        self.backend, self.page_size, self.server = backend, page_size, None
        if http:
            from fe.access.search import Search
            from fe.serving import ThreadedServer
            self.server = ThreadedServer(backend, threads=4)
            self.api = Search(self.server.url)

    def __call__(self, q, fields, store_id):
        t0 = time.perf_counter()
        if self.server is None:
            _, total = search.search_books(self.backend, q, fields, store_id, 1, self.page_size)
        else:
            code, reply = self.api.books(q, fields=fields, store_id=store_id,
                                         page_size=self.page_size)
            if code != 200:
                raise RuntimeError(f"search {q!r} answered {code}: {reply}")
            total = reply["total"]
        return time.perf_counter() - t0, total

    def close(self):
        if self.server is not None:
            self.server.stop()


def measure(ds, args, out):
    rng = random.Random(args.seed)
    runner = Runner(ds.backend, args.http, args.page_size)
    try:
        queries = make_queries(ds, args.queries, rng)
        runner(queries[0][1], None, None)  # warm up (jieba, connections)
        by_kind, totals = defaultdict(list), defaultdict(list)
        for kind, q, fields, store in queries:
            seconds, total = runner(q, fields, store)
            by_kind[kind].append(seconds)
            totals[kind].append(total)
    finally:
        runner.close()
    ds.rss_searched = rss_bytes()
    every = [s for values in by_kind.values() for s in values]
    result = {
        "dataset": ds.name, "books": len(ds.books), "stores": len(ds.stores),
        "listings": ds.listings, "load_s": ds.load_s, "terms_per_book": ds.terms_per_book,
        "rss_before_mb": ds.rss_before / 2**20, "rss_after_mb": ds.rss_after / 2**20,
        "load_mb": (ds.rss_after - ds.rss_before) / 2**20,
        "rss_searched_mb": ds.rss_searched / 2**20,
        "queries": len(every), "p50_ms": percentile(every, 50) * 1000,
        "p99_ms": percentile(every, 99) * 1000, "kinds": {},
    }
    for kind in KINDS:
        if by_kind[kind]:
            result["kinds"][kind] = {
                "queries": len(by_kind[kind]),
                "p50_ms": percentile(by_kind[kind], 50) * 1000,
                "p99_ms": percentile(by_kind[kind], 99) * 1000,
                "mean_total": sum(totals[kind]) / len(totals[kind]),
            }
    print_result(result, out)
    return result


def print_result(r, out=print):
    out(f"\n== {r['dataset']}: {r['books']} books, {r['listings']} listings in "
        f"{r['stores']} stores (loaded in {r['load_s']:.1f} s, "
        f"{r['terms_per_book']:.0f} index terms per book) ==")
    out(f"  memory: RSS {r['rss_before_mb']:.0f} MiB before loading, {r['rss_after_mb']:.0f} MiB "
        f"after: the catalogue costs {r['load_mb']:.0f} MiB; {r['rss_searched_mb']:.0f} MiB "
        f"after the searches (+{r['rss_searched_mb'] - r['rss_before_mb']:.0f} MiB with the "
        f"index maps they build)")
    out(f"  search over {r['queries']} queries: p50 {r['p50_ms']:.1f} ms   "
        f"p99 {r['p99_ms']:.1f} ms")
    out(f"  {'kind':<12}{'queries':>8}{'p50 ms':>10}{'p99 ms':>10}{'mean total':>12}")
    for kind, k in r["kinds"].items():
        out(f"  {kind:<12}{k['queries']:>8}{k['p50_ms']:>10.1f}{k['p99_ms']:>10.1f}"
            f"{k['mean_total']:>12.1f}")


def run(args, out=print):
    probe = Settings.from_env()
    out(f"search bench: {'HTTP GET /search/books (in-process waitress)' if args.http else 'model layer (be.model.search.search_books)'}, "
        f"{'embedded mongomock engine' if probe.embedded else 'MongoDB at ' + probe.mongodb_uri}, "
        f"page_size {args.page_size}")
    datasets = []
    if not args.no_sample:
        if os.path.exists(args.sample):
            datasets.append(("sample", lambda: sample_books(args.sample), True))
        else:
            out(f"(no sample at {args.sample}: skipped)")
    if args.rows:
        datasets.append((f"generated {args.rows}", lambda: generated_books(args.rows, args.seed),
                         False))
    results = []
    for name, books, everywhere in datasets:
        out(f"\nloading {name} ...")
        ds = Dataset(name, books(), args.stores, everywhere, out)
        try:
            results.append(measure(ds, args, out))
        finally:
            ds.drop()
    if results:
        out("\nsummary")
        for r in results:
            out(f"  {r['dataset']:<18} {r['books']:>6} books  search p50 {r['p50_ms']:8.1f} ms"
                f"   p99 {r['p99_ms']:8.1f} ms   catalogue {r['load_mb']:6.0f} MiB")
    return results


def main(argv=None):
    from be.server import tune_for_serving
    tune_for_serving()  # the process settings of a server: GIL switch interval, frozen GC
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
