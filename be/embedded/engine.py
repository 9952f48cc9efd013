"""The embedded engine itself: one mongomock server per engine behind one lock.

Every collection call runs under one process-wide lock, so each call is atomic
as a single-document MongoDB operation is (the server's threads share it; the API
holds it for a whole request: be.api._one_request_at_a_time). Each call first
checks the request's time budget (be.budget: refused past the deadline, as
pymongo's CSOT does). A cursor is materialised inside the lock: read later, it
would race with writers.

With a data folder (be.embedded.datadir) the engine's stores are journaled
(be.embedded.journaled): when the lock is released by its outermost holder, what
that holder changed is appended to the journal as one record, and
``EmbeddedEngine.request`` (the API's wrapper around each view) then waits, with
the lock released, until the journal is on disk up to everything the request
could have seen, so a reply never reports a change a crash could take back.

``observer`` (if set) sees every call of one engine: the tests count round trips
through it. Functions in ``OBSERVERS`` see every call of every engine in the
process: the index test records the suite's query shapes through it.
"""
import contextlib
import ctypes
import functools
import os
import sys
import threading

import mongomock
from mongomock import collection as _mm_collection

from be import budget
from be.embedded import journaled, patches

MEMORY = ":memory:"


class EngineLock:
    """The process-wide re-entrant lock of the embedded engines. Released by its
    outermost holder, it first commits every journaled change that holder made
    (journaled.PENDING: one journal record per holder). A Python-level wrapper
    around an RLock costs about a microsecond per acquire and release: some 20
    per paid order, next to ~1 ms of work."""

    def __init__(self):
        self._lock = threading.RLock()
        self._depth = 0  # only the holder touches it

    def acquire(self, blocking=True, timeout=-1):
        if self._lock.acquire(blocking, timeout):
            self._depth += 1
            return True
        return False

    def release(self):
        try:
            if self._depth == 1 and journaled.PENDING:
                for tracker in list(journaled.PENDING):
                    tracker.commit()
        finally:
            self._depth -= 1
            self._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def _is_owned(self):
        return self._lock._is_owned()

    def held(self):
        """True while some thread holds the lock (a request in progress)."""
        return self._depth > 0


_M_ARENA_MAX = -8  # glibc's mallopt parameter
_arenas_capped = False


def cap_malloc_arenas(arenas=2):
    """Cap glibc's malloc arenas (once per process; Linux only; MALLOC_ARENA_MAX in
    the environment wins). glibc gives threads that allocate at the same time arenas
    of their own, and an arena keeps what was freed in it: the request threads
    decode request bodies (a picture is 40 KB of base64) and the data folder runs 8
    of them. The shop lives in this process's heap, so that memory counts: loading
    40,000 books with a picture each into a data folder ended at 374 MiB of RSS
    with glibc's default (8 per core) and 360 MiB with 2."""
    global _arenas_capped
    if _arenas_capped or os.environ.get("MALLOC_ARENA_MAX") or \
            not sys.platform.startswith("linux"):
        return
    _arenas_capped = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: nothing to cap
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(_M_ARENA_MAX, arenas)


_LOCK = EngineLock()
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
                    # race with writers. In one call: mongomock's __next__ slices
                    # its whole result list again for every document it returns
                    # (a search's 500 candidates: 3-5 ms of 20).
                    result = list(result._compute_results(with_limit_and_skip=True))
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
    """One mongomock server per engine: in memory only (``data_dir`` None or
    ":memory:"), or loaded from and journaled to the folder ``data_dir``."""

    def __init__(self, data_dir=None, journal_limit=64 << 20):
        patches.apply()  # refuses a mongomock it was not tested with
        cap_malloc_arenas()
        self.observer = None
        # the lock every call takes; holding it makes several calls one atomic step
        # (the API holds it for a whole request: be.api._one_request_at_a_time)
        self.lock = _LOCK
        self.storage = None
        if data_dir in (None, MEMORY):
            self.client = mongomock.MongoClient()
        else:
            from be.embedded.datadir import DataDir
            self.storage = DataDir(data_dir, self.lock, journal_limit)
            self.client = mongomock.MongoClient(_store=self.storage.server)

    def database(self, name):
        return LockedDatabase(self, self.client[name])

    def request(self):
        """A context holding the engine for one request; on leaving it, the
        request's changes are committed, the lock released, and then (data folder
        only) the reply waits until the journal is durable up to everything the
        request could see. Raises errors.NotDurable when it cannot be. While it
        does CPU work that reads no data (``cpu_work``) the lock is let go."""
        return _Request(self)

    @contextlib.contextmanager
    def reading(self):
        """A context for a request that only reads and does not hold the engine:
        each of its database calls takes the lock for itself, so other requests
        get the engine between them (a search's reads of 500 candidates are held
        a few ms each instead of together). On leaving it (data folder only) the
        reply waits until the journal is durable up to everything appended so
        far, which holds everything the request could have read: a change is
        appended before the lock that made it is released."""
        try:
            yield
        finally:
            if self.storage is not None:
                self.storage.journal.sync()

    @contextlib.contextmanager
    def cpu_work(self):
        """Password hashing, text segmentation, picture decoding: work that reads no
        data runs with the request's hold on the lock let go, so other requests'
        database calls go on meanwhile (a scrypt check is ~100 ms; jieba over a long
        description can be seconds). Outside a request (tests, the sweeper, the
        demo) it changes nothing. The model is written for concurrent requests, so
        letting others in between two of a request's calls is safe; the changes
        made so far are committed to the journal as at any release."""
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

    def close(self):
        """Clean shutdown of a data folder: a snapshot, the journal closed, the
        folder unlocked. The engine must not be used afterwards."""
        if self.storage is not None:
            self.storage.close()


class _Request:
    __slots__ = ("engine",)

    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        self.engine.lock.acquire()
        _REQUEST.held = True

    def __exit__(self, *exc):
        _REQUEST.held = False
        storage = self.engine.storage
        if storage is None:
            self.engine.lock.release()
            return
        try:
            position = storage.tracker.commit(waited_for=True)
        finally:
            self.engine.lock.release()
        storage.journal.wait(position)
