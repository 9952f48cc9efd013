"""Helpers for data-folder tests: what an engine holds, and a crash of it.

``dump`` is everything a restart must give back: every collection's documents in
their natural order (mongomock answers unsorted queries in it), its declared
indexes and whether it exists. ``crash`` stops an engine the way a killed
process does once its last acknowledged change is on disk: no snapshot, the
journal left as it is, the folder's lock released (the kernel does that for a
dead process). Torn writes are made by cutting the files afterwards.
"""
import copy
import os

from be.embedded import EmbeddedEngine, frames


def dump(engine):
    """{database: {collection: {"docs": [...], "indexes": {...}}}} of existing
    collections, read straight from the engine's stores."""
    out = {}
    with engine.lock:
        for db_name, db in engine.client._store._databases.items():
            colls = {}
            for name, store in db._collections.items():
                if store.is_created:
                    colls[name] = {"docs": copy.deepcopy(list(store._documents.values())),
                                   "indexes": copy.deepcopy(store.indexes)}
            if colls:
                out[db_name] = colls
    return out


def crash(engine):
    """Abandon ``engine`` as a killed process would, everything acknowledged durable."""
    engine.storage.close(snapshot=False)


def reopen(path, **options):
    return EmbeddedEngine(str(path), **options)


def journals(path):
    return sorted(p for p in os.listdir(path) if p.startswith("journal-") and p.endswith(".log"))


def snapshots(path):
    return sorted(p for p in os.listdir(path) if p.startswith("snapshot-") and p.endswith(".bson"))


def frames_of(file_path):
    """[(offset, length of the whole frame, decoded documents)] of an intact file
    (a journal's zeros written ahead after them)."""
    with open(file_path, "rb") as f:
        return [(offset, frames.HEADER.size + len(payload), frames.decode(payload))
                for offset, payload in frames.read(f, zero_tail=True)]


def records_end(file_path):
    """Where the last intact frame of ``file_path`` ends (zeros may follow)."""
    offset, length, _ = frames_of(file_path)[-1]
    return offset + length
