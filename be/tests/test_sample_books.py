"""Tests for be.sample_books, the synthetic book.db generator and the schema it writes
(its command line, scripts.gen_books, is tested in scripts/tests/test_gen_books.py)."""

import os
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from be.sample_books import COLUMNS, generate, generator, iter_books

REAL_DB = Path(os.environ.get(
    "REAL_BOOK_DB", Path(__file__).resolve().parents[3] / "shared" / "data" / "book.db"))

EXPECTED_COLUMNS = [
    ("id", "TEXT"), ("title", "TEXT"), ("author", "TEXT"), ("publisher", "TEXT"),
    ("original_title", "TEXT"), ("translator", "TEXT"), ("pub_year", "TEXT"),
    ("pages", "INT"), ("price", "INT"), ("currency_unit", "TEXT"), ("binding", "TEXT"),
    ("isbn", "TEXT"), ("author_intro", "TEXT"), ("book_intro", "TEXT"),
    ("content", "TEXT"), ("tags", "TEXT"), ("picture", ""),
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def columns(path):
    with sqlite3.connect(path) as conn:
        return [(r[1], r[2]) for r in conn.execute("PRAGMA table_info(book)")]


def rows(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM book ORDER BY rowid").fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("books") / "book.db"
    generate(path, 2000, seed=7)
    return path


@pytest.fixture(scope="module")
def books(db):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM book ORDER BY rowid")]
    finally:
        conn.close()


def test_schema_matches_expected_columns(db):
    assert columns(db) == EXPECTED_COLUMNS
    assert [name for name, _ in EXPECTED_COLUMNS] == list(COLUMNS)


def test_schema_matches_real_book_db(db):
    if not REAL_DB.exists():
        pytest.skip("real book.db not available at %s" % REAL_DB)
    assert columns(db) == columns(REAL_DB)


def test_row_count_and_generator_agree(db):
    assert len(rows(db)) == 2000
    first = next(iter_books(1, seed=7))
    assert list(first) == list(COLUMNS)
    assert tuple(first.values()) == rows(db)[0]


def test_same_seed_gives_identical_rows(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    generate(a, 300, seed=42)
    generate(b, 300, seed=42)
    assert rows(a) == rows(b)
    assert list(iter_books(300, seed=42)) == list(iter_books(300, seed=42))


def test_different_seeds_differ(tmp_path):
    assert list(iter_books(50, seed=1)) != list(iter_books(50, seed=2))


def test_generate_overwrites_existing_file(tmp_path):
    path = tmp_path / "book.db"
    path.write_bytes(b"not a database")
    generate(path, 10, seed=1)
    assert len(rows(path)) == 10
    generate(path, 5, seed=1)
    assert len(rows(path)) == 5


def test_ids_unique_digit_strings(books):
    ids = [b["id"] for b in books]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and i.isdigit() and 7 <= len(i) <= 8 for i in ids)


def test_isbn_13_digits_with_valid_check_digit(books):
    for book in books:
        isbn = book["isbn"]
        assert len(isbn) == 13 and isbn.isdigit()
        total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(isbn))
        assert total % 10 == 0


def test_tags_newline_format(books):
    for book in books:
        tags = book["tags"]
        assert tags.endswith("\n")
        parts = tags[:-1].split("\n")
        assert 3 <= len(parts) <= 8
        assert all(parts) and len(set(parts)) == len(parts)


def test_numeric_columns_are_ints(db, books):
    for book in books:
        assert type(book["price"]) is int and 100 <= book["price"] <= 30000
        assert type(book["pages"]) is int and book["pages"] > 0
    with sqlite3.connect(db) as conn:
        types = conn.execute("SELECT DISTINCT typeof(price), typeof(pages) FROM book").fetchall()
    assert types == [("integer", "integer")]


def test_value_styles(books):
    for book in books:
        assert book["currency_unit"] in ("元", "USD")
        assert book["binding"] in ("平装", "精装", "Paperback", "Hardcover")
        year, *rest = book["pub_year"].split("-")
        assert len(year) == 4 and year.isdigit() and 1 <= len(rest) <= 2
    chinese = sum(b["currency_unit"] == "元" for b in books) / len(books)
    assert 0.6 < chinese < 0.8
    # Nullable columns really contain NULLs sometimes, as in the real data.
    for column in ("author", "original_title", "translator"):
        assert any(b[column] is None for b in books)
        assert any(b[column] is not None for b in books)
    assert any(b["content"] == "" for b in books)


def parse_png(blob):
    """Check chunk CRCs and return (width, height, decompressed pixel data)."""
    assert blob[:8] == PNG_SIGNATURE
    pos, chunks = 8, {}
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        kind, data = blob[pos + 4:pos + 8], blob[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", blob[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc
        chunks[kind] = data
        pos += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_pictures_are_png_or_null(books):
    pictures = [b["picture"] for b in books]
    nulls = sum(p is None for p in pictures)
    assert 0.03 < nulls / len(pictures) < 0.2
    blobs = [p for p in pictures if p is not None]
    for blob in blobs:
        assert isinstance(blob, bytes)
        width, height, pixels = parse_png(blob)
        assert len(pixels) == height * (1 + 3 * width)
    assert len(set(blobs)) > len(blobs) * 0.9  # pictures vary


def test_content_words_not_in_other_vocabulary():
    other = " ".join(
        str(value).lower()
        for name, value in vars(generator).items()
        if name.isupper() and not name.startswith("CONTENT_WORDS")
    )
    for word in generator.CONTENT_WORDS_ZH + generator.CONTENT_WORDS_EN:
        assert word.lower() not in other, word


def test_content_has_words_found_nowhere_else_in_the_book(books):
    words = generator.CONTENT_WORDS_ZH + generator.CONTENT_WORDS_EN
    with_content = [b for b in books if b["content"]]
    hits = 0
    for book in with_content:
        rest = " ".join(str(v) for k, v in book.items() if k not in ("content", "picture")).lower()
        if any(w in book["content"].lower() and w not in rest for w in words):
            hits += 1
    assert hits > 0.95 * len(with_content)


def test_titles_mostly_distinct_at_40000_rows():
    titles = [book["title"] for book in iter_books(40000, seed=3)]
    assert len(set(titles)) > 0.9 * len(titles)
