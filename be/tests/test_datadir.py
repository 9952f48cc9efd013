"""The embedded engine's data folder (be.embedded.datadir, journal, journaled):
every change survives a crash and a clean restart, snapshots are consistent while
requests write, a torn or corrupt journal tail is cut and reported, replies wait
for the disk, and a disk that fails stops acknowledgements."""
import base64
import datetime
import hashlib
import os
import threading
import types

import pytest
from pymongo import InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from be import errors
from be.api import create_app
from be.audit import audit
from be.backend import Backend
from be.clock import ManualClock
from be.embedded import EmbeddedEngine, blobs, journal as journal_module, journaled
from be.errors import StartupError
from be.model import orders, search, stores, users
from be.tests.support import engines
from be.tests.support.datadirs import (crash, dump, frames_of, journals, records_end, reopen,
                                       snapshots)
from be.watcher import sweep

pytestmark = pytest.mark.embedded_only  # the embedded engine's own storage

NOW = datetime.datetime(2020, 1, 1, 12, 0, 0)  # in the past: TTL uses the real clock


def busy_engine(path, **options):
    """An engine on ``path`` that has made every kind of change mongomock makes."""
    engine = EmbeddedEngine(str(path), **options)
    db = engine.database("shop")
    db.things.create_index([("owner", 1)])
    db.things.create_index([("code", 1)], unique=True)
    db.sessions.create_index([("expires_at", 1)], expireAfterSeconds=0)
    db.things.insert_one({"_id": "a", "owner": "x", "code": 1, "tags": ["t"], "n": 1})
    db.things.insert_many([{"_id": f"m{i}", "owner": "y", "code": 10 + i, "n": i}
                           for i in range(6)])
    db.things.update_one({"_id": "a"}, {"$inc": {"n": 5}, "$push": {"tags": "u"}})
    db.things.update_many({"owner": "y"}, {"$set": {"seen": NOW}})
    db.things.replace_one({"_id": "m1"}, {"owner": "z", "code": 11, "replaced": True})
    db.things.find_one_and_update({"_id": "up"}, {"$set": {"owner": "w", "code": 99}},
                                  upsert=True, return_document=ReturnDocument.AFTER)
    db.things.delete_one({"_id": "m3"})
    db.things.bulk_write([UpdateOne({"_id": "m4"}, {"$inc": {"n": 100}}),
                          UpdateOne({"_id": "m5"}, {"$unset": {"seen": ""}})])
    with pytest.raises(DuplicateKeyError):  # rolled back: nothing of it may come back
        db.things.update_one({"_id": "m0"}, {"$set": {"code": 1}})
    with pytest.raises(BulkWriteError):
        db.things.bulk_write([InsertOne({"_id": "b1", "code": 50}),
                              InsertOne({"_id": "b2", "code": 50})])
    db.sessions.insert_many([{"_id": "old", "expires_at": NOW - datetime.timedelta(days=1)},
                             {"_id": "new", "expires_at": NOW + datetime.timedelta(days=9999)}])
    engine.storage.server["shop"]["sessions"]._last_expiry = 0.0  # due now (at most 1/s)
    db.sessions.find_one({"_id": "new"})  # TTL expiry runs on reads: "old" goes
    db.scratch.insert_one({"_id": 1, "big": 2 ** 40, "bytes": b"\x00\x01", "nested": {"k": [1]}})
    db.scratch.drop()
    db.scratch.insert_one({"_id": 2, "after": "drop"})
    db.throttle.insert_one({"_id": {"compound": "id"}, "v": 1})
    return engine


def test_every_kind_of_change_survives_a_crash_and_a_clean_restart(tmp_path):
    engine = busy_engine(tmp_path)
    before = dump(engine)
    assert [d["_id"] for d in before["shop"]["sessions"]["docs"]] == ["new"]
    crash(engine)

    after_crash = reopen(tmp_path)
    assert dump(after_crash) == before  # journal replay: documents, order, indexes
    assert after_crash.storage.report["records"] > 10
    after_crash.close()  # clean: a snapshot, the journal restarts
    assert snapshots(tmp_path) == ["snapshot-00000002.bson"]
    assert journals(tmp_path) == ["journal-00000002.log"]

    after_clean = reopen(tmp_path)
    assert dump(after_clean) == before
    assert after_clean.storage.report["records"] == 0
    assert after_clean.storage.report["snapshot_documents"] == sum(
        len(c["docs"]) for c in before["shop"].values())
    after_clean.close()


