"""The embedded engine: mongomock in-process, made safe and usable for a server.

mongomock is a test double, not a database: it has no locking, scans every
document on every query and expires TTL documents on each access. This module
adapts it without changing how the application calls pymongo:

* every collection call runs under one process-wide lock, so each call is atomic
  as a single-document MongoDB operation is (the server's threads share it);
* a filter that names a single ``_id`` (or an ``$in`` list of them) looks those
  documents up directly instead of scanning (what the real ``_id`` index does);
* unique indexes are checked through a hash map, not a scan per write;
* TTL expiry runs at most once a second per collection instead of on every read;
* ``bulk_write`` accepts the operations of current pymongo releases.

``observer`` (if set) sees every call of one engine: the tests count round trips
through it. Functions in ``OBSERVERS`` see every call of every engine in the
process: the index test records the suite's query shapes through it.
"""
import copy
import datetime
import functools
import re
import threading
import time
import types

import bson

import mongomock
from mongomock import collection as _mm_collection
from mongomock import store as _mm_store

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
            if len(filter) == 1 or _mm_collection.filter_applies(filter, doc):
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
                         and (only_id or _mm_collection.filter_applies(filter, d))])
        checks = _prefilter(filter) if isinstance(filter, dict) else None
        if checks:
            # a scan still, but documents that plainly fail a string equality or
            # a range are skipped before mongomock's (slow) full match
            store = self._store
            if store.is_empty:
                return original_iter(self, filter)
            applies = _mm_collection.filter_applies
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

    def database(self, name):
        return LockedDatabase(self, self.client[name])
