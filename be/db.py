"""Engine choice and the declared indexes.

One client per process: a real MongoDB when ``MONGODB_URI`` is set, otherwise the
embedded mongomock engine. Every query the models issue is meant to be served by
an index in ``INDEXES`` (the tests check query shapes against this list).
"""
import contextlib
import functools
import json
import logging

import pymongo
from pymongo import ASCENDING as ASC, DESCENDING as DESC
from pymongo import uri_parser
from pymongo.errors import ConfigurationError, PyMongoError
from pymongo.read_concern import ReadConcern

from be.errors import StartupError

log = logging.getLogger("bookstore")

# collection -> list of (keys, options). _id is always indexed.
INDEXES = {
    "sessions": [
        ([("user_id", ASC)], {}),
        ([("expires_at", ASC)], {"expireAfterSeconds": 0}),
    ],
    "stores": [([("owner_id", ASC)], {})],
    "listings": [
        ([("store_id", ASC), ("book_id", ASC)], {"unique": True}),
        ([("book_id", ASC), ("store_id", ASC)], {}),
        # search: the listings that show each candidate description (be.model.search)
        ([("desc", ASC), ("store_id", ASC)], {}),
    ],
    # search: multikey over the "<field>:<term>" strings (be.model.search);
    # descriptions and pictures are otherwise read by _id (be.model.catalogue)
    "descriptions": [([("terms", ASC)], {})],
    "orders": [
        ([("buyer_id", ASC), ("created_at", DESC), ("_id", DESC)], {}),
        ([("buyer_id", ASC), ("state", ASC), ("created_at", DESC), ("_id", DESC)], {}),
        ([("store_id", ASC), ("created_at", DESC), ("_id", DESC)], {}),
        ([("store_id", ASC), ("state", ASC), ("created_at", DESC), ("_id", DESC)], {}),
        ([("seller_id", ASC), ("created_at", DESC), ("_id", DESC)], {}),
        ([("seller_id", ASC), ("state", ASC), ("created_at", DESC), ("_id", DESC)], {}),
        # sweeps: overdue unpaid / shipped orders, and steps a crash left half done
        ([("state", ASC), ("pay_deadline", ASC)], {}),
        ([("state", ASC), ("receive_deadline", ASC)], {}),
        ([("busy.since", ASC)], {"sparse": True}),
    ],
    "pending": [
        ([("due_at", ASC)], {"expireAfterSeconds": 0}),
    ],
    # failed password attempts (be.model.throttle), forgotten after an hour
    "throttle": [
        ([("expires_at", ASC)], {"expireAfterSeconds": 0}),
    ],
    # idempotency keys (be.model.idempotency): read and written by _id only;
    # expires_at is at least 24 h after the claim or the reply
    "idempotency": [
        ([("expires_at", ASC)], {"expireAfterSeconds": 0}),
    ],
}


@functools.lru_cache(maxsize=8192)
def listing_id(store_id, book_id):
    """One string _id per (store, book) pair, unambiguous whatever the ids hold
    (cached: an order names each of its listings in several steps)."""
    return json.dumps([store_id, book_id], ensure_ascii=False)


def ensure_indexes(db, indexes=None):
    for name, specs in (indexes or INDEXES).items():
        for keys, options in specs:
            db[name].create_index(keys, **options)


def client_options(uri, request_timeout_s):
    """The client defaults, each only where ``uri`` does not say otherwise.

    - ``w="majority"``: an acknowledged write survives the primary failing over; with
      w=1 a step acknowledged to the buyer can be rolled back with the old primary.
    - ``retryWrites=True`` (pymongo's default too, pinned here): a write interrupted
      by a failover is sent once more, and the server applies it at most once.
    - ``timeoutMS``: the client-side time budget (CSOT) of every call, so a call
      made outside a request's ``pymongo.timeout`` (the watcher, scripts) is bounded
      too. Without it pymongo has no socket timeout and a retryable write may retry
      after up to 30 s of server selection: one step with two stalls outlives the
      60 s recovery lease.
    """
    # parse_uri normalises some option names and not others (timeoutMS comes back
    # as "timeoutms"): compare them lower-cased.
    given = {name.lower() for name in uri_parser.parse_uri(uri)["options"]}
    options = {"tz_aware": False}
    if "w" not in given:
        options["w"] = "majority"
    if "retrywrites" not in given:
        options["retryWrites"] = True
    if "timeoutms" not in given:
        options["timeoutMS"] = int(request_timeout_s * 1000)
    return options


