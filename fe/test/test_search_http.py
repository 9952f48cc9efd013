"""Search over HTTP (issue 5): GET /search/books, /books/<id>, /books/<id>/pictures/<n>."""
import base64
import copy
import os
import sqlite3
import uuid

import pytest

from be.sample_books import COLUMNS, row_to_book
from fe import conf
from fe.access.book import BookDB
from fe.access.new_seller import register_new_seller
from fe.access.search import Search

SAMPLE_DB = os.environ.get("BOOKSTORE_SAMPLE_DB") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "data", "book.db")


def uid(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def shop():
    """Two stores of one seller: 30 generated books (unique ids) in A, the first
    10 of them also in B at another stock; A's first book with two pictures."""
    seller = register_new_seller(uid("search_seller"), "pw")
    a, b = uid("search_a"), uid("search_b")
    assert seller.create_store(a) == 200 and seller.create_store(b) == 200
    books = []
    for n, book in enumerate(BookDB().get_book_info(0, 30)):
        book = copy.copy(book)
        book.id = uid(f"sb{n}")
        book.pictures = book.pictures[:1] * 2 if n == 0 and book.pictures else book.pictures
        assert seller.add_book(a, 5 + n, book) == 200
        if n < 10:
            assert seller.add_book(b, 100 + n, book) == 200
        books.append(book)
    return {"a": a, "b": b, "books": books, "api": Search(conf.URL)}


def test_a_title_finds_its_book_first_with_display_fields_only(shop):
    api, book = shop["api"], shop["books"][3]
    code, r = api.books(book.title, store_id=shop["a"])
    assert code == 200 and r["message"] == "ok" and r["page"] == 1 and r["page_size"] == 20
    hit = r["books"][0]
    assert hit["title"] == book.title and hit["book_id"] == book.id
    assert set(hit) == {"book_id", "title", "author", "publisher", "pub_year", "tags", "price",
                        "stock_level", "snippet"}
    assert (hit["price"], hit["stock_level"], hit["tags"]) == (book.price, 8, book.tags)
    assert isinstance(hit["snippet"], str) and len(hit["snippet"]) <= 62


def test_store_scope_and_site_wide(shop):
    api, book = shop["api"], shop["books"][1]
    _, in_b = api.books(book.title, store_id=shop["b"])
    assert [h["stock_level"] for h in in_b["books"] if h["book_id"] == book.id] == [101]
    _, site = api.books(book.title, page_size=100)
    assert [h["book_id"] for h in site["books"]].count(book.id) == 1
    assert "stock_level" not in site["books"][0]
    mine = {b.id for b in shop["books"]}
    for store, count in ((shop["a"], 30), (shop["b"], 10)):
        tag = shop["books"][0].tags[0]
        _, r = api.books(tag, fields="tags", store_id=store, page_size=100)
        tagged = {b.id for b in shop["books"][:count] if tag in b.tags}
        assert tagged <= {h["book_id"] for h in r["books"]} <= mine


def test_english_is_case_insensitive_and_paging_is_exact(shop):
    api = shop["api"]
    english = next(b for b in shop["books"] if b.currency_unit == "USD")
    word = max(english.title.replace(":", " ").split(), key=len)
    results = []
    for form in (word.lower(), word.upper()):
        _, r = api.books(form, store_id=shop["a"], page_size=100)
        results.append([h["book_id"] for h in r["books"]])
    assert english.id in results[0] and results[0] == results[1]
    _, full = api.books("的", store_id=shop["a"], page_size=100)
    pages = [api.books("的", store_id=shop["a"], page=p, page_size=4)[1] for p in (1, 2, 3)]
    assert [h["book_id"] for p in pages for h in p["books"]] == \
        [h["book_id"] for h in full["books"]][:12]
    code, past = api.books("的", store_id=shop["a"], page=1000)
    assert code == 200 and past["books"] == [] and past["total"] == full["total"]
    assert full["total_is_lower_bound"] is False and past["total_is_lower_bound"] is False


def test_content_only_when_asked(shop):
    api = shop["api"]
    book = next(b for b in shop["books"] if b.content and b.currency_unit == "元")
    word = book.content.split("\n")[1].split()[-1].split("与")[0]  # "第一章 灯塔与X" -> 灯塔
    _, default = api.books(word, store_id=shop["a"])
    _, content = api.books(word, fields=["content"], store_id=shop["a"], page_size=100)
    assert default["total"] == 0
    assert book.id in {h["book_id"] for h in content["books"]}
    assert all(word in h["snippet"] for h in content["books"])


@pytest.mark.parametrize("params, code", [
    ({"q": ""}, 400), ({"q": "   "}, 400), ({"q": "，。"}, 400),
    ({"q": "小说", "fields": "title,nope"}, 400), ({"q": "小说", "fields": ""}, 400),
    ({"q": "小说", "page": 0}, 400), ({"q": "小说", "page": "x"}, 400),
    ({"q": "小说", "page_size": 101}, 400),
    ({"q": "小说", "store_id": "no_such_store_for_search"}, 513),
])
def test_bad_search_requests(shop, params, code):
    status, r = shop["api"].books(**params)
    assert status == code and isinstance(r["message"], str) and r["message"] != "ok"


def test_missing_q_is_400(shop):
    status, r = shop["api"].books(None)
    assert status == 400 and "q" in r["message"]


def test_book_details_and_pictures(shop):
    api, book = shop["api"], shop["books"][0]
    code, r = api.book(book.id)
    assert code == 200
    detail = r["book"]
    assert detail["book_id"] == book.id and detail["title"] == book.title
    assert detail["content"] == book.content and detail["tags"] == book.tags
    assert "terms" not in detail and "pictures" not in detail
    assert sorted((x["store_id"], x["price"], x["stock_level"]) for x in detail["listings"]) == \
        sorted([(shop["a"], book.price, 5), (shop["b"], book.price, 100)])
    assert detail["picture_count"] == len(book.pictures)
    for n, encoded in enumerate(book.pictures):
        status, data, ctype = api.picture(book.id, n)
        assert status == 200 and data == base64.b64decode(encoded) and ctype == "image/png"
    status, data, ctype = api.picture(book.id, len(book.pictures))
    assert status == 404 and ctype.startswith("application/json")
    status, _, _ = api.picture(uid("nobook"), 0)
    assert status == 404
    code, r = api.book(uid("nobook"))
    assert code == 515 and r["message"]


@pytest.mark.skipif(not os.path.exists(SAMPLE_DB), reason="no ../shared/data/book.db")
def test_real_sample_titles_over_http():
    seller = register_new_seller(uid("sample_seller"), "pw")
    store = uid("sample_store")
    assert seller.create_store(store) == 200
    with sqlite3.connect(SAMPLE_DB) as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM book ORDER BY id LIMIT 20")
        books = [row_to_book(row, pictures=0) for row in rows]
    for book in books:
        assert seller.add_book(store, 2, book) == 200
    api = Search(conf.URL)
    for book in books:
        code, r = api.books(book.title, store_id=store, page_size=5)
        assert code == 200 and r["books"][0]["title"] == book.title
        if book.author:
            _, r = api.books(book.author, store_id=store, page_size=100)
            assert book.id in {h["book_id"] for h in r["books"]}
