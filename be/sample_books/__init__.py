"""Book data in the course's ``book.db`` schema: the columns and the row-to-book
conversion (schema), and a deterministic synthetic catalogue (generator).

The one place for this code: the server's ``--demo`` (be.demo), the importer
(scripts.import_books), the test client's BookDB (fe.access.book), the benches
and the tests all import it from here; ``python -m scripts.gen_books`` is its
command line.
"""
from be.sample_books.generator import CONTENT_WORDS_EN, CONTENT_WORDS_ZH, generate, iter_books
from be.sample_books.schema import COLUMN_TYPES, COLUMNS, CREATE_TABLE, Book, row_to_book

__all__ = ["Book", "COLUMNS", "COLUMN_TYPES", "CONTENT_WORDS_EN", "CONTENT_WORDS_ZH",
           "CREATE_TABLE", "generate", "iter_books", "row_to_book"]
