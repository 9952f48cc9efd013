"""Idempotency keys: the store (be.model.idempotency) and the edge decorator
(be.api.idempotency) on the Flask test client.

The clock is a ManualClock (24 hours pass in a call), and waiting for a first
request still running is driven by replacing ``idempotency.sleep``: no test sleeps.
"""
import threading

import pytest

from be import errors
from be.api import create_app
from be.model import idempotency, orders, users
from be.model.idempotency import Claim, Reply

FP, OTHER_FP = "f" * 64, "e" * 64


# ---------------------------------------------------------------- the store

def test_the_first_reply_is_kept_and_returned_again(ctx):
    claim = idempotency.begin(ctx, "u", "k", FP, 0)
    assert isinstance(claim, Claim)
    assert idempotency.finish(ctx, "u", "k", claim.owner, 201, {"message": "ok", "n": 1})
    assert idempotency.begin(ctx, "u", "k", FP, 0) == Reply(201, {"message": "ok", "n": 1})
    # keys are per user: another user's "k" is a key of its own
    assert isinstance(idempotency.begin(ctx, "v", "k", FP, 0), Claim)


def test_a_key_of_another_request_is_409(ctx):
    claim = idempotency.begin(ctx, "u", "k", FP, 0)
    with pytest.raises(errors.KeyConflict) as exc:  # while the first runs
        idempotency.begin(ctx, "u", "k", OTHER_FP, 5)
    assert "different request" in exc.value.message and exc.value.code == 409
    idempotency.finish(ctx, "u", "k", claim.owner, 200, {"message": "ok"})
    with pytest.raises(errors.KeyConflict):  # and after
        idempotency.begin(ctx, "u", "k", OTHER_FP, 0)


def test_a_repeat_waits_for_the_first_request_then_replays_it(ctx, monkeypatch):
    claim = idempotency.begin(ctx, "u", "k", FP, 0)
    pauses = []

    def first_request_answers_meanwhile(seconds):
        pauses.append(seconds)
        if len(pauses) == 3:
            idempotency.finish(ctx, "u", "k", claim.owner, 200, {"message": "ok"})

    monkeypatch.setattr(idempotency, "sleep", first_request_answers_meanwhile)
    assert idempotency.begin(ctx, "u", "k", FP, 5) == Reply(200, {"message": "ok"})
    assert pauses == [0.01, 0.02, 0.04]  # polling, backing off