def test_loaded_data_behaves_as_before(tmp_path):
    crash(busy_engine(tmp_path))
    engine = reopen(tmp_path)
    db = engine.database("shop")
    big = db.scratch.find_one({"_id": 2})
    assert big == {"_id": 2, "after": "drop"}
    assert type(db.things.find_one({"_id": "a"})["n"]) is int
    with pytest.raises(DuplicateKeyError):  # the unique index holds
        db.things.insert_one({"_id": "dup", "code": 1})
    assert [d["_id"] for d in db.things.find({"owner": "y"})] == ["m0", "m2", "m4", "m5"]
    db.sessions.insert_one({"_id": "gone", "expires_at": NOW - datetime.timedelta(days=1)})
    engine.storage.server["shop"]["sessions"]._last_expiry = 0.0  # expire on this read
    assert [d["_id"] for d in db.sessions.find({})] == ["new"]  # the TTL index holds
    engine.close()


def test_a_compound_id_and_wide_values_round_trip(tmp_path):
    engine = EmbeddedEngine(str(tmp_path))
    db = engine.database("shop")
    doc = {"_id": {"a": 1, "b": "two"}, "big": 2 ** 62, "neg": -(2 ** 40), "f": 1.5,
           "when": NOW, "blob": b"\xff" * 10, "none": None, "yes": True,
           "deep": [{"x": [1, {"y": "z"}]}]}
    db.things.insert_one(doc)
    before = dump(engine)
    crash(engine)
    engine = reopen(tmp_path)
    assert dump(engine) == before
    assert engine.database("shop").things.find_one({"_id": {"a": 1, "b": "two"}})["big"] == 2 ** 62
    engine.close()


def test_a_snapshot_taken_while_writing_replays_to_the_final_state(tmp_path):
    engine = EmbeddedEngine(str(tmp_path))
    db = engine.database("shop")
    db.things.insert_many([{"_id": i, "n": 0, "pad": "x" * 200} for i in range(3000)])
    done = threading.Event()
    writes = []

    def writer():
        k = 0
        while not done.is_set() or k < 200:  # writes during the snapshot, and after
            db.things.update_one({"_id": k % 3000}, {"$inc": {"n": 1}})
            if k % 7 == 0:
                db.things.insert_one({"_id": f"new{k}"})
            if k % 11 == 0:
                db.things.delete_one({"_id": (k * 13) % 3000})
            k += 1
        writes.append(k)

    thread = threading.Thread(target=writer)
    thread.start()
    generation = engine.storage.snapshot()
    done.set()
    thread.join()
    assert generation == 2 and writes[0] >= 200
    before = dump(engine)
    crash(engine)
    engine = reopen(tmp_path)
    assert engine.storage.report["snapshot"] == 2
    assert dump(engine) == before
    engine.close()


def test_a_long_journal_is_replaced_by_a_snapshot(tmp_path):
    engine = EmbeddedEngine(str(tmp_path), journal_limit=64 << 10)
    db = engine.database("shop")
    for i in range(600):
        db.things.insert_one({"_id": i, "pad": "y" * 500})
    storage = engine.storage
    if storage._snapshot_thread is not None:
        storage._snapshot_thread.join()
    assert storage.journal.generation >= 2  # at least one snapshot was taken
    assert storage.journal_bound() == max(64 << 10, storage.snapshot_size // 4)
    assert len(snapshots(tmp_path)) == 1 and len(journals(tmp_path)) == 1
    assert storage.journal.size < 600 * 500  # the journal restarted
    before = dump(engine)
    crash(engine)
    engine = reopen(tmp_path)
    assert dump(engine) == before
    engine.close()


def _users_engine(path, count):
    engine = EmbeddedEngine(str(path))
    db = engine.database("shop")
    for i in range(count):
        db.users.insert_one({"_id": f"u{i}", "n": i})
    crash(engine)
    return os.path.join(path, "journal-00000001.log")


@pytest.mark.parametrize("damage", ["cut in the last record", "cut in its header",
                                    "flipped byte in the last record",
                                    "zeros, then bytes of a write never completed"])
def test_a_damaged_journal_tail_is_cut_and_reported(tmp_path, damage, caplog):
    path = _users_engine(tmp_path, 5)
    last_offset, last_length, _ = frames_of(path)[-1]
    end = last_offset + last_length
    zeros_after = os.path.getsize(path) - end
    assert zeros_after > 0  # a killed server leaves the zeros written ahead
    with open(path, "r+b") as f:
        if damage == "cut in the last record":
            f.truncate(last_offset + last_length - 3)
        elif damage == "cut in its header":
            f.truncate(last_offset + 5)
        elif damage == "flipped byte in the last record":
            f.seek(last_offset + last_length - 10)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x40]))
        else:  # a later page of a write reached the disk, its first page did not
            f.seek(end + 5000)
            f.write(b"\x07" * 100)
    engine = reopen(tmp_path)
    db = engine.database("shop")
    whole = damage.startswith("zeros")
    expected = [f"u{i}" for i in range(5 if whole else 4)]
    assert [d["_id"] for d in db.users.find({})] == expected
    report = engine.storage.report["damage"]
    assert report and f"at byte {end if whole else last_offset}" in report
    assert f"replayed the {len(expected)} records before it" in report
    assert report in caplog.text
    torn = [p for p in os.listdir(tmp_path) if ".torn-" in p]
    assert len(torn) == 1  # the discarded bytes are kept aside, not destroyed
    # appending continues after the cut, and the next start reads it all
    db.users.insert_one({"_id": "later"})
    crash(engine)
    engine = reopen(tmp_path)
    assert [d["_id"] for d in engine.database("shop").users.find({})] == expected + ["later"]
    assert engine.storage.report["damage"] is None
    engine.close()


