"""The HTTP edge as a client developer meets it: CORS for browser pages on other
origins, ``Authorization: Bearer`` tokens, JSON for doubled slashes and for what
waitress refuses itself (431, malformed HTTP), and error messages that say what
to send instead (money in integer cents, pictures without a data URL prefix)."""
import base64
import socket
import uuid

import pytest
import requests

from be.api import create_app
from be.backend import Backend
from be.config import Settings
from fe import conf
from fe.serving import ThreadedServer

SHOP = "https://shop.example"


def url(path, base=None):
    return (base or conf.URL) + path.lstrip("/")


def assert_json(r, status):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert isinstance(r.json()["message"], str) and "<html" not in r.text.lower()
    return r.json()["message"]


def new_user(base=None):
    uid, pw = f"edge_{uuid.uuid4().hex[:8]}", "pw"
    assert requests.post(url("/auth/register", base),
                         json={"user_id": uid, "password": pw}).status_code == 200
    token = requests.post(url("/auth/login", base), json={
        "user_id": uid, "password": pw, "terminal": "t"}).json()["token"]
    return uid, token


# ---------------------------------------------------------------- CORS

@pytest.fixture(scope="module")
def cors_server():
    settings = Settings.from_env(mongodb_uri="", password_method="pbkdf2:sha256:1000",
                                 cors_origins=(SHOP, "http://localhost:3000"))
    srv = ThreadedServer(Backend(settings), threads=2)
    yield srv.url
    srv.stop()


def preflight(base, path, origin, method="POST", headers="token, content-type"):
    return requests.options(url(path, base), headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers})


