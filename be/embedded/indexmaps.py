"""In-memory index maps: what serves the declared indexes on the embedded engine.

mongomock keeps indexes only as declarations: it answers every query with a full
match over every document and checks a unique index with a scan per write. Here a
store keeps, for the first key of every declared index, a hash map value ->
documents, and per unique index a map value -> the document holding it; both are
kept current on every write through the hooks below (installed by ``patches``).
At 100,000 orders a typical buyer's list went from 98 ms to 0.98 ms and one
timeout sweep from 94 ms to 0.05 ms (doc/scaling.md); be/tests/test_embedded.py
checks every answer against mongomock's own scan.

The maps name documents by their insertion rank (a small int), each value's
documents as one rank or an array of ranks in order: 4 bytes a posting where a set
of keys took about 60 (40,000 books' 5.8 million search terms: about 25 MB instead
of about 350 MB). Documents are stored compact (``compact``): a plain dict whose
field names, and the values of its indexed fields, are interned, so the 146 search
terms of a book are shared with every other book's and with the map's keys.
"""
import datetime
import functools
import sys
import threading
import time
from array import array
from bisect import bisect_left

import bson
import mongomock
from mongomock import collection as _mm_collection
from mongomock.filtering import NOTHING, iter_key_candidates

from be.embedded import blobs, limits, ordered
from be.embedded.copies import _deepcopy

_RANGE = frozenset({"$gt", "$gte", "$lt", "$lte"})


def _store_key(doc_id):
    return mongomock.helpers.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id


def _unique_value(doc, index):
    """The tuple a unique index holds for ``doc``; None when a value is an array
    or a sub-document (left to mongomock's own check)."""
    values = []
    for field, _ in index["key"]:
        try:
            value = mongomock.helpers.get_value_by_dot(doc, field)
        except KeyError:
            value = None
        if isinstance(value, (dict, list, tuple)):
            return None
        values.append(value)
    return tuple(values)


# ---------------------------------------------------------------- secondary indexes
#
# mongomock keeps indexes only as declarations and answers every query with a
# full match over every document. For each field that is the FIRST key of some
# declared index, the store here keeps a _FieldMap: value -> set of the _ids
# (store keys) of the documents holding it. Filters that pin such a field by a
# plain equality, ``$eq`` or ``$in`` over hashable scalars take their candidates
# from the map, as a real MongoDB's index bounds do; only the candidates get the
# full match, in the collection's natural (insertion) order.
#
# Exactness, not MongoDB's semantics, is the contract: the answer must be what
# mongomock's own full match gives. mongomock compares with Python ``==`` (so
# ``True`` matches ``1`` and ``1.0``, unlike MongoDB), and a dict keyed by the
# value groups exactly the values ``==`` groups, because for the scalar types
# accepted in a query (_EQ_TYPES) equal values hash alike. A document's keys for
# a field mirror mongomock's matcher (``filtering.iter_key_candidates``): each
# candidate value, each element of an array candidate (an equality on an array
# field matches its elements), and None for a missing field or null (``None``
# matches both). Elements that are documents or arrays never equal a scalar, so
# they get no key.
#
# One difference remains, on invalid filters only: mongomock reports a bad
# operator when its scan first evaluates it on some document; here only the
# candidates are evaluated, so with no candidate nothing is reported.
#
# Keeping the maps current: the store's writes (__setitem__: inserts, replaced
# documents and rollbacks; __delitem__: deletes and TTL expiry; drop) are hooked,
# and so are mongomock's two in-place update paths (_apply_update_document and
# _apply_update_pipeline), which change the stored dict without re-setting it:
# there the keys are read before and after the change.

_EQ_TYPES = frozenset({str, int, bool, float, type(None), datetime.datetime,
                       bson.ObjectId, bson.Int64})