def test_the_journal_grows_by_steps_of_zeros_and_writes_over_them(tmp_path, monkeypatch):
    """Records are written over zeros written ahead (an fdatasync then has no file
    size to commit): the file grows by doubling steps, not by each record, and
    mostly ahead of the records (the flusher thread grows it in the background)."""
    monkeypatch.setattr(journal_module, "GROW_MIN", 4096)
    monkeypatch.setattr(journal_module, "GROW_MAX", 16384)
    engine = EmbeddedEngine(str(tmp_path))
    journal = engine.storage.journal
    db = engine.database("shop")
    lengths = [0]  # the file lengths growing by steps can give: 4, 8, 16, 32, 48 KiB...
    while lengths[-1] < 1 << 20:
        lengths.append(lengths[-1] + journal_module.grow_step(lengths[-1]))
    seen = set()
    for i in range(200):
        db.users.insert_one({"_id": i, "pad": "x" * 500})
        journal.sync()
        assert journal.durable == journal.appended
        end = records_end(journal.path)
        assert end <= journal.allocated <= os.path.getsize(journal.path)
        seen.add(os.path.getsize(journal.path))
    assert records_end(journal.path) > 100_000
    assert seen <= set(lengths)  # never a length between two steps
    assert journal.grows <= len(lengths)
    crash(engine)
    engine = reopen(tmp_path)
    assert engine.database("shop").users.count_documents({}) == 200
    assert engine.storage.report["damage"] is None
    engine.close()


def test_zeros_after_the_last_record_are_the_journals_normal_end(tmp_path, caplog):
    """The journal writes its records over zeros written ahead of them (an fsync
    then has no file size to commit); a killed server leaves them, and they are
    no damage: nothing is reported or set aside, and appending goes on over them."""
    path = _users_engine(tmp_path, 5)
    end = records_end(path)
    size = os.path.getsize(path)
    assert size - end >= journal_module.GROW_MIN // 2
    with open(path, "rb") as f:
        f.seek(end)
        assert f.read().count(0) == size - end
    engine = reopen(tmp_path)
    db = engine.database("shop")
    assert [d["_id"] for d in db.users.find({})] == [f"u{i}" for i in range(5)]
    assert engine.storage.report["damage"] is None
    assert not [p for p in os.listdir(tmp_path) if ".torn-" in p]
    assert os.path.getsize(path) == size  # written over, not appended after
    db.users.insert_one({"_id": "later"})
    crash(engine)
    assert records_end(path) > end and os.path.getsize(path) == size
    engine = reopen(tmp_path)
    assert [d["_id"] for d in engine.database("shop").users.find({})] == \
        [f"u{i}" for i in range(5)] + ["later"]
    engine.close()  # a clean close cuts the zeros off
    [journal] = journals(tmp_path)
    journal = os.path.join(tmp_path, journal)
    assert os.path.getsize(journal) == records_end(journal)


def test_a_journal_cut_inside_its_header_starts_empty(tmp_path):
    path = _users_engine(tmp_path, 2)
    with open(path, "r+b") as f:
        f.truncate(10)
    engine = reopen(tmp_path)
    assert list(engine.database("shop").users.find({})) == []
    engine.database("shop").users.insert_one({"_id": "x"})
    crash(engine)
    engine = reopen(tmp_path)
    assert [d["_id"] for d in engine.database("shop").users.find({})] == ["x"]
    engine.close()


