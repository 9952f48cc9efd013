"""End to end on a real replica set (only under BOOKSTORE_TEST_MONGODB_URI): the
TTL monitor deletes an overdue ``pending`` document and the watcher process, seeing
the deletion on its change stream, cancels the order. The watcher's periodic sweep
is set to an hour, so the stream is the only thing that can do it in time.

MongoDB's TTL monitor runs once a minute and cannot be driven from here, so this
test waits for it (polling the order, at most three minutes): the one wait in the
suites, and it runs only against a real server.
"""
import os
import subprocess
import sys
import time

import pytest

from be.backend import Backend
from be.model import orders, stores, users
from be.tests.support import engines

pytestmark = pytest.mark.replica_set
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.5)


def test_the_watcher_process_cancels_an_order_when_its_timer_is_deleted_by_ttl(tmp_path):
    settings = engines.settings("watcher", pay_timeout_s=2)
    ctx = Backend(settings, engine=engines.engine(settings))  # the real clock: TTL uses it
    users.register(ctx, "rs_seller", "pw")
    stores.create_store(ctx, "rs_seller", "rs_store")
    stores.add_book(ctx, "rs_seller", "rs_store", {"id": "rs_b", "title": "T", "price": 5}, 3)
    users.register(ctx, "rs_buyer", "pw")
    log = tmp_path / "watcher.log"
    env = dict(os.environ, MONGODB_URI=engines.URI, BOOKSTORE_DB=settings.db_name,
               BOOKSTORE_SWEEP_INTERVAL_S="3600", BOOKSTORE_PAY_TIMEOUT_S="2")
    with open(log, "w") as out:
        watcher = subprocess.Popen([sys.executable, "-m", "be.watcher"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "watching pending deletions" in log.read_text(), 60,
                  "the watcher to open its change stream")
        oid = orders.new_order(ctx, "rs_buyer", "rs_store", [("rs_b", 2)])
        assert ctx.db.pending.find_one({"_id": f"pay:{oid}"}) is not None

        def cancelled():
            return ctx.db.orders.find_one({"_id": oid})["state"] == "cancelled"
        _wait_for(cancelled, 180, "the TTL monitor and the watcher to cancel the order")
        order = ctx.db.orders.find_one({"_id": oid})
        assert order["cancel_reason"] == "timeout"
        assert ctx.db.listings.find_one({"book_id": "rs_b"})["stock_level"] == 3
        assert ctx.db.pending.find_one({"_id": f"pay:{oid}"}) is None
    finally:
        watcher.terminate()
        watcher.wait(timeout=60)
