"""Nothing slow under the embedded engine's lock: password hashing and checking,
and a book's segmentation and picture decoding, run with the request's hold on the
lock let go (EmbeddedEngine.cpu_work), so another request's database calls go on.
Driven with events: the slow step is held open until the other request got in."""
import threading

import pytest

from be import passwords
from be.model import catalogue, stores, users

pytestmark = pytest.mark.embedded_only  # the lock is the embedded engine's


def while_held_open(ctx, monkeypatch, module, name, request):
    """Run ``request`` (as an API request would: inside engine.request()) with
    ``module.name`` blocked until another thread has made a database call; True if
    that call got through while the slow step was running."""
    entered, release = threading.Event(), threading.Event()
    real = getattr(module, name)

    def slow(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)
    engine = ctx.engine.embedded
    errors = []

    def run():
        try:
            with engine.request():
                request()
        except Exception as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert entered.wait(30)
    got_in = []

    def other():
        ctx.db.users.find_one({"_id": "nobody"})  # another request's database call
        got_in.append(True)
    probe = threading.Thread(target=other)
    probe.start()
    probe.join(10)
    through = bool(got_in)
    release.set()
    worker.join(30)
    probe.join(30)
    assert not errors, errors
    return through


def test_a_password_check_lets_other_requests_in(ctx, make_user, monkeypatch):
    uid, pw, _ = make_user()
    assert while_held_open(ctx, monkeypatch, passwords, "check_password_hash",
                           lambda: _expect_401(ctx, uid, pw))


def _expect_401(ctx, uid, pw):
    try:
        users.check_password(ctx, uid, "wrong-" + pw)
    except Exception as exc:
        assert getattr(exc, "code", None) == 401
    else:
        raise AssertionError("a wrong password was accepted")


def test_hashing_a_new_password_lets_other_requests_in(ctx, monkeypatch):
    assert while_held_open(ctx, monkeypatch, passwords, "generate_password_hash",
                           lambda: users.register(ctx, "cpu_user", "pw"))
    assert users.check_password(ctx, "cpu_user", "pw")["_id"] == "cpu_user"


def test_preparing_a_book_lets_other_requests_in(ctx, make_user, monkeypatch):
    seller, _, _ = make_user("seller")
    stores.create_store(ctx, seller, "cpu_store")
    assert while_held_open(ctx, monkeypatch, catalogue, "prepare", lambda: stores.add_book(
        ctx, seller, "cpu_store", {"id": "b", "title": "三体 " * 1000}, 1))
    assert ctx.db.listings.count_documents({"store_id": "cpu_store"}) == 1


def test_outside_a_request_nothing_is_let_go(ctx):
    engine = ctx.engine.embedded
    with engine.lock:
        with engine.cpu_work():
            pass
        # still ours: another thread cannot take it
        taken = []
        t = threading.Thread(target=lambda: taken.append(engine.lock.acquire(timeout=0.2)))
        t.start()
        t.join()
    assert taken == [False]