def test_a_journal_of_nothing_but_zeros_starts_empty(tmp_path):
    """A crash after a new journal's first step of zeros, before its header."""
    path = _users_engine(tmp_path, 2)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(bytes(size))
    engine = reopen(tmp_path)
    assert list(engine.database("shop").users.find({})) == []
    assert engine.storage.report["damage"] is None
    engine.database("shop").users.insert_one({"_id": "x"})
    crash(engine)
    assert frames_of(path)[0][2][0]["bookstore"] == "journal"  # the header, rewritten
    engine = reopen(tmp_path)
    assert [d["_id"] for d in engine.database("shop").users.find({})] == ["x"]
    engine.close()


def test_a_damaged_snapshot_refuses_to_start(tmp_path):
    engine = busy_engine(tmp_path)
    engine.close()
    [snap] = snapshots(tmp_path)
    path = os.path.join(tmp_path, snap)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xff]))
    with pytest.raises(StartupError, match="snapshot-00000002.bson is damaged"):
        reopen(tmp_path)
    with open(path, "r+b") as f:  # a snapshot without its trailer is refused too
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(StartupError, match="snapshot-00000002.bson"):
        reopen(tmp_path)


def test_a_missing_journal_refuses_to_start(tmp_path):
    engine = EmbeddedEngine(str(tmp_path))
    engine.database("shop").users.insert_one({"_id": 1})
    engine.storage.snapshot()
    crash(engine)
    assert journals(tmp_path) == ["journal-00000002.log"]
    os.rename(tmp_path / "journal-00000002.log", tmp_path / "journal-00000003.log")
    with pytest.raises(StartupError, match="journal-00000002.log is missing"):
        reopen(tmp_path)


def test_a_second_engine_on_the_folder_is_refused(tmp_path):
    engine = EmbeddedEngine(str(tmp_path))
    with pytest.raises(StartupError) as refused:
        EmbeddedEngine(str(tmp_path))
    assert str(refused.value) == (
        f"data folder {tmp_path} is in use by another bookstore server (pid {os.getpid()}): "
        f"stop it, or give this one another --data-dir")
    engine.close()
    EmbeddedEngine(str(tmp_path)).close()  # free again once closed


def test_a_folder_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StartupError, match="cannot use data folder"):
        EmbeddedEngine(str(path))


# ---------------------------------------------------------------- requests

def shop_ctx(path, clock=None):
    settings = engines.settings(data_dir=str(path), pay_timeout_s=900)
    ctx = Backend(settings, clock=clock or ManualClock())
    return ctx


def seed_shop(ctx):
    users.register(ctx, "seller", "pw")
    users.register(ctx, "buyer", "pw")
    users.add_funds(ctx, "buyer", 100_000)
    stores.create_store(ctx, "seller", "s1")
    stores.add_book(ctx, "seller", "s1", {"id": "b1", "title": "One", "price": 1000}, 10)
    stores.add_book(ctx, "seller", "s1", {"id": "b2", "title": "Two", "price": 250}, 10)


def new_order_reply(ctx):
    from be.model import sessions
    token = sessions.login(ctx, "buyer", "pw", "t")
    client = create_app(ctx).test_client()
    return client.post("/buyer/new_order", headers={"token": token}, json={
        "user_id": "buyer", "store_id": "s1", "books": [{"id": "b1", "count": 2},
                                                        {"id": "b2", "count": 1}]})


def test_a_request_is_one_journal_record(tmp_path):
    ctx = shop_ctx(tmp_path)
    seed_shop(ctx)
    journal = ctx.engine.embedded.storage.journal
    reply = new_order_reply(ctx)
    assert reply.status_code == 200
    order_id = reply.get_json()["order_id"]
    _, length, ops = frames_of(journal.path)[-1]
    changed = {(op["c"], op["put"]["_id"]) for op in ops}
    assert ("orders", order_id) in changed  # the order and both reservations, together
    assert {c for c, _ in changed} >= {"orders", "listings", "pending"}
    crash(ctx.engine.embedded)
    # cut the request's record: none of its writes comes back, not even the
    # reservations that happened before the order was written
    with open(journal.path, "r+b") as f:
        f.truncate(records_end(journal.path) - 1)
    ctx = shop_ctx(tmp_path)
    assert ctx.db.orders.find_one({"_id": order_id}) is None
    assert {d["book_id"]: d["stock_level"] for d in ctx.db.listings.find({})} == \
        {"b1": 10, "b2": 10}
    assert not audit(ctx.db, settled=True)
    ctx.close()


