"""Authentication and authorization over HTTP, on a server of its own whose clock
the test moves (so a token can expire without sleeping).

* tampered, expired, logged-out, retired (password changed, account closed) and
  other users' tokens get 401, and change nothing;
* no user can see, pay, ship, receive or cancel another's order, list another's
  orders or balance, or touch another's store;
* no password and no password hash appears in any response body or log line.
"""
import hashlib
import logging

import pytest
import requests

from be.backend import Backend
from be.clock import ManualClock
from be.tests.support import engines
from be.tests.support.faults import snapshot
from fe.serving import ThreadedServer

PASSWORDS = {"az_alice": "alice-Pa55word-that-must-not-leak",
             "az_bob": "bob-Pa55word-that-must-not-leak",
             "az_carol": "carol-Pa55word-that-must-not-leak",
             "az_dave": "dave-Pa55word-that-must-not-leak"}
BODIES = []  # every response body this module received


def _record(response, *args, **kwargs):
    BODIES.append((response.request.method, response.request.url, response.status_code,
                   response.text))


class Client:
    """Raw HTTP calls that remember every reply."""

    def __init__(self, url):
        self.url = url
        self.session = requests.Session()
        self.session.hooks["response"].append(_record)

    def post(self, path, body, token=None):
        headers = {} if token is None else {"token": token}
        return self.session.post(self.url + path.lstrip("/"), json=body, headers=headers)

    def get(self, path, params, token=None):
        headers = {} if token is None else {"token": token}
        return self.session.get(self.url + path.lstrip("/"), params=params, headers=headers)

    def login(self, user):
        r = self.post("/auth/login", {"user_id": user, "password": PASSWORDS[user],
                                      "terminal": "t"})
        assert r.status_code == 200, r.text
        return r.json()["token"]


@pytest.fixture(scope="module")
def az(request):
    settings = engines.settings("authz", token_lifetime_s=3600)
    backend = Backend(settings, clock=ManualClock(), engine=engines.engine(settings))
    srv = ThreadedServer(backend, threads=4)
    c = Client(srv.url)
    tokens = {}
    for user, pw in PASSWORDS.items():
        assert c.post("/auth/register", {"user_id": user, "password": pw}).status_code == 200
        tokens[user] = c.login(user)
    # alice sells; bob and carol buy from her; dave is a second seller
    assert c.post("/seller/create_store", {"user_id": "az_alice", "store_id": "az_store"},
                  tokens["az_alice"]).status_code == 200
    assert c.post("/seller/create_store", {"user_id": "az_dave", "store_id": "az_dave_store"},
                  tokens["az_dave"]).status_code == 200
    r = c.post("/seller/add_book", {"user_id": "az_alice", "store_id": "az_store", "stock_level": 50,
                                    "book_info": {"id": "az_b1", "title": "T", "price": 300}},
               tokens["az_alice"])
    assert r.status_code == 200
    for buyer in ("az_bob", "az_carol"):
        assert c.post("/buyer/add_funds", {"user_id": buyer, "password": PASSWORDS[buyer],
                                           "add_value": 100_000}).status_code == 200
    orders = {}
    for name, buyer in (("bob_unpaid", "az_bob"), ("bob_paid", "az_bob"),
                        ("bob_shipped", "az_bob"), ("carol_unpaid", "az_carol")):
        r = c.post("/buyer/new_order", {"user_id": buyer, "store_id": "az_store",
                                        "books": [{"id": "az_b1", "count": 1}]}, tokens[buyer])
        assert r.status_code == 200
        orders[name] = r.json()["order_id"]
    for name in ("bob_paid", "bob_shipped"):
        assert c.post("/buyer/payment", {"user_id": "az_bob", "order_id": orders[name],
                                         "password": PASSWORDS["az_bob"]}).status_code == 200
    assert c.post("/seller/ship", {"user_id": "az_alice", "order_id": orders["bob_shipped"]},
                  tokens["az_alice"]).status_code == 200
    yield backend, c, tokens, orders
    srv.stop()


def refused(backend, call, status=401):
    """The call gets ``status`` as JSON and changes no document."""
    before = snapshot(backend.db)
    r = call()
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    assert isinstance(r.json().get("message"), str)
    assert snapshot(backend.db) == before, r.request.url
    return r


