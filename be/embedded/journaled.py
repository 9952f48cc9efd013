"""mongomock's stores, journaled: the one place every change of the engine passes.

A data folder's engine runs mongomock over these subclasses of its stores
(``mongomock.MongoClient(_store=JournaledServer(...))``). Every change to a
collection's documents reaches its store: inserts, replaced documents and
rollbacks through ``__setitem__``, deletes and TTL expiry through
``__delitem__``, ``drop``, index creation; mongomock's in-place updates through
``changed``, called by the hook that already keeps the index maps current
(be.embedded.indexmaps._tracked). The store notes only *which* document changed;
``Tracker.commit`` writes the after-images (the whole document as it now is, or
its deletion) of everything changed since the last commit as ONE journal record.

The engine commits when its lock is released by its outermost holder
(be.embedded.engine): after each database call, or once per request when the API
holds the lock for the whole request. So a record is the change one lock holder
made, whole: replay never shows a state no reader could have seen, such as a
reserved listing without the order that reserved it. After-images make replay
idempotent and order-insensitive within a record, which is what lets a snapshot
be read while requests keep writing (be.embedded.datadir).

The models know nothing of this: they call pymongo's API as on MongoDB.
"""
import logging

import bson
from mongomock.store import CollectionStore, DatabaseStore, ServerStore

from be import errors
from be.embedded import frames, limits
from be.embedded.blobs import MIN_BYTES
from be.embedded.indexmaps import _indexed_fields, _store_key, compact

log = logging.getLogger("bookstore")

# Trackers holding changes not yet committed; only touched under the engine lock.
PENDING = set()


class Tracker:
    """What changed since the last commit, for one engine's stores; ``commit``
    turns it into a journal record."""

    def __init__(self, journal=None, on_commit=None, blobs=None):
        self.journal = journal        # set once the data folder is loaded
        self.on_commit = on_commit    # called after each record (snapshot trigger)
        self.blobs = blobs            # the folder's BlobStore (be.embedded.blobs)
        self._files = []              # blob files the next record names: fsynced first
        self._dirty = {}              # store -> {key: None}: changed, in order (new
        #                               documents replay in their insertion order)
        self._dropped = {}            # store -> None (ordered set)
        self._indexes = {}            # store -> None: index set changed

    def touch(self, store, key):
        keys = self._dirty.get(store)
        if keys is None:
            keys = self._dirty[store] = {}
            PENDING.add(self)
        keys[key] = None

    def dropped(self, store):
        self._dropped[store] = None
        self._indexes[store] = None  # a drop also removes the indexes
        PENDING.add(self)

    def indexes_changed(self, store):
        self._indexes[store] = None
        PENDING.add(self)

    def externalize(self, store, doc):
        """``doc`` about to be stored whole, with its large top-level ``bytes``
        values written to blob files and replaced by references (be.embedded.blobs);
        ``doc`` itself when it has none (or there is no folder)."""
        blobs = self.blobs
        if blobs is None or not isinstance(doc, dict):
            return doc
        large = [name for name, value in doc.items()
                 if type(value) is bytes and len(value) >= MIN_BYTES]
        if not large:
            return doc
        indexed = _indexed_fields(store)
        large = [name for name in large if name not in indexed]
        if not large:
            return doc
        limits.check_stored(doc)  # measured as MongoDB stores it, bytes and all
        out = dict(doc)
        for name in large:
            try:
                out[name], path = blobs.put(doc[name])
            except OSError as exc:  # a full disk, say: this write only is refused
                log.error("data folder: %s cannot be written (%s)", blobs.path, exc)
                raise errors.NotDurable(
                    f"the data folder cannot take the value of {name} "
                    f"({exc.strerror or exc}); the change was not saved") from None
            self._files.append(path)
        return out

    def commit(self, waited_for=False):
        """Append one record with every change since the last commit (the caller
        holds the engine lock); returns the journal position to wait for.
        ``waited_for``: the caller waits for it (be.embedded.journal.Journal.wait)."""
        PENDING.discard(self)
        journal = self.journal
        if not (self._dirty or self._dropped or self._indexes) or journal is None:
            return journal.appended if journal is not None else 0
        dirty, dropped, indexes = self._dirty, self._dropped, self._indexes
        self._dirty, self._dropped, self._indexes = {}, {}, {}
        files, self._files = self._files, []
        try:
            ops = [bson.encode({"db": s.db_name, "c": s.name, "drop": True}) for s in dropped]
            ops += [bson.encode({"db": s.db_name, "c": s.name, "ix": index_specs(s),
                                 "created": bool(s._is_force_created)}) for s in indexes]
            for store, keys in dirty.items():
                documents, db_name, name = store._documents, store.db_name, store.name
                for key in keys:
                    doc = documents.get(key)
                    if doc is None:
                        ops.append(bson.encode({"db": db_name, "c": name, "del": key}))
                    else:
                        ops.append(bson.encode({"db": db_name, "c": name, "put": doc}))
        except Exception as exc:
            # mongomock accepted a value BSON cannot hold (say an int past 8 bytes
            # set by an update), or worse: the folder can no longer follow the
            # engine. Stop acknowledging (journal.failed) rather than lose the
            # change silently.
            log.critical("a change cannot be journaled (%s: %s): no further change will "
                         "be acknowledged; restart the server", type(exc).__name__, exc)
            return journal.fail(exc)
        position = journal.append(frames.frame(b"".join(ops)), waited_for, files)
        if self.on_commit is not None:
            self.on_commit()
        return position


