"""Book search: Chinese-aware terms on each description, one multikey index.

What is searched are descriptions (``be.model.catalogue``): what a store says
about a book, shared by every store that says the same. Indexing
(``index_fields``, called by ``catalogue.prepare`` when a description is built,
so the terms are the description's own and never change after) cuts each
searchable field into terms stored in one array ``terms`` of
``"<field code>:<term>"`` strings, served by the multikey index
``descriptions.terms`` declared in ``be.db.INDEXES``.

Terms of a text (after NFKC folding and lower-casing, so full-width and
half-width forms and upper and lower case meet):

* English and digits: each word (``[^\\W_]`` runs), e.g. ``python``, ``2``;
* Chinese (and other CJK) runs: the words jieba's search mode cuts them into
  (``cut_for_search``: each word plus the dictionary 2- and 3-character words
  inside it), plus every character bigram of the run, so any two adjacent
  characters of a title can be looked up;
* in the short fields (title, author, publisher, tags) also every single
  character, so a one-character query finds them.

The long fields (book_intro, author_intro, content) keep only their first
``LONG_FIELD_CAP`` distinct terms and the short fields ``SHORT_FIELD_CAP``:
the index stays a few hundred keys per book however long a text is, and words
past the cap in a very long content are not searchable.

A query is cut the same way, into units that must all match (in any of the
chosen fields): each jieba word of 2-3 characters as is; a longer word as the
dictionary words inside it (so "人民共和国" finds "中华人民共和国", whose search
mode cut holds 人民, 共和, 共和国); a lone character as the bigram it forms with
its neighbour (or as itself when the query is that one character); English
words as words. Each unit is a ``$in`` over its keys in the chosen fields; the
units are ANDed. Every unit is a key the book stores whenever the query text
occurs in the field as whole jieba words or as adjacent characters.

Ranking is computed here from the candidates' short display fields (the filter
guarantees every unit matched some chosen field, and a unit is in a short
field's keys exactly when it occurs in its folded text): an exact title first;
then a score, where each unit adds the weight of the best chosen field holding
it (title 8, author and tags 4, publisher 2, intros and content 1) and each
short field holding the whole query as one phrase, or an author or a tag equal
to it, adds its weight again; then the number of (unit, field) matches; then
book_id and the description's id, so ties keep one order and pages never
overlap. Candidates are read with only the display fields, never the term
arrays, content or pictures; the long texts are read only for the page's hits
that matched nowhere else, to cut their snippet. A word that no book holds as a whole (say "高级社" against
"高级社会学") is retried once as its bigrams before answering nothing.

Bounded work (issue 15, doc/design.md "Search: bounded work"): at most
``MAX_CANDIDATES`` descriptions are read and ranked, whatever the query. Their
ids are read tier by tier, best first, each query limited to the cap: the exact
title (the key ``ti:=<compact title>`` indexing adds), every unit in the title,
every unit in the chosen short fields, then the whole match. Past the cap,
``total`` counts the hits among those read and is flagged a lower bound.

Scope: a hit is a description that some listing on sale shows. The candidates
are joined with the listings on sale that point to them (site-wide, or in one
store: ``listings`` by ``desc``, and ``store_id``), so a description nobody
shows any more (replaced, taken off sale, or left by a crash) is never a hit,
and each hit says which stores show it. Two stores that describe one book id
alike share one hit; described differently, each description is a hit of its
own, found by its own words, showing its own fields, with its own stores.
"""
import functools
import logging
import re
import threading
import unicodedata
from collections import Counter, OrderedDict, defaultdict

import jieba

from be import errors
from be.db import listing_id
from be.model import catalogue

jieba.setLogLevel(logging.WARNING)