def token_calls(c, user, token, orders):
    """Every token-checked call, as ``user`` with ``token``, on things ``user`` may
    otherwise use: with a good token none of these is refused with 401."""
    return {
        "balance": lambda: c.get("/buyer/balance", {"user_id": user}, token),
        "buyer_orders": lambda: c.get("/buyer/orders", {"user_id": user}, token),
        "order": lambda: c.get(f"/orders/{orders['bob_unpaid']}", {"user_id": user}, token),
        "new_order": lambda: c.post("/buyer/new_order", {
            "user_id": user, "store_id": "az_store", "books": [{"id": "az_b1", "count": 1}]},
            token),
        "cancel": lambda: c.post("/buyer/cancel_order",
                                 {"user_id": user, "order_id": orders["bob_unpaid"]}, token),
        "receive": lambda: c.post("/buyer/receive",
                                  {"user_id": user, "order_id": orders["bob_shipped"]}, token),
        "logout": lambda: c.post("/auth/logout", {"user_id": user}, token),
    }


def test_tampered_tokens_are_401(az):
    backend, c, tokens, orders = az
    good = tokens["az_bob"]
    digest = hashlib.sha256(good.encode()).hexdigest()  # what the sessions collection holds
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    tampered = [flipped, good[:-1], good + "x", good.upper(), good + "\\x00", digest,
                "", "null", "undefined", "Bearer " + good, good[::-1], "x" * 5000,
                '{"$ne": ""}', "*"]
    n = 0
    for bad in tampered:
        for name, call in token_calls(c, "az_bob", bad, orders).items():
            refused(backend, call)
            n += 1
    for name, call in token_calls(c, "az_bob", None, orders).items():  # no token header
        refused(backend, call)
        n += 1
    # the good token still works for all of them
    assert c.get("/buyer/balance", {"user_id": "az_bob"}, good).status_code == 200
    print(f"\ntampered tokens: {n} refused calls")


def test_other_users_tokens_are_401(az):
    backend, c, tokens, orders = az
    for thief in ("az_carol", "az_alice", "az_dave"):
        for name, call in token_calls(c, "az_bob", tokens[thief], orders).items():
            refused(backend, call)
    # bob's token still fine after all that (logout with a wrong token did nothing)
    assert c.get("/buyer/balance", {"user_id": "az_bob"}, tokens["az_bob"]).status_code == 200


def test_nobody_touches_anothers_order(az):
    backend, c, tokens, orders = az
    t = tokens
    # carol (another buyer) with her own valid token, naming herself
    for name in ("bob_unpaid", "bob_paid", "bob_shipped"):
        oid = orders[name]
        refused(backend, lambda: c.get(f"/orders/{oid}", {"user_id": "az_carol"}, t["az_carol"]))
        refused(backend, lambda: c.post("/buyer/cancel_order",
                                        {"user_id": "az_carol", "order_id": oid}, t["az_carol"]))
        refused(backend, lambda: c.post("/buyer/receive",
                                        {"user_id": "az_carol", "order_id": oid}, t["az_carol"]))
        refused(backend, lambda: c.post("/buyer/payment", {
            "user_id": "az_carol", "order_id": oid, "password": PASSWORDS["az_carol"]}))
        # dave sells too, but not this order
        refused(backend, lambda: c.post("/seller/ship",
                                        {"user_id": "az_dave", "order_id": oid}, t["az_dave"]))
        refused(backend, lambda: c.get(f"/orders/{oid}", {"user_id": "az_dave"}, t["az_dave"]))
        # the seller ships, but is not the buyer: cannot cancel, receive or pay
        refused(backend, lambda: c.post("/buyer/cancel_order",
                                        {"user_id": "az_alice", "order_id": oid}, t["az_alice"]))
        refused(backend, lambda: c.post("/buyer/receive",
                                        {"user_id": "az_alice", "order_id": oid}, t["az_alice"]))
        # the buyer cannot ship his own order
        refused(backend, lambda: c.post("/seller/ship",
                                        {"user_id": "az_bob", "order_id": oid}, t["az_bob"]))
    # another's password does not pay an order either
    refused(backend, lambda: c.post("/buyer/payment", {
        "user_id": "az_bob", "order_id": orders["bob_unpaid"], "password": PASSWORDS["az_carol"]}))
    # lists show only one's own
    r = c.get("/buyer/orders", {"user_id": "az_carol"}, t["az_carol"])
    assert {o["order_id"] for o in r.json()["orders"]} == {orders["carol_unpaid"]}
    r = c.get("/seller/orders", {"user_id": "az_dave"}, t["az_dave"])
    assert r.json()["orders"] == [] and r.json()["total"] == 0
    # the parties themselves can read it
    for user in ("az_bob", "az_alice"):
        r = c.get(f"/orders/{orders['bob_paid']}", {"user_id": user}, t[user])
        assert r.status_code == 200 and r.json()["order"]["state"] == "paid"