def make_client(settings, **extra):
    """A MongoClient for ``settings.mongodb_uri`` with ``client_options``; pass
    ``connect=False`` to build it without touching the network."""
    return pymongo.MongoClient(
        settings.mongodb_uri,
        **client_options(settings.mongodb_uri, settings.request_timeout_s), **extra)


def where(uri):
    """The hosts a MongoDB URI names, without its credentials (for messages)."""
    try:
        nodes = uri_parser.parse_uri(uri)["nodelist"]
        return ", ".join(f"{host}:{port}" for host, port in nodes) or uri.split("@")[-1]
    except (ConfigurationError, ValueError):
        return "(unparsable URI)"


def _reachable_client(settings):
    """A client that has answered a ping within ``connect_timeout_s`` (5 s by
    default), or StartupError with one line saying why. Unchecked, the first index
    creation would wait for the whole request budget and die in a long traceback."""
    try:
        client = make_client(settings)
    except (ConfigurationError, ValueError) as exc:  # InvalidURI is a ConfigurationError
        raise StartupError(f"MONGODB_URI is not a valid MongoDB URI: {exc}") from None
    try:
        with pymongo.timeout(settings.connect_timeout_s):
            client.admin.command("ping")
    except PyMongoError as exc:
        client.close()
        reason = str(exc).split(",")[0].split(" (configured timeouts")[0]
        raise StartupError(
            f"cannot reach MongoDB at {where(settings.mongodb_uri)} within "
            f"{settings.connect_timeout_s:g} s (BOOKSTORE_CONNECT_TIMEOUT_S): {reason}") from None
    return client


class Engine:
    """Owns the process's client; ``database()`` is what the models use."""

    def __init__(self, settings):
        self.settings = settings
        if settings.embedded:
            from be.embedded import EmbeddedEngine
            self.embedded = EmbeddedEngine(settings.data_dir,
                                           journal_limit=settings.journal_limit_mb << 20)
            if self.embedded.storage is not None:
                log.info("%s", self.embedded.storage.describe_load())
            self.db = self.embedded.database(settings.db_name)
            self.client = self.embedded.client
        else:
            self.embedded = None
            self.client = _reachable_client(settings)
            self.db = self.client[settings.db_name]
        ensure_indexes(self.db)

    def cpu_work(self):
        """A block of CPU work that reads no data (see EmbeddedEngine.cpu_work): on
        the embedded engine the request's hold on the lock is let go meanwhile;
        with MongoDB nothing is held, so nothing changes."""
        if self.embedded is not None:
            return self.embedded.cpu_work()
        return contextlib.nullcontext()

    def majority_reads(self, db):
        """``db`` reading only majority-committed data: what recovery and the sweep
        decide from, so they never act on a write a failover could still roll back.
        The embedded engine has one copy of the data: ``db`` itself (which may be a
        test's fault-injecting wrapper, so it is returned as given)."""
        if self.embedded is not None:
            return db
        return db.with_options(read_concern=ReadConcern("majority"))

    def describe(self):
        if self.embedded is not None:
            if self.embedded.storage is not None:
                return (f"embedded mongomock engine, data in {self.embedded.storage.path} "
                        f"(journal and snapshots; delete the folder to start empty)")
            return "embedded mongomock engine (in memory: data is lost when the process exits)"
        return f"MongoDB at {self.settings.mongodb_uri}, database {self.settings.db_name}"

    def close(self):
        """Clean shutdown: the embedded engine's data folder gets a snapshot and is
        unlocked; a MongoDB client is closed."""
        if self.embedded is not None:
            self.embedded.close()
        else:
            self.client.close()
