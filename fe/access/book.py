"""Books as the classic tests use them, read from a file in the course's book.db
schema (the real sample, or one made by scripts/gen_books.py)."""
import base64
import random
import sqlite3

from fe import conf


class Book:
    def __init__(self):
        self.id = None
        self.title = None
        self.author = None
        self.publisher = None
        self.original_title = None
        self.translator = None
        self.pub_year = None
        self.pages = None
        self.price = None
        self.currency_unit = None
        self.binding = None
        self.isbn = None
        self.author_intro = None
        self.book_intro = None
        self.content = None
        self.tags = []
        self.pictures = []


COLUMNS = ("id", "title", "author", "publisher", "original_title", "translator", "pub_year",
           "pages", "price", "currency_unit", "binding", "isbn", "author_intro", "book_intro",
           "content", "tags", "picture")


def row_to_book(row, pictures=1):
    """A Book from one row of COLUMNS; tags split on newlines, the picture sent
    ``pictures`` times as base64 (the classic client sends it 0-9 times)."""
    book = Book()
    for name, value in zip(COLUMNS[:15], row[:15]):
        setattr(book, name, value)
    book.tags = [t.strip() for t in (row[15] or "").split("\n") if t.strip()]
    if row[16] is not None:
        encoded = base64.b64encode(row[16]).decode("utf-8")
        book.pictures = [encoded] * pictures
    return book


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
