"""What an operator sees of the running server, over HTTP: the X-Request-ID of every
reply, one access log line per request, and /metrics in the Prometheus text format
(requests by route and status, order transitions, fired timers and the unfired
backlog, sweeps, the timeout driver's heartbeat, the engine lock wait).

The metrics are process-wide counters, so each check compares two scrapes around
the calls it makes."""
import json
import logging
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from be import heartbeat
from be.logs import JsonFormatter
from be.watcher import Sweeper
from fe import conf


def url(path):
    return conf.URL + path.lstrip("/")


def scrape():
    r = requests.get(url("/metrics"))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_of(samples, route, status, method="GET"):
    return value(samples, "bookstore_http_request_duration_seconds_count",
                 method=method, route=route, status=str(status))


def post(path, body, token=None):
    return requests.post(url(path), json=body, headers={"token": token} if token else {})


@pytest.fixture(scope="module")
def shop():
    """A seller with a store listing one book (1000 cents, stock 50) and a funded buyer."""
    def user(prefix):
        uid, pw = f"{prefix}_{uuid.uuid4().hex[:8]}", "pw"
        assert post("/auth/register", {"user_id": uid, "password": pw}).status_code == 200
        token = post("/auth/login", {"user_id": uid, "password": pw,
                                     "terminal": "t"}).json()["token"]
        return uid, pw, token
    seller, _, seller_token = user("obs_seller")
    store = f"obs_store_{uuid.uuid4().hex[:8]}"
    assert post("/seller/create_store", {"user_id": seller, "store_id": store},
                seller_token).status_code == 200
    assert post("/seller/add_book", {"user_id": seller, "store_id": store, "stock_level": 50,
                                     "book_info": {"id": "obs_book", "title": "T",
                                                   "price": 1000}},
                seller_token).status_code == 200
    buyer, password, token = user("obs_buyer")
    assert post("/buyer/add_funds", {"user_id": buyer, "password": password,
                                     "add_value": 100_000}).status_code == 200
    return {"store": store, "buyer": buyer, "password": password, "token": token,
            "seller": seller, "seller_token": seller_token}


def order(shop):
    r = post("/buyer/new_order", {"user_id": shop["buyer"], "store_id": shop["store"],
                                  "books": [{"id": "obs_book", "count": 1}]}, shop["token"])
    assert r.status_code == 200, r.text
    return r.json()["order_id"]


def pay(shop, order_id):
    return post("/buyer/payment", {"user_id": shop["buyer"], "order_id": order_id,
                                   "password": shop["password"]}).status_code


# ---------------------------------------------------------------- request ids

def test_every_reply_carries_a_request_id():
    ids = set()
    for method, path in (("GET", "/ping"), ("GET", "/no/such/route"), ("POST", "/ping"),
                         ("POST", "/auth/login"), ("GET", "/buyer//balance")):
        r = requests.request(method, url(path), allow_redirects=False)
        rid = r.headers["X-Request-ID"]
        assert len(rid) == 32 and int(rid, 16) >= 0, (path, rid)
        ids.add(rid)
    assert len(ids) == 5  # fresh for each request


def test_a_plausible_client_request_id_is_echoed_and_others_replaced():
    given = "client-7f3a.9:retry/2"
    assert requests.get(url("/ping"), headers={"X-Request-ID": given}).headers[
        "X-Request-ID"] == given
    for bad in ("has space", "x" * 129, "new\u2028line", "a;b"):
        echoed = requests.get(url("/ping"), headers={"X-Request-ID": bad.encode()}).headers[
            "X-Request-ID"]
        assert echoed != bad and len(echoed) == 32


# ---------------------------------------------------------------- access log