# field name -> key prefix in ``terms``
FIELDS = {
    "title": "ti", "author": "au", "publisher": "pu", "tags": "tg",
    "book_intro": "bi", "author_intro": "ai", "content": "co",
}
DEFAULT_FIELDS = ("title", "author", "tags", "book_intro")
SHORT_FIELDS = ("title", "author", "publisher", "tags")
WEIGHTS = {"title": 8, "author": 4, "tags": 4, "publisher": 2,
           "book_intro": 1, "author_intro": 1, "content": 1}
SHORT_FIELD_CAP = 400
LONG_FIELD_CAP = 256
MAX_TERM_CHARS = 32
MAX_QUERY_CHARS = 256
MAX_QUERY_UNITS = 24
SNIPPET_CHARS = 60
# Indexing reads at most the first INDEX_CHARS characters of a field, and gives
# jieba at most SEGMENT_CHARS characters of a CJK run at a time (its cut builds a
# graph of the whole text it is given first). Every field of the course's 100 real
# books reaches its cap, or its end, within its first 1,000 characters, so their
# terms are as before; a text of 1,000,000 CJK characters took 3-7 s to segment
# (an add_book of five took 15 s), and now stops at the cap after about 2,000
# characters (4 ms), or after INDEX_CHARS (about 25 ms) if it repeats itself.
INDEX_CHARS = 10_000
SEGMENT_CHARS = 1_000
# A search reads and ranks at most this many candidate descriptions, whatever the
# query (see "Bounded work" above): over 10,000 books a broad word (小说: ~2,000
# hits) took 270 ms to rank in full, p99 840 ms. 500 at first (issue 15); over
# 40,000 books that was still 15-20 ms of CPU for a title word or an English word
# (three tiers of reads, 500 candidates joined, read and ranked) and p99 60 ms on a
# busy machine; with 200, 5-7 ms (doc/design.md, "Search: bounded work").
MAX_CANDIDATES = 200
# Candidates kept by description id between searches (_Candidates): 25 broad
# words' worth, a few MB.
CACHE_SIZE = 5_000
EXACT_TITLE = "="  # ``ti:=<compact title>``: the exact-title key (no term holds "=")

# Fields a hit shows from its description; the candidate read projects only these.
DISPLAY = ("book_id", "title", "author", "publisher", "pub_year", "tags")
LISTING = ("store_id", "price", "stock_level")  # what a hit shows of each listing
JOIN_BATCH = 5000  # description ids per listings query (bounded request size)
JOIN_FIELDS = {"desc": 1, "store_id": 1, "price": 1, "stock_level": 1, "_id": 0}

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+)")
_NOT_TOKEN = re.compile(rf"[^\w{_CJK}]|_")  # what _TOKEN never matches
_NOT_TOKEN_LINE = re.compile(rf"[^\w\n{_CJK}]|_")  # the same, but line breaks

_init_lock = threading.Lock()
_ready = False


def _jieba():
    """jieba with its dictionary loaded (once per process, ~1 s)."""
    global _ready
    if not _ready:
        with _init_lock:
            if not _ready:
                jieba.initialize()
                _ready = True
    return jieba


def normalize(text):
    return unicodedata.normalize("NFKC", text or "").lower()


def _tokens(text):
    """(is_cjk, run) pairs of a normalized text, in order."""
    for m in _TOKEN.finditer(text):
        if m.group(1):
            yield True, m.group(1)
        else:
            yield False, m.group(2)


def _field_text(info, field):
    value = info.get(field)
    if field == "tags":
        # one tag per line: no bigram spans two tags
        return "\n".join(str(t) for t in (value or []))
    return str(value) if value is not None else ""


# ---------------------------------------------------------------- indexing