def test_a_repeat_waits_no_longer_than_it_is_given(ctx, monkeypatch):
    idempotency.begin(ctx, "u", "k", FP, 0)
    now = [0.0]
    monkeypatch.setattr(idempotency, "monotonic", lambda: now[0])
    monkeypatch.setattr(idempotency, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    with pytest.raises(errors.KeyConflict) as exc:
        idempotency.begin(ctx, "u", "k", FP, 2.0)
    assert "still in progress; retry" in exc.value.message
    assert now[0] == pytest.approx(2.0)
    with pytest.raises(errors.KeyConflict):  # no wait at all: at once
        idempotency.begin(ctx, "u", "k", FP, 0)


def test_a_claim_left_by_a_dead_request_is_never_run_again_until_it_expires(ctx):
    idempotency.begin(ctx, "u", "k", FP, 0)  # ... and the request died
    ctx.clock.advance(ctx.settings.stuck_after_s)
    with pytest.raises(errors.KeyConflict) as exc:
        idempotency.begin(ctx, "u", "k", FP, 5)  # no wait: it will not answer
    assert "unknown" in exc.value.message
    ctx.clock.advance(idempotency.KEEP.total_seconds() - ctx.settings.stuck_after_s - 1)
    with pytest.raises(errors.KeyConflict):
        idempotency.begin(ctx, "u", "k", FP, 0)
    ctx.clock.advance(1)
    assert isinstance(idempotency.begin(ctx, "u", "k", FP, 0), Claim)


def test_replies_are_kept_24_hours(ctx):
    claim = idempotency.begin(ctx, "u", "k", FP, 0)
    ctx.clock.advance(30)  # the call took 30 s: the day counts from the reply
    idempotency.finish(ctx, "u", "k", claim.owner, 200, {"message": "ok"})
    ctx.clock.advance(24 * 3600 - 1)
    assert idempotency.begin(ctx, "u", "k", FP, 0) == Reply(200, {"message": "ok"})
    ctx.clock.advance(1)
    again = idempotency.begin(ctx, "u", "k", OTHER_FP, 0)  # expired: a new request's key
    assert isinstance(again, Claim)
    # the old claim's owner can no longer store anything
    assert not idempotency.finish(ctx, "u", "k", claim.owner, 500, {"message": "late"})
    assert idempotency.finish(ctx, "u", "k", again.owner, 200, {"message": "new"})


def test_a_released_claim_runs_again(ctx):
    claim = idempotency.begin(ctx, "u", "k", FP, 0)
    idempotency.release(ctx, "u", "k", claim.owner)
    assert isinstance(idempotency.begin(ctx, "u", "k", FP, 0), Claim)


def test_two_requests_at_once_one_runs_the_other_gets_its_reply(ctx, monkeypatch):
    """Two threads claim one key at the same moment: one claim wins; the other
    polls until the winner stores its reply."""
    start = threading.Barrier(2)
    answered = threading.Event()
    monkeypatch.setattr(idempotency, "sleep", lambda s: answered.wait())
    results = [None, None]

    def request(n):
        start.wait()
        got = idempotency.begin(ctx, "u", "k", FP, 5)
        if isinstance(got, Claim):
            idempotency.finish(ctx, "u", "k", got.owner, 200, {"message": "ok", "by": n})
            answered.set()
        results[n] = got

    threads = [threading.Thread(target=request, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    claims = [r for r in results if isinstance(r, Claim)]
    replies = [r for r in results if isinstance(r, Reply)]
    assert len(claims) == 1 and len(replies) == 1
    assert replies[0] == Reply(200, {"message": "ok", "by": results.index(claims[0])})


@pytest.mark.parametrize("key, ok", [
    ("a", True), ("x" * 255, True), ("0f8fad5b-d9cb-469f-a165-70867728950e", True),
    ("", False), ("x" * 256, False), ("a b", False), ("é", False), ("a\n", False),
])
def test_keys_are_1_to_255_visible_ascii_characters(key, ok):
    if ok:
        idempotency.check_key(key)
    else:
        with pytest.raises(errors.BadRequest):
            idempotency.check_key(key)


# ---------------------------------------------------------------- the edge

@pytest.fixture
def client(ctx):
    return create_app(ctx).test_client()


def _funds(client, user, password, value, key=None, **extra):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/buyer/add_funds", headers=headers,
                       json={"user_id": user, "password": password, "add_value": value, **extra})


def test_edge_replays_add_funds_and_refuses_another_body(ctx, client, make_user):
    user, pw, _ = make_user("buyer")
    first = _funds(client, user, pw, 500, "k1")
    again = _funds(client, user, pw, 500, "k1", ignored="unknown fields do not count")
    assert (first.status_code, first.json) == (again.status_code, again.json) == \
        (200, {"message": "ok"})
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    other = _funds(client, user, pw, 600, "k1")
    assert other.status_code == 409 and "different request" in other.json["message"]
    assert users.own_balance(ctx, user) == 500
    # a refusal is a reply too: replayed, not run again
    assert _funds(client, user, pw, -10**6, "k2").status_code == 519
    _funds(client, user, pw, 10**6, "k3")
    assert _funds(client, user, pw, -10**6, "k2").status_code == 519
    assert users.own_balance(ctx, user) == 500 + 10**6
    # without the header: as before, every call acts
    for _ in range(2):
        assert _funds(client, user, pw, 1).status_code == 200
    assert users.own_balance(ctx, user) == 500 + 10**6 + 2


def test_edge_checks_the_request_and_its_user_before_the_key(ctx, client, make_user):
    user, pw, _ = make_user("buyer")
    assert _funds(client, user, pw, 5, "a b").status_code == 400
    assert _funds(client, user, "wrong", 5, "k").status_code == 401  # not claimed
    assert _funds(client, user, pw, "5", "k").status_code == 400     # not claimed either
    assert _funds(client, user, pw, 5, "k").status_code == 200
    assert users.own_balance(ctx, user) == 5
    # another user's same key is another key
    other, opw, _ = make_user("other")
    assert "Idempotent-Replayed" not in _funds(client, other, opw, 5, "k").headers
    assert users.own_balance(ctx, other) == 5


def test_edge_replays_new_order_and_payment(ctx, client, make_user, shop):
    user, pw, token = make_user("buyer", funds=100_000)
    body = {"user_id": user, "store_id": shop["store_id"], "books": [{"id": "b1", "count": 2}]}
    placed = [client.post("/buyer/new_order", json=body,
                          headers={"token": token, "Idempotency-Key": "order-1"})
              for _ in range(2)]
    assert placed[0].status_code == placed[1].status_code == 200
    order_id = placed[0].json["order_id"]
    assert placed[1].json == {"message": "ok", "order_id": order_id}
    assert orders.buyer_orders(ctx, user, None, 1, 20).total == 1
    assert ctx.db.listings.find_one({"book_id": "b1"})["stock_level"] == 8
    pay = {"user_id": user, "order_id": order_id, "password": pw}
    paid = [client.post("/buyer/payment", json=pay, headers={"Idempotency-Key": "pay-1"})
            for _ in range(2)]
    assert [p.status_code for p in paid] == [200, 200]  # not 520 "already paid"
    assert users.own_balance(ctx, user) == 100_000 - 2000
    assert client.post("/buyer/payment", json=pay).status_code == 520  # no key: as before
    # the key names one operation: the same key on another call is another request
    assert client.post("/buyer/payment", json=pay,
                       headers={"Idempotency-Key": "order-1"}).status_code == 409


def test_edge_keeps_keys_24_hours(ctx, client, make_user):
    user, pw, _ = make_user("buyer")
    _funds(client, user, pw, 7, "day")
    ctx.clock.advance(24 * 3600 - 1)
    assert _funds(client, user, pw, 7, "day").headers.get("Idempotent-Replayed") == "true"
    ctx.clock.advance(1)
    assert "Idempotent-Replayed" not in _funds(client, user, pw, 7, "day").headers
    assert users.own_balance(ctx, user) == 14


def test_edge_lets_a_retry_run_after_503_busy(ctx, client, make_user, monkeypatch):
    user, pw, _ = make_user("buyer")
    real = users.add_funds
    calls = []

    def busy_once(c, user_id, value):
        calls.append(value)
        if len(calls) == 1:
            raise errors.Busy("o1")  # refused, nothing changed: the client should retry
        return real(c, user_id, value)

    monkeypatch.setattr(users, "add_funds", busy_once)
    assert _funds(client, user, pw, 9, "k").status_code == 503
    assert _funds(client, user, pw, 9, "k").status_code == 200
    assert _funds(client, user, pw, 9, "k").headers["Idempotent-Replayed"] == "true"
    assert len(calls) == 2 and users.own_balance(ctx, user) == 9


def test_edge_never_reruns_a_call_that_failed_half_way(ctx, client, make_user, monkeypatch):
    """A 500 after the deposit, and a 503 because the time budget ran out after it:
    the outcome is unknown to the client, and a repeat must not deposit again. The
    reply is stored even though the budget is spent."""
    user, pw, _ = make_user("buyer")
    real = users.add_funds

    def deposit_then_fail(c, user_id, value):
        real(c, user_id, value)
        raise RuntimeError("the process lost its footing")

    def deposit_then_stall(c, user_id, value):
        real(c, user_id, value)
        c.clock.advance(c.settings.request_timeout_s + 1)
        users.own_balance(c, user_id)  # refused: the budget has run out

    for fail, status in ((deposit_then_fail, 500), (deposit_then_stall, 503)):
        monkeypatch.setattr(users, "add_funds", fail)
        key = f"k{status}"
        first = _funds(client, user, pw, 10, key)
        assert first.status_code == status
        monkeypatch.setattr(users, "add_funds", real)
        again = _funds(client, user, pw, 10, key)
        assert (again.status_code, again.json) == (status, first.json)
        assert again.headers["Idempotent-Replayed"] == "true"
    assert users.own_balance(ctx, user) == 20


def test_edge_answers_even_if_the_reply_cannot_be_stored(ctx, client, make_user, monkeypatch):
    from pymongo.errors import AutoReconnect
    user, pw, _ = make_user("buyer")

    def database_gone(*args):
        raise AutoReconnect("primary stepped down")

    monkeypatch.setattr(idempotency, "finish", database_gone)
    assert _funds(client, user, pw, 3, "k").status_code == 200  # the deposit's own reply
    monkeypatch.undo()
    again = _funds(client, user, pw, 3, "k")  # the claim never got its reply: not rerun
    assert again.status_code == 409 and "in progress" in again.json["message"]
    assert users.own_balance(ctx, user) == 3


def test_edge_waits_within_the_request_budget_on_mongodb_only(ctx):
    import types
    from be import budget
    from be.api.idempotency import _wait_s
    mongodb = types.SimpleNamespace(engine=types.SimpleNamespace(embedded=None))
    assert _wait_s(mongodb) == idempotency.MAX_WAIT_S  # outside a request
    with budget.request_budget(ctx, seconds=3):
        assert _wait_s(mongodb) == pytest.approx(2.0)  # a second kept for the answer
        assert _wait_s(ctx) == 0.0  # embedded: a running claim has no live request
    with budget.request_budget(ctx, seconds=60):
        assert _wait_s(mongodb) == idempotency.MAX_WAIT_S
