"""Markers shared by every suite; the engine choice is in be/tests/support/engines.py
(``BOOKSTORE_TEST_MONGODB_URI``)."""
import os

import pytest

# The suite never touches the default data folder (./data), nor one named in the
# developer's environment: whatever reads the environment (Settings.from_env, a
# ``python app.py`` subprocess) keeps its data in memory unless a test gives it a
# temporary folder explicitly.
os.environ["BOOKSTORE_DATA_DIR"] = ":memory:"

from be.tests.support import engines


def pytest_configure(config):
    config.addinivalue_line("markers", "embedded_only: needs the embedded engine itself "
                                       "(skipped under BOOKSTORE_TEST_MONGODB_URI)")
    config.addinivalue_line("markers", "replica_set: needs a real MongoDB replica set "
                                       "(runs only under BOOKSTORE_TEST_MONGODB_URI)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if engines.URI and item.get_closest_marker("embedded_only"):
            item.add_marker(pytest.mark.skip(reason="embedded engine only; "
                                                    "BOOKSTORE_TEST_MONGODB_URI is set"))
        if not engines.URI and item.get_closest_marker("replica_set"):
            item.add_marker(pytest.mark.skip(reason="set BOOKSTORE_TEST_MONGODB_URI to a "
                                                    "replica set to run it"))


def pytest_sessionfinish(session, exitstatus):
    engines.drop_run_databases()
