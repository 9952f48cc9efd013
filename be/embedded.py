"""The embedded engine: mongomock in-process, made safe and usable for a server.

mongomock is a test double, not a database: it has no locking, scans every
document on every query and expires TTL documents on each access. This module
adapts it without changing how the application calls pymongo:

* every collection call runs under one process-wide lock, so each call is atomic
  as a single-document MongoDB operation is (the server's threads share it);
* a filter that names a single ``_id`` (or an ``$in`` list of them) looks those
  documents up directly instead of scanning (what the real ``_id`` index does);
* every declared index keeps a hash map from the value of its first key to the
  documents holding it, kept current on every write, and a filter that pins that
  field by equality or ``$in`` (or bounds it by a range) reads its candidates
  from the map instead of scanning (see "Secondary indexes" below);
* declared compound indexes are also kept sorted (``be.embedded_ordered``): a
  list's page walks one from its start and stops after the page, and a count on
  an index prefix bisects it (hooks: the store writes, ``tracked``,
  ``_get_dataset`` and ``count_documents`` below);
* a cursor with a limit copies only the documents it returns (mongomock copies
  every match first), and ``find_one`` reads with a limit of one, as pymongo does;
* unique indexes are checked through a hash map, not a scan per write;
* a single-document update by ``_id`` (``update_one``, a bulk ``UpdateOne``,
  ``find_one_and_update``) snapshots and compares only the fields it writes and
  reads its document once, where mongomock deep-copies and compares the whole
  document and reads it up to three times (see "Writes by _id" below);
* TTL expiry runs at most once a second per collection instead of on every read;
* ``bulk_write`` accepts the operations of current pymongo releases.

``observer`` (if set) sees every call of one engine: the tests count round trips
through it. Functions in ``OBSERVERS`` see every call of every engine in the
process: the index test records the suite's query shapes through it.
"""
import copy
import datetime
import functools
import itertools
import operator
import re
import threading
import time
import types
from collections.abc import Mapping

import bson
from pymongo import ReturnDocument

import mongomock
from mongomock import collection as _mm_collection
from mongomock import store as _mm_store
from mongomock import DuplicateKeyError
from mongomock.filtering import NOTHING, iter_key_candidates

from be import budget
from be import embedded_ordered as ordered

_LOCK = threading.RLock()
_PATCHED = False
OBSERVERS = []  # process-wide observers: f(collection, method, args, kwargs)


def _plain_key(value):
    return not isinstance(value, (dict, list, tuple, re.Pattern)) and value is not None


_RANGE = frozenset({"$gt", "$gte", "$lt", "$lte"})
_COMPARABLE = (str, int, float, datetime.datetime)


def _prefilter(filter):
    """Cheap necessary conditions for a filter: for each top-level ``field: "text"``
    or ``field: {"$in": [texts]}`` the field holds one of them (or an array,
    left to the full match), and for each range on a field (dotted or not) with a
    plain operand the field's first segment is present. A document failing one
    cannot match; one passing all still gets the full match."""
    checks = []
    for key, value in filter.items():
        if key.startswith("$"):
            continue
        first = key.split(".", 1)[0]
        if type(value) is str and first == key:
            checks.insert(0, lambda d, k=key, v=value: (x := d.get(k)) == v or type(x) is list)
        elif type(value) is dict and value:
            ops = set(value)
            if ops == {"$in"} and first == key and isinstance(value["$in"], (list, tuple)) \
                    and all(type(v) is str for v in value["$in"]):
                wanted = frozenset(value["$in"])
                checks.insert(0, lambda d, k=key, w=wanted: (
                    type(x := d.get(k)) is list or (type(x) is str and x in w)))
            elif ops <= _RANGE and all(type(v) in _COMPARABLE or isinstance(v, _COMPARABLE)
                                       for v in value.values()):
                checks.append(lambda d, f=first: d.get(f) is not None)
    return checks


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


_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, datetime.datetime,
                        bson.ObjectId, bson.Decimal128, bson.Int64, bson.Timestamp})


def _deepcopy(value, memo=None):
    cls = type(value)
    if cls is dict:
        return {k: _deepcopy(v) for k, v in value.items()}
    if cls is list:
        return [_deepcopy(v) for v in value]
    if cls in _IMMUTABLE:
        return value
    return copy.deepcopy(value, memo)