# operand types a range can use the map's "present" ranks for: bson_compare only
# matches values of the same comparison type, and those are never null
_RANGE_TYPES = frozenset({str, int, float, datetime.datetime, bson.Int64})
_OTHER = object()  # key of an unhashable scalar (Decimal128, Regex...): present, never equal
_NO_KEYS = frozenset()


def _eq_value(value):
    return type(value) in _EQ_TYPES and value == value  # NaN equals nothing, not even itself


class _FieldMap:
    """value -> the documents holding it, for one field, plus the documents holding
    any non-null value (``present``). Documents are named by their rank in the
    store (an int, ``_Secondary``); a value's documents (its posting) are one rank,
    or an ``array`` of two or more ranks in ascending (natural) order; ``present``
    is such an array too."""
    __slots__ = ("field", "buckets", "present", "ready")

    def __init__(self, field):
        self.field = field
        self.buckets = {}
        # what a range on the field can match (a sparse index's keys)
        self.present = _ranks_array()
        self.ready = True  # False while filled in the background (fill_in_background)

    def keys(self, doc):
        keys = set()
        for value in iter_key_candidates(self.field, doc):
            if value is NOTHING or value is None:
                keys.add(None)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    if not isinstance(item, (dict, list, tuple)):
                        _add_key(keys, item)
            elif not isinstance(value, dict):
                _add_key(keys, value)
        return keys

    def update(self, rank, old, new):
        if old == new:
            return
        buckets = self.buckets
        for value in old - new:
            _discard(buckets, value, rank)
        for value in new - old:
            _post(buckets, value, rank)
        if len(new) > (None in new):
            self.present = _insert(self.present, rank)
        else:
            _remove(self.present, rank)

    def fill(self, documents):
        """The map of ``documents`` ((rank, document) pairs, best in ascending
        rank), as ``update`` from nothing for each, in one pass: a top-level field
        holding a plain value, or a list of strings (the search terms: about 145 per
        generated book), is handled inline, any other value through ``keys``. For
        40,000 books' terms (5.8 million keys) this took 3.7 s where ``update`` per
        document took 12 s (a loaded 2-core machine; it is most of a large data
        folder's load time)."""
        if "." in self.field:
            for rank, doc in documents:
                self.update(rank, _NO_KEYS, self.keys(doc))
            return
        field, buckets = self.field, self.buckets
        for rank, doc in documents:
            value = doc.get(field)
            kind = type(value)
            if kind in _FILL_SCALARS:
                _post(buckets, value, rank)
                if value is not None:
                    self.present = _insert(self.present, rank)
            elif kind is list:
                for item in value:
                    if type(item) is not str:  # the general way (strings posted twice: no harm)
                        self.update(rank, _NO_KEYS, self.keys(doc))
                        break
                    posting = buckets.get(item)
                    if posting is None:
                        buckets[item] = rank
                    elif type(posting) is array and posting[-1] < rank:
                        posting.append(rank)  # the common case: ranks come in order
                    else:
                        _post(buckets, item, rank)
                else:
                    if value:
                        self.present = _insert(self.present, rank)
            else:
                self.update(rank, _NO_KEYS, self.keys(doc))

    def view(self):
        """{value: set of ranks}: the map as plain sets (tests compare maps so)."""
        return {value: _ranks(posting) for value, posting in self.buckets.items()}


def _ranks(posting):
    """The ranks of a posting, as a set."""
    return {posting} if type(posting) is int else set(posting)


def _size(posting):
    return 1 if type(posting) is int else len(posting)


def _ranks_array(ranks=()):
    """Ranks in an array of 4 bytes each (8 once a rank passes 2**32 - 1)."""
    return array("I" if not ranks or max(ranks) <= 0xFFFFFFFF else "Q", ranks)