def text_terms(text, short=False, cap=None):
    """The distinct terms of ``text``, in the order they first occur: of its first
    INDEX_CHARS characters, CJK runs segmented SEGMENT_CHARS at a time, stopping
    once ``cap`` terms are found."""
    seg = _jieba()
    seen = {}
    limit = cap or SHORT_FIELD_CAP

    def add(term):
        term = term[:MAX_TERM_CHARS]
        if len(seen) < limit and term not in seen:
            seen[term] = None

    for cjk, run in _tokens(normalize(text[:INDEX_CHARS])):
        if len(seen) >= limit:
            break
        if not cjk:
            add(run)
            continue
        for at in range(0, len(run), SEGMENT_CHARS):
            if len(seen) >= limit:
                break
            window = run[at:at + SEGMENT_CHARS]
            for word in _run_words(seg, window):
                add(word)
            for i in range(at, min(at + SEGMENT_CHARS, len(run) - 1)):
                add(run[i:i + 2])  # the last one spans into the next window
            if short:
                for ch in window:
                    add(ch)
        if not short and len(run) == 1:
            add(run)
    return list(seen)


RUN_CACHE_CHARS = 16  # longer runs are segmented each time (rarely repeated)


@functools.lru_cache(maxsize=8192)
def _cached_run_words(run):
    return tuple(w for w in _jieba().cut_for_search(run, HMM=False) if len(w) > 1)


def _run_words(seg, run):
    """The words of 2+ characters jieba's search mode cuts a CJK run into. Short runs
    are cached (8,192 of at most 16 characters, ~3 MB): a catalogue repeats its
    publishers, series, tags and stock phrases, and jieba is most of what indexing
    a book costs. Indexing 20,000 generated books took 0.19 ms of CPU per book
    instead of 0.37 ms (90% of their runs are repeats); the course's sample repeats
    less (20% of its characters over 100 books). The terms are the same either way."""
    if len(run) <= RUN_CACHE_CHARS:
        return _cached_run_words(run)
    return [w for w in seg.cut_for_search(run, HMM=False) if len(w) > 1]


def index_fields(info):
    """The search fields a description stores (``catalogue.prepare``)."""
    terms = []
    for field, code in FIELDS.items():
        short = field in SHORT_FIELDS
        cap = SHORT_FIELD_CAP if short else LONG_FIELD_CAP
        terms.extend(f"{code}:{t}" for t in text_terms(_field_text(info, field), short, cap))
    title = _fold(_field_text(info, "title"))[1]
    if title:
        terms.append(exact_title_key(title))
    return {"terms": terms}


def exact_title_key(compact):
    """The index key of a title whose compact form (``_compact``) is ``compact``."""
    return f"{FIELDS['title']}:{EXACT_TITLE}{compact[:4 * MAX_TERM_CHARS]}"


# ---------------------------------------------------------------- queries

def _word_units(seg, word):
    """Query units of a jieba word of 4+ characters: the dictionary words of
    2-3 characters inside it when they cover it, else the word itself."""
    inner = [g for g in seg.cut_for_search(word, HMM=False) if 1 < len(g) < len(word)]
    covered = set()
    for g in inner:
        start = word.find(g)
        while start != -1:
            covered.update(range(start, start + len(g)))
            start = word.find(g, start + 1)
    return inner if len(covered) == len(word) else [word]


def query_units(q, whole_words=True):
    """The terms a query must match, each once, in query order. With
    ``whole_words`` off, words of 3+ characters become their bigrams: the
    fallback that finds a fragment cutting across the book's own words."""
    seg = _jieba()
    units = {}
    for cjk, run in _tokens(normalize(q)):
        if not cjk:
            units[run[:MAX_TERM_CHARS]] = None
            continue
        if len(run) == 1:
            units[run] = None
            continue
        pos = 0
        for word in seg.cut(run, HMM=False):
            if len(word) == 1:
                pair = run[pos:pos + 2] if pos + 1 < len(run) else run[pos - 1:pos + 1]
                units[pair] = None
            elif len(word) == 2:
                units[word] = None
            elif not whole_words:
                units.update(dict.fromkeys(word[i:i + 2] for i in range(len(word) - 1)))
            elif len(word) == 3:
                units[word] = None
            else:
                units.update(dict.fromkeys(_word_units(seg, word)))
            pos += len(word)
    return list(units)[:MAX_QUERY_UNITS]


