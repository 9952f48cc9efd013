"""Ordered indexes for the embedded engine: a declared compound index kept sorted.

The field maps of ``be.embedded`` find a list's candidates (a seller's paid
orders) but not their order: a page of the list sorted every candidate first and
``count_documents`` matched every one. At 100,000 orders a seller's first page
of paid orders took 340-500 ms, a page past a cursor as long. A real MongoDB walks
the index ``(seller_id, state, created_at, _id)`` from the right place and stops
after the page. This module lets the embedded engine do the same:

* an ``_OrderedIndex`` keeps, for one declared index, one entry per document in a
  ``SortedList``: the index's key values, each as ``(rank, value)`` in mongomock's
  BSON order (``mongomock.filtering._get_compare_type``: null < numbers < strings
  < ObjectId < dates), then a per-index serial number and the document's store
  key. It is built the first time a query can use it and kept current on every
  write to the store (``refresh``, called from the engine's write hooks);
* ``walk`` serves a ``find`` whose filter pins a prefix of the index's keys by
  equality and whose sort names the next keys, all ascending or all descending,
  ending in ``_id`` (or covering a unique index): it walks the entries in that
  order from the bound of a range on the first sort key (``created_at <= c``: a
  cursor's position), applies the rest of the filter to each document and stops
  when the cursor has its window (the caller's ``islice``);
* ``count`` answers ``count_documents`` for a filter that pins exactly a prefix
  of an index's keys by bisecting: no document is read.

Exactness, not MongoDB's semantics, is the contract (as for the field maps): the
answer is what mongomock's own match and sort give. So an index serves nothing
while any document holds a value whose order or equality the entries could not
mirror (an array, a sub-document, a boolean, which mongomock's ``==`` takes for 1,
NaN, an aware datetime...; ``odd``); only top-level fields are indexed here; a
pinned value must be one of the plain kinds; a walk is served only when the sort
is a total order (ties would come out in another order than mongomock's stable
sort), and the whole filter is still applied to every document walked, so a
range bound only decides where the walk starts and stops. Anything else returns
None and the engine answers as before. ``FAST_PATHS = False`` in be.embedded
turns this off with the other shortcuts.

Figures (``python -m fe.bench.growth``, 100,000 orders, CPU ms per call): the
seller's first page of paid orders 495 -> under 2, the busy buyer's (10,000
orders) 50 -> under 2; a write keeps each built index in O(log n) (no change in
new_order or payment within the noise), and each built index holds about 190
bytes per document (two list indexes: 40 MB per 100,000 orders).
"""
import datetime
import math

import bson
from sortedcontainers import SortedList

# mongomock's comparison ranks (filtering._get_compare_type) of the kinds kept
_RANK = {type(None): 5, int: 10, float: 10, bson.Int64: 10, str: 15,
         bson.ObjectId: 35, datetime.datetime: 45}
_TOP = math.inf  # after every rank and serial number: the end of a prefix's range
_RANGE = ("$gt", "$gte", "$lt", "$lte")


def _encodable(value):
    kind = type(value)
    if kind not in _RANK:
        return False
    if kind is float:
        return value == value  # NaN orders with nothing
    if kind is datetime.datetime:
        return value.tzinfo is None  # stored dates are naive UTC
    return True


class _OrderedIndex:
    """One declared index: its entries in order, each document's entry (to remove
    it when the document changes) and the documents it cannot order."""
    __slots__ = ("fields", "unique", "entries", "by_doc", "odd", "serial")

    def __init__(self, fields, unique, documents):
        self.fields = fields
        self.unique = unique
        self.by_doc = {}
        self.odd = set()
        self.serial = 0
        entries = []
        for doc_key, doc in documents.items():
            entry = self._entry(doc_key, doc)
            if entry is None:
                self.odd.add(doc_key)
            else:
                entries.append(entry)
            self.by_doc[doc_key] = entry
        self.entries = SortedList(entries)

    def _values(self, doc):
        values = []
        for field in self.fields:
            value = doc.get(field)  # missing sorts and matches as null in mongomock
            if not _encodable(value):
                return None
            values += (_RANK[type(value)], value)
        return tuple(values)

    def _entry(self, doc_key, doc):
        values = self._values(doc)
        if values is None:
            return None
        self.serial += 1
        return values + (self.serial, doc_key)

    def refresh(self, doc_key, doc):
        """``doc`` is now stored under ``doc_key`` (None: deleted)."""
        old = self.by_doc.pop(doc_key, False)
        if old is not False and doc is not None and old is not None \
                and old[:-2] == self._values(doc):
            self.by_doc[doc_key] = old  # its keys did not change
            return
        if old is None:
            self.odd.discard(doc_key)
        elif old is not False:
            self.entries.remove(old)
        if doc is None:
            return
        entry = self._entry(doc_key, doc)
        if entry is None:
            self.odd.add(doc_key)
        else:
            self.entries.add(entry)
        self.by_doc[doc_key] = entry


def _eligible(spec):
    """The field names of a declared index this module can keep, or None."""
    key = spec.get("key")
    if not key or spec.get("partialFilterExpression") is not None:
        return None
    fields = []
    for field, direction in key:
        if not isinstance(field, str) or "." in field or field.startswith("$") \
                or direction not in (1, -1):
            return None
        fields.append(field)
    return tuple(fields)


def _indexes(store):
    """(fields, unique, name) of every declared index this module can keep."""
    out = []
    for name, spec in store.indexes.items():
        fields = _eligible(spec)
        if fields is not None:
            out.append((fields, bool(spec.get("unique")) and not spec.get("sparse"), name))
    return out


