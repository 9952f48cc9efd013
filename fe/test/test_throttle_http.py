"""Login throttling over HTTP: after five wrong passwords an account's password
calls get 429 with Retry-After and a JSON body, and change nothing; the right
password works once the delay has passed; an unknown account gets the same
replies. A server of its own, on a clock the test moves."""
import uuid

import pytest
import requests

from be.backend import Backend
from be.clock import ManualClock
from be.tests.support import engines
from fe.access.buyer import Buyer
from fe.serving import ThreadedServer

URL = None


@pytest.fixture(scope="module", autouse=True)
def clock():
    global URL
    settings = engines.settings("throttle")
    backend = Backend(settings, clock=ManualClock(), engine=engines.engine(settings))
    srv = ThreadedServer(backend, threads=2)
    URL = srv.url
    yield backend.clock
    srv.stop()


def register_new_buyer(user_id, password):
    assert post("/auth/register", {"user_id": user_id, "password": password}).status_code == 200
    return Buyer(URL, user_id, password)


def post(path, body):
    return requests.post(URL + path.lstrip("/"), json=body)


def login(user_id, password):
    return post("/auth/login", {"user_id": user_id, "password": password, "terminal": "t"})


def replies(user_id, password, n):
    out = []
    for _ in range(n):
        r = login(user_id, password)
        assert r.headers["Content-Type"].startswith("application/json")
        out.append((r.status_code, r.headers.get("Retry-After")))
    return out


def test_wrong_passwords_close_the_account_for_every_password_call(clock):
    user_id = "throttle_" + uuid.uuid4().hex
    buyer = register_new_buyer(user_id, "right-pw")
    assert buyer.add_funds(500) == 200
    assert replies(user_id, "wrong", 5) == [(401, None)] * 5
    r = login(user_id, "right-pw")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert "retry after 1 s" in r.json()["message"]
    for path, body in [("/buyer/add_funds", {"add_value": 100}),
                       ("/buyer/payment", {"order_id": "throttle_no_order"}),
                       ("/auth/password", {"oldPassword": "right-pw", "newPassword": "x"}),
                       ("/auth/unregister", {})]:
        body = {"user_id": user_id, "password": "right-pw", **body}
        r = post(path, body)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1", (path, r.text)
    assert buyer.balance() == (200, 500)  # the token from before still reads; nothing changed
    clock.advance(1)
    assert login(user_id, "right-pw").status_code == 200


def test_an_unknown_account_gets_the_same_replies():
    known = "throttle_" + uuid.uuid4().hex
    register_new_buyer(known, "right-pw")
    unknown = "throttle_ghost_" + uuid.uuid4().hex
    assert replies(known, "wrong", 6) == replies(unknown, "wrong", 6) == \
        [(401, None)] * 5 + [(429, "1")]