def _insert(ranks, rank):
    """``rank`` put in its place in the ascending array ``ranks`` (already there:
    nothing); returns the array (a wider one when ``rank`` needs it)."""
    if rank > 0xFFFFFFFF and ranks.typecode == "I":
        ranks = array("Q", ranks)
    if not ranks or ranks[-1] < rank:
        ranks.append(rank)  # the common case: a new document has the highest rank
    else:
        i = bisect_left(ranks, rank)
        if ranks[i] != rank:
            ranks.insert(i, rank)
    return ranks


def _remove(ranks, rank):
    """``rank`` taken out of the ascending array ``ranks`` (not there: nothing)."""
    i = bisect_left(ranks, rank)
    if i < len(ranks) and ranks[i] == rank:
        del ranks[i]


def _post(buckets, value, rank):
    """Add ``rank`` to ``value``'s posting (already there: nothing)."""
    posting = buckets.get(value)
    if posting is None:
        buckets[value] = rank
    elif type(posting) is int:
        if posting != rank:
            buckets[value] = _ranks_array((posting, rank) if posting < rank else (rank, posting))
    else:
        grown = _insert(posting, rank)
        if grown is not posting:
            buckets[value] = grown


def _discard(buckets, value, rank):
    """Remove ``rank`` from ``value``'s posting (not there: nothing); an emptied
    value is dropped, a posting of one rank kept as that rank."""
    posting = buckets.get(value)
    if posting is None:
        return
    if type(posting) is int:
        if posting == rank:
            del buckets[value]
        return
    _remove(posting, rank)
    if len(posting) == 1:
        buckets[value] = posting[0]


# value types ``fill`` maps inline: hashable, equal only to themselves and to what
# hashes alike (as in ``keys``); None also stands for a missing field
_FILL_SCALARS = frozenset({str, int, bool, type(None), datetime.datetime})


def _add_key(keys, value):
    try:
        keys.add(value)
    except TypeError:
        keys.add(_OTHER)


class _Secondary:
    """A store's maps, by field, and each document's insertion rank (``seq``: key
    -> rank, ``keys``: rank -> key): the maps name documents by rank, and ranks
    ascend in natural order, so candidates come back as mongomock's scan returns
    them."""
    __slots__ = ("maps", "seq", "keys", "next")

    def __init__(self, store):
        self.maps = {}
        self.seq = {key: n for n, key in enumerate(store._documents)}
        self.keys = {n: key for key, n in self.seq.items()}
        self.next = len(self.seq)

    def ranked(self, documents):
        """(rank, document) for each of ``documents`` (key -> document)."""
        seq = self.seq
        return ((seq[key], doc) for key, doc in documents.items())


def _indexed_fields(store):
    fields = set()
    for index in store.indexes.values():
        key = index.get("key")
        if key:
            field = key[0][0]
            if isinstance(field, str) and field != "_id" and not field.startswith("$"):
                fields.add(field)
    return fields


def _secondary(store):
    """The store's maps, one per first key of its current indexes (built from the
    documents the first time a query needs them; dropped with their index)."""
    wanted = _indexed_fields(store)
    state = store.__dict__.get("_secondary")
    if state is None:
        if not wanted:
            return None
        state = store._secondary = _Secondary(store)
    for field in wanted - state.maps.keys():
        fmap = _FieldMap(field)
        fmap.fill(state.ranked(store._documents))
        state.maps[field] = fmap
    for field in state.maps.keys() - wanted:
        del state.maps[field]
    return state