def test_a_reply_waits_until_its_changes_are_on_disk(tmp_path, monkeypatch):
    ctx = shop_ctx(tmp_path)
    seed_shop(ctx)
    from be.model import sessions
    token = sessions.login(ctx, "buyer", "pw", "t")
    client = create_app(ctx).test_client()
    release, entered = threading.Event(), threading.Event()
    real_sync = journal_module._datasync

    def slow_sync(fd):
        entered.set()
        release.wait()
        real_sync(fd)

    monkeypatch.setattr(journal_module, "_datasync", slow_sync)
    replies = {}

    def call(name, path, body, headers=None):
        replies[name] = client.post(path, json=body, headers=headers or {})

    writer = threading.Thread(target=call, args=("funds", "/buyer/add_funds", {
        "user_id": "buyer", "password": "pw", "add_value": 5}))
    writer.start()
    assert entered.wait(30)  # the change is in memory and its fsync has begun
    reader = threading.Thread(target=lambda: replies.setdefault("read", client.get(
        "/buyer/orders", query_string={"user_id": "buyer"}, headers={"token": token})))
    reader.start()
    # a search holds the engine per read, not for the request: it waits all the same
    searcher = threading.Thread(target=lambda: replies.setdefault("search", client.get(
        "/search/books", query_string={"q": "one"})))
    searcher.start()
    writer.join(0.5)
    reader.join(0.5)
    searcher.join(0.5)
    # none answers before the disk
    assert writer.is_alive() and reader.is_alive() and searcher.is_alive()
    assert not replies
    release.set()
    for thread in (writer, reader, searcher):
        thread.join(30)
    assert replies["funds"].status_code == 200 and replies["read"].status_code == 200
    assert replies["search"].status_code == 200 and replies["search"].get_json()["total"] == 1
    ctx.close()


def test_a_lone_request_syncs_its_own_record(tmp_path, monkeypatch):
    # no hand-off to another thread: the request that waits leads the flush
    ctx = shop_ctx(tmp_path)
    seed_shop(ctx)
    ctx.engine.embedded.storage.journal.sync()  # the seeding is on disk
    client = create_app(ctx).test_client()
    syncers = []
    real_sync = journal_module._datasync
    monkeypatch.setattr(journal_module, "_datasync",
                        lambda fd: (syncers.append(threading.current_thread()), real_sync(fd)))
    here = threading.current_thread()
    reply = client.post("/buyer/add_funds", json={"user_id": "buyer", "password": "pw",
                                                  "add_value": 5})
    assert reply.status_code == 200
    assert syncers == [here]
    ctx.close()


def test_requests_that_finish_during_a_flush_share_the_next_one(tmp_path, monkeypatch):
    ctx = shop_ctx(tmp_path)
    seed_shop(ctx)
    users.register(ctx, "buyer2", "pw")
    journal = ctx.engine.embedded.storage.journal
    journal.sync()
    client = create_app(ctx).test_client()
    release, entered = threading.Event(), threading.Event()
    real_sync = journal_module._datasync
    calls = []

    def slow_first_sync(fd):
        calls.append(fd)
        if len(calls) == 1:
            entered.set()
            release.wait()
        real_sync(fd)

    monkeypatch.setattr(journal_module, "_datasync", slow_first_sync)
    replies = {}

    def fund(user):
        replies[user] = client.post("/buyer/add_funds", json={
            "user_id": user, "password": "pw", "add_value": 5}).status_code

    first = threading.Thread(target=fund, args=("buyer",))
    first.start()
    assert entered.wait(30)  # the first request leads a flush, which is held
    both_appended = threading.Event()
    target = journal.records_total + 2
    real_append = journal.append

    def counting_append(data, waited_for=False, files=()):
        position = real_append(data, waited_for, files)
        if journal.records_total >= target:
            both_appended.set()
        return position

    monkeypatch.setattr(journal, "append", counting_append)
    later = [threading.Thread(target=fund, args=(u,)) for u in ("buyer2", "seller")]
    for t in later:
        t.start()
    assert both_appended.wait(30)  # both changes made, both queued behind the flush
    assert not replies  # nobody is acknowledged before the disk
    release.set()
    for t in [first] + later:
        t.join(30)
    assert replies == {"buyer": 200, "buyer2": 200, "seller": 200}
    assert len(calls) == 2  # the two later records shared one fsync
    ctx.close()