def test_nobody_touches_anothers_store_or_money(az):
    backend, c, tokens, orders = az
    t = tokens
    refused(backend, lambda: c.post("/seller/add_book", {
        "user_id": "az_dave", "store_id": "az_store", "stock_level": 5,
        "book_info": {"id": "az_intruder", "title": "x"}}, t["az_dave"]))
    refused(backend, lambda: c.post("/seller/add_stock_level", {
        "user_id": "az_dave", "store_id": "az_store", "book_id": "az_b1",
        "add_stock_level": 1000}, t["az_dave"]))
    refused(backend, lambda: c.get("/seller/books", {"user_id": "az_dave", "store_id": "az_store"},
                                   t["az_dave"]))
    # issue 12: another store's listing, whatever the call, and even naming its owner
    listing = {"user_id": "az_dave", "store_id": "az_store", "book_id": "az_b1"}
    for path, extra in (("/seller/update_book", None), ("/seller/set_price", {"price": 1}),
                        ("/seller/set_stock_level", {"stock_level": 0}),
                        ("/seller/unlist_book", {}), ("/seller/relist_book", {})):
        body = dict(listing, **extra) if extra is not None else {
            "user_id": "az_dave", "store_id": "az_store",
            "book_info": {"id": "az_b1", "title": "defaced", "price": 1}}
        refused(backend, lambda: c.post(path, body, t["az_dave"]))
        refused(backend, lambda: c.post(path, dict(body, user_id="az_alice"), t["az_dave"]))
    refused(backend, lambda: c.get("/seller/orders", {"user_id": "az_dave", "store_id": "az_store"},
                                   t["az_dave"]))
    # naming the owner but holding another's token
    refused(backend, lambda: c.post("/seller/add_stock_level", {
        "user_id": "az_alice", "store_id": "az_store", "book_id": "az_b1",
        "add_stock_level": 1000}, t["az_dave"]))
    # taking over the store id is "exists", not a new owner
    refused(backend, lambda: c.post("/seller/create_store",
                                    {"user_id": "az_dave", "store_id": "az_store"}, t["az_dave"]),
            514)
    # someone else's money
    refused(backend, lambda: c.post("/buyer/add_funds", {
        "user_id": "az_bob", "password": PASSWORDS["az_carol"], "add_value": -100_000}))
    refused(backend, lambda: c.get("/buyer/balance", {"user_id": "az_bob"}, t["az_carol"]))
    refused(backend, lambda: c.post("/auth/password", {
        "user_id": "az_bob", "oldPassword": PASSWORDS["az_carol"], "newPassword": "mine now"}))
    refused(backend, lambda: c.post("/auth/unregister", {
        "user_id": "az_bob", "password": PASSWORDS["az_carol"]}))
    store = backend.db.stores.find_one({"_id": "az_store"})
    assert store["owner_id"] == "az_alice"


def test_logged_out_token_is_401(az):
    backend, c, tokens, orders = az
    token = c.login("az_carol")
    assert c.post("/auth/logout", {"user_id": "az_carol"}, token).status_code == 200
    for name, call in token_calls(c, "az_carol", token, orders).items():
        refused(backend, call)
    # the other session of carol is untouched
    assert c.get("/buyer/balance", {"user_id": "az_carol"}, tokens["az_carol"]).status_code == 200


def test_expired_token_is_401(az):
    backend, c, tokens, orders = az
    token = c.login("az_dave")
    backend.clock.advance(backend.settings.token_lifetime_s - 1)
    assert c.get("/buyer/balance", {"user_id": "az_dave"}, token).status_code == 200
    backend.clock.advance(1)
    for name, call in token_calls(c, "az_dave", token, orders).items():
        refused(backend, call)
    # every token from before is as old: log everyone in again for the tests after
    for user in PASSWORDS:
        tokens[user] = c.login(user)


