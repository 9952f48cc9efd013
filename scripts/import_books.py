"""Load a SQLite file in the course's ``book.db`` schema into a seller's store.

Usage::

    python -m scripts.import_books --url http://127.0.0.1:5000/ --user seller1 \\
        --password pw --store store1 --file book.db --stock 100 --register

It talks to a running server over the HTTP API (the ``fe.access`` client), so it
works whichever engine the server uses. Rows go in batches, ``POST
/seller/add_books`` with up to 100 books (``BATCH``, ``--batch``) and about 16
MiB of JSON (``BATCH_BYTES``, well inside the server's 64 MiB body limit) each;
the picture blob is sent base64 in ``book_info.pictures``. 40,000 generated
books into 4 stores take 25-30 s (the server's CPU: ~22 s in memory; one
add_book per row took 100-140 s): see ``python -m fe.bench --mode import``.

Requests at a time (``--workers``): by default one against a server on the
embedded engine (its ``/health`` says which). There the server's one process is
the bottleneck and one batch keeps it as busy as more do (its CPU per 10,000
books was the same, 5.8-6.6 s), while a second batch only waits in the queue
ahead of other clients' requests (on an in-memory server a request arriving
during the import waited p50 35-40 ms with one, 80-190 ms with two, on a shared
2-core machine). Three against MongoDB, whose server runs requests side by side.

What it sends is the store's own description of each book (issue 12):
importing another file that reuses a book id into another store changes
nothing in this one, and rows that several stores import alike are stored once
on the server.

``--update`` re-sends the rows the store already lists with ``update_book``, so
the store's descriptions and prices follow a corrected file (its stock is left
as it is).

Resumable: before sending anything it asks the server which books the store
already lists (``GET /seller/book_ids``, 5,000 ids per page: 40,000 in 8
requests) and skips those; a book the server refuses with 516 (already listed,
e.g. by a concurrent run or a batch whose reply was lost) also counts as done,
so a re-run that finds everything imported sends no book at all (about 1 s for
40,000 in one store). A batch answered 503 (the server's time budget ran out
part-way: each of its books is listed or not) is sent again, up to ``RETRIES``
times. The server is asked rather than a progress file kept beside the input
because the server is the only thing that knows what it holds: an embedded
server that restarted has lost everything a progress file would claim is done,
and a file can be imported into several stores or servers.

Exit status: 0 all rows listed, 1 some rows refused (each reported), 2 the file
is not in the book.db schema or the server/account/store cannot be used.
"""
import argparse
import json
import os
import sqlite3
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import requests
from tqdm import tqdm

from be.sample_books import COLUMNS, row_to_book
from fe import conf
from fe.access.auth import Auth
from fe.access.seller import Seller

PAGE_SIZE = 5000  # the most GET /seller/book_ids returns per page
BATCH = 100  # the most POST /seller/add_books takes
BATCH_BYTES = 16 << 20  # JSON per batch (a larger book goes alone; the server takes 64 MiB)
WORKERS = {"embedded": 1, "mongodb": 3}  # requests at a time, by the server's engine
RETRIES = 3  # a batch answered 503 is sent again this many times
sleep = time.sleep  # the pause before sending a batch again (tests replace it)


class ImportFailed(Exception):
    """A problem that stops the import; ``str()`` is the one-line message."""


class BadBookFile(ImportFailed):
    """The file is not a SQLite file with a ``book`` table of COLUMNS."""


@dataclass
class Result:
    total: int = 0
    imported: int = 0
    skipped: int = 0          # listed before this run (or 516 during it)
    updated: int = 0          # listed before, description re-sent (--update)
    failed: list = field(default_factory=list)  # (book id, status, message) refused


# ---------------------------------------------------------------- the file

