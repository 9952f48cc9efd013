"""REST test fixtures: one real server (waitress, in this process, on a free port)
over a fresh embedded database, and a generated book file for fe.access.book."""

import pytest

from be.backend import Backend
from be.sample_books import generate
from be.tests.support import engines
from fe import conf
from fe.serving import ThreadedServer


@pytest.fixture(scope="session")
def backend():
    """The session server's backend: embedded, or BOOKSTORE_TEST_MONGODB_URI's."""
    settings = engines.settings("rest")
    return Backend(settings, engine=engines.engine(settings))


@pytest.fixture(scope="session", autouse=True)
def server(backend, tmp_path_factory):
    """Serve the API for the whole session and point fe.conf at it."""
    book_db = tmp_path_factory.mktemp("books") / "book.db"
    generate(str(book_db), 300, seed=7)
    conf.Book_DB = str(book_db)
    srv = ThreadedServer(backend)
    conf.URL = srv.url
    yield srv.server
    srv.stop()