def _built(store, name, fields, unique):
    """The ordered index ``name`` of ``store``, built from its documents on first
    use (and again if the declaration changed); indexes dropped since are
    forgotten, so writes stop keeping them."""
    kept = store.__dict__.setdefault("_ordered", {})
    for stale in [n for n in kept if n not in store.indexes]:
        del kept[stale]
    index = kept.get(name)
    if index is None or index.fields != fields or index.unique != unique:
        index = kept[name] = _OrderedIndex(fields, unique, store._documents)
    return index if not index.odd else None


def refresh(store, doc_key, doc):
    """Write hook: ``doc`` is now what ``store`` holds under ``doc_key`` (None:
    nothing). Costs nothing until some query has built an ordered index."""
    kept = store.__dict__.get("_ordered")
    if kept:
        for index in kept.values():
            index.refresh(doc_key, doc)


def forget(store):
    """Write hook: the store was dropped."""
    store.__dict__.pop("_ordered", None)


def _pinned(spec):
    """Top-level fields the filter pins to one plain value."""
    return {field: value for field, value in spec.items()
            if not field.startswith("$") and "." not in field and _encodable(value)}


def _prefix(fields, pinned):
    values = []
    for field in fields:
        value = pinned[field]
        values += (_RANK[type(value)], value)
    return tuple(values)


def _sort_pairs(sort):
    try:
        pairs = [(field, direction) for field, direction in sort]
    except (TypeError, ValueError):
        return None
    if not pairs or any(not isinstance(f, str) or d not in (1, -1) for f, d in pairs):
        return None
    return pairs


def _bounds(prefix, clause):
    """(low, high) entries of a walk over ``prefix`` narrowed by a range clause on
    the next key; a wider walk is always safe (the filter is applied to each)."""
    low, high = prefix, prefix + (_TOP,)
    if type(clause) is not dict or not clause or not set(clause) <= set(_RANGE):
        return low, high
    for op, bound in clause.items():
        if not _encodable(bound) or bound is None:
            continue
        point = prefix + (_RANK[type(bound)], bound)
        if op == "$lt":
            high = min(high, point)
        elif op == "$lte":
            high = min(high, point + (_TOP,))
        elif op == "$gt":
            low = max(low, point + (_TOP,))
        else:
            low = max(low, point)
    return low, high


def walk(coll, spec, sort, applies):
    """The documents ``find(spec, sort=sort)`` returns, lazily in order, walked from
    an ordered index; None when none serves the query. ``applies(filter, doc)`` is
    the engine's matcher, for the clauses the prefix does not settle."""
    if not isinstance(spec, dict) or not sort:
        return None
    pairs = _sort_pairs(sort)
    if pairs is None:
        return None
    pinned = _pinned(spec)
    rest = [(f, d) for f, d in pairs if f not in pinned]
    if not rest or len({d for _, d in rest}) != 1:
        return None
    wanted = [f for f, _ in rest]
    store = coll._store
    best = None
    for fields, unique, name in _indexes(store):
        j = 0
        while j < len(fields) and fields[j] in pinned:
            j += 1
        if list(fields[j:j + len(wanted)]) != wanted:
            continue
        if wanted[-1] != "_id" and not (unique and j + len(wanted) == len(fields)):
            continue  # not a total order: ties would leave mongomock's order
        if best is None or j > best[0]:
            best = (j, fields, unique, name)
    if best is None:
        return None
    store._remove_expired_documents()
    j, fields, unique, name = best
    index = _built(store, name, fields, unique)
    if index is None:
        return None
    prefix = _prefix(fields[:j], pinned)
    low, high = _bounds(prefix, spec.get(wanted[0]))
    if low > high:
        return iter(())
    residual = {k: v for k, v in spec.items() if k not in fields[:j]}
    entries = index.entries.irange(low, high, reverse=rest[0][1] < 0)
    documents = store._documents

    def documents_in_order():
        for entry in entries:
            doc = documents[entry[-1]]
            if not residual or applies(residual, doc):
                yield doc

    return documents_in_order()


def count(coll, spec, options):
    """``count_documents(spec, **options)`` when ``spec`` pins exactly a prefix of
    an index's keys (bisected: no document read); None otherwise."""
    if not isinstance(spec, dict) or not spec or set(options) - {"skip", "limit"}:
        return None
    skip, limit = options.get("skip", 0), options.get("limit")
    if type(skip) is not int or skip < 0 or \
            (limit is not None and (type(limit) is not int or limit <= 0)):
        return None  # mongomock's own code says what is wrong
    pinned = _pinned(spec)
    if len(pinned) != len(spec):
        return None
    store = coll._store
    choice = None
    for fields, unique, name in _indexes(store):
        if len(fields) >= len(spec) and set(fields[:len(spec)]) == set(spec):
            choice = (fields, unique, name)
            if name in store.__dict__.get("_ordered", {}):
                break  # one already built: no second one for the same answer
    if choice is None:
        return None
    store._remove_expired_documents()
    fields, unique, name = choice
    index = _built(store, name, fields, unique)
    if index is None:
        return None
    prefix = _prefix(fields[:len(spec)], pinned)
    entries = index.entries
    found = entries.bisect_left(prefix + (_TOP,)) - entries.bisect_left(prefix)
    found = max(found - skip, 0)
    return found if limit is None else min(found, limit)