def _shallow_copy(value):
    return value if type(value) in _IMMUTABLE else copy.copy(value)


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
# operand types a range can use the map's "present" set for: bson_compare only
# matches values of the same comparison type, and those are never null
_RANGE_TYPES = frozenset({str, int, float, datetime.datetime, bson.Int64})
_OTHER = object()  # key of an unhashable scalar (Decimal128, Regex...): present, never equal
_NO_KEYS = frozenset()


def _eq_value(value):
    return type(value) in _EQ_TYPES and value == value  # NaN equals nothing, not even itself


class _FieldMap:
    """value -> _ids for one field, plus the _ids holding any non-null value."""
    __slots__ = ("field", "buckets", "present")

    def __init__(self, field):
        self.field = field
        self.buckets = {}
        self.present = set()  # what a range on the field can match (a sparse index's keys)

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

    def update(self, doc_key, old, new):
        if old == new:
            return
        buckets = self.buckets
        for value in old - new:
            bucket = buckets.get(value)
            if bucket is not None:
                bucket.discard(doc_key)
                if not bucket:
                    del buckets[value]
        for value in new - old:
            bucket = buckets.get(value)
            if bucket is None:
                bucket = buckets[value] = set()
            bucket.add(doc_key)
        if len(new) > (None in new):
            self.present.add(doc_key)
        else:
            self.present.discard(doc_key)


def _add_key(keys, value):
    try:
        keys.add(value)
    except TypeError:
        keys.add(_OTHER)


class _Secondary:
    """A store's maps, by field, and each document's insertion rank: candidates
    come back in natural order, as mongomock's scan returns them."""
    __slots__ = ("maps", "seq", "next")

    def __init__(self, store):
        self.maps = {}
        self.seq = {key: n for n, key in enumerate(store._documents)}
        self.next = len(self.seq)


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
        for doc_key, doc in store._documents.items():
            fmap.update(doc_key, _NO_KEYS, fmap.keys(doc))
        state.maps[field] = fmap
    for field in state.maps.keys() - wanted:
        del state.maps[field]
    return state


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
            how = fmap is not None and _clause(value)
            if not how:
                continue
            kind, values, exact = how
            if kind == "eq":
                values = tuple(dict.fromkeys(values))
                estimate = sum(len(fmap.buckets.get(v, ())) for v in values)
            else:
                estimate = len(fmap.present)
            served.append((estimate, kind, fmap, values, exact, where, field))
    if not served:
        return None
    served.sort(key=lambda s: s[0])

    candidates = None
    for _, kind, fmap, values, _, _, _ in served:
        if kind == "range":
            sets = [fmap.present]
        else:
            sets = [fmap.buckets[v] for v in values if v in fmap.buckets]
        if candidates is None:
            candidates = set().union(*sets)
        elif len(sets) == 1:
            candidates &= sets[0]
        else:
            candidates = {k for k in candidates if any(k in s for s in sets)}
        if not candidates:
            return [], filter

    # natural order: by insertion rank, or a walk of the store when most match
    documents = store._documents
    if len(candidates) * 8 > len(documents):
        docs = [doc for key, doc in documents.items() if key in candidates]
    else:
        seq = state.seq
        docs = [documents[key] for key in sorted(candidates, key=seq.__getitem__)]

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


# Sort values whose comparison in mongomock (BsonComparable -> bson_compare) is
# plain Python comparison: values of one of these groups compare as Python does.
_NATIVE_SORT = (frozenset({str}), frozenset({datetime.datetime}),
                frozenset({int, float, bson.Int64}))


def _sorted_by(docs, field, descending):
    """``docs`` sorted on one key exactly as mongomock sorts them (stable, its
    BSON order), comparing plain values directly when every document holds one
    of the same kind: most sorts on an indexed list (dates, ids), which
    mongomock compares through a Python-level BSON comparison."""
    resolve = _mm_collection.filtering.resolve_key
    values = [resolve(field, d) for d in docs]
    kinds = {type(v) for v in values}
    if any(kinds <= group for group in _NATIVE_SORT):
        order = sorted(range(len(docs)), key=values.__getitem__, reverse=descending)
        return [docs[i] for i in order]
    sort_key = _mm_collection.filtering.resolve_sort_key
    return sorted(docs, key=lambda d: sort_key(field, d), reverse=descending)