def fill_in_background(store, lock, chunk_seconds=0.01, on_done=None, between=None):
    """Register the store's missing maps now, unready (writes keep them current,
    queries do not use them: they scan, with mongomock's exact answers), and fill
    them from a daemon thread, holding ``lock`` for at most about ``chunk_seconds``
    at a time; each map is used once full. Returns the thread (None when nothing
    is missing). A loaded data folder's largest maps are made this way, so the
    server serves before they are done: 40,000 books' search terms took 5.4 s of
    its 11.7 s start (be.embedded.datadir). ``on_done(store, seconds)`` is called
    once every map is ready; ``between()`` after each chunk, the lock released
    (a test interleaves its writes there).

    Correct at every moment: a document's keys are added by the filler or, if it
    changes first, by the write hooks (removing keys that are not there is a
    no-op, adding present ones too); a document deleted before its turn is
    skipped; one inserted meanwhile is only the hooks' business."""
    wanted = _indexed_fields(store)
    state = store.__dict__.get("_secondary")
    if state is None:
        if not wanted:
            return None
        state = store._secondary = _Secondary(store)
    missing = []
    for field in sorted(wanted - state.maps.keys()):
        fmap = state.maps[field] = _FieldMap(field)
        fmap.ready = False
        missing.append(fmap)
    if not missing:
        return None
    keys = list(store._documents)
    started = time.perf_counter()

    def fill():
        for fmap in missing:
            start = 0
            while start < len(keys):
                with lock:
                    if store.__dict__.get("_secondary") is not state:
                        return  # dropped meanwhile
                    documents = store._documents
                    deadline = time.perf_counter() + chunk_seconds
                    while start < len(keys):
                        end = min(start + 64, len(keys))
                        seq = state.seq
                        fmap.fill([(seq[k], documents[k]) for k in keys[start:end]
                                   if k in documents])
                        start = end
                        if time.perf_counter() > deadline:
                            break
                if between is not None:
                    between()
            with lock:
                fmap.ready = True
        if on_done is not None:
            on_done(store, time.perf_counter() - started)

    thread = threading.Thread(target=fill, name=f"index-maps-{store.name}", daemon=True)
    thread.start()
    return thread


def _clause(value):
    """How a map can serve one ``field: value`` clause: ("eq", values, exact),
    ("range", None, False) or None. Exact: the map's candidates are precisely
    the documents the clause matches, so the clause needs no full match."""
    kind = type(value)
    if kind in _EQ_TYPES:
        if not _eq_value(value):
            return None
        if kind is bson.ObjectId:
            # mongomock also matches an array holding the id's string form
            return "eq", (value, str(value)), False
        return "eq", (value,), True
    if kind is not dict or not value:
        return None
    if len(value) == 1:
        (op, arg), = value.items()
        if op == "$eq" and _eq_value(arg):
            return "eq", (arg,), True
        if op == "$in" and isinstance(arg, (list, tuple)) and all(_eq_value(v) for v in arg):
            return "eq", tuple(arg), True
    if value.keys() <= _RANGE and all(type(v) in _RANGE_TYPES and v == v
                                      for v in value.values()):
        return "range", None, False
    return None