def test_changes_nobody_waits_for_are_flushed_by_the_flusher(tmp_path, monkeypatch):
    ctx = shop_ctx(tmp_path)
    journal = ctx.engine.embedded.storage.journal
    journal.sync()
    synced = threading.Event()
    syncers = []
    real_sync = journal_module._datasync

    def noting_sync(fd):
        real_sync(fd)
        syncers.append(threading.current_thread().name)
        synced.set()

    monkeypatch.setattr(journal_module, "_datasync", noting_sync)
    users.register(ctx, "seller", "pw")  # outside any request: nobody waits
    assert synced.wait(30)
    assert syncers == ["journal-flusher"]
    crash(ctx.engine.embedded)
    ctx = shop_ctx(tmp_path)
    assert ctx.db.users.find_one({"_id": "seller"}) is not None
    ctx.close()


def test_a_failing_disk_stops_every_acknowledgement(tmp_path, monkeypatch, caplog):
    ctx = shop_ctx(tmp_path)
    seed_shop(ctx)
    client = create_app(ctx).test_client()
    body = {"user_id": "buyer", "password": "pw", "add_value": 5}
    assert client.post("/buyer/add_funds", json=body).status_code == 200

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module, "_datasync", broken)
    first = client.post("/buyer/add_funds", json=body)
    assert first.status_code == 503
    assert first.get_json() == {
        "message": "the data folder can no longer be written; the change was not saved"}
    assert "cannot be written" in caplog.text
    monkeypatch.setattr(journal_module, "_datasync", os.fsync)  # the disk comes back
    assert client.post("/buyer/add_funds", json=body).status_code == 503  # still stopped
    crash(ctx.engine.embedded)
    ctx = shop_ctx(tmp_path)
    # the change whose fsync failed was written and may have reached the disk (it
    # was not acknowledged either way); nothing after the failure was written
    assert ctx.db.users.find_one({"_id": "buyer"})["balance"] in (100_005, 100_010)
    ctx.close()


def test_a_closed_engine_acknowledges_nothing(tmp_path):
    ctx = shop_ctx(tmp_path)
    seed_shop(ctx)
    client = create_app(ctx).test_client()
    ctx.close()
    reply = client.post("/buyer/add_funds", json={"user_id": "buyer", "password": "pw",
                                                  "add_value": 5})
    assert reply.status_code == 503
    assert reply.get_json() == {"message": "the server is shutting down; retry"}


def test_deadlines_that_passed_while_down_fire_on_the_first_sweep(tmp_path):
    clock = ManualClock()
    ctx = shop_ctx(tmp_path, clock)
    seed_shop(ctx)
    unpaid = orders.new_order(ctx, "buyer", "s1", [("b1", 3)])
    shipped = orders.new_order(ctx, "buyer", "s1", [("b2", 1)])
    orders.payment(ctx, "buyer", shipped)
    orders.ship(ctx, "seller", shipped)
    crash(ctx.engine.embedded)
    clock.advance(ctx.settings.receive_timeout_s + 1)  # the server stayed down that long
    ctx = shop_ctx(tmp_path, clock)
    counts = sweep(ctx)
    assert ctx.db.orders.find_one({"_id": unpaid})["state"] == "cancelled"
    assert ctx.db.orders.find_one({"_id": shipped})["state"] == "received"
    assert ctx.db.listings.find_one({"book_id": "b1"})["stock_level"] == 10
    assert counts["errors"] == 0
    assert not audit(ctx.db, settled=True)
    ctx.close()


def test_settings_and_flags_name_the_folder(tmp_path, monkeypatch):
    from be.config import DEFAULT_DATA_DIR, MEMORY, Settings
    from be.server import parse_args, settings_from
    monkeypatch.delenv("BOOKSTORE_DATA_DIR")
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert Settings.from_env().data_dir == DEFAULT_DATA_DIR == "data"
    assert Settings().data_dir == MEMORY  # made directly (tests, tools): in memory
    monkeypatch.setenv("BOOKSTORE_DATA_DIR", str(tmp_path))
    assert settings_from(parse_args([])).data_dir == str(tmp_path)
    assert settings_from(parse_args(["--memory"])).data_dir == MEMORY
    assert settings_from(parse_args(["--data-dir", "elsewhere"])).data_dir == "elsewhere"
    with pytest.raises(SystemExit):
        parse_args(["--memory", "--data-dir", "x"])
    monkeypatch.setenv("MONGODB_URI", "mongodb://localhost:1/")
    with pytest.raises(StartupError, match="--data-dir and --memory are for the embedded"):
        settings_from(parse_args(["--data-dir", "x"]))
    assert settings_from(parse_args([])).persistent is False