# ---------------------------------------------------------------- writes by _id
#
# mongomock's _update deep-copies the whole stored document before applying an
# update and compares the whole of it afterwards (an order with its lines and
# history, for a change of one field), converts every datetime of the filter and
# the update through a slow generic walk, and asks the client for its version;
# its find_one_and_update reads the document, updates it, then reads it again.
# For the updates the models issue (a filter naming one plain ``_id``, operators
# that write named fields, no upsert) the fast path below runs the very same
# updater (_apply_update_document) and unique check, but snapshots and compares
# only the top-level fields the update writes: the only ones it can change.
# Anything else (upserts, update_many, pipelines, replacements, $rename,
# positional paths, writes to _id) goes to mongomock's own code. Filters, for any
# query, are first tried by _quick_match, which answers the clause shapes the
# models use as mongomock's matcher does and defers everything else to it; and
# simple projections are copied directly. FAST_PATHS = False turns all of this
# off: the tests run both ways and compare (be/tests/test_embedded_fast.py).

FAST_PATHS = True
# operators that change only the paths they name (not $rename: it writes its target
# too; not $setOnInsert/$currentDate: left to mongomock)
_FIELD_OPERATORS = frozenset({"$set", "$unset", "$inc", "$push", "$pull", "$addToSet",
                              "$pop", "$min", "$max", "$mul", "$pullAll"})
_original_patch_dates = mongomock.helpers.patch_datetime_awareness_in_document


def _patch_dates(value):
    """mongomock's patch_datetime_awareness_in_document (datetimes to naive UTC
    milliseconds, a fresh copy of every dict and list), with the common types
    handled without its chain of isinstance tests."""
    cls = type(value)
    if cls is dict:
        return {k: _patch_dates(v) for k, v in value.items()}
    if cls is str or cls is int or cls is bool or cls is float or value is None:
        return value
    if cls is list:
        return [_patch_dates(v) for v in value]
    return _original_patch_dates(value)


_COMPARE = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_EQ_SEARCH = frozenset({str, int, type(None), datetime.datetime})


def _quick_match(filter, doc):
    """filter_applies(filter, doc) for the clause shapes the models use, or None
    when some clause is not one of them (the caller then asks mongomock). Shapes:
    ``field`` or ``field.sub`` (through a sub-document, not an array) pinned to a
    str/int/None/datetime, or ``{"$gt"|"$gte"|"$lt"|"$lte": int|datetime}`` over a
    value of the same type, or ``{"$ne": str|int}``. Each follows mongomock's
    _Filterer.apply step for step: an array value matches an equality by holding
    it, None matches a missing field, $ne needs no element equal to it."""
    if not FAST_PATHS:
        return None
    for key, search in filter.items():
        if not key or key[0] == "$":
            return None
        if "." in key:
            head, _, rest = key.partition(".")
            if not head or not rest or "." in rest:
                return None
            sub = doc.get(head, {})
            if type(sub) is dict:
                candidates = (sub.get(rest, NOTHING),)
            elif sub is None or isinstance(sub, (str, int, float, datetime.datetime)):
                candidates = ()
            else:
                return None
        else:
            candidates = (doc.get(key, NOTHING),)
        kind = type(search)
        if kind in _EQ_SEARCH:
            for value in candidates:
                if isinstance(value, (list, tuple)):
                    if search in value or search == value:
                        break
                elif value == search or (search is None and value is NOTHING):
                    break
            else:
                return False
            continue
        if kind is not dict or len(search) != 1:
            return None
        (op, arg), = search.items()
        compare = _COMPARE.get(op)
        if compare is not None and type(arg) in (int, datetime.datetime):
            for value in candidates:
                if value is NOTHING:
                    continue
                if type(value) is not type(arg):
                    return None  # arrays, other types: BSON brackets, mongomock's code
                if compare(value, arg):
                    break
            else:
                return False
        elif op == "$ne" and type(arg) in (str, int):
            for value in candidates:
                if isinstance(value, (list, tuple)):
                    if any(item == arg for item in value):
                        return False
                elif value == arg:
                    return False
        else:
            return None
    return True


