"""Engine choice and the declared indexes.

One client per process: a real MongoDB when ``MONGODB_URI`` is set, otherwise the
embedded mongomock engine. Every query the models issue is meant to be served by
an index in ``INDEXES`` (the tests check query shapes against this list).
"""
import functools
import json

import pymongo
from pymongo import ASCENDING as ASC, DESCENDING as DESC

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
    ],
    "pictures": [([("book_id", ASC), ("n", ASC)], {})],
    # search: multikey over the "<field>:<term>" strings (be.model.search)
    "books": [([("terms", ASC)], {})],
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


class Engine:
    """Owns the process's client; ``database()`` is what the models use."""

    def __init__(self, settings):
        self.settings = settings
        if settings.embedded:
            from be.embedded import EmbeddedEngine
            self.embedded = EmbeddedEngine()
            self.db = self.embedded.database(settings.db_name)
            self.client = self.embedded.client
        else:
            self.embedded = None
            self.client = pymongo.MongoClient(settings.mongodb_uri, tz_aware=False)
            self.db = self.client[settings.db_name]
        ensure_indexes(self.db)

    def describe(self):
        if self.embedded:
            return "embedded mongomock engine (in memory: data is lost when the process exits)"
        return f"MongoDB at {self.settings.mongodb_uri}, database {self.settings.db_name}"