def _index_plan(store, filter):
    """(candidate documents in natural order, residual filter), or None when no
    map serves the filter. Clauses come from the filter's top level and from a
    top-level ``$and``; every served clause narrows the candidates, and the exact
    ones leave the filter the candidates still have to pass."""
    state = _secondary(store)
    if state is None or not state.maps:
        return None
    maps = state.maps
    served = []  # (estimate, kind, fmap, values, exact, where, field)
    parts = filter.get("$and")
    if not (isinstance(parts, list) and parts and all(type(p) is dict for p in parts)):
        parts = None
    places = [(None, filter)] + [(n, part) for n, part in enumerate(parts or ())]
    for where, clauses in places:
        for field, value in clauses.items():
            fmap = maps.get(field)
            how = fmap is not None and fmap.ready and _clause(value)
            if not how:
                continue
            kind, values, exact = how
            if kind == "eq":
                values = tuple(dict.fromkeys(values))
                estimate = sum(_size(fmap.buckets[v]) for v in values if v in fmap.buckets)
            else:
                estimate = len(fmap.present)
            served.append((estimate, kind, fmap, values, exact, where, field))
    if not served:
        return None
    served.sort(key=lambda s: s[0])

    # the candidates' ranks, ascending (natural order): the smallest clause's
    # documents, kept if every other served clause holds them too
    candidates = None
    for _, kind, fmap, values, _, _, _ in served:
        if kind == "range":
            postings = [fmap.present]
        else:
            postings = [fmap.buckets[v] for v in values if v in fmap.buckets]
        if candidates is None:
            if len(postings) == 1 and type(postings[0]) is not set:
                posting = postings[0]
                candidates = [posting] if type(posting) is int else posting
            else:
                candidates = sorted(_union(postings))
        else:
            if len(postings) == 1 and type(postings[0]) is set:
                holds = postings[0].__contains__
            elif len(candidates) * 8 > sum(_size(p) for p in postings):
                holds = _union(postings).__contains__  # many probes: one set
            else:
                holds = functools.partial(_holds, postings)  # few: bisect each
            candidates = [r for r in candidates if holds(r)]
        if not candidates:
            return [], filter

    # natural order: by insertion rank. A list, not a lazy walk: ``candidates``
    # may be the map's own posting array, which an update_many changes as it
    # goes (11,000 candidates cost about 1 ms)
    documents, keys = store._documents, state.keys
    docs = [documents[keys[r]] for r in candidates]

    exact = {(where, field) for _, _, _, _, is_exact, where, field in served if is_exact}
    residual = {k: v for k, v in filter.items() if (None, k) not in exact and k != "$and"}
    if parts is None:
        if "$and" in filter:
            residual["$and"] = filter["$and"]
    else:
        rest = [{k: v for k, v in part.items() if (n, k) not in exact}
                for n, part in enumerate(parts)]
        rest = [part for part in rest if part]
        if rest:
            residual["$and"] = rest
    return docs, residual


def _union(postings):
    """The ranks of ``postings`` (ranks, arrays of ranks, sets), as one set."""
    ranks = set()
    for posting in postings:
        if type(posting) is int:
            ranks.add(posting)
        else:
            ranks.update(posting)
    return ranks


def _holds(postings, rank):
    """Does one of ``postings`` (ranks, arrays of ranks, sets) hold ``rank``?
    Arrays are bisected."""
    for posting in postings:
        kind = type(posting)
        if kind is int:
            if posting == rank:
                return True
        elif kind is set:
            if rank in posting:
                return True
        else:
            i = bisect_left(posting, rank)
            if i < len(posting) and posting[i] == rank:
                return True
    return False


def _touches(field, update):
    """May this update document change ``field``? Replacements and unknown shapes
    may; operators only through paths sharing its first segment."""
    if not isinstance(update, dict) or not update or \
            not all(isinstance(k, str) and k.startswith("$") for k in update):
        return True
    head = field.split(".", 1)[0]
    for op, paths in update.items():
        if not isinstance(paths, dict):
            return True
        names = list(paths)
        if op == "$rename":
            names += list(paths.values())
        for name in names:
            if not isinstance(name, str) or name.split(".", 1)[0] == head:
                return True
    return False


# ---------------------------------------------------------------- unique indexes


def _ensure_uniques(self, new_data):
    # mongomock scans the whole collection for every unique index on every
    # insert and update. Keep, per unique index, a map key value -> _id of the
    # document that took it; an entry is believed only if that document still
    # holds the value, so deletes and key changes need no bookkeeping.
    store = self._store
    plain = [(name, index) for name, index in store.indexes.items() if index.get("unique")]
    if not plain:
        return
    if any(index.get("sparse") or index.get("partialFilterExpression") is not None
           for _, index in plain):
        return _ensure_uniques.original(self, new_data)
    values = [_unique_value(new_data, index) for _, index in plain]
    if any(v is None for v in values):  # arrays or sub-documents: the slow, exact check
        return _ensure_uniques.original(self, new_data)
    maps = store.__dict__.setdefault("_unique_maps", {})
    doc_key = _store_key(new_data["_id"])
    for (name, index), value in zip(plain, values):
        entry = maps.get(name)
        if entry is None or entry[0] is not index:
            entry = maps[name] = (index, {})
            for key, doc in store._documents.items():
                if key == doc_key:  # the document being checked is stored already
                    continue
                existing = _unique_value(doc, index)
                if existing is not None:
                    entry[1][existing] = key
        holder = entry[1].get(value)
        if holder is not None and holder != doc_key:
            other = store._documents.get(holder)
            if other is not None and _unique_value(other, index) == value:
                raise _mm_collection.DuplicateKeyError("E11000 Duplicate Key Error", 11000)
        entry[1][value] = doc_key


