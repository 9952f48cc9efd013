"""The embedded engine: mongomock in-process, made safe and usable for a server.

mongomock is a test double, not a database: it has no locking, scans every
document on every query and expires TTL documents on each access. This module
adapts it without changing how the application calls pymongo:

* every collection call runs under one process-wide lock, so each call is atomic
  as a single-document MongoDB operation is (the server's threads share it);
* a filter that names a single ``_id`` looks that document up directly instead
  of scanning (what the real ``_id`` index does);
* TTL expiry runs at most once a second per collection instead of on every read;
* ``bulk_write`` accepts the operations of current pymongo releases.

``observer`` (if set) sees every call: the tests count round trips and record
query shapes through it.
"""
import functools
import threading
import time

import mongomock
from mongomock import collection as _mm_collection
from mongomock import store as _mm_store

_LOCK = threading.RLock()
_PATCHED = False


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
            return iter([doc]) if _mm_collection.filter_applies(filter, doc) else iter(())
        return original_iter(self, filter)

    _mm_collection.Collection._iter_documents = _iter_documents

    original_expire = _mm_store.CollectionStore._remove_expired_documents

    def _remove_expired_documents(self):
        now = time.monotonic()
        if now - getattr(self, "_last_expiry", 0.0) < 1.0:
            return
        self._last_expiry = now
        original_expire(self)

    _mm_store.CollectionStore._remove_expired_documents = _remove_expired_documents

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
