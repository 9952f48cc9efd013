"""The embedded engine: mongomock in-process, made safe and usable for a server.

mongomock is a test double, not a database: it has no locking, scans every
document on every query and expires TTL documents on each access. This package
adapts it without changing how the application calls pymongo:

* ``engine``: every collection call runs under one process-wide lock (each call
  atomic, as a single-document MongoDB operation is), after the request's time
  budget is checked; ``observer``/``OBSERVERS`` see every call;
* ``indexmaps``: every declared index keeps a hash map from the value of its
  first key to the documents holding it, kept current on every write, so a filter
  pinning that field (equality, ``$in``, a range) reads only its candidates;
  unique indexes are checked through a hash map, not a scan per write;
* ``fastpaths``: ``_id`` lookups go straight to the document, scans are
  pre-screened, the filter clauses the models use are matched directly, a
  limited cursor copies only its page, ``find_one`` reads with a limit of one,
  sorts on plain values compare natively, TTL expiry runs at most once a second;
* ``fastwrites``: an update by ``_id`` (``update_one``, a bulk ``UpdateOne``,
  ``find_one_and_update``) snapshots and compares only the fields it writes and
  reads its document once; ``bulk_write`` accepts current pymongo's operations;
* ``copies``: plain recursive copies of stored documents instead of
  ``copy.deepcopy`` and mongomock's generic date walk;
* stored documents are compact (``indexmaps.compact``: plain dicts, interned
  names and short strings) and a data folder keeps pictures' bytes in files
  (``blobs``), read when a document is copied out: 40,000 books in 4 stores take
  a server of about 360 MiB (doc/scaling.md, section 1);
* ``patches``: the one table of every mongomock internal replaced, applied once
  when the first engine is made, after checking the mongomock version (pinned in
  requirements.txt) and that every replaced attribute exists.

Every shortcut answers exactly as mongomock's own code (be/tests/test_embedded.py,
be/tests/test_embedded_fast.py).
"""
from be.embedded.engine import OBSERVERS, EmbeddedEngine, LockedCollection, LockedDatabase

__all__ = ["EmbeddedEngine", "LockedCollection", "LockedDatabase", "OBSERVERS"]