# ---------------------------------------------------------------- keeping the maps current
#
# Secondary-index maps follow every write to the store (see _FieldMap): these
# stand in for mongomock's CollectionStore.__setitem__, __delitem__ and drop
# (``original`` on each is mongomock's own).


_intern = sys.intern
# Strings up to this long are interned when stored (other than ``_id``s, unique by
# definition): the values many documents repeat (a tag, an author, a publisher, a
# state, a store or user id, a book id) are then held once. Longer ones (texts,
# 32-character order ids, sha256 ids) are mostly unique: interning them would only
# grow the interpreter's table of interned strings.
SHORT = 24


def compact(doc, fields=()):
    """``doc`` as it is stored: plain dicts (mongomock makes an upserted document an
    OrderedDict: 1,264 bytes for a 15-field description, 464 as a dict), every field
    name interned, at any depth (a document decoded from BSON, or from a request's
    JSON, has its own copy of each: an order's lines and history repeat
    "book_id", "count", "price", "state", "at"), and so every string of up to
    ``SHORT`` characters and every string value or array element of ``fields``
    (the store's indexed fields: ``_indexed_fields``). Arrays are copied at their
    exact size, and a blob reference as BSON decodes it becomes a ``BlobRef``.

    A search term is then one object however many books hold it (40,000 books'
    5.8 million terms are about 100,000 distinct strings), shared with the index
    map's key; so are a tag, an author, a state. 100,000 orders loaded from a data
    folder took 292 MiB before nested documents were compacted too. Interned
    strings are freed with their last holder (CPython 3.12 alone keeps them for
    the process's life: distinct short values, a bounded set)."""
    if not isinstance(doc, dict):
        return doc
    out = {}
    for name, value in doc.items():
        if type(name) is str:
            name = _intern(name)
        kind = type(value)
        if kind is str:  # the common case, inline (load time: every field of every document)
            if len(value) <= SHORT and name != "_id" or name in fields:
                value = _intern(value)
        elif kind in _NESTED and (name != "_id" or kind is dict):
            value = _compacted(value, name in fields)
        out[name] = value
    return out


def _compacted(value, always):
    """A stored value, compacted as ``compact`` says; ``always``: intern its
    strings whatever their length."""
    kind = type(value)
    if kind is str:
        return _intern(value) if always or len(value) <= SHORT else value
    if kind is list:
        copy = value[:]  # a slice is allocated at its exact size
        if always:  # an indexed array: search terms, 146 a book
            try:
                copy[:] = map(_intern, value)  # the same size: no reallocation
                return copy
            except TypeError:  # not only strings
                copy = value[:]
        for i, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if always or len(item) <= SHORT:
                    copy[i] = _intern(item)
            elif kind in _NESTED:
                copy[i] = _compacted(item, always)
        return copy
    if kind is dict:
        return {(_intern(k) if type(k) is str else k): _compacted(v, False)
                for k, v in value.items()}
    if kind is bson.Binary and value.subtype == blobs.SUBTYPE:
        return blobs.BlobRef(value)  # a reference to a file, as BSON decodes it
    return value


_NESTED = frozenset({str, list, dict, bson.Binary})  # what _compacted may change