def parse_fields(text):
    """``fields`` as given in a request (comma-separated) -> tuple of names."""
    if text is None:
        return DEFAULT_FIELDS
    names = [f.strip() for f in str(text).split(",")]
    if not any(names):
        raise errors.BadRequest("fields must name at least one of " + ", ".join(FIELDS))
    for name in names:
        if name not in FIELDS:
            raise errors.BadRequest(
                f"unknown search field '{name}': choose from {', '.join(FIELDS)}")
    return tuple(dict.fromkeys(names))


def book_filter(units, fields):
    """The descriptions query: every unit in one of ``fields``. Each unit is a ``$in``
    over its index keys in those fields, all on the multikey ``terms`` index;
    the longest unit (likely the rarest) leads, so a planner that takes its
    bounds from the first predicate scans the fewest keys."""
    units = sorted(units, key=len, reverse=True)
    clauses = [{"terms": {"$in": [f"{FIELDS[f]}:{u}" for f in fields]}} for u in units]
    query = dict(clauses[0])
    if len(clauses) > 1:
        query["$and"] = clauses[1:]
    return query


def _fold(text):
    """(normalized, compact) of a short field, folded as the index folds it: the
    compact form keeps letters, digits and CJK only (one line per tag). A plain
    tuple of strings: the collector stops tracking it."""
    folded = normalize(text)
    return folded, _NOT_TOKEN_LINE.sub("", folded)


def _word_pattern(unit):
    """A regex finding the English word (or digit run) ``unit`` in a normalized
    text as a whole token, as indexing cuts tokens (a unit of MAX_TERM_CHARS is a
    token's cut prefix): one C search instead of a set of the text's words per
    candidate (the English queries' largest cost)."""
    token = rf"[^\W_{_CJK}]"
    tail = rf"(?!{token})" if len(unit) < MAX_TERM_CHARS else ""
    return re.compile(rf"(?<!{token}){re.escape(unit)}{tail}")


def _is_cjk(unit):
    return bool(_TOKEN.match(unit).group(1))


def _compact(text):
    """Letters, digits and CJK only: what "the same title" compares (what
    ``_TOKEN`` matches, removed in one pass: ranking compacts every field of
    every candidate)."""
    return _NOT_TOKEN.sub("", normalize(text))


def _ranker(units, fields, q_compact):
    """The ranking of one query: a function of a candidate (display fields) giving
    (sort key, best field per unit). The key orders: the exact title first; then
    the score: each unit adds the weight of the best chosen field holding it (a
    long field when no short one does; between fields of one weight, the first
    chosen), and each short field holding the whole query as one phrase, or an
    author or tag equal to it, adds its weight again; then the number of (unit,
    field) matches; then book_id and the description's id. What depends on the
    query only (which units are CJK, the short fields) is worked out once here,
    not per candidate: candidates ranked in about half the time."""
    short = [f for f in fields if f in SHORT_FIELDS]
    long_weight = 1 if len(short) < len(fields) else 0
    plan = [(unit, None if _is_cjk(unit) else _word_pattern(unit).search) for unit in units]
    weights = [(f, WEIGHTS[f]) for f in short]

    def rank(candidate):
        views = [(f, weight, candidate.view(f)) for f, weight in weights]
        score = places = 0
        best_fields = []
        for unit, word_in in plan:
            best, best_weight = None, 0
            for f, weight, (text, _) in views:
                if unit in text if word_in is None else word_in(text):
                    places += 1
                    if weight > best_weight:
                        best, best_weight = f, weight
            score += best_weight if best else long_weight
            best_fields.append(best)
        exact = False
        for f, weight, (_, compact) in views:
            if q_compact and q_compact in compact:
                score += weight
            if f == "author" and compact == q_compact:
                score += weight
            elif f == "tags" and q_compact in compact.split("\n"):
                score += weight
            elif f == "title":
                exact = compact == q_compact
        doc = candidate.doc
        return (-int(exact), -score, -places, doc["book_id"], doc["_id"]), best_fields
    return rank