def open_book_file(path):
    """A read-only connection to ``path``, checked against the book.db schema."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BadBookFile(f"{path}: no such file")
    if not os.path.isfile(path):
        raise BadBookFile(f"{path}: not a file")
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        names = {row[1] for row in conn.execute("PRAGMA table_info(book)")}
    except sqlite3.DatabaseError as exc:
        raise BadBookFile(f"{path}: not a SQLite book.db file ({exc})")
    if not names:
        conn.close()
        raise BadBookFile(f"{path}: not a book.db file: it has no table 'book'")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        conn.close()
        raise BadBookFile(f"{path}: not a book.db file: table 'book' lacks column(s) "
                          f"{', '.join(missing)}")
    return conn


def _whole(value):
    """pages/price as the API wants them (integers); numeric text is converted,
    anything else is sent as is and the server reports it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def book_info(row):
    """The add_book ``book_info`` for one row of COLUMNS."""
    book = row_to_book(row, pictures=1)
    book.id = None if book.id is None else str(book.id)
    book.pages = _whole(book.pages)
    book.price = _whole(book.price)
    return book


# ---------------------------------------------------------------- the server

def _unreachable(what, exc):
    url = getattr(exc.request, "url", None) or "?"
    return ImportFailed(f"{what}: cannot reach the server ({exc.__class__.__name__} on {url})")


def _call(what, fn, *args):
    try:
        return fn(*args)
    except requests.RequestException as exc:
        raise _unreachable(what, exc)


def connect(url, user, password, store, register):
    """(a logged-in Seller owning ``store``, whether the store was created just
    now): the seller is registered and the store created first if asked."""
    auth = Auth(url)
    if register:
        code = _call("register", auth.register, user, password)
        if code not in (200, 512):
            raise ImportFailed(f"register {user}: server answered {code}")
    code, token = _call("login", auth.login, user, password, "import_books")
    if code != 200:
        raise ImportFailed(f"login as {user} failed ({code}): wrong user or password"
                           + ("" if register else "; pass --register to create the account"))
    seller = Seller(url, user, password, token)  # this login's token: no second one
    created = False
    if register:
        code = _call("create_store", seller.create_store, store)
        if code not in (200, 514):
            raise ImportFailed(f"create store {store}: server answered {code}")
        created = code == 200
    return seller, created


def server_workers(url):
    """How many requests to send at a time: WORKERS of the engine the server's
    /health names (2 if it does not say)."""
    try:
        engine = requests.get(url + "health", timeout=30).json().get("engine")
    except (requests.RequestException, ValueError):
        engine = None
    return WORKERS.get(engine, 2)


def listed_ids(seller, store):
    """Ids of every book the store lists already, page after page by cursor."""
    ids, after = set(), None
    while True:
        code, body = _call("list books", seller.book_ids, store, after, PAGE_SIZE)
        if code == 513:
            raise ImportFailed(f"store {store} does not exist; pass --register to create it")
        if code == 401:
            raise ImportFailed(f"store {store} is not owned by {seller.seller_id}")
        if code != 200:
            raise ImportFailed(f"list books of {store}: server answered {code}: "
                               f"{body.get('message')}")
        ids.update(body["book_ids"])
        after = body.get("next")
        if not after:
            return ids


# ---------------------------------------------------------------- the import