def test_one_access_log_line_per_request_with_route_status_duration_and_id(caplog, shop):
    caplog.set_level(logging.INFO, logger="bookstore.access")
    rid = "obs-" + uuid.uuid4().hex
    r = requests.get(url(f"/orders/{uuid.uuid4().hex}"), params={"user_id": shop["buyer"]},
                     headers={"token": shop["token"], "X-Request-ID": rid})
    assert r.status_code == 518
    mine = [rec for rec in caplog.records
            if rec.name == "bookstore.access" and rec.fields["request_id"] == rid]
    assert len(mine) == 1
    fields = mine[0].fields
    assert (fields["method"], fields["route"], fields["status"]) == (
        "GET", "/orders/<order_id>", 518)
    assert fields["path"].startswith("/orders/") and fields["duration_ms"] >= 0
    line = mine[0].getMessage()
    assert line.startswith("GET /orders/") and " 518 " in line and f"id={rid}" in line
    # the same record as a JSON line (BOOKSTORE_LOG_FORMAT=json)
    entry = json.loads(JsonFormatter().format(mine[0]))
    assert entry["logger"] == "bookstore.access" and entry["level"] == "INFO"
    assert {k: entry[k] for k in ("method", "route", "status", "request_id")} == {
        "method": "GET", "route": "/orders/<order_id>", "status": 518, "request_id": rid}


def test_the_access_log_escapes_control_characters_in_paths(caplog):
    caplog.set_level(logging.INFO, logger="bookstore.access")
    rid = uuid.uuid4().hex
    requests.get(url("/no/such%0Aroute"), headers={"X-Request-ID": rid})
    (rec,) = [r for r in caplog.records if getattr(r, "fields", {}).get("request_id") == rid]
    assert "\n" not in rec.getMessage() and "\\n" in rec.fields["path"]
    assert rec.fields["route"] == "<unmatched>"


# ---------------------------------------------------------------- metrics

def test_requests_are_counted_by_route_and_status():
    before = scrape()
    for _ in range(3):
        requests.get(url("/ping"))
    requests.get(url("/no/such/route"))
    requests.get(url(f"/orders/{uuid.uuid4().hex}"))  # no user_id: 400
    after = scrape()
    assert requests_of(after, "/ping", 200) - requests_of(before, "/ping", 200) == 3
    assert requests_of(after, "<unmatched>", 404) - requests_of(before, "<unmatched>", 404) == 1
    assert (requests_of(after, "/orders/<order_id>", 400)
            - requests_of(before, "/orders/<order_id>", 400)) == 1
    bucket = ("bookstore_http_request_duration_seconds_bucket",
              (("le", "+Inf"), ("method", "GET"), ("route", "/ping"), ("status", "200")))
    assert after[bucket] == requests_of(after, "/ping", 200)  # a latency histogram


def test_order_transitions_and_the_engine_lock_wait_are_counted(shop, backend):
    before = scrape()
    paid = order(shop)
    assert pay(shop, paid) == 200
    cancelled = order(shop)
    assert post("/buyer/cancel_order", {"user_id": shop["buyer"], "order_id": cancelled},
                shop["token"]).status_code == 200
    after = scrape()
    moved = {a: value(after, "bookstore_order_transitions_total", action=a)
             - value(before, "bookstore_order_transitions_total", action=a)
             for a in ("place", "pay", "cancel", "ship")}
    assert moved == {"place": 2, "pay": 1, "cancel": 1, "ship": 0}
    # four requests under the embedded engine's lock (the scrapes take none); on a
    # real MongoDB nothing waits for a lock
    waited = (value(after, "bookstore_engine_lock_wait_seconds_count")
              - value(before, "bookstore_engine_lock_wait_seconds_count"))
    assert waited == (4 if backend.engine.embedded is not None else 0)


