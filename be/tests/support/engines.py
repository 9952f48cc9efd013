"""Which engine the test suites run on.

Without ``BOOKSTORE_TEST_MONGODB_URI`` every suite runs on the embedded engine, a
fresh database per test (model tests) or per server (REST tests), as always.

With it (a MongoDB replica set; the URI may name credentials), the model and REST
suites run against that server instead: one database per test run, named
``bookstore_test_<random>``, dropped when the run ends; the model tests empty its
collections (indexes kept) before each test, and a REST server that wants a fresh
database of its own gets ``<run database>_<name>``, dropped with it. Tests that
need the embedded engine itself (its call observer, its lock, fault injection into
its collections) are marked ``embedded_only`` and skipped there; tests marked
``replica_set`` (a real change stream and TTL monitor) run only there.
"""
import os
import uuid

import pytest

from be.config import MEMORY, Settings
from be.db import Engine

URI = os.environ.get("BOOKSTORE_TEST_MONGODB_URI", "")
RUN_DB = f"bookstore_test_{uuid.uuid4().hex[:10]}"
_engines = {}


def settings(name="", **overrides):
    """Test settings on the chosen engine (fast password hashing); ``name`` gives a
    REST server its own database on a real MongoDB."""
    base = dict(password_method="pbkdf2:sha256:1000", data_dir=MEMORY)
    if URI:
        base.update(mongodb_uri=URI, db_name=f"{RUN_DB}_{name}" if name else RUN_DB)
    else:
        base.update(mongodb_uri="")
    base.update(overrides)
    return Settings.from_env(**base)


def engine(settings_):
    """The engine for ``settings_``: a new embedded one each time, or on a real
    MongoDB one per database for the whole run (creating indexes is slow there),
    its collections emptied, so that every caller starts from an empty database."""
    if not settings_.mongodb_uri:
        return None  # Backend makes a fresh embedded engine
    shared = _engines.get(settings_.db_name)
    if shared is None:
        shared = _engines[settings_.db_name] = Engine(settings_)
    for name in shared.db.list_collection_names():
        if not name.startswith("system."):
            shared.db[name].delete_many({})
    return shared


def embedded(ctx):
    """``ctx``'s embedded engine, or skip the test on a real MongoDB."""
    if ctx.engine.embedded is None:
        pytest.skip("needs the embedded engine (its call observer)")
    return ctx.engine.embedded


def drop_run_databases():
    for db_name, shared in _engines.items():
        shared.client.drop_database(db_name)
        shared.client.close()
    _engines.clear()
