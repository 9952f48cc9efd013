"""Model-level fixtures: a fresh embedded database and a clock the test moves."""
import uuid

import pytest

from be import passwords
from be.backend import Backend
from be.clock import ManualClock
from be.tests.support import engines
from be.model import sessions, stores, users


@pytest.fixture
def ctx():
    """A fresh database (embedded; or the run's MongoDB database, emptied: see
    be/tests/support/engines.py) and a clock the test moves."""
    settings = engines.settings(pay_timeout_s=900, receive_timeout_s=604800)
    return Backend(settings, clock=ManualClock(), engine=engines.engine(settings))


def new_id(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_user(ctx):
    """Register and log in a user; returns (user_id, password, token)."""
    def make(prefix="user", funds=0):
        user_id, password = new_id(prefix), "pw_" + prefix
        users.register(ctx, user_id, password)
        token = sessions.login(ctx, user_id, password, "terminal")
        if funds:
            users.add_funds(ctx, user_id, funds)
        return user_id, password, token
    return make


@pytest.fixture
def shop(ctx, make_user):
    """A seller with one store listing two books (price 1000 and 250, stock 10 and 5)."""
    seller, _, token = make_user("seller")
    store_id = new_id("store")
    stores.create_store(ctx, seller, store_id)
    stores.add_book(ctx, seller, store_id, {"id": "b1", "title": "三体", "price": 1000}, 10)
    stores.add_book(ctx, seller, store_id, {"id": "b2", "title": "Dune", "price": 250}, 5)
    return {"seller": seller, "token": token, "store_id": store_id}


@pytest.fixture
def hash_checks(monkeypatch):
    """How many times werkzeug's (slow, salted) hash check runs."""
    count = []
    real = passwords.check_password_hash

    def counting(stored, password):
        count.append(1)
        return real(stored, password)

    monkeypatch.setattr(passwords, "check_password_hash", counting)
    return count
