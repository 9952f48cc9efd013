"""Books as the classic tests use them, read from a file in the course's book.db
schema (the real sample, or one made by ``python -m scripts.gen_books``). The
schema and the row-to-Book conversion are be.sample_books's."""
import random
import sqlite3

from be.sample_books import COLUMNS, Book, row_to_book
from fe import conf


class BookDB:
    def __init__(self, large: bool = False, path: str = None):
        self.book_db = path or conf.Book_DB
        if not self.book_db:
            raise RuntimeError("no book file: set fe.conf.Book_DB or BOOKSTORE_BOOK_DB")

    def _connect(self):
        return sqlite3.connect(self.book_db)

    def get_book_count(self):
        with self._connect() as conn:
            return conn.execute("SELECT count(id) FROM book").fetchone()[0]

    def get_book_info(self, start, size) -> [Book]:
        query = f"SELECT {', '.join(COLUMNS)} FROM book ORDER BY id LIMIT ? OFFSET ?"
        with self._connect() as conn:
            rows = conn.execute(query, (size, start)).fetchall()
        return [row_to_book(row, pictures=random.randint(0, 2)) for row in rows]