def test_a_change_the_journal_cannot_hold_stops_acknowledgements(tmp_path, caplog,
                                                                monkeypatch):
    # be.embedded.limits refuses every value we know BSON cannot hold (an integer
    # past 8 bytes anywhere in an update); should one get past it, the journal
    # must stop rather than lose it: the encoder is made to refuse this one
    ctx = shop_ctx(tmp_path)
    seed_shop(ctx)
    engine = ctx.engine.embedded
    real_encode = journaled.bson.encode

    def encode(doc, *args, **kwargs):
        if "huge" in str(doc):
            raise OverflowError("MongoDB can only handle up to 8-byte ints")
        return real_encode(doc, *args, **kwargs)

    monkeypatch.setattr(journaled, "bson", types.SimpleNamespace(encode=encode))
    with pytest.raises(errors.NotDurable):
        with engine.request():
            ctx.db.users.update_one({"_id": "buyer"}, {"$max": {"huge": 7}})
    assert "a change cannot be journaled" in caplog.text
    with pytest.raises(errors.NotDurable):  # and nothing after it either
        with engine.request():
            ctx.db.users.update_one({"_id": "buyer"}, {"$set": {"fine": 1}})
    crash(engine)
    ctx = shop_ctx(tmp_path)
    assert "huge" not in ctx.db.users.find_one({"_id": "buyer"})
    ctx.close()


# ---------------------------------------------------------------- large values in files

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20  # 5 KiB: kept in a file
DIGEST = hashlib.sha256(PICTURE).hexdigest()


def _stored(engine, coll, key):
    return engine.storage.server["shop"][coll]._documents[key]


def _file_bytes(path):
    """The bytes of the folder's files (its journal and snapshot; not ``blobs``)."""
    files = [os.path.join(path, name) for name in sorted(os.listdir(path))]
    return b"".join(open(f, "rb").read() for f in files if os.path.isfile(f))


def test_large_bytes_live_in_a_file_and_reads_return_them(tmp_path):
    engine = EmbeddedEngine(str(tmp_path))
    db = engine.database("shop")
    # as be.model.catalogue writes a picture: an upsert, $setOnInsert
    db.pictures.bulk_write([UpdateOne({"_id": "p"}, {"$setOnInsert": {
        "data": PICTURE, "content_type": "image/png"}}, upsert=True)], ordered=False)
    db.pictures.insert_one({"_id": "q", "data": PICTURE, "also": PICTURE[:100]})
    db.pictures.insert_one({"_id": "small", "data": b"\x00" * 100})
    ref = _stored(engine, "pictures", "p")["data"]
    assert blobs.is_ref(ref) and len(ref) == 40  # the document holds 40 bytes, not 5 KiB
    assert blobs.is_ref(_stored(engine, "pictures", "q")["data"])
    assert type(_stored(engine, "pictures", "q")["also"]) is bytes  # under MIN_BYTES
    assert type(_stored(engine, "pictures", "small")["data"]) is bytes
    assert os.listdir(tmp_path / "blobs") == [DIGEST]  # one file per content
    assert (tmp_path / "blobs" / DIGEST).read_bytes() == PICTURE

    def check(engine):
        db = engine.database("shop")
        assert db.pictures.find_one({"_id": "p"}) == {
            "_id": "p", "data": PICTURE, "content_type": "image/png"}
        assert db.pictures.find_one({"_id": "q"}, {"data": 1}) == {"_id": "q", "data": PICTURE}
        assert [d["data"] for d in db.pictures.find({}, sort=[("_id", 1)])] == \
            [PICTURE, PICTURE, b"\x00" * 100]
        assert db.pictures.find_one({"_id": "p"}, {"data": 0}) == {
            "_id": "p", "content_type": "image/png"}

    check(engine)
    engine.storage.journal.sync()
    assert PICTURE[8:200] not in _file_bytes(tmp_path)  # the journal holds the reference
    before = dump(engine)
    crash(engine)
    engine = reopen(tmp_path)  # from the journal
    assert dump(engine) == before
    check(engine)
    engine.close()  # a snapshot
    engine = reopen(tmp_path)
    assert engine.storage.report["records"] == 0
    assert PICTURE[8:200] not in _file_bytes(tmp_path)
    check(engine)
    engine.close()


