"""scripts/import_books.py against the in-process server (see conftest.py)."""
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fe import conf
from fe.access.auth import Auth
from fe.access.search import Search
from fe.access.seller import Seller
from scripts import import_books as ib
from be.sample_books import generate

REPO = Path(__file__).resolve().parents[2]
REAL_DB = REPO.parent / "shared" / "data" / "book.db"  # where CI keeps the course sample


def ids():
    tag = uuid.uuid4().hex[:8]
    return f"imp_seller_{tag}", "pw", f"imp_store_{tag}"


def file_rows(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, title, price, picture FROM book").fetchall()


def listed(user, password, store):
    """{book_id: (title, price, stock)} of everything the store lists."""
    seller = Seller(conf.URL, user, password)
    books, page = {}, 1
    while True:
        code, body = seller.books(store, page=page, page_size=100)
        assert code == 200
        books.update({b["book_id"]: (b["title"], b["price"], b["stock_level"])
                      for b in body["books"]})
        if not body["books"]:
            assert len(books) == body["total"]
            return books
        page += 1


def run(path, user, password, store, **kw):
    kw.setdefault("register", True)
    return ib.import_books(conf.URL, user, password, store, str(path), progress=False, **kw)


def assert_store_holds(path, user, password, store, stock):
    rows = file_rows(path)
    assert listed(user, password, store) == {
        str(i): (title, price, stock) for i, title, price, _ in rows}


@pytest.fixture(scope="module")
def books40(tmp_path_factory):
    path = tmp_path_factory.mktemp("imp") / "books40.db"
    generate(path, 40, seed=21)
    return path


def test_import_lists_every_book_and_a_rerun_adds_nothing(books40, backend):
    user, pw, store = ids()
    result = run(books40, user, pw, store, stock=7)
    assert (result.total, result.imported, result.skipped, result.failed) == (40, 40, 0, [])
    assert_store_holds(books40, user, pw, store, 7)
    # pictures arrive intact (base64 over the wire, bytes in the database)
    with_picture = [(str(i), pic) for i, _, _, pic in file_rows(books40) if pic is not None]
    assert with_picture
    api = Search(conf.URL)
    for book_id, pic in with_picture:
        assert api.picture(book_id, 0, store)[1] == pic
    # one copy of each distinct picture (the generator reuses a few covers)
    assert backend.db.pictures.count_documents({}) >= len({p for _, p in with_picture})

    again = run(books40, user, pw, store, stock=7)
    assert (again.imported, again.skipped, again.failed) == (0, 40, [])
    assert_store_holds(books40, user, pw, store, 7)  # no stock added twice either


def test_a_rerun_finds_every_listed_book_past_the_list_bounds(books40, monkeypatch):
    """The store's ids are read by cursor (GET /seller/book_ids): with pages of 7
    and the server's offset and count bounds lowered to 10 rows (10,000 in
    production), every one of the 40 books is still found, and nothing is sent
    twice."""
    from be.model import paging
    user, pw, store = ids()
    assert run(books40, user, pw, store).imported == 40
    monkeypatch.setattr(ib, "PAGE_SIZE", 7)
    monkeypatch.setattr(paging, "COUNT_BOUND", 10)
    monkeypatch.setattr(paging, "MAX_OFFSET_ROWS", 10)
    again = run(books40, user, pw, store)
    assert (again.imported, again.skipped, again.failed) == (0, 40, [])


def test_interrupted_import_resumes_where_it_stopped(tmp_path, books40):
    first15 = tmp_path / "first15.db"
    generate(first15, 15, seed=21)  # same seed: the first 15 rows of books40
    user, pw, store = ids()
    assert run(first15, user, pw, store).imported == 15
    result = run(books40, user, pw, store, register=False)
    assert (result.imported, result.skipped, result.failed) == (25, 15, [])
    assert_store_holds(books40, user, pw, store, 100)


def test_book_refused_as_already_listed_counts_as_done(books40, monkeypatch):
    user, pw, store = ids()
    run(books40, user, pw, store)
    monkeypatch.setattr(ib, "listed_ids", lambda seller, store: set())  # force resending
    result = run(books40, user, pw, store)
    assert (result.imported, result.skipped, result.failed) == (0, 40, [])
    assert_store_holds(books40, user, pw, store, 100)


def test_command_line_run(tmp_path):
    path = tmp_path / "books10.db"
    generate(path, 10, seed=5)
    user, pw, store = ids()
    argv = [sys.executable, "-m", "scripts.import_books", "--url", conf.URL, "--user", user,
            "--password", pw, "--store", store, "--file", str(path), "--stock", "3",
            "--register", "--no-progress", "--batch", "4"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "10 imported" in done.stdout
    assert_store_holds(path, user, pw, store, 3)


def _retitled(src, dst, titles):
    """A copy of the book file ``src`` with some rows' titles and prices changed."""
    dst.write_bytes(src.read_bytes())
    with sqlite3.connect(dst) as conn:
        for book_id, title in titles.items():
            conn.execute("UPDATE book SET title = ?, price = price + 1 WHERE id = ?",
                         (title, book_id))
    return dst


def test_two_files_reusing_ids_in_two_stores_keep_their_own_books(tmp_path, books40, backend):
    """Issue 12: a second file that reuses a book id, imported into another store,
    leaves the first store's books as they were; identical rows are stored once."""
    (first_id, _, _, _), (second_id, _, _, _) = file_rows(books40)[:2]
    other = _retitled(books40, tmp_path / "other.db", {first_id: "Understanding Photography"})
    user, pw, store = ids()
    user2, pw2, store2 = ids()
    assert run(books40, user, pw, store).imported == 40
    descriptions = backend.db.descriptions.count_documents({})
    assert run(other, user2, pw2, store2).imported == 40
    # 39 rows are alike in both files: only the changed one adds a description
    assert backend.db.descriptions.count_documents({}) == descriptions + 1
    assert_store_holds(books40, user, pw, store, 100)
    assert_store_holds(other, user2, pw2, store2, 100)
    api = Search(conf.URL)
    assert api.book(str(first_id), store)[1]["book"]["title"] != "Understanding Photography"
    assert api.book(str(first_id), store2)[1]["book"]["title"] == "Understanding Photography"
    assert {r["store_id"] for r in api.book(str(second_id))[1]["book"]["listings"]} >= \
        {store, store2}


def test_update_resends_listed_books_and_keeps_their_stock(tmp_path, books40):
    user, pw, store = ids()
    assert run(books40, user, pw, store, stock=7).imported == 40
    (first_id, title, _, _) = file_rows(books40)[0]
    changed = _retitled(books40, tmp_path / "changed.db", {first_id: title + " (2nd ed.)"})
    plain = run(changed, user, pw, store, stock=7, register=False)
    assert (plain.imported, plain.skipped, plain.updated) == (0, 40, 0)
    assert listed(user, pw, store)[str(first_id)][0] == title  # not re-sent without --update
    result = run(changed, user, pw, store, stock=99, register=False, update=True)
    assert (result.imported, result.skipped, result.updated, result.failed) == (0, 0, 40, [])
    assert_store_holds(changed, user, pw, store, 7)


def _not_sqlite(path):
    path.write_text("id,title\n1,not a database\n")


def _no_book_table(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE books (id TEXT, title TEXT)")


def _missing_columns(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE book (id TEXT, title TEXT, price INT)")
        conn.execute("INSERT INTO book VALUES ('1', 't', 100)")


@pytest.mark.parametrize("make, says", [
    (_not_sqlite, "not a SQLite book.db file"),
    (_no_book_table, "no table 'book'"),
    (_missing_columns, "lacks column(s) author, publisher"),
    (None, "no such file"),
])
def test_a_file_not_in_the_schema_is_a_clear_error(tmp_path, capsys, make, says):
    path = tmp_path / "input.db"
    if make:
        make(path)
    user, pw, store = ids()
    code = ib.main(["--url", conf.URL, "--user", user, "--password", pw, "--store", store,
                    "--file", str(path), "--register", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("import_books: error: ") and says in err
    # the file is checked before the server is used: nothing was registered
    assert Auth(conf.URL).login(user, pw, "t")[0] == 401


def test_unknown_store_without_register_is_a_clear_error(books40, capsys):
    user, pw, store = ids()
    run(books40, user, pw, store + "_other")  # registers the seller only for another store
    code = ib.main(["--url", conf.URL, "--user", user, "--password", pw, "--store", store,
                    "--file", str(books40), "--no-progress"])
    assert code == 2
    assert "does not exist; pass --register" in capsys.readouterr().err


@pytest.mark.skipif(not REAL_DB.is_file(), reason=f"{REAL_DB} not present")
def test_real_course_sample():
    user, pw, store = ids()
    result = run(REAL_DB, user, pw, store, stock=5)
    assert result.failed == [] and result.imported == result.total == len(file_rows(REAL_DB))
    assert_store_holds(REAL_DB, user, pw, store, 5)
    assert run(REAL_DB, user, pw, store, stock=5).imported == 0


class Calls:
    """Counts the importer's add_books calls and the books they carry; ``answer``
    may replace the server's reply of a call (by call number, from 1)."""

    def __init__(self, monkeypatch, answer=None):
        self.sizes = []
        real = Seller.add_books

        def add_books(seller, store, books):
            self.sizes.append(len(books))
            faked = answer(len(self.sizes), books) if answer else None
            return faked if faked is not None else real(seller, store, books)

        monkeypatch.setattr(Seller, "add_books", add_books)


def test_rows_go_in_batches_and_a_rerun_sends_none(books40, monkeypatch):
    """Batches of at most BATCH books (here 15: 15 + 15 + 10); a re-run that finds
    every book listed sends no batch at all."""
    monkeypatch.setattr(ib, "BATCH", 15)
    calls = Calls(monkeypatch)
    user, pw, store = ids()
    result = run(books40, user, pw, store, stock=2)
    assert (result.imported, result.skipped, result.failed) == (40, 0, [])
    assert sorted(calls.sizes) == [10, 15, 15]
    calls.sizes.clear()
    user2, pw2, store2 = ids()
    assert run(books40, user2, pw2, store2, batch_size=12).imported == 40  # --batch 12
    assert sorted(calls.sizes) == [4, 12, 12, 12]
    assert_store_holds(books40, user, pw, store, 2)
    calls.sizes.clear()
    again = run(books40, user, pw, store, stock=2)
    assert (again.imported, again.skipped, calls.sizes) == (0, 40, [])


def test_a_batch_is_bounded_by_its_bytes_too(books40, monkeypatch):
    """A batch closes before BATCH_BYTES of JSON; a book larger than that goes alone."""
    rows = file_rows(books40)
    with_picture = sum(1 for *_, p in rows if p is not None)
    monkeypatch.setattr(ib, "BATCH_BYTES", 1)  # every book is over it: one per call
    calls = Calls(monkeypatch)
    user, pw, store = ids()
    assert run(books40, user, pw, store).imported == 40
    assert calls.sizes == [1] * 40 and with_picture
    assert_store_holds(books40, user, pw, store, 100)


def test_refused_rows_are_reported_and_the_others_imported(tmp_path, books40, capsys):
    """A row the server refuses (here a price that is not a number and a title too
    long) is reported with the server's reason, exit status 1; the rest of its batch
    is listed."""
    path = tmp_path / "flawed.db"
    path.write_bytes(books40.read_bytes())
    first, second = [r[0] for r in file_rows(path)[:2]]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE book SET price = 'twelve' WHERE id = ?", (first,))
        conn.execute("UPDATE book SET title = ? WHERE id = ?", ("t" * 10_001, second))
    user, pw, store = ids()
    code = ib.main(["--url", conf.URL, "--user", user, "--password", pw, "--store", store,
                    "--file", str(path), "--register", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "38 imported, 0 already listed, 2 refused" in out
    assert f"book {first}: refused with 400: invalid field 'book_info.price'" in err
    assert f"book {second}: refused with 400: invalid field 'book_info.title'" in err
    assert len(listed(user, pw, store)) == 38


def test_a_batch_answered_503_is_sent_again(books40, monkeypatch):
    """503 (the server's time budget ran out part-way: each book listed or not):
    the importer sends the batch again, and the books the first try listed count
    as done (516). Here the first try lists its first 5 books, then answers 503."""
    monkeypatch.setattr(ib, "BATCH", 20)
    monkeypatch.setattr(ib, "sleep", lambda s: None)
    user, pw, store = ids()
    real = Seller.add_books

    def answer(n, books):
        if n == 1:  # the first call: half done, then out of time
            assert real(Seller(conf.URL, user, pw), store, books[:5])[0] == 200
            return 503, {"message": "the database did not answer within the request's "
                                    "time budget; retry"}
        return None

    calls = Calls(monkeypatch, answer)
    result = run(books40, user, pw, store, workers=1)
    assert (result.imported, result.skipped, result.failed) == (35, 5, [])
    assert calls.sizes == [20, 20, 20]  # the first batch twice
    assert_store_holds(books40, user, pw, store, 100)


def test_a_batch_still_503_after_the_retries_is_reported(books40, monkeypatch):
    monkeypatch.setattr(ib, "BATCH", 40)
    monkeypatch.setattr(ib, "sleep", lambda s: None)
    calls = Calls(monkeypatch, lambda n, books: (503, {"message": "busy; retry"}))
    user, pw, store = ids()
    result = run(books40, user, pw, store)
    assert result.imported == 0 and len(result.failed) == 40
    assert {(code, message) for _, code, message in result.failed} == {(503, "busy; retry")}
    assert calls.sizes == [40] * (ib.RETRIES + 1)


def test_one_request_at_a_time_against_the_embedded_engine(books40, monkeypatch, backend):
    """By default the importer sends as many batches at a time as WORKERS says for
    the engine the server's /health names: one on the embedded engine (more would
    only wait in its queue ahead of other clients' requests)."""
    expected = 1 if backend.engine.embedded is not None else 3
    assert ib.server_workers(conf.URL) == expected
    assert ib.server_workers("http://127.0.0.1:9/") == 2  # unreachable: a guess
    pools = []
    real = ib.ThreadPoolExecutor

    def pool(max_workers):
        pools.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(ib, "ThreadPoolExecutor", pool)
    user, pw, store = ids()
    assert run(books40, user, pw, store).imported == 40
    assert run(books40, user, pw, store, workers=3).skipped == 40
    assert pools == [expected, 3]


def test_bad_worker_and_batch_counts_are_refused(books40, capsys):
    user, pw, store = ids()
    for flag, value in (("--workers", "0"), ("--batch", "0"), ("--batch", "101")):
        with pytest.raises(SystemExit) as exc:
            ib.main(["--url", conf.URL, "--user", user, "--password", pw, "--store", store,
                     "--file", str(books40), flag, value])
        assert exc.value.code == 2
        assert f"{flag} must be" in capsys.readouterr().err