def test_retired_tokens_after_password_change_and_unregister_are_401(az):
    backend, c, tokens, orders = az
    for user in ("az_retire1", "az_retire2"):
        PASSWORDS[user] = user + "-Secret-pw-1"
        assert c.post("/auth/register", {"user_id": user, "password": PASSWORDS[user]}).status_code == 200
    t1a, t1b = c.login("az_retire1"), c.login("az_retire1")
    old = PASSWORDS["az_retire1"]
    PASSWORDS["az_retire1"] = "az_retire1-New-pw-2"
    assert c.post("/auth/password", {"user_id": "az_retire1", "oldPassword": old,
                                     "newPassword": PASSWORDS["az_retire1"]}).status_code == 200
    for token in (t1a, t1b):
        refused(backend, lambda: c.get("/buyer/balance", {"user_id": "az_retire1"}, token))
    t2 = c.login("az_retire2")
    assert c.post("/auth/unregister", {"user_id": "az_retire2",
                                       "password": PASSWORDS["az_retire2"]}).status_code == 200
    r = c.get("/buyer/balance", {"user_id": "az_retire2"}, t2)
    assert r.status_code in (401, 511)  # a closed account is no user any more
    refused(backend, lambda: c.post("/auth/login", {"user_id": "az_retire2",
                                                    "password": PASSWORDS["az_retire2"],
                                                    "terminal": "t"}))


def test_no_password_or_hash_in_any_response_or_log(az, caplog, monkeypatch):
    """Run a sample of every kind of call, failing ones included (and one that fails
    inside the server, so the error log runs), with every logger at DEBUG; then look
    for passwords and hashes in all that was said."""
    from be.model import users as users_model
    backend, c, tokens, orders = az
    caplog.set_level(logging.DEBUG)
    user = "az_leak"
    PASSWORDS[user] = "leak-Check-Password-42"
    c.post("/auth/register", {"user_id": user, "password": PASSWORDS[user]})
    c.post("/auth/register", {"user_id": user, "password": PASSWORDS[user]})  # 512
    token = c.login(user)
    c.post("/auth/login", {"user_id": user, "password": PASSWORDS[user] + "x", "terminal": "t"})
    c.post("/auth/login", {"user_id": user, "password": {"$ne": PASSWORDS[user]}, "terminal": "t"})
    c.post("/auth/login", {"user_id": user, "password": PASSWORDS[user] * 200, "terminal": "t"})
    c.post("/buyer/add_funds", {"user_id": user, "password": PASSWORDS[user], "add_value": 10})
    c.post("/buyer/add_funds", {"user_id": user, "password": PASSWORDS[user], "add_value": "10"})

    def broken(ctx, user_id, password, add_value):
        raise RuntimeError("the database went away")
    with monkeypatch.context() as m:
        m.setattr(users_model, "add_funds", broken)
        r = c.post("/buyer/add_funds", {"user_id": user, "password": PASSWORDS[user],
                                        "add_value": 10})
        assert r.status_code == 500 and r.json() == {"message": "internal error"}
    c.post("/buyer/payment", {"user_id": user, "password": PASSWORDS[user], "order_id": "none"})
    c.post("/buyer/payment", {"user_id": user, "password": PASSWORDS[user],
                              "order_id": orders["bob_unpaid"]})
    c.get("/buyer/balance", {"user_id": user}, token)
    c.get("/buyer/orders", {"user_id": user, "page": "x"}, token)
    c.post("/auth/password", {"user_id": user, "oldPassword": PASSWORDS[user] + "x",
                              "newPassword": "Next-Password-43"})
    c.post("/auth/password", {"user_id": user, "oldPassword": PASSWORDS[user],
                              "newPassword": "Next-Password-43"})
    PASSWORDS[user + "_next"] = "Next-Password-43"
    c.post("/auth/unregister", {"user_id": user, "password": "wrong"})
    c.post("/auth/unregister", {"user_id": user, "password": "Next-Password-43"})
    c.session.post(c.url + "auth/login", data=b'{"user_id": "az_leak", "password": "Next-Pass',
                   headers={"Content-Type": "application/json"})  # truncated JSON
    hashes = [u["password_hash"] for u in backend.db.users.find({"password_hash": {"$exists": 1}})]
    assert hashes  # the other users are still open
    secrets = list(PASSWORDS.values()) + hashes + [h.split("$")[-1] for h in hashes]
    said = [f"{m} {u} {s} {text}" for m, u, s, text in BODIES]
    said += [r.getMessage() for r in caplog.records]
    errors_logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors_logged) == 1 and "unhandled" in errors_logged[0].getMessage(), caplog.text
    assert [b[2] for b in BODIES].count(500) == 1  # only the forced one
    said += [caplog.text]
    for text in said:
        for secret in secrets:
            assert secret not in text, (secret, text[:300])
        assert "pbkdf2:" not in text and "scrypt:" not in text, text[:300]
        assert "password_hash" not in text, text[:300]
    print(f"\nchecked {len(BODIES)} response bodies and {len(caplog.records)} log records")