def import_books(url, user, password, store, path, stock=100, register=False,
                 workers=None, progress=True, update=False, batch_size=None):
    """Import every row of ``path`` not yet listed in ``store`` (and, with
    ``update``, re-send those listed with update_book); returns a Result.
    ``workers`` None: as WORKERS says for the server's engine.
    Raises BadBookFile / ImportFailed for problems that stop the import."""
    if not url.endswith("/"):
        url += "/"
    conn = open_book_file(path)
    try:
        total = conn.execute("SELECT count(*) FROM book").fetchone()[0]
        seller, created = connect(url, user, password, store, register)
        workers = workers or server_workers(url)
        done = set() if created else listed_ids(seller, store)  # a new store lists nothing
        result = Result(total=total)
        # ids first, then only the rows to send, one by rowid: a re-run reads no
        # book's texts or picture (a row of the course's sample averages 45 KB:
        # 40,000 of them would be ~1.8 GB to read for nothing)
        keys = conn.execute("SELECT rowid, id FROM book ORDER BY rowid").fetchall()
        full = f"SELECT {', '.join(COLUMNS)} FROM book WHERE rowid = ?"
        bar = tqdm(total=total, unit="book", desc=f"import {Path(path).name}",
                   disable=not progress, file=sys.stderr)
        with bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            running = set()

            def collect(futures):
                for fut in futures:
                    try:
                        outcomes = fut.result()
                    except requests.RequestException as exc:
                        raise _unreachable("add_books (run again to resume)", exc)
                    for book_id, code, message, updating in outcomes:
                        if code == 200 and updating:
                            result.updated += 1
                        elif code == 200:
                            result.imported += 1
                        elif code == 516:
                            result.skipped += 1
                        else:
                            result.failed.append((book_id, code, message))
                    bar.update(len(outcomes))

            def submit(fn, *args):
                nonlocal running
                if len(running) >= 2 * max(1, workers):  # bounded: rows hold pictures
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    collect(finished)
                running.add(pool.submit(fn, *args))

            batch, size = [], 0
            for rowid, book_id in keys:
                listed = book_id is not None and str(book_id) in done
                if listed and not update:
                    result.skipped += 1
                    bar.update(1)
                    continue
                info = book_info(conn.execute(full, (rowid,)).fetchone())
                if listed:
                    submit(_update, seller, store, info)
                    continue
                item = {"book_info": info.__dict__, "stock_level": stock}
                cost = len(json.dumps(item))  # what it adds to the body, as requests sends it
                if batch and (len(batch) >= (batch_size or BATCH) or size + cost > BATCH_BYTES):
                    submit(_send_batch, seller, store, batch)
                    batch, size = [], 0
                batch.append(item)
                size += cost
            if batch:
                submit(_send_batch, seller, store, batch)
            collect(wait(running)[0])
        return result
    finally:
        conn.close()


def _update(seller, store, info):
    """[(book id, status, message, True)] of one listed row re-sent by update_book."""
    code = seller.update_book(store, info)
    return [(info.id, code, "", True)]


def _send_batch(seller, store, batch):
    """[(book id, status, message, False)] of one add_books call, one per book. A
    503 is sent again (its books are each listed or not: those listed answer 516
    the next time), up to RETRIES times; any other refusal of the whole call is
    every book's status."""
    for attempt in range(RETRIES + 1):
        code, body = seller.add_books(store, [(item["book_info"], item["stock_level"])
                                              for item in batch])
        if code != 503 or attempt == RETRIES:
            break
        sleep(0.5 * (attempt + 1))  # the server is busy: give it a moment
    if code == 200:
        return [(r["book_id"], r["code"], r["message"], False) for r in body["books"]]
    return [(item["book_info"]["id"], code, body.get("message", ""), False) for item in batch]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Import a book.db (course schema) into a seller's store over the HTTP API.")
    parser.add_argument("--url", default=conf.URL, help=f"server URL (default {conf.URL})")
    parser.add_argument("--user", required=True, help="seller user id")
    parser.add_argument("--password", required=True, help="seller password")
    parser.add_argument("--store", required=True, help="store id")
    parser.add_argument("--file", required=True, help="SQLite file in the book.db schema")
    parser.add_argument("--stock", type=int, default=100, help="stock level of each book")
    parser.add_argument("--register", action="store_true",
                        help="register the seller and create the store if missing")
    parser.add_argument("--update", action="store_true",
                        help="re-send books the store lists already (update_book): their "
                             "descriptions and prices follow the file, stock unchanged")
    parser.add_argument("--workers", type=int, default=None,
                        help="requests at a time (default: 1 against the embedded engine, "
                             "3 against MongoDB)")
    parser.add_argument("--batch", type=int, default=BATCH,
                        help=f"books per request (1 to {BATCH}, default {BATCH})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 0 <= args.stock <= 10**9:
        parser.error("--stock must be between 0 and 1000000000")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if not 1 <= args.batch <= BATCH:
        parser.error(f"--batch must be between 1 and {BATCH}")
    try:
        result = import_books(args.url, args.user, args.password, args.store, args.file,
                              stock=args.stock, register=args.register,
                              workers=args.workers, progress=not args.no_progress,
                              update=args.update, batch_size=args.batch)
    except ImportFailed as exc:
        print(f"import_books: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: {result.total} books, {result.imported} imported, "
          + (f"{result.updated} updated, " if args.update else "")
          + f"{result.skipped} already listed, {len(result.failed)} refused")
    for book_id, code, message in result.failed[:20]:
        print(f"  book {book_id}: refused with {code}" + (f": {message}" if message else ""),
              file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