def test_the_unfired_timer_backlog_its_firing_and_the_sweep(shop, backend):
    saved = backend.settings.pay_timeout_s
    backend.settings.pay_timeout_s = 0  # orders placed now are overdue at once
    try:
        overdue = order(shop)
    finally:
        backend.settings.pay_timeout_s = saved
    backlog = scrape()
    assert value(backlog, "bookstore_timers_overdue", kind="pay") >= 1
    assert value(backlog, "bookstore_timers_oldest_overdue_seconds", kind="pay") >= 0
    Sweeper(backend).run_once()  # what the server's sweeper thread does every second
    after = scrape()
    assert value(after, "bookstore_timers_overdue", kind="pay") == 0
    assert value(after, "bookstore_timers_oldest_overdue_seconds", kind="pay") == 0
    assert (value(after, "bookstore_timers_fired_total", kind="pay")
            - value(backlog, "bookstore_timers_fired_total", kind="pay")) >= 1
    assert (value(after, "bookstore_timer_lateness_seconds_count", kind="pay")
            - value(backlog, "bookstore_timer_lateness_seconds_count", kind="pay")) >= 1
    assert (value(after, "bookstore_order_transitions_total", action="expire")
            - value(backlog, "bookstore_order_transitions_total", action="expire")) >= 1
    assert (value(after, "bookstore_sweep_duration_seconds_count")
            - value(backlog, "bookstore_sweep_duration_seconds_count")) == 1
    assert (value(after, "bookstore_sweep_changes_total", outcome="expired")
            - value(backlog, "bookstore_sweep_changes_total", outcome="expired")) >= 1
    assert 0 <= value(after, "bookstore_sweep_last_run_age_seconds") < 60
    assert 0 <= value(after, "bookstore_timeout_driver_heartbeat_age_seconds") < 60
    assert pay(shop, overdue) == 521


def test_heartbeat_age_is_minus_one_without_a_driver(backend):
    beats = backend.db[heartbeat.COLLECTION]
    saved = beats.find_one({"_id": heartbeat.ID})
    beats.delete_one({"_id": heartbeat.ID})
    try:
        assert value(scrape(), "bookstore_timeout_driver_heartbeat_age_seconds") == -1
    finally:
        if saved is not None:
            beats.replace_one({"_id": heartbeat.ID}, saved, upsert=True)


def test_request_queue_gauges_are_exposed():
    samples = scrape()
    assert value(samples, "bookstore_request_queue_depth") >= 0
    assert value(samples, "bookstore_request_threads_busy") >= 1  # the scrape itself


def test_login_throttling_is_counted():
    """On a server of its own whose clock stands still, so the 1 s lockout after the
    fifth wrong password is still on when the sixth attempt comes."""
    from be.backend import Backend
    from be.clock import ManualClock
    from be.config import Settings
    from be.model import throttle
    from fe.serving import ThreadedServer
    settings = Settings.from_env(mongodb_uri="", password_method="pbkdf2:sha256:1000")
    srv = ThreadedServer(Backend(settings, clock=ManualClock()), threads=2)
    try:
        base = srv.url
        uid = f"obs_{uuid.uuid4().hex[:8]}"
        requests.post(base + "auth/register", json={"user_id": uid, "password": "right"})
        before = scrape()
        login = {"user_id": uid, "password": "wrong", "terminal": "t"}
        codes = [requests.post(base + "auth/login", json=login).status_code
                 for _ in range(throttle.FREE["user"] + 1)]
        assert codes == [401] * throttle.FREE["user"] + [429]
        after = scrape()
    finally:
        srv.stop()
    assert (value(after, "bookstore_login_lockouts_total", by="account")
            - value(before, "bookstore_login_lockouts_total", by="account")) == 1
    assert (value(after, "bookstore_login_throttled_total")
            - value(before, "bookstore_login_throttled_total")) == 1


def test_the_readme_names_only_metrics_that_exist_and_its_alerts_parse():
    import os
    import re

    import yaml
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"),
                  encoding="utf-8").read()
    section = readme[readme.index("## Operating the server"):readme.index("## Tools")]
    exposed = {name for name, _ in scrape()}

    def known(name):  # a sample, or a histogram's base name
        return name in exposed or f"{name}_count" in exposed

    named = set(re.findall(r"\bbookstore_[a-z_]+[a-z]", section))
    assert {n for n in named if not known(n)} == set()
    assert len(named) >= 20
    (rules,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    alerts = yaml.safe_load(rules)["groups"][0]["rules"]
    assert "BookstoreTimersNotFiring" in {a["alert"] for a in alerts}
    for alert in alerts:
        used = set(re.findall(r"bookstore_[a-z_]+[a-z]", alert["expr"]))
        assert used and all(known(n) for n in used), alert
