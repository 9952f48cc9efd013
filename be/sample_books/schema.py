"""The course's ``book.db`` schema and a row of it as the classic client's book.

One table ``book`` of 17 columns (ids as digit strings, price in integer cents,
tags as newline-separated text, the cover as a PNG blob or NULL). The generator
writes it, the importer (scripts.import_books) and fe.access.book read it, and
be.demo lists generated rows: all of them take the columns and the conversion
from here.
"""
import base64

# Column order and declared types of the course's book table.
COLUMN_TYPES = (
    ("id", "TEXT"),
    ("title", "TEXT"),
    ("author", "TEXT"),
    ("publisher", "TEXT"),
    ("original_title", "TEXT"),
    ("translator", "TEXT"),
    ("pub_year", "TEXT"),
    ("pages", "INT"),
    ("price", "INT"),
    ("currency_unit", "TEXT"),
    ("binding", "TEXT"),
    ("isbn", "TEXT"),
    ("author_intro", "TEXT"),
    ("book_intro", "TEXT"),
    ("content", "TEXT"),
    ("tags", "TEXT"),
    ("picture", ""),  # no declared type, as in the real file
)
COLUMNS = tuple(name for name, _ in COLUMN_TYPES)

# Same text as the real file's sqlite_master entry.
CREATE_TABLE = 'CREATE TABLE "book"(\n' + ",\n".join(
    ("  %s %s" % (name, decl)).rstrip() for name, decl in COLUMN_TYPES
) + "\n)"


class Book:
    """A book as the classic client sends it: ``vars(book)`` is an add_book
    ``book_info`` (the 15 text and number columns, ``tags`` a list, ``pictures``
    a list of base64 strings)."""

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