def index_specs(store):
    """The store's declared indexes as BSON can hold them: [[name, spec], ...]."""
    return [[name, dict(spec, key=[list(k) for k in spec["key"]])]
            for name, spec in store.indexes.items()]


def spec_from_bson(spec):
    """An index spec read back: key pairs as tuples, as mongomock's create_index
    makes them (it compares specs when an index is created again)."""
    return dict(spec, key=[tuple(k) for k in spec["key"]])


class JournaledCollection(CollectionStore):
    """A collection's documents; every change noted with the tracker."""

    def __init__(self, name, db_name, tracker):
        super().__init__(name)
        self.db_name = db_name
        self._tracker = tracker

    def __setitem__(self, key, val):
        super().__setitem__(key, self._tracker.externalize(self, val))
        self._tracker.touch(self, key)

    def __delitem__(self, key):
        super().__delitem__(key)
        self._tracker.touch(self, key)

    def changed(self, key):
        """mongomock changed the stored document ``key`` in place."""
        self._tracker.touch(self, key)

    def drop(self):
        super().drop()
        self._tracker.dropped(self)

    def create(self):
        super().create()
        self._tracker.indexes_changed(self)

    def create_index(self, index_name, index_dict):
        same = self.indexes.get(index_name) == index_dict
        super().create_index(index_name, index_dict)
        if not same:
            self._tracker.indexes_changed(self)

    def drop_index(self, index_name):
        super().drop_index(index_name)
        self._tracker.indexes_changed(self)


class JournaledDatabase(DatabaseStore):
    def __init__(self, name, tracker):
        super().__init__()
        self.name = name
        self._tracker = tracker

    def __getitem__(self, col_name):
        try:
            return self._collections[col_name]
        except KeyError:
            col = self._collections[col_name] = JournaledCollection(
                col_name, self.name, self._tracker)
            return col

    def rename(self, name, new_name):
        raise NotImplementedError("collections in a data folder cannot be renamed")


class JournaledServer(ServerStore):
    """The databases of one data folder's engine."""

    def __init__(self, tracker):
        super().__init__()
        self.tracker = tracker

    def __getitem__(self, db_name):
        try:
            return self._databases[db_name]
        except KeyError:
            db = self._databases[db_name] = JournaledDatabase(db_name, self.tracker)
            return db

    def collections(self):
        """(database name, collection store) for every collection that exists."""
        return [(db_name, store) for db_name, db in self._databases.items()
                for store in db._collections.values() if store.is_created]


def apply(server, op):
    """Replay one journal operation onto ``server``'s stores, bypassing the
    tracker (loading is not a change); the index maps are built after loading."""
    store = server[op["db"]][op["c"]]
    if "put" in op:
        doc = op["put"]
        store._documents[_store_key(doc["_id"])] = compact(doc, _indexed_fields(store))
    elif "del" in op:
        store._documents.pop(_store_key(op["del"]), None)
    elif "drop" in op:
        CollectionStore.drop(store)
    elif "ix" in op:
        set_indexes(store, op["ix"], op.get("created", False))


def set_indexes(store, specs, created):
    """Give a store exactly the indexes ``specs`` (from index_specs) name, and
    mongomock's mark of a collection created explicitly (``created``)."""
    store.indexes, store._ttl_indexes = {}, {}
    store._is_force_created = created
    for name, spec in specs:
        CollectionStore.create_index(store, name, spec_from_bson(spec))
