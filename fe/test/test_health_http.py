"""/health and /ready over HTTP, on a server of their own whose clock the test moves:
ready only while the engine answers in time and the timeout driver has beaten
recently; 503 with the reason otherwise. Nothing sleeps: the stale heartbeat is
the clock moved past Settings.driver_max_age, the stuck engine is its lock held
by the test for longer than BOOKSTORE_READY_TIMEOUT_S (0.2 s here)."""
import pytest
import requests

from be.backend import Backend
from be.clock import ManualClock
from be.config import Settings
from be.watcher import Sweeper
from fe.serving import ThreadedServer


@pytest.fixture(scope="module")
def served():
    settings = Settings.from_env(mongodb_uri="", password_method="pbkdf2:sha256:1000",
                                 ready_timeout_s=0.2)
    backend = Backend(settings, clock=ManualClock())
    srv = ThreadedServer(backend, threads=2)
    yield backend, srv.url
    srv.stop()


def ready(base):
    r = requests.get(base + "ready", timeout=30)
    assert r.headers["Content-Type"] == "application/json"
    return r.status_code, r.json()


def test_health_answers_without_the_engine(served):
    backend, base = served
    lock = backend.engine.embedded.lock
    lock.acquire()  # a request stuck in the engine: /health does not care
    try:
        r = requests.get(base + "health", timeout=30)
    finally:
        lock.release()
    body = r.json()
    assert r.status_code == 200 and body["message"] == "ok" and body["status"] == "up"
    assert body["engine"] == "embedded" and body["uptime_s"] >= 0


def test_not_ready_until_the_sweep_has_run_then_ready(served):
    backend, base = served
    status, body = ready(base)
    assert status == 503 and body["ready"] is False
    assert body["message"] == "not ready: no timeout sweep has run yet in this process"
    assert body["engine"]["ok"] and body["engine"]["answered_ms"] >= 0
    Sweeper(backend).run_once()
    status, body = ready(base)
    assert status == 200 and body["ready"] is True and body["message"] == "ok"
    timeouts = body["timeouts"]
    assert timeouts["driver"] == "sweeper" and timeouts["age_s"] == 0
    assert timeouts["max_age_s"] == 3 * backend.settings.sweep_interval_s + 10
    assert timeouts["last_sweep"] == {"recovered": 0, "expired": 0, "received": 0, "errors": 0}
    assert timeouts["last_beat"] == timeouts["last_sweep_at"]


def test_a_stale_sweep_is_not_ready_and_a_fresh_one_is_again(served):
    backend, base = served
    Sweeper(backend).run_once()
    max_age = backend.settings.driver_max_age
    backend.clock.advance(max_age)
    assert ready(base)[0] == 200  # exactly at the bound: still fresh
    backend.clock.advance(1)
    status, body = ready(base)
    assert status == 503 and not body["timeouts"]["ok"] and body["engine"]["ok"]
    assert f"last ran {max_age + 1} s ago" in body["message"]
    assert "unpaid orders are not expiring" in body["message"]
    Sweeper(backend).run_once()
    assert ready(base)[0] == 200


def test_an_engine_held_past_the_bound_is_not_ready(served):
    backend, base = served
    Sweeper(backend).run_once()
    lock = backend.engine.embedded.lock
    lock.acquire()  # stands for a request that has stalled inside the engine
    try:
        status, body = ready(base)
    finally:
        lock.release()
    assert status == 503 and not body["engine"]["ok"]
    assert body["engine"]["answered_ms"] is None
    assert "did not answer within 0.2 s" in body["message"]
    assert body["timeouts"]["error"] == "not checked: the engine did not answer"
    assert ready(base)[0] == 200
