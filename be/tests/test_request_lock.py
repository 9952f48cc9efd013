"""On the embedded engine every view runs its whole request under the engine's
lock (be.api._one_request_at_a_time), so a request's database calls are one
step for the other request threads; /ping runs without it, and each request is
parsed and validated before the lock is taken. With a real MongoDB nothing is
serialized."""
import threading

import pytest

from be.api import common, create_app
from be.api import schemas as s
from be.model import orders, search, stores, users

pytestmark = pytest.mark.embedded_only  # it tests the embedded engine's request lock


def test_views_hold_the_engine_lock_for_the_whole_request(ctx, shop, make_user, monkeypatch):
    lock = ctx.engine.embedded.lock
    buyer, password, token = make_user("buyer", funds=10_000)
    seen = []
    real_new_order, real_payment = orders.new_order, orders.payment

    def new_order(*args):
        seen.append(("new_order", lock._is_owned()))
        order_id = real_new_order(*args)
        seen.append(("new_order done", lock._is_owned()))
        return order_id

    def payment(*args):
        seen.append(("payment", lock._is_owned()))
        return real_payment(*args)

    monkeypatch.setattr(orders, "new_order", new_order)
    monkeypatch.setattr(orders, "payment", payment)
    client = create_app(ctx).test_client()
    reply = client.post("/buyer/new_order", headers={"token": token}, json={
        "user_id": buyer, "store_id": shop["store_id"], "books": [{"id": "b1", "count": 1}]})
    assert reply.status_code == 200
    paid = client.post("/buyer/payment", json={
        "user_id": buyer, "order_id": reply.get_json()["order_id"], "password": password})
    assert paid.status_code == 200
    assert seen == [("new_order", True), ("new_order done", True), ("payment", True)]
    assert not lock._is_owned()  # released after each request


def test_ping_runs_while_a_request_holds_the_engine(ctx):
    lock = ctx.engine.embedded.lock
    client = create_app(ctx).test_client()
    replies = []
    lock.acquire()  # stands for a request in flight on another thread
    try:
        pinger = threading.Thread(target=lambda: replies.append(client.get("/ping")))
        pinger.start()
        pinger.join(timeout=30)  # with the lock on /ping this would wait for the release
        assert not pinger.is_alive()
    finally:
        lock.release()
    assert replies[0].status_code == 200


def test_a_failing_view_releases_the_lock(ctx, monkeypatch):
    lock = ctx.engine.embedded.lock

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(users, "register", broken)
    client = create_app(ctx).test_client()
    reply = client.post("/auth/register", json={"user_id": "u", "password": "p"})
    assert reply.status_code == 500 and reply.get_json() == {"message": "internal error"}
    assert not lock._is_owned()
    acquired = lock.acquire(blocking=False)  # no other thread holds it either
    assert acquired
    lock.release()


def test_the_body_is_parsed_and_validated_before_the_lock_is_taken(ctx, shop, monkeypatch):
    """A large body (an add_book of long texts: 33 MB, 215 ms to parse and validate)
    is parsed with the engine free, so other requests' database calls go on."""
    lock = ctx.engine.embedded.lock
    seen = []
    real_loads = common.loads
    real_validate = s.AddBook.model_validate

    def loads(data):
        seen.append(("parse", lock._is_owned()))
        return real_loads(data)

    def validate(data):
        seen.append(("validate", lock._is_owned()))
        return real_validate(data)

    def add_book(*args):
        seen.append(("add_book", lock._is_owned()))

    monkeypatch.setattr(common, "loads", loads)
    monkeypatch.setattr(s.AddBook, "model_validate", validate)
    monkeypatch.setattr(stores, "add_book", add_book)
    client = create_app(ctx).test_client()
    text = "长" * (common.PARSE_IN_ONE_BYTES // 3 + 10)  # parsed in pieces
    reply = client.post("/seller/add_book", headers={"token": shop["token"]}, json={
        "user_id": shop["seller"], "store_id": shop["store_id"], "stock_level": 1,
        "book_info": {"id": "long", "title": "长书", "content": text}})
    assert reply.status_code == 200
    assert seen == [("parse", False), ("validate", False), ("add_book", True)]


def test_a_malformed_request_is_refused_while_another_holds_the_engine(ctx):
    lock = ctx.engine.embedded.lock
    client = create_app(ctx).test_client()
    replies = []

    def send():
        replies.append(client.post("/auth/login", data=b"[1, 2"))
        replies.append(client.post("/auth/login", json={"user_id": "u"}))

    lock.acquire()  # stands for a request in flight on another thread
    try:
        sender = threading.Thread(target=send)
        sender.start()
        sender.join(timeout=30)  # parsed ahead of the lock: refused without waiting
        assert not sender.is_alive()
    finally:
        lock.release()
    assert [r.status_code for r in replies] == [400, 400]
    assert replies[0].get_json() == {"message": "request body must be a JSON object"}
    assert replies[1].get_json() == {"message": "missing field 'password'"}


def test_searches_queue_for_their_lane_and_hold_the_engine_per_call(ctx, shop, monkeypatch):
    """One search at a time (be.api._one_search_at_a_time): the lane is asked for
    with the engine free, so a search waiting for it holds nobody up; a search
    holds the engine only for each of its reads, so others get it in between."""
    lock = ctx.engine.embedded.lock
    app = create_app(ctx)
    seen = []

    class Lane:
        def __init__(self):
            self.inner = threading.Lock()

        def __enter__(self):
            seen.append(("lane", lock._is_owned()))
            self.inner.acquire()

        def __exit__(self, *exc):
            self.inner.release()

    lane = app.extensions["bookstore_search_lane"] = Lane()
    real = search.search

    def searching(*args):
        seen.append(("search", lane.inner.locked(), lock._is_owned()))
        return real(*args)

    reads = []
    monkeypatch.setattr(search, "search", searching)
    ctx.engine.embedded.observer = lambda *call: reads.append(lock._is_owned())
    reply = app.test_client().get("/search/books", query_string={"q": "三体"})
    ctx.engine.embedded.observer = None
    assert reply.status_code == 200 and reply.get_json()["total"] == 1
    assert seen == [("lane", False), ("search", True, False)]
    assert len(reads) >= 3 and not any(reads)  # each read takes the lock for itself
    assert app.test_client().get("/books/b1").status_code == 200
    assert len(seen) == 2  # only searches take the lane
