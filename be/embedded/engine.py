"""The embedded engine itself: one mongomock server per engine behind one lock.

Every collection call runs under one process-wide lock, so each call is atomic
as a single-document MongoDB operation is (the server's threads share it; the API
holds it for a whole request: be.api._one_request_at_a_time). Each call first
checks the request's time budget (be.budget: refused past the deadline, as
pymongo's CSOT does). A cursor is materialised inside the lock: read later, it
would race with writers.

``observer`` (if set) sees every call of one engine: the tests count round trips
through it. Functions in ``OBSERVERS`` see every call of every engine in the
process: the index test records the suite's query shapes through it.
"""
import contextlib
import functools
import threading

import mongomock
from mongomock import collection as _mm_collection

from be import budget
from be.embedded import patches

_LOCK = threading.RLock()
_REQUEST = threading.local()  # .held: this thread holds _LOCK for a whole request
OBSERVERS = []  # process-wide observers: f(collection, method, args, kwargs)


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
        patches.apply()  # refuses a mongomock it was not tested with
        self.client = mongomock.MongoClient()
        self.observer = None
        # the lock every call takes; holding it makes several calls one atomic step
        # (the API holds it for a whole request: be.api._one_request_at_a_time)
        self.lock = _LOCK

    def database(self, name):
        return LockedDatabase(self, self.client[name])

    @contextlib.contextmanager
    def request(self):
        """Hold the lock for a whole request (be.api wraps every data view in this),
        so that the request's calls are one atomic step for other requests, except
        while it does CPU work that needs no data (``cpu_work``)."""
        with _LOCK:
            _REQUEST.held = True
            try:
                yield
            finally:
                _REQUEST.held = False

    @contextlib.contextmanager
    def cpu_work(self):
        """Password hashing, text segmentation, picture decoding: work that reads no
        data runs with the request's hold on the lock let go, so other requests'
        database calls go on meanwhile (a scrypt check is ~100 ms; jieba over a long
        description can be seconds). Outside a request (tests, the sweeper, the
        demo) it changes nothing. The model is written for concurrent requests, so
        letting others in between two of a request's calls is safe."""
        if not getattr(_REQUEST, "held", False):
            yield
            return
        _REQUEST.held = False
        _LOCK.release()
        try:
            yield
        finally:
            _LOCK.acquire()
            _REQUEST.held = True
