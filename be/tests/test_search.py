"""Book search (issue 5) at the model layer, on generated books and on the real
100-row sample (../shared/data/book.db, skipped when absent)."""
import os
import re
import sqlite3
import uuid
from types import SimpleNamespace

import pytest

from be import errors
from be.backend import Backend
from be.clock import ManualClock
from be.db import INDEXES
from be.tests.support import querycheck
from be.model import catalogue, search, sessions, stores, users
from be.sample_books import COLUMNS, CONTENT_WORDS_EN, CONTENT_WORDS_ZH, iter_books, row_to_book
from be.tests.support import engines

SAMPLE_DB = os.environ.get("BOOKSTORE_SAMPLE_DB") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "data", "book.db")
GEN_ROWS = 400


def uid(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def new_ctx():
    """The search world's own database (module-scoped: the ctx fixture's is emptied
    before every test on a real MongoDB)."""
    settings = engines.settings("search")
    return Backend(settings, clock=ManualClock(), engine=engines.engine(settings))


def generated(rows, seed):
    """book_info dicts (tags as a list, no pictures) from be.sample_books."""
    return [row_to_book(tuple(d[c] for c in COLUMNS), pictures=0).__dict__
            for d in iter_books(rows, seed)]


def sample():
    if not os.path.exists(SAMPLE_DB):
        return None
    with sqlite3.connect(SAMPLE_DB) as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM book ORDER BY id").fetchall()
    return [row_to_book(row, pictures=0).__dict__ for row in rows]


def seller(ctx):
    user_id = uid("seller")
    users.register(ctx, user_id, "pw")
    return user_id, sessions.login(ctx, user_id, "pw", "t")


@pytest.fixture(scope="module")
def world():
    """Generated books split over stores A and B (every 7th in both, B at another
    price and stock); the real sample, when present, in store R and its first 30
    also in A."""
    ctx = new_ctx()
    user, token = seller(ctx)
    a, b, r = uid("storeA"), uid("storeB"), uid("storeR")
    for s in (a, b, r):
        stores.create_store(ctx, user, s)
    gen = generated(GEN_ROWS, seed=11)
    expect = {a: {}, b: {}, r: {}}  # store -> book_id -> (price, stock)

    def add(store, info, stock):
        stores.add_book(ctx, user, store, info, stock)
        expect[store][info["id"]] = (info.get("price") or 0, stock)

    for i, info in enumerate(gen):
        add(a if i % 2 == 0 else b, info, 10 + i % 7)
        if i % 7 == 0:
            other = b if i % 2 == 0 else a
            add(other, dict(info, price=(info["price"] or 0) + 111), 500 + i)
    real = sample() or []
    for i, info in enumerate(real):
        add(r, info, 3 + i % 4)
        if i < 30:
            add(a, info, 40 + i)
    books = {info["id"]: info for info in gen + real}
    return SimpleNamespace(ctx=ctx, a=a, b=b, r=r, gen=gen, real=real, books=books,
                           expect=expect)


def all_hits(ctx, q, fields=None, store_id=None, page_size=100):
    """Every hit of a query, page by page: pages never overlap, total is exact
    and the page past the end is empty."""
    hits, page, total = [], 1, None
    while True:
        rows, count = search.search_books(ctx, q, fields, store_id, page, page_size)
        total = count if total is None else total
        assert count == total
        if not rows:
            break
        hits.extend(rows)
        page += 1
    ids = [h["book_id"] for h in hits]
    assert len(ids) == len(set(ids)) == total
    return hits


def ids(hits):
    return {h["book_id"] for h in hits}


def compact(text):
    return search._compact(text)


def words2(title):
    """The two-character jieba words of a title."""
    out = []
    for cjk, run in search._tokens(search.normalize(title)):
        if cjk:
            out += [w for w in search._jieba().cut(run, HMM=False) if len(w) == 2]
    return out


def data_sets(world):
    sets = [("generated", world.gen[::13])]
    if world.real:
        sets.append(("sample", world.real))
    return sets


# ---------------------------------------------------------------- terms

def test_terms_are_per_field_lowercase_with_bigrams_and_search_mode_words():
    terms = set(search.index_fields({
        "title": "中华人民共和国史", "author": "Ada LOVELACE", "tags": ["科幻", "Sci-Fi"],
        "content": "第一章 灯塔"})["terms"])
    assert {"ti:中华人民共和国", "ti:共和国", "ti:人民", "ti:国史", "ti:史"} <= terms
    assert {"au:ada", "au:lovelace", "tg:科幻", "tg:科", "tg:sci", "tg:fi"} <= terms
    assert {"co:灯塔", "co:第一", "co:一章"} <= terms
    assert "co:灯" not in terms  # single characters only in the short fields
    assert not any(t.startswith("ti:") and "lovelace" in t for t in terms)


def test_long_fields_keep_a_capped_number_of_distinct_terms():
    long_text = "".join(chr(0x4e00 + i) for i in range(3000))
    terms = search.index_fields({"title": "T", "content": long_text, "book_intro": long_text})
    codes = [t.split(":", 1)[0] for t in terms["terms"]]
    assert codes.count("co") == codes.count("bi") == search.LONG_FIELD_CAP
    assert len(terms["terms"]) == len(set(terms["terms"]))


def test_cached_runs_give_the_terms_segmenting_each_time_gives(monkeypatch):
    """Short CJK runs' words are cached (search._run_words): the terms are those of
    cutting every run afresh, for generated books and for runs past the cached
    length."""
    books = [dict(b, tags=(b["tags"] or "").split("\n")) for b in iter_books(300, seed=3)]
    books.append({"title": "短" * 40 + "中华人民共和国" * 5, "content": "这是一本书。" * 200})
    search._cached_run_words.cache_clear()
    cached = [search.index_fields(b) for b in books]
    again = [search.index_fields(b) for b in books]  # now mostly from the cache
    monkeypatch.setattr(search, "RUN_CACHE_CHARS", 0)  # every run cut afresh
    assert cached == again == [search.index_fields(b) for b in books]
    assert search._cached_run_words.cache_info().hits > 0


def test_only_a_texts_first_index_chars_are_indexed_segmented_window_by_window():
    """A text past INDEX_CHARS (a 1,000,000-character field) is indexed from its
    start only; a long CJK run is cut SEGMENT_CHARS at a time, and every bigram,
    those across two windows included, is a term until the cap."""
    repeated = "的" * (search.INDEX_CHARS - 2) + "灯塔" + "尾声" * 10_000  # no cap reached
    terms = search.text_terms(repeated, cap=10)
    assert sorted(terms) == sorted(["的的", "的灯", "灯塔"]) and "塔尾" not in terms
    assert search.text_terms(repeated, cap=10) == search.text_terms(repeated[:search.INDEX_CHARS],
                                                                   cap=10)
    boundary = "的" * (search.SEGMENT_CHARS - 1) + "灯塔"  # 灯 ends window 1, 塔 opens window 2
    assert "灯塔" in search.text_terms(boundary, cap=10)
    text = "".join(chr(0x4e00 + i) for i in range(20_000))
    assert search.text_terms(text, cap=search.LONG_FIELD_CAP) == \
        search.text_terms(text[:1_000], cap=search.LONG_FIELD_CAP)


def test_query_units_follow_words_and_pair_lone_characters():
    assert search.query_units("三毛流浪记") == ["三毛", "流浪记"]
    assert search.query_units("人民共和国") == ["人民", "共和", "共和国"]
    assert search.query_units("年啦飞驰") == ["年啦", "啦飞", "飞驰"]
    assert search.query_units("米") == ["米"]
    assert search.query_units("Python 编程!") == ["python", "编程"]
    assert search.query_units("高级社", whole_words=False) == ["高级", "级社"]
    assert search.query_units(" ，。!") == []


# ---------------------------------------------------------------- issue 5's list

def test_full_title_finds_its_book_first(world):
    for name, books in data_sets(world):
        for info in books:
            hits, _ = search.search_books(world.ctx, info["title"], page_size=5)
            assert hits, (name, info["title"])
            assert compact(hits[0]["title"]) == compact(info["title"]), (name, info["title"])
            same = [h["book_id"] for h in hits if compact(h["title"]) == compact(info["title"])]
            assert info["id"] in same or len(same) == 5, (name, info["title"])


def test_a_two_character_word_of_a_title_finds_it(world):
    checked = 0
    for name, books in data_sets(world):
        for info in books[::2]:
            for word in words2(info["title"])[:1]:
                assert info["id"] in ids(all_hits(world.ctx, word, "title")), (name, word)
                checked += 1
    assert checked >= (20 if world.real else 5)


def test_a_tag_finds_every_book_so_tagged(world):
    for name, books in data_sets(world):
        tags = sorted({t for info in books for t in info["tags"]})[::7][:25]
        for tag in tags:
            tagged = {i for i, b in world.books.items() if tag in b["tags"]}
            assert tagged <= ids(all_hits(world.ctx, tag, "tags")), (name, tag)


def test_an_authors_name_finds_their_books(world):
    for name, books in data_sets(world):
        authors = sorted({b["author"] for b in books if b["author"]})[::3][:25]
        for author in authors:
            theirs = {i for i, b in world.books.items() if b["author"] == author}
            assert theirs <= ids(all_hits(world.ctx, author)), (name, author)


def _in_fields(info, word, fields):
    for f in fields:
        text = search.normalize(search._field_text(info, f))
        if re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", text) if word.isascii() \
                else word in text:
            return True
    return False


def test_a_content_only_word_is_found_only_when_content_is_searched(world):
    others = [f for f in search.FIELDS if f != "content"]
    words = list(CONTENT_WORDS_ZH[:10]) + list(CONTENT_WORDS_EN[:6])
    if world.real:  # two-character words of the sample's contents (one query unit each)
        for info in world.real:
            words += words2((info["content"] or "")[:40])[:1]
    checked = 0
    for word in words:
        having = {i for i, b in world.books.items() if _in_fields(b, word, ["content"])}
        if not having or any(_in_fields(b, word, others) for b in world.books.values()):
            continue
        assert search.search_books(world.ctx, word)[1] == 0, word
        assert search.search_books(world.ctx, word, ",".join(others))[1] == 0, word
        found = all_hits(world.ctx, word, "content")
        # content keeps its first LONG_FIELD_CAP distinct terms: a word near the
        # start is always found, one deep in a very long content may not be
        early = {i for i in having if word in search.normalize(world.books[i]["content"])[:80]}
        assert early <= ids(found) <= having, word
        assert all(h["snippet"] and len(h["snippet"]) <= search.SNIPPET_CHARS + 2
                   for h in found)
        checked += 1
    assert checked >= 15


def test_english_words_match_whatever_their_case(world):
    english = [b for b in world.gen if b["currency_unit"] == "USD"][:8]
    for info in english:
        word = max(re.findall(r"[A-Za-z]+", info["title"]), key=len)
        found = [ids(all_hits(world.ctx, form)) for form in
                 (word, word.lower(), word.upper(), word.swapcase())]
        assert info["id"] in found[0] and all(f == found[0] for f in found), word


def test_store_scope_returns_only_that_stores_books_with_its_price_and_stock(world):
    checked_other_price = False
    for store in (world.a, world.b) + ((world.r,) if world.real else ()):
        for q in ("小说", "历史", "the", "中国"):
            hits = all_hits(world.ctx, q, store_id=store)
            site = ids(all_hits(world.ctx, q))
            listed = world.expect[store]
            assert ids(hits) == {i for i in site if i in listed}, (store, q)
            for h in hits:
                assert (h["price"], h["stock_level"]) == listed[h["book_id"]]
                elsewhere = [world.expect[s][h["book_id"]][0] for s in world.expect
                             if s != store and h["book_id"] in world.expect[s]]
                checked_other_price |= any(h["price"] != p for p in elsewhere)
    assert checked_other_price  # a book listed at another price elsewhere kept this one's


def test_site_wide_a_book_appears_once_and_only_if_listed(world):
    in_both = [i for i in world.expect[world.a] if i in world.expect[world.b]]
    title = world.books[in_both[0]]["title"]
    hits = all_hits(world.ctx, title)
    assert [h["book_id"] for h in hits].count(in_both[0]) == 1
    assert "stock_level" not in hits[0]
    # the one hit says which stores list it, each at its price and stock
    (hit,) = [h for h in hits if h["book_id"] == in_both[0]]
    assert hit["listings"] == sorted(
        ({"store_id": s, "price": world.expect[s][in_both[0]][0],
          "stock_level": world.expect[s][in_both[0]][1]} for s in (world.a, world.b)),
        key=lambda r: r["store_id"])
    assert hit["price"] == min(r["price"] for r in hit["listings"])
    # a description whose listing never got written (a crash in add_book)
    ghost = uid("ghost")
    catalogue.store(world.ctx, catalogue.prepare(ghost, {"title": "幽灵书" + ghost}))
    assert search.search_books(world.ctx, "幽灵书" + ghost) == ([], 0)


def test_the_search_queries_are_served_by_the_declared_indexes(world):
    """Every query search issues, in every shape (site-wide, in a store, with
    long-field snippets, the fragment fallback), is served by an index declared
    in be.db.INDEXES: descriptions through the multikey ``terms`` index (first
    key of the filter, and every $and clause on it), a book's listings through
    (book_id, store_id), the listings showing the candidates through (desc,
    store_id), and single documents by _id."""
    book = world.gen[0]
    seen = []
    engines.embedded(world.ctx).observer = lambda c, m, a, k: seen.append((c, m, a, k))
    try:
        search.search_books(world.ctx, book["title"])
        search.search_books(world.ctx, "灯塔 与", "content,book_intro", world.a)
        search.search_books(world.ctx, "沉默", "title,tags", world.b)
        search.search_books(world.ctx, "计算机网")  # no whole-word hit: fragment fallback
        search.get_book(world.ctx, book["id"])
        search.get_book(world.ctx, book["id"], world.a)
        search.get_picture(world.ctx, book["id"], 0)
    finally:
        world.ctx.engine.embedded.observer = None
    terms_index = [keys for keys, _ in INDEXES["descriptions"] if keys[0][0] == "terms"]
    assert terms_index
    assert isinstance(world.ctx.db.descriptions.find_one({"book_id": book["id"]})["terms"], list)
    kinds = set()
    for coll, method, args, kwargs in seen:
        assert method in ("find", "find_one"), (coll, method)
        query = args[0]
        verdict = querycheck.check(coll, query, kwargs.get("sort"), method)
        assert verdict.covered, (coll, query, verdict.reason)
        if set(query) == {"_id"}:  # one id, or an $in of ids
            kinds.add("by _id")
            continue
        if coll == "descriptions":
            assert list(query)[0] == "terms" and set(query) <= {"terms", "$and"}
            assert list(query["terms"]) == ["$in"]
            assert all(list(c) == ["terms"] and list(c["terms"]) == ["$in"]
                       for c in query.get("$and", []))
            assert all(k.split(":", 1)[0] in search.FIELDS.values()
                       for k in query["terms"]["$in"])
            kinds.add("descriptions by terms")
        else:
            assert coll == "listings"
            assert verdict.residual in ([], ["on_sale"]), verdict
            kinds.add("listings " + ",".join(sorted(query)))
    assert kinds == {"by _id", "descriptions by terms", "listings book_id",
                     "listings desc,on_sale", "listings desc,on_sale,store_id"}
    keys = [k for c, m, a, _ in seen if c == "descriptions" and "terms" in a[0]
            for clause in [a[0]] + a[0].get("$and", []) for k in clause["terms"]["$in"]]
    assert "ti:计算机网" in keys and "ti:机网" in keys  # the fallback ran, same shape
    joins = [a[0] for c, m, a, k in seen if c == "listings" and "desc" in a[0]]
    assert joins and all(list(q["desc"]) == ["$in"] for q in joins)  # the listings join


# ---------------------------------------------------------------- ranking, paging

@pytest.fixture
def small(ctx, make_user):
    user, _, token = make_user("seller")
    store = uid("store")
    stores.create_store(ctx, user, store)

    def add(book_id, **info):
        stores.add_book(ctx, user, store, dict(info, id=book_id), 1)
    return SimpleNamespace(ctx=ctx, add=add, store=store, user=user)


def test_ranking_title_above_author_and_tags_above_intros(small):
    small.add("r5-intro", title="甲", book_intro="讲述星海的故事")
    small.add("r4-tags", title="乙", tags=["星海", "科幻"])
    small.add("r3-author", title="丙", author="星海")
    small.add("r2-title", title="星海之歌")
    small.add("r1-title-exact", title="星海")
    small.add("r0-content", title="丁", content="星海")  # content is not searched by default
    hits = all_hits(small.ctx, "星海")
    assert [h["book_id"] for h in hits] == ["r1-title-exact", "r2-title", "r3-author",
                                            "r4-tags", "r5-intro"]
    assert hits[0]["snippet"] == "星海" and hits[-1]["snippet"].startswith("讲述星海")


def test_more_matching_terms_rank_above_fewer_and_ties_are_stable(small):
    small.add("m3", title="远航", book_intro="星海")
    small.add("m4", title="星海与远航")
    small.add("m1", title="星海与远航", tags=["远航"])
    small.add("m0", title="星海与远航", tags=["远航"])
    small.add("m2", title="星海远航记")
    hits = [h["book_id"] for h in all_hits(small.ctx, "星海 远航")]
    # the words as one phrase in the title; both in the title and one again in
    # the tags (a tie, by book_id); both in the title; one in the title, one
    # in the intro
    assert hits == ["m2", "m0", "m1", "m4", "m3"]
    assert [h["book_id"] for h in all_hits(small.ctx, "星海 远航", page_size=1)] == hits


def test_pages_never_overlap_and_page_past_end_is_empty(world):
    every = all_hits(world.ctx, "的", page_size=100)
    assert len(every) > 30
    pages = [search.search_books(world.ctx, "的", None, None, p, 7) for p in range(1, 40)]
    flat = [h["book_id"] for rows, _ in pages for h in rows]
    assert flat == [h["book_id"] for h in every]
    assert all(total == len(every) for _, total in pages)
    far = search.search_books(world.ctx, "的", None, None, 10_000, 20)
    assert far == ([], len(every))


def test_hits_carry_display_fields_and_a_short_snippet_never_content(world):
    info = next(b for i, b in enumerate(world.gen) if b["content"] and b["tags"] and i % 7)
    hits, _ = search.search_books(world.ctx, info["title"], "title,content")
    hit = hits[0]
    assert set(hit) == {"book_id", "title", "author", "publisher", "pub_year", "tags",
                        "price", "snippet", "listings"}
    assert hit["tags"] == info["tags"] and hit["price"] == (info["price"] or 0)
    (store,) = [s for s in (world.a, world.b) if info["id"] in world.expect[s]]
    assert hit["listings"] == [{"store_id": store, "price": (info["price"] or 0),
                                "stock_level": world.expect[store][info["id"]][1]}]


def test_fragment_across_words_and_long_words_still_find_titles(small):
    small.add("f1", title="高级社会学十讲")
    small.add("f2", title="剑桥中华人民共和国史（上卷）")
    assert ids(all_hits(small.ctx, "高级社")) == {"f1"}
    assert ids(all_hits(small.ctx, "人民共和国")) == {"f2"}
    assert ids(all_hits(small.ctx, "中华人民共和国史")) == {"f2"}
    assert ids(all_hits(small.ctx, "会学十")) == {"f1"}


def test_each_store_s_words_find_its_listing_and_updates_keep_terms_in_step(ctx, make_user):
    """Issue 12: a second store's add_book no longer rewrites the first store's
    book; each description is found by its own words, with its own store."""
    user, _, token = make_user("seller")
    s1, s2 = uid("store"), uid("store")
    for s in (s1, s2):
        stores.create_store(ctx, user, s)
    stores.add_book(ctx, user, s1, {"id": "u1", "title": "旧书名"}, 1)
    assert ids(all_hits(ctx, "旧书名")) == {"u1"}
    stores.add_book(ctx, user, s2, {"id": "u1", "title": "新书名"}, 1)
    old, new = all_hits(ctx, "旧书名"), all_hits(ctx, "新书名")
    assert [(h["book_id"], h["title"], [r["store_id"] for r in h["listings"]]) for h in old] \
        == [("u1", "旧书名", [s1])]
    assert [(h["book_id"], h["title"], [r["store_id"] for r in h["listings"]]) for h in new] \
        == [("u1", "新书名", [s2])]
    assert ids(all_hits(ctx, "新书名", store_id=s1)) == set()
    assert ids(all_hits(ctx, "旧书名", store_id=s1)) == {"u1"}
    # the store's own update: its old words stop finding it, its new ones do
    stores.update_book(ctx, user, s1, {"id": "u1", "title": "改名书"})
    assert ids(all_hits(ctx, "旧书名")) == set()
    assert [h["listings"][0]["store_id"] for h in all_hits(ctx, "改名书")] == [s1]
    assert [h["listings"][0]["store_id"] for h in all_hits(ctx, "新书名")] == [s2]


def test_a_crash_before_the_listing_is_written_is_repaired_by_the_retry(small):
    """add_book stores the description before the listing: a crash in between
    leaves a description no listing shows, which is never a hit; the retry
    lists the book and finds the description there."""
    catalogue.store(small.ctx, catalogue.prepare("c1", {"title": "断电之书"}))
    assert ids(all_hits(small.ctx, "断电")) == set()  # hidden, never shown unlisted
    assert ids(all_hits(small.ctx, "断电", store_id=small.store)) == set()
    small.add("c1", title="断电之书")
    assert ids(all_hits(small.ctx, "断电")) == {"c1"}
    assert small.ctx.db.descriptions.count_documents({"book_id": "c1"}) == 1
    with pytest.raises(errors.BookExists):
        small.add("c1", title="断电之书")


# ---------------------------------------------------------------- errors, one book

def test_bad_requests(world):
    ctx = world.ctx
    for q in ("", "   ", "，。!?"):
        with pytest.raises(errors.BadRequest):
            search.search_books(ctx, q)
    for fields in ("", "title,nope", " , "):
        with pytest.raises(errors.BadRequest):
            search.search_books(ctx, "小说", fields)
    for page, size in ((0, 20), (1, 0), (-1, 5)):
        with pytest.raises(errors.BadRequest):
            search.search_books(ctx, "小说", None, None, page, size)
    with pytest.raises(errors.NoSuchStore) as exc:
        search.search_books(ctx, "小说", None, uid("nostore"))
    assert exc.value.code == 513
    assert search.parse_fields(" title ,tags,title") == ("title", "tags")


def test_get_book_shows_info_and_listings_but_no_terms(world):
    book_id = next(i for i in world.expect[world.a] if i in world.expect[world.b])
    book = search.get_book(world.ctx, book_id)
    info = world.books[book_id]
    assert book["book_id"] == book_id and book["content"] == info["content"]
    assert not {"terms", "listed", "pictures", "_id"} & set(book)
    assert book["picture_count"] == 0
    assert {(row["store_id"], row["price"], row["stock_level"]) for row in book["listings"]} == {
        (s, *world.expect[s][book_id]) for s in (world.a, world.b)}
    with pytest.raises(errors.NoSuchBook) as exc:
        search.get_book(world.ctx, uid("nobook"))
    assert exc.value.code == 515
    assert search.get_picture(world.ctx, book_id, 0) is None


# ---------------------------------------------------------------- the bench

def test_search_bench_runs_end_to_end(monkeypatch):
    from fe.bench import search_bench
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("BOOKSTORE_PASSWORD_METHOD", "pbkdf2:sha256:1000")
    lines = []
    args = search_bench.parse_args(["--rows", "120", "--no-sample", "--queries", "14",
                                    "--stores", "2"])
    (result,) = search_bench.run(args, out=lines.append)
    assert result["books"] == 120 and result["queries"] == 14
    assert result["p99_ms"] >= result["p50_ms"] > 0
    assert set(result["kinds"]) == set(search_bench.KINDS)
    assert result["kinds"]["title"]["mean_total"] >= 1  # a full title finds at least its book
    assert any("search p50" in line for line in lines)


# ---------------------------------------------------------------- bounded work (issue 15)

def test_past_the_cap_the_best_tiers_are_read_and_total_is_a_lower_bound(small, monkeypatch):
    """With more matches than MAX_CANDIDATES, the exact title and then the titles
    holding every term are the candidates read, though other matches were
    stored before them; total counts those and says it is a lower bound."""
    small.add("t0-intro", title="甲", book_intro="星海")
    small.add("t1-intro", title="乙", book_intro="讲述星海")
    small.add("t2-author", title="丙", author="星海")
    small.add("t3-title", title="星海之歌")
    small.add("t4-title", title="星海二")
    small.add("t5-exact", title="星海")
    monkeypatch.setattr(search, "MAX_CANDIDATES", 3)
    hits, total, capped = search.search(small.ctx, "星海", page_size=10)
    assert [h["book_id"] for h in hits] == ["t5-exact", "t3-title", "t4-title"]
    assert (total, capped) == (3, True)
    assert search.search(small.ctx, "星海", page=2, page_size=3) == ([], 3, True)
    # the author and tags tier comes before the intros
    hits, total, capped = search.search(small.ctx, "星海", "author,book_intro", page_size=10)
    assert [h["book_id"] for h in hits][0] == "t2-author" and capped
    monkeypatch.setattr(search, "MAX_CANDIDATES", 6)
    hits, total, capped = search.search(small.ctx, "星海", page_size=10)
    assert [h["book_id"] for h in hits] == ["t5-exact", "t3-title", "t4-title", "t2-author",
                                            "t0-intro", "t1-intro"]
    assert (total, capped) == (6, True)  # exactly the cap: "at least"
    monkeypatch.setattr(search, "MAX_CANDIDATES", 7)
    assert search.search(small.ctx, "星海", page_size=10)[1:] == (6, False)


def test_every_descriptions_query_reads_at_most_the_cap(world):
    """Each terms query carries limit MAX_CANDIDATES and reads ids only; the
    display fields are read by _id for the candidates kept."""
    seen = []
    engines.embedded(world.ctx).observer = lambda c, m, a, k: seen.append((c, m, a, k))
    try:
        for q, fields in (("小说", None), ("the", None), ("的", "title,content"),
                          (world.gen[0]["title"], None), ("计算机网", None)):
            hits, total, capped = search.search(world.ctx, q, fields)
            assert total <= search.MAX_CANDIDATES
    finally:
        world.ctx.engine.embedded.observer = None
    by_terms = [(a, k) for c, m, a, k in seen if c == "descriptions" and "terms" in a[0]]
    assert by_terms
    for args, kwargs in by_terms:
        assert kwargs.get("limit") == search.MAX_CANDIDATES
        assert (args[1] if len(args) > 1 else kwargs.get("projection")) == {"_id": 1}


def test_kept_candidates_never_show_what_changed(small):
    """Candidates are kept by description id between searches (descriptions never
    change); what can change, the listings, is read every time, and a reply's
    fields are the caller's own."""
    small.add("k1", title="灯塔守望者", tags=["小说"])
    small.add("k2", title="灯塔往事")
    hits, _ = search.search_books(small.ctx, "灯塔")
    assert [h["book_id"] for h in hits] == ["k1", "k2"]
    hits[0]["tags"].append("defaced")
    stores.unlist_book(small.ctx, small.user, small.store, "k2")
    hits, total = search.search_books(small.ctx, "灯塔")
    assert [h["book_id"] for h in hits] == ["k1"] and total == 1
    assert hits[0]["tags"] == ["小说"]
    stores.set_price(small.ctx, small.user, small.store, "k1", 777)
    assert search.search_books(small.ctx, "灯塔")[0][0]["price"] == 777
