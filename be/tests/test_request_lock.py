"""On the embedded engine every view runs its whole request under the engine's
lock (be.api._one_request_at_a_time), so a request's database calls are one
step for the other request threads; /ping runs without it. With a real MongoDB
nothing is serialized."""
import threading

import pytest

from be.api import create_app
from be.model import orders, users

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