class _Candidate:
    """A candidate description as ranking reads it: its display fields (``doc``)
    and each short field folded (``_fold``), made on first use."""
    __slots__ = ("doc", "_views")

    def __init__(self, doc):
        self.doc = doc
        self._views = {}

    def view(self, field):
        view = self._views.get(field)
        if view is None:
            view = self._views[field] = _fold(_field_text(self.doc, field))
        return view


class _Candidates:
    """The last CACHE_SIZE candidates read, by description id. A description never
    changes once written (its id is the hash of what it says), so what was read of
    it, and its folded fields, hold for as long as it is kept, in every process and
    on every engine. A broad word reads the same candidates each time: from here,
    without their documents read and their fields folded again (with 500
    candidates, 7 of its 18 ms)."""

    def __init__(self, size):
        self.size = size
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def take(self, ids):
        """({id: candidate} of those kept, [ids not kept])."""
        found, missing = {}, []
        with self._lock:
            entries = self._entries
            for i in ids:
                candidate = entries.get(i)
                if candidate is None:
                    missing.append(i)
                else:
                    entries.move_to_end(i)
                    found[i] = candidate
        return found, missing

    def keep(self, candidates):
        with self._lock:
            entries = self._entries
            for candidate in candidates:
                entries[candidate.doc["_id"]] = candidate
            while len(entries) > self.size:
                entries.popitem(last=False)


_CANDIDATES = _Candidates(CACHE_SIZE)