def _store_setitem(self, key, val):
    limits.check_stored(val)  # 16 MiB, int64: refused as pymongo refuses them
    val = compact(val, _indexed_fields(self))
    state = self.__dict__.get("_secondary")
    if state is None:
        _store_setitem.original(self, key, val)
        ordered.refresh(self, key, val)
        return
    old = self._documents.get(key)
    _store_setitem.original(self, key, val)
    if old is None:  # a new key goes last in the OrderedDict: natural order
        rank = state.seq[key] = state.next
        state.keys[rank] = key
        state.next += 1
    else:
        rank = state.seq[key]
    for fmap in state.maps.values():
        fmap.update(rank, fmap.keys(old) if old is not None else _NO_KEYS, fmap.keys(val))
    ordered.refresh(self, key, val)


def _store_delitem(self, key):
    state = self.__dict__.get("_secondary")
    old = self._documents.get(key) if state is not None else None
    _store_delitem.original(self, key)
    ordered.refresh(self, key, None)
    if old is not None:
        rank = state.seq.pop(key)
        state.keys.pop(rank, None)
        for fmap in state.maps.values():
            fmap.update(rank, fmap.keys(old), _NO_KEYS)


def _store_init(self, name):
    _store_init.original(self, name)
    # a plain dict keeps insertion order as mongomock's OrderedDict does (mongomock
    # uses only mapping operations on it), at about 70 bytes a document less
    self._documents = {}


def _store_drop(self):
    _store_drop.original(self)
    self._documents = {}
    self.__dict__.pop("_secondary", None)
    ordered.forget(self)


def _tracked(self, doc, update, apply):
    # what MongoDB refuses is refused (be.embedded.limits), the document put back;
    # the ordered indexes (be.embedded.ordered) read the document after the change
    apply = limits.guard(doc, update, apply)
    store = self._store
    if not store.__dict__.get("_ordered"):
        return _tracked_maps(self, doc, update, apply)
    try:
        return _tracked_maps(self, doc, update, apply)
    finally:
        try:
            key = _store_key(doc.get("_id"))
            if store._documents.get(key) is doc:
                ordered.refresh(store, key, doc)
        except TypeError:  # an unhashable _id: not a stored document
            pass


def _tracked_maps(self, doc, update, apply):
    # mongomock updates a stored document in place: read its keys before and
    # after (after even if the update fails half-way: mongomock keeps what it
    # changed). An upsert's new document is not stored yet; _store_setitem sees it.
    # A journaled store (be.embedded.journaled) is told which document changed.
    store = self._store
    state = store.__dict__.get("_secondary")
    changed = getattr(store, "changed", None)
    if (state is None or not state.maps) and changed is None:
        return apply()
    try:
        key = _store_key(doc.get("_id"))
        stored = store._documents.get(key) is doc
    except TypeError:  # an unhashable _id: not a stored document
        stored = False
    if not stored:
        return apply()
    maps = [] if state is None else \
        [m for m in state.maps.values() if update is None or _touches(m.field, update)]
    before = [m.keys(doc) for m in maps]
    try:
        return apply()
    finally:
        if maps:
            rank = state.seq[key]
            for fmap, old in zip(maps, before):
                fmap.update(rank, old, fmap.keys(doc))
        if changed is not None:
            changed(key)


# Each document gets its own copy of the update's values: mongomock stores a
# $set or $push sub-document by reference, so every document one update_many
# changed shared it, and a later in-place update of one changed them all
# (behind the maps' back, and unlike MongoDB). ``original`` on each is mongomock's
# own updater.
def _apply_update_document(self, existing_document, spec, document, was_insert):
    document = _deepcopy(document)
    return _tracked(self, existing_document, document, lambda: _apply_update_document.original(
        self, existing_document, spec, document, was_insert))


def _apply_update_pipeline(self, existing_document, pipeline, session):
    pipeline = _deepcopy(pipeline)
    return _tracked(self, existing_document, None, lambda: _apply_update_pipeline.original(
        self, existing_document, pipeline, session))