def _applies(filter, doc):
    matched = _quick_match(filter, doc)
    return _mm_collection.filter_applies(filter, doc) if matched is None else matched


_PLAIN = frozenset({str, int, bool, type(None)})


def _patch_filter(spec):
    """_patch_dates for a filter that is only read: the filter itself when nothing
    in it would change (top-level values, and operator documents, of plain types)."""
    for value in spec.values():
        kind = type(value)
        if kind in _PLAIN or (kind is dict and all(type(v) in _PLAIN for v in value.values())):
            continue
        return _patch_dates(spec)
    return spec


def _written_fields(update):
    """The top-level fields an operator update writes, or None when the fast path
    does not take it."""
    if type(update) is not dict or not update:
        return None
    heads = set()
    for op, paths in update.items():
        if op not in _FIELD_OPERATORS or type(paths) is not dict or not paths:
            return None
        for path in paths:
            if type(path) is not str or not path or "$" in path:
                return None
            head = path.split(".", 1)[0]
            if head == "_id" or not head:
                return None
            heads.add(head)
    return heads


def _by_id(spec):
    key = spec.get("_id") if type(spec) is dict else None
    return key is not None and not isinstance(key, (dict, list))


def _fast_update_fields(spec, update):
    """The fields the fast path would snapshot for this update, or None."""
    if not FAST_PATHS or not _by_id(spec):
        return None
    return _written_fields(update)


class _UpdateOnes:
    """Stands in for mongomock's BulkOperationBuilder while pymongo's requests add
    themselves: collects (filter, update, fields written) of single-document
    updates by _id that the fast path takes, and notes any other request."""

    def __init__(self):
        self.ops, self.simple = [], True

    def add_update(self, selector, document, multi=False, upsert=False, collation=None,
                   array_filters=None, hint=None, sort=None):
        written = None if multi or upsert or collation or array_filters or hint or sort \
            else _fast_update_fields(selector, document)
        if written is None:
            self.simple = False
        else:
            self.ops.append((selector, document, written))

    def __getattr__(self, name):  # add_insert, add_replace, add_delete...
        self.simple = False
        return lambda *args, **kwargs: None


def _plain_projection(fields):
    """True (include) or False (exclude) for a projection dict naming top-level
    fields with 0/1 (and maybe _id), else None."""
    if not FAST_PATHS or type(fields) is not dict:
        return None
    values = set()
    for key, value in fields.items():
        if type(value) not in (int, bool) or type(key) is not str or "." in key or "$" in key:
            return None
        if key != "_id":
            values.add(value)
    if len(values) != 1:  # none, or mixed (mongomock refuses any two different values)
        return None
    return bool(values.pop())


def _update_result(coll, matched, modified):
    return {"connectionId": coll.database.client._id, "err": None, "n": matched,
            "nModified": modified, "ok": 1, "upserted": None, "updatedExisting": bool(matched)}