def test_a_blob_file_is_on_disk_before_the_record_that_names_it(tmp_path, monkeypatch):
    engine = EmbeddedEngine(str(tmp_path))
    db = engine.database("shop")
    journal = engine.storage.journal
    synced = []
    real = blobs.fsync_file

    def fsync_file(path):
        real(path)
        with open(journal.path, "rb") as f:  # the record is not written yet
            synced.append((os.path.basename(path), bytes.fromhex(DIGEST) in f.read()))

    monkeypatch.setattr(blobs, "fsync_file", fsync_file)
    with engine.request():
        db.pictures.insert_one({"_id": "p", "data": PICTURE})
    # the request is acknowledged: its record is durable; the data folder (once,
    # for the new folder "blobs"), the file and "blobs" were fsynced before the
    # record was written
    assert journal.durable >= journal.appended
    assert synced == [(tmp_path.name, False), (DIGEST, False), ("blobs", False)]
    assert bytes.fromhex(DIGEST) in open(journal.path, "rb").read()
    assert journal.blob_syncs == 1
    engine.close()


def test_a_failed_blob_fsync_stops_acknowledgements(tmp_path, monkeypatch):
    (tmp_path / "blobs").mkdir()
    engine = EmbeddedEngine(str(tmp_path))
    db = engine.database("shop")

    def broken(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(blobs, "fsync_file", broken)
    with pytest.raises(errors.NotDurable):
        with engine.request():
            db.pictures.insert_one({"_id": "p", "data": PICTURE})
    crash(engine)
    engine = reopen(tmp_path)  # the record naming the file was never written
    assert engine.database("shop").pictures.find_one({"_id": "p"}) is None
    engine.close()


def test_a_blob_file_that_cannot_be_written_refuses_that_write_only(tmp_path, monkeypatch):
    engine = EmbeddedEngine(str(tmp_path))
    db = engine.database("shop")
    real = blobs.BlobStore.put

    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs.BlobStore, "put", full)
    with pytest.raises(errors.NotDurable, match="cannot take the value of data"):
        with engine.request():
            db.pictures.insert_one({"_id": "p", "data": PICTURE})
    assert db.pictures.find_one({"_id": "p"}) is None  # nothing stored
    monkeypatch.setattr(blobs.BlobStore, "put", real)  # space again
    with engine.request():
        db.pictures.insert_one({"_id": "p", "data": PICTURE})
    crash(engine)
    engine = reopen(tmp_path)
    assert engine.database("shop").pictures.find_one({"_id": "p"})["data"] == PICTURE
    engine.close()


def test_a_blob_file_a_crash_left_torn_is_written_again(tmp_path):
    folder = tmp_path / "blobs"
    folder.mkdir()
    (folder / DIGEST).write_bytes(PICTURE[:1000])  # renamed before its bytes reached the disk
    (folder / f"{DIGEST}.tmp").write_bytes(b"half")  # a write cut short
    engine = EmbeddedEngine(str(tmp_path))
    assert os.listdir(folder) == [DIGEST]
    engine.database("shop").pictures.insert_one({"_id": "p", "data": PICTURE})
    assert (folder / DIGEST).read_bytes() == PICTURE
    crash(engine)
    engine = reopen(tmp_path)
    assert engine.database("shop").pictures.find_one({"_id": "p"})["data"] == PICTURE
    engine.close()


def test_pictures_of_a_folder_shop_are_served_from_files_across_restarts(tmp_path):
    ctx = shop_ctx(tmp_path)
    seed_shop(ctx)
    info = {"id": "b3", "title": "Three", "price": 300,
            "pictures": [base64.b64encode(PICTURE).decode()] * 3}
    stores.add_book(ctx, "seller", "s1", info, 5)
    assert os.listdir(tmp_path / "blobs") == [DIGEST]
    assert search.get_picture(ctx, "b3", 2, None) == (PICTURE, "image/png")
    crash(ctx.engine.embedded)
    ctx = shop_ctx(tmp_path)
    assert search.get_picture(ctx, "b3", 0, "s1") == (PICTURE, "image/png")
    reply = create_app(ctx).test_client().get("/books/b3/pictures/1")
    assert reply.status_code == 200 and reply.data == PICTURE
    assert reply.headers["Content-Type"] == "image/png"
    assert not audit(ctx.db, settled=True)  # the catalogue rule hashes the bytes read
    ctx.close()