def test_a_preflight_from_an_allowed_origin_gets_methods_and_headers(cors_server):
    r = preflight(cors_server, "/buyer/new_order", SHOP)
    assert_json(r, 200)
    h = r.headers
    assert h["Access-Control-Allow-Origin"] == SHOP and "Origin" in h["Vary"]
    assert {m.strip() for m in h["Access-Control-Allow-Methods"].split(",")} >= {"POST"}
    allowed = {x.strip().lower() for x in h["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {"token", "authorization", "idempotency-key", "content-type"}
    assert int(h["Access-Control-Max-Age"]) > 0
    r = preflight(cors_server, "/buyer/balance", "http://localhost:3000", method="GET")
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "GET" in r.headers["Access-Control-Allow-Methods"]


def test_calls_from_an_allowed_origin_can_read_the_reply_and_its_request_id(cors_server):
    uid, token = new_user(cors_server)
    r = requests.get(url("/buyer/balance", cors_server), params={"user_id": uid},
                     headers={"Origin": SHOP, "token": token})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == SHOP
    assert "X-Request-ID" in r.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Methods" not in r.headers  # only preflights get those
    r = requests.get(url("/no/such/route", cors_server), headers={"Origin": SHOP})
    assert_json(r, 404)
    assert r.headers["Access-Control-Allow-Origin"] == SHOP  # errors are readable too


def test_other_origins_get_no_cors_headers(cors_server):
    r = preflight(cors_server, "/buyer/new_order", "https://evil.example")
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Headers" not in r.headers
    assert "Origin" in r.headers["Vary"]
    r = requests.get(url("/ping", cors_server))  # no Origin: not a cross-origin call
    assert "Access-Control-Allow-Origin" not in r.headers


def test_no_origins_are_allowed_by_default():
    assert Settings.from_env(mongodb_uri="").cors_origins == ()
    r = preflight(conf.URL, "/buyer/new_order", SHOP)  # the session server: default settings
    assert_json(r, 200)
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    assert "Origin" not in r.headers.get("Vary", "")


def test_the_origins_come_from_the_environment_and_a_star_allows_any(monkeypatch):
    monkeypatch.setenv("BOOKSTORE_CORS_ORIGINS", f" {SHOP} ,, http://localhost:3000 ")
    assert Settings.from_env(mongodb_uri="").cors_origins == (SHOP, "http://localhost:3000")
    monkeypatch.setenv("BOOKSTORE_CORS_ORIGINS", "*")
    any_origin = Backend(Settings.from_env(mongodb_uri=""))
    client = create_app(any_origin).test_client()
    r = client.options("/auth/login", headers={"Origin": "https://anything.example",
                                               "Access-Control-Request-Method": "POST"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]


# ---------------------------------------------------------------- Bearer tokens

def test_a_bearer_token_works_wherever_the_token_header_does():
    uid, token = new_user()
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = requests.get(url("/buyer/balance"), params={"user_id": uid},
                         headers={"Authorization": f"{scheme} {token}"})
        assert r.status_code == 200 and r.json()["balance"] == 0
    store = f"edge_store_{uuid.uuid4().hex[:8]}"
    r = requests.post(url("/seller/create_store"), json={"user_id": uid, "store_id": store},
                      headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    r = requests.post(url("/auth/logout"), json={"user_id": uid},
                      headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200  # the session named by the Bearer token ends
    r = requests.get(url("/buyer/balance"), params={"user_id": uid},
                     headers={"Authorization": f"Bearer {token}"})
    assert assert_json(r, 401) == "authorization fail."


def test_a_wrong_or_foreign_authorization_is_refused_and_the_token_header_wins():
    uid, token = new_user()
    params = {"user_id": uid}
    for value in (f"Bearer {token}x", f"Basic {token}", token, "Bearer", ""):
        r = requests.get(url("/buyer/balance"), params=params, headers={"Authorization": value})
        assert_json(r, 401)
    r = requests.get(url("/buyer/balance"), params=params,
                     headers={"token": token, "Authorization": "Bearer nonsense"})
    assert r.status_code == 200
    r = requests.get(url("/buyer/balance"), params=params,
                     headers={"token": "nonsense", "Authorization": f"Bearer {token}"})
    assert_json(r, 401)


# ---------------------------------------------------------------- every reply JSON

def test_a_doubled_slash_is_a_json_308_to_the_single_slash_path():
    uid, token = new_user()
    r = requests.get(url("/buyer//balance"), params={"user_id": uid},
                     headers={"token": token}, allow_redirects=False)
    message = assert_json(r, 308)
    assert "/buyer/balance" in message and "doubled slash" in message
    assert r.headers["Location"].endswith(f"/buyer/balance?user_id={uid}")
    r = requests.get(url("/buyer//balance"), params={"user_id": uid}, headers={"token": token})
    assert r.status_code == 200 and r.history[0].status_code == 308  # followed: works
    r = requests.post(url("/auth//login"), json={"user_id": uid, "password": "pw",
                                                 "terminal": "t"}, allow_redirects=False)
    assert "/auth/login" in assert_json(r, 308)
    r = requests.post(url("/auth//login"), json={"user_id": uid, "password": "pw",
                                                 "terminal": "t"})
    assert r.status_code == 200 and r.json()["token"]  # method and body kept (308)


def test_headers_over_256_kib_get_a_json_431():
    r = requests.get(url("/ping"), headers={"X-Big": "a" * (256 * 1024)})
    message = assert_json(r, 431)
    assert message.startswith("Request Header Fields Too Large") and "256 KiB" in message
    assert len(r.headers["X-Request-ID"]) == 32
    assert requests.get(url("/ping")).status_code == 200  # the server is fine


def test_malformed_http_gets_a_json_400():
    host, port = conf.URL.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Content-Type: application/json" in head
    assert body == b'{"message": "Bad Request: Content-Length is invalid"}'


# ---------------------------------------------------------------- messages that help

@pytest.fixture(scope="module")
def seller():
    uid, token = new_user()
    store = f"edge_store_{uuid.uuid4().hex[:8]}"
    assert requests.post(url("/seller/create_store"), json={"user_id": uid, "store_id": store},
                         headers={"token": token}).status_code == 200
    return uid, token, store


def add_book(seller, **info):
    uid, token, store = seller
    return requests.post(url("/seller/add_book"), headers={"token": token}, json={
        "user_id": uid, "store_id": store, "stock_level": 1,
        "book_info": {"id": f"edge_book_{uuid.uuid4().hex[:8]}", "title": "T", **info}})


@pytest.mark.parametrize("price", [23.5, 23.0, "2350"])
def test_a_price_that_is_not_integer_cents_says_so(seller, price):
    message = assert_json(add_book(seller, price=price), 400)
    assert "'book_info.price'" in message and "whole number of cents" in message
    assert "2350" in message and repr(price) in message


def test_funds_that_are_not_integer_cents_say_so():
    uid, _ = new_user()
    r = requests.post(url("/buyer/add_funds"), json={"user_id": uid, "password": "pw",
                                                     "add_value": 10.5})
    assert "whole number of cents" in assert_json(r, 400)


def test_a_picture_sent_as_a_data_url_gets_a_hint(seller):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
    message = assert_json(add_book(seller, pictures=[png, f"data:image/png;base64,{png}"]), 400)
    assert message == ("book_info.pictures.1: not valid base64: send the base64 text alone, "
                       "without the data URL prefix 'data:image/png;base64,'")
    assert add_book(seller, pictures=[png]).status_code == 200
    assert "not valid base64" in assert_json(add_book(seller, pictures=["not base64!"]), 400)