def _patch_mongomock():
    global _PATCHED
    if _PATCHED:
        return
    _PATCHED = True

    original_iter = _mm_collection.Collection._iter_documents

    def _iter_documents(self, filter):
        key = filter.get("_id") if isinstance(filter, dict) else None
        if key is not None and not isinstance(key, (dict, list)):
            store = self._store
            store._remove_expired_documents()
            doc = store._documents.get(key)
            if doc is None:
                return iter(())
            if len(filter) == 1 or _applies(filter, doc):
                return iter([doc])
            return iter(())
        keys = key.get("$in") if isinstance(key, dict) and len(key) == 1 else None
        if isinstance(keys, (list, tuple)) and all(_plain_key(k) for k in keys):
            # {_id: {$in: [...]}}: one lookup per id, as the _id index does
            store = self._store
            store._remove_expired_documents()
            docs = (store._documents.get(k) for k in dict.fromkeys(keys))
            only_id = len(filter) == 1
            return iter([d for d in docs if d is not None
                         and (only_id or _applies(filter, d))])
        if isinstance(filter, dict) and filter:
            store = self._store
            store._remove_expired_documents()
            plan = _index_plan(store, filter) if store._documents else None
            if plan is not None:
                docs, residual = plan
                if not residual:
                    return iter(docs)
                applies = _applies
                # lazy, as mongomock's own scan: update_one stops at the first match
                return (d for d in docs if applies(residual, d))
        checks = _prefilter(filter) if isinstance(filter, dict) else None
        if checks:
            # a scan still, but documents that plainly fail a string equality or
            # a range are skipped before mongomock's (slow) full match
            store = self._store
            if store.is_empty:
                return original_iter(self, filter)
            applies = _applies
            keep = checks[0]
            for more in checks[1:]:
                keep = (lambda a, b: lambda d: a(d) and b(d))(keep, more)
            return iter([d for d in list(store._documents.values())
                         if keep(d) and applies(filter, d)])
        return original_iter(self, filter)

    _mm_collection.Collection._iter_documents = _iter_documents

    original_uniques = _mm_collection.Collection._ensure_uniques

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
            return original_uniques(self, new_data)
        values = [_unique_value(new_data, index) for _, index in plain]
        if any(v is None for v in values):  # arrays or sub-documents: the slow, exact check
            return original_uniques(self, new_data)
        maps = store.__dict__.setdefault("_unique_maps", {})
        doc_key = _store_key(new_data["_id"])
        for (name, index), value in zip(plain, values):
            entry = maps.get(name)
            if entry is None or entry[0] is not index:
                entry = maps[name] = (index, {})
                for key, doc in store._documents.items():
                    existing = _unique_value(doc, index)
                    if existing is not None:
                        entry[1][existing] = key
            holder = entry[1].get(value)
            if holder is not None and holder != doc_key:
                other = store._documents.get(holder)
                if other is not None and _unique_value(other, index) == value:
                    raise _mm_collection.DuplicateKeyError("E11000 Duplicate Key Error", 11000)
            entry[1][value] = doc_key

    _mm_collection.Collection._ensure_uniques = _ensure_uniques

    original_expire = _mm_store.CollectionStore._remove_expired_documents

    def _remove_expired_documents(self):
        now = time.monotonic()
        if now - getattr(self, "_last_expiry", 0.0) < 1.0:
            return
        self._last_expiry = now
        original_expire(self)

    _mm_store.CollectionStore._remove_expired_documents = _remove_expired_documents

    # Secondary-index maps follow every write to the store (see _FieldMap).
    store_class = _mm_store.CollectionStore
    original_setitem = store_class.__setitem__
    original_delitem = store_class.__delitem__
    original_drop = store_class.drop

    def __setitem__(self, key, val):
        state = self.__dict__.get("_secondary")
        if state is None:
            original_setitem(self, key, val)
            ordered.refresh(self, key, val)
            return
        old = self._documents.get(key)
        original_setitem(self, key, val)
        if old is None:  # a new key goes last in the OrderedDict: natural order
            state.seq[key] = state.next
            state.next += 1
        for fmap in state.maps.values():
            fmap.update(key, fmap.keys(old) if old is not None else _NO_KEYS, fmap.keys(val))
        ordered.refresh(self, key, val)

    def __delitem__(self, key):
        state = self.__dict__.get("_secondary")
        old = self._documents.get(key) if state is not None else None
        original_delitem(self, key)
        ordered.refresh(self, key, None)
        if old is not None:
            state.seq.pop(key, None)
            for fmap in state.maps.values():
                fmap.update(key, fmap.keys(old), _NO_KEYS)

    def drop(self):
        original_drop(self)
        self.__dict__.pop("_secondary", None)
        ordered.forget(self)

    store_class.__setitem__ = __setitem__
    store_class.__delitem__ = __delitem__
    store_class.drop = drop

    def tracked(self, doc, update, apply):
        # the ordered indexes (be.embedded_ordered) read the document after the change
        if not self._store.__dict__.get("_ordered"):
            return tracked_maps(self, doc, update, apply)
        try:
            return tracked_maps(self, doc, update, apply)
        finally:
            store = self._store
            try:
                key = _store_key(doc.get("_id"))
                if store._documents.get(key) is doc:
                    ordered.refresh(store, key, doc)
            except TypeError:  # an unhashable _id: not a stored document
                pass

    def tracked_maps(self, doc, update, apply):
        # mongomock updates a stored document in place: read its keys before and
        # after (after even if the update fails half-way: mongomock keeps what it
        # changed). An upsert's new document is not stored yet; __setitem__ sees it.
        store = self._store
        state = store.__dict__.get("_secondary")
        if state is None or not state.maps:
            return apply()
        try:
            key = _store_key(doc.get("_id"))
            stored = store._documents.get(key) is doc
        except TypeError:  # an unhashable _id: not a stored document
            stored = False
        if not stored:
            return apply()
        maps = [m for m in state.maps.values() if update is None or _touches(m.field, update)]
        before = [m.keys(doc) for m in maps]
        try:
            return apply()
        finally:
            for fmap, old in zip(maps, before):
                fmap.update(key, old, fmap.keys(doc))

    # Each document gets its own copy of the update's values: mongomock stores a
    # $set or $push sub-document by reference, so every document one update_many
    # changed shared it, and a later in-place update of one changed them all
    # (behind the maps' back, and unlike MongoDB).
    coll_class = _mm_collection.Collection
    original_apply = coll_class._apply_update_document
    original_pipeline = coll_class._apply_update_pipeline

    def _apply_update_document(self, existing_document, spec, document, was_insert):
        document = _deepcopy(document)
        return tracked(self, existing_document, document, lambda: original_apply(
            self, existing_document, spec, document, was_insert))

    def _apply_update_pipeline(self, existing_document, pipeline, session):
        pipeline = _deepcopy(pipeline)
        return tracked(self, existing_document, None, lambda: original_pipeline(
            self, existing_document, pipeline, session))

    coll_class._apply_update_document = _apply_update_document
    coll_class._apply_update_pipeline = _apply_update_pipeline

    mongomock.helpers.patch_datetime_awareness_in_document = _patch_dates

    original_copy_field = _mm_collection._copy_field

    def _copy_field(obj, container):
        # mongomock's copy of every field it returns, with plain dicts, lists and
        # immutable values handled directly
        if container is not dict:
            return original_copy_field(obj, container)
        cls = type(obj)
        if cls is dict:
            return {k: _copy_field(v, dict) for k, v in obj.items()}
        if cls is list:
            return [_copy_field(v, dict) for v in obj]
        if cls in _IMMUTABLE:
            return obj
        return original_copy_field(obj, container)

    _mm_collection._copy_field = _copy_field

    original_update = coll_class._update

    def update_by_id(self, spec, document, written):
        # as mongomock's _update for one document, snapshotting only ``written``
        spec, document = _patch_filter(spec), _patch_dates(document)  # a fresh update
        doc = next(iter(self._iter_documents(spec)), None)
        if doc is None:
            return _update_result(self, 0, 0)
        before = {field: _deepcopy(doc[field]) for field in written if field in doc}
        order = list(doc)
        tracked(self, doc, document,
                lambda: original_apply(self, doc, spec, document, False))
        # mongomock compares whole documents (==, which takes an object as equal to
        # itself); only the written fields can differ
        if {field: doc[field] for field in written if field in doc} == before:
            return _update_result(self, 1, 0)
        try:
            self._ensure_uniques(doc)
        except DuplicateKeyError:
            # mongomock stores its snapshot back: the document as it was, in its order
            key = _store_key(doc["_id"])
            self._store[key] = type(doc)((k, before[k] if k in written else doc[k])
                                         for k in order)
            raise
        return _update_result(self, 1, 1)

    def _update(self, spec, document, upsert=False, manipulate=False, multi=False,
                check_keys=False, **kwargs):
        written = None if upsert or multi or any(kwargs.values()) else \
            _fast_update_fields(spec, document)
        if written is None:
            return original_update(self, spec, document, upsert, manipulate, multi,
                                   check_keys, **kwargs)
        return update_by_id(self, spec, document, written)

    coll_class._update = _update

    original_find_one_and_update = coll_class.find_one_and_update

    def find_one_and_update(self, filter, update, projection=None, sort=None, upsert=False,
                            return_document=ReturnDocument.BEFORE, **kwargs):
        written = None if sort is not None or upsert or kwargs or \
            self.codec_options.tz_aware else _fast_update_fields(filter, update)
        if written is None:
            return original_find_one_and_update(self, filter, update, projection, sort,
                                                upsert, return_document, **kwargs)
        # mongomock's _find_and_modify (find, update by _id, find again), reading the
        # document once: the update by _id leaves it where it was
        _mm_collection.validate_ok_for_update(update)
        doc = next(iter(self._iter_documents(_patch_filter(filter))), None)
        if doc is None:
            return None
        old = self._copy_only_fields(doc, projection, dict)
        if not old:
            return None
        if "_id" not in old:
            return original_find_one_and_update(self, filter, update, projection, sort,
                                                upsert, return_document, **kwargs)
        update_by_id(self, {"_id": old["_id"]}, update, written)
        if return_document is ReturnDocument.AFTER:
            return self._copy_only_fields(doc, projection, dict)
        return old

    coll_class.find_one_and_update = find_one_and_update

    original_bulk_write = coll_class.bulk_write

    def bulk_write(self, requests, ordered=True, bypass_document_validation=False,
                   session=None):
        # a list of plain UpdateOnes by _id (the models' reserve, undo and unmark
        # steps): mongomock's BulkOperationBuilder.execute without the builder
        requests = list(requests)
        updates = _UpdateOnes()
        if not requests or bypass_document_validation or session:
            updates.simple = False
        for request in requests:
            if not updates.simple:
                break
            request._add_to_bulk(updates)
        if not updates.simple:
            return original_bulk_write(self, requests, ordered, bypass_document_validation,
                                       session)
        for _, document, _ in updates.ops:
            _mm_collection.validate_ok_for_update(document)
        result = {"nModified": 0, "nUpserted": 0, "nMatched": 0, "writeErrors": [],
                  "upserted": [], "writeConcernErrors": [], "nRemoved": 0, "nInserted": 0}
        for index, (spec, document, written) in enumerate(updates.ops):
            try:
                done = update_by_id(self, spec, document, written)
            except _mm_collection.WriteError as error:
                result["writeErrors"].append(
                    {"index": index, "code": error.code, "errmsg": str(error)})
                if ordered:
                    break
                continue
            result["nMatched"] += done["n"]
            result["nModified"] += done["nModified"]
        if result["writeErrors"]:
            raise _mm_collection.BulkWriteError(result)
        return _mm_collection.BulkWriteResult(result, True)

    coll_class.bulk_write = bulk_write

    original_copy_only_fields = coll_class._copy_only_fields

    def _copy_only_fields(self, doc, fields, container):
        # mongomock's, for a projection that includes or excludes top-level fields
        include = _plain_projection(fields) if container is dict else None
        if include is None:
            return original_copy_only_fields(self, doc, fields, container)
        copy_field = _mm_collection._copy_field
        id_value = fields.pop("_id", 1)
        if include:
            projected = {k: copy_field(v, dict) for k, v in doc.items() if k in fields}
        else:
            projected = {k: copy_field(v, dict) for k, v in doc.items() if k not in fields}
        if id_value == 0:
            projected.pop("_id", None)
        elif "_id" in doc:
            projected["_id"] = doc["_id"]
        fields["_id"] = id_value  # mongomock leaves _id in the caller's projection too
        return projected

    coll_class._copy_only_fields = _copy_only_fields

    # mongomock's cursor copies every match before applying skip and limit: a page
    # of a long order list copied the whole list. With a limit, copy only the
    # window (all of it at the first read, as mongomock computes its results).
    cursor_class = _mm_collection.Cursor
    original_results = cursor_class._compute_results

    def _compute_results(self, with_limit_and_skip=False):
        if not (with_limit_and_skip and self._limit):
            return original_results(self, with_limit_and_skip)
        key = (self._factory, self._skip, self._limit)
        cached = self.__dict__.get("_window")
        if cached is None or cached[0] != key:
            rows = itertools.islice(self._factory(), self._skip, self._skip + abs(self._limit))
            if self.collection.codec_options.tz_aware:
                rows = (mongomock.helpers.make_datetime_timezone_aware_in_document(x)
                        for x in rows)
            cached = self._window = (key, list(rows))
        return cached[1]

    cursor_class._compute_results = _compute_results

    def _get_dataset(self, spec, sort, fields, as_class):
        # mongomock's, with _sorted_by for each sort key (last key first, stable),
        # or walked in order from an ordered index (be.embedded_ordered)
        walked = ordered.walk(self, spec, sort, _applies) if FAST_PATHS and sort else None
        dataset = self._iter_documents(spec) if walked is None else walked
        if sort and walked is None:
            if isinstance(sort, dict):
                sort = sort.items()
            for sort_key, sort_direction in reversed(list(sort)):
                if sort_key == "$natural":
                    if sort_direction < 0:
                        dataset = iter(reversed(list(dataset)))
                    continue
                if sort_key.startswith("$"):
                    raise NotImplementedError(
                        f"Sorting by {sort_key} is not implemented in mongomock yet")
                dataset = iter(_sorted_by(list(dataset), sort_key, sort_direction < 0))
        for document in dataset:
            yield self._copy_only_fields(document, fields, as_class)

    coll_class._get_dataset = _get_dataset

    original_count_documents = coll_class.count_documents

    def count_documents(self, filter, **kwargs):
        # an equality on a prefix of an index's keys: bisected from its ordered index
        found = ordered.count(self, filter, kwargs) if FAST_PATHS else None
        if found is None:
            return original_count_documents(self, filter, **kwargs)
        return found

    coll_class.count_documents = count_documents

    def find_one(self, filter=None, *args, **kwargs):
        # as pymongo's find_one: a cursor limited to one document (mongomock's
        # copied every match to return the first)
        if filter is None:
            filter = {}
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}
        for doc in self.find(filter, *args, **kwargs).limit(-1):
            return doc
        return None

    coll_class.find_one = find_one

    # mongomock snapshots every document it updates and copies every document it
    # returns with copy.deepcopy/copy.copy; stored documents hold only dicts, lists
    # and immutable BSON values, which a plain recursive copy handles far faster.
    _mm_collection.copy = types.SimpleNamespace(deepcopy=_deepcopy, copy=_shallow_copy)

    builder = _mm_collection.BulkOperationBuilder
    for name in ("add_update", "add_replace", "add_delete"):
        method = getattr(builder, name)

        def drop_sort(*args, _method=method, sort=None, **kwargs):
            return _method(*args, **kwargs)

        setattr(builder, name, drop_sort)