def _snippet(text, units):
    """About SNIPPET_CHARS of ``text`` around the first unit found in it."""
    folded = unicodedata.normalize("NFKC", text or "")
    lower = folded.lower()
    at = min((i for i in (lower.find(u) for u in units) if i >= 0), default=0)
    start = max(0, at - SNIPPET_CHARS // 3)
    piece = folded[start:start + SNIPPET_CHARS].replace("\n", " ").strip()
    return ("…" if start > 0 else "") + piece + ("…" if start + SNIPPET_CHARS < len(folded) else "")


def search_books(ctx, q, fields=None, store_id=None, page=1, page_size=20):
    """``search`` without the bound flag: (hits, total)."""
    hits, total, _ = search(ctx, q, fields, store_id, page, page_size)
    return hits, total


def search(ctx, q, fields=None, store_id=None, page=1, page_size=20):
    """One page of the descriptions matching every term of ``q`` in ``fields``
    (names, or the request's comma-separated text; None for the default) that a
    listing on sale shows, best first. Site-wide each hit carries the listings
    that show it (``listings``: store, price, stock) and the lowest of their
    prices; ``store_id`` restricts to that store's listings, each hit with the
    store's price and stock. Returns (hits, total, total_is_lower_bound): past
    MAX_CANDIDATES matching descriptions only the best-tiered MAX_CANDIDATES
    are ranked and served, ``total`` counts the hits among them and the flag
    is true (more exist)."""
    q = (q or "").strip()
    if not q:
        raise errors.BadRequest("q must not be empty")
    if len(q) > MAX_QUERY_CHARS:
        raise errors.BadRequest(f"q is longer than {MAX_QUERY_CHARS} characters")
    fields = parse_fields(fields) if fields is None or isinstance(fields, str) else fields
    for f in fields:
        if f not in FIELDS:
            raise errors.BadRequest(f"unknown search field '{f}'")
    if page < 1 or page_size < 1:
        raise errors.BadRequest("page and page_size count from 1")
    units = query_units(q)
    if not units:
        raise errors.BadRequest("q holds no searchable word")
    if store_id is not None and ctx.db.stores.find_one({"_id": store_id}, {"_id": 1}) is None:
        raise errors.NoSuchStore(store_id)

    q_compact = _compact(q)
    candidates, shown, capped = _matches(ctx, units, fields, store_id, q_compact)
    if not candidates and not capped:
        fragments = query_units(q, whole_words=False)
        if fragments != units:
            units = fragments
            candidates, shown, capped = _matches(ctx, units, fields, store_id, q_compact)

    rank = _ranker(units, fields, q_compact)
    with ctx.cpu_work():  # ranking reads no data: the engine is let go meanwhile
        ranked = sorted((rank(c) + (c.doc,) for c in candidates), key=lambda r: r[0])
    total = len(ranked)
    start = (page - 1) * page_size
    window = ranked[start:start + page_size]

    # Where a page hit matched no short field, its snippet comes from the long
    # fields searched: read them for those few descriptions only.
    long_fields = [f for f in fields if f not in SHORT_FIELDS]
    need = [d["_id"] for _, best, d in window if not any(best) and long_fields]
    texts = {}
    if need:
        for row in ctx.db.descriptions.find({"_id": {"$in": need}},
                                            dict.fromkeys(long_fields, 1)):
            texts[row["_id"]] = row

    hits = []
    for _, best, doc in window:
        hit = {f: doc.get(f) for f in DISPLAY}
        if hit["tags"] is not None:
            hit["tags"] = list(hit["tags"])  # the kept candidate's own stays as read
        rows = shown[doc["_id"]]
        if store_id is not None:
            (listing,) = rows
            hit["price"] = listing["price"]
            hit["stock_level"] = listing["stock_level"]
        else:
            hit["price"] = min(r["price"] for r in rows)
            hit["listings"] = [{f: r[f] for f in LISTING} for r in rows]
        hit["snippet"] = _hit_snippet(doc, texts.get(doc["_id"]), best, units, long_fields)
        hits.append(hit)
    return hits, total, capped


def _tiers(units, fields, q_compact):
    """The descriptions queries, best candidates first: the exact title; every
    unit in the title; every unit in the chosen short fields; every unit in any
    chosen field (the whole match, always last). Each tier's matches are a
    subset of the whole match's."""
    whole = book_filter(units, fields)
    tiers = []
    if "title" in fields and q_compact:
        exact = {"terms": {"$in": [exact_title_key(q_compact)]}}
        exact["$and"] = [{"terms": whole["terms"]}] + whole.get("$and", [])
        tiers.append(exact)
    short = [f for f in fields if f in SHORT_FIELDS]
    for chosen in (["title"] if "title" in fields else [], short):
        if chosen and list(chosen) != list(fields):
            query = book_filter(units, chosen)
            if query not in tiers:
                tiers.append(query)
    tiers.append(whole)
    return tiers


def _candidate_ids(ctx, units, fields, q_compact):
    """(ids of at most MAX_CANDIDATES matching descriptions, best tiers first;
    capped: whether there may be more). Each tier reads ids only, at most
    MAX_CANDIDATES of them (it may return again those an earlier tier found),
    so a search reads at most 4 x MAX_CANDIDATES ids and ranks MAX_CANDIDATES."""
    found = {}
    for query in _tiers(units, fields, q_compact):
        rows = ctx.db.descriptions.find(query, {"_id": 1}, limit=MAX_CANDIDATES)
        for row in rows:
            found.setdefault(row["_id"], None)
            if len(found) >= MAX_CANDIDATES:
                return list(found), True
    # the whole match, read last, returned fewer than MAX_CANDIDATES: all of them
    return list(found), False


def _matches(ctx, units, fields, store_id, q_compact=""):
    """(candidates (_Candidate: display fields) that a listing on sale shows (in
    ``store_id``, if given); those listings by description id, ordered by store;
    capped: whether more descriptions match than were read). The display fields
    are read only for candidates some listing shows, and only for those not kept
    from an earlier search (_CANDIDATES)."""
    ids, capped = _candidate_ids(ctx, units, fields, q_compact)
    shown = defaultdict(list)
    for at in range(0, len(ids), JOIN_BATCH):
        query = {"desc": {"$in": ids[at:at + JOIN_BATCH]}, "on_sale": True}
        if store_id is not None:
            query["store_id"] = store_id
        for row in ctx.db.listings.find(query, dict(JOIN_FIELDS)):  # the engine adds to it
            shown[row["desc"]].append(row)
    for rows in shown.values():
        rows.sort(key=lambda r: r["store_id"])
    found, missing = _CANDIDATES.take([i for i in ids if i in shown])
    read = []
    for at in range(0, len(missing), JOIN_BATCH):
        read.extend(_Candidate(doc) for doc in ctx.db.descriptions.find(
            {"_id": {"$in": missing[at:at + JOIN_BATCH]}}, dict.fromkeys(DISPLAY, 1)))
    _CANDIDATES.keep(read)
    return list(found.values()) + read, shown, capped


def _hit_snippet(doc, long_doc, best, units, long_fields):
    field = max((f for f in best if f), key=WEIGHTS.get, default=None)
    if field is not None:
        return _snippet(_field_text(doc, field), units)
    for f in long_fields:
        text = _field_text(long_doc or {}, f)
        if any(u in normalize(text) for u in units):
            return _snippet(text, units)
    return None


# ---------------------------------------------------------------- one book

def _public_listing(row):
    return {"store_id": row["store_id"], "price": row["price"],
            "stock_level": row["stock_level"], "on_sale": row["on_sale"]}


def shown_description(ctx, book_id, store_id=None):
    """(description id, listings showing it, other listings) of a book: the
    store's listing (on sale or not) with ``store_id``; otherwise, of the
    listings on sale, those showing the description most of them show (ties:
    the one the first store by store_id shows), and the others. 515 if there
    is no such listing."""
    fields = {"store_id": 1, "price": 1, "stock_level": 1, "on_sale": 1, "desc": 1, "_id": 0}
    if store_id is not None:
        row = ctx.db.listings.find_one({"_id": listing_id(store_id, book_id)}, fields)
        if row is None:
            raise errors.NoSuchBook(book_id)
        return row["desc"], [row], []
    rows = [r for r in ctx.db.listings.find({"book_id": book_id}, fields,
                                           sort=[("book_id", 1), ("store_id", 1)])
            if r["on_sale"]]
    if not rows:
        raise errors.NoSuchBook(book_id)
    counts = Counter(r["desc"] for r in rows)  # in the order the stores come
    desc = max(counts, key=counts.get)  # the first of the most shown
    return desc, [r for r in rows if r["desc"] == desc], [r for r in rows if r["desc"] != desc]


def get_book(ctx, book_id, store_id=None):
    """A book as a store shows it: every book_info field of its description (no
    pictures, no search terms), ``picture_count``, ``price`` (the store's, or the
    lowest of the listings showing the description), ``listings`` (those
    listings) and ``other_listings`` (listings on sale showing another
    description of the book: ask with their store_id). See ``shown_description``
    for which description without ``store_id``."""
    desc_id, rows, others = shown_description(ctx, book_id, store_id)
    desc = catalogue.description(ctx, desc_id)
    reply = {"book_id": book_id}
    reply.update({f: desc.get(f) for f in catalogue.FIELDS})
    reply["price"] = min(r["price"] for r in rows)
    reply["picture_count"] = len(desc.get("pictures") or [])
    reply["listings"] = [_public_listing(r) for r in rows]
    reply["other_listings"] = [_public_listing(r) for r in others]
    return reply


def get_picture(ctx, book_id, n, store_id=None):
    """(bytes, content type) of picture ``n`` of the description the book shows
    (as ``get_book`` chooses it), or None."""
    try:
        desc_id, _, _ = shown_description(ctx, book_id, store_id)
    except errors.NoSuchBook:
        return None
    pictures = catalogue.description(ctx, desc_id, {"pictures": 1}).get("pictures") or []
    if not 0 <= n < len(pictures):
        return None
    return catalogue.picture(ctx, pictures[n])