class LockedCollection:
    """A mongomock collection whose calls each run under the engine lock."""

    def __init__(self, engine, collection):
        self._engine = engine
        self._collection = collection
        self.name = collection.name

    def __getattr__(self, name):
        attr = getattr(self._collection, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            budget.check()  # CSOT: refused once the request's time budget ran out
            observer = self._engine.observer
            if observer is not None:
                observer(self.name, name, args, kwargs)
            for watcher in OBSERVERS:
                watcher(self.name, name, args, kwargs)
            with _LOCK:
                result = attr(*args, **kwargs)
                if isinstance(result, _mm_collection.Cursor):
                    # Materialise inside the lock: a cursor read later would
                    # race with writers.
                    result = list(result)
            return result

        # Built once per method: later calls find it on the instance and skip
        # __getattr__ (this sits on every database call of every request).
        setattr(self, name, call)
        return call


class LockedDatabase:
    """Database facade handing out LockedCollections (db.name or db["name"])."""

    def __init__(self, engine, database):
        self._engine = engine
        self._database = database
        self._collections = {}
        self.name = database.name

    def __getitem__(self, name):
        coll = self._collections.get(name)
        if coll is None:
            with _LOCK:
                coll = self._collections.setdefault(
                    name, LockedCollection(self._engine, self._database[name]))
        return coll

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def list_collection_names(self):
        with _LOCK:
            return self._database.list_collection_names()


class EmbeddedEngine:
    """One in-memory mongomock server per engine; data lives as long as the process."""

    def __init__(self):
        _patch_mongomock()
        self.client = mongomock.MongoClient()
        self.observer = None
        # the lock every call takes; holding it makes several calls one atomic step
        # (the API holds it for a whole request: be.api._one_request_at_a_time)
        self.lock = _LOCK

    def database(self, name):
        return LockedDatabase(self, self.client[name])
