"""Timeouts end to end (issue 4): a separate ``python app.py`` on the embedded
engine, with a payment window of 1 s, a receipt window of 2 s and a sweep every
second. Real time has to pass here, so the tests poll the order over HTTP for the
expected outcome, with a bounded deadline."""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import requests

from be.sample_books import Book
from fe import conf
from fe.access.new_buyer import register_new_buyer
from fe.access.new_seller import register_new_seller

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT_S = 15
PRICE = 1234


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(what, probe, timeout=WAIT_S):
    """Poll ``probe`` every 0.2 s until it returns something truthy (returned), or fail."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"{what}: not seen within {timeout} s (last: {last!r})")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, BOOKSTORE_PAY_TIMEOUT_S="1", BOOKSTORE_RECEIVE_TIMEOUT_S="2",
               BOOKSTORE_SWEEP_INTERVAL_S="1", BOOKSTORE_PASSWORD_METHOD="pbkdf2:sha256:1000",
               PYTHONUNBUFFERED="1")
    env.pop("MONGODB_URI", None)
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--memory", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def up():
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            return requests.get(url + "ping", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        _until("server up", up)
        yield {"url": url, "proc": proc, "log": log_path}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)


@pytest.fixture
def shop(server, monkeypatch):
    """A seller with one book (stock 10) and a buyer with funds, on that server."""
    monkeypatch.setattr(conf, "URL", server["url"])
    tag = uuid.uuid4().hex[:8]
    seller = register_new_seller(f"t_seller_{tag}", "pw")
    store_id = f"t_store_{tag}"
    assert seller.create_store(store_id) == 200
    book = Book()
    book.id, book.title, book.price = f"t_book_{tag}", "Timeouts", PRICE
    assert seller.add_book(store_id, 10, book) == 200
    buyer = register_new_buyer(f"t_buyer_{tag}", "pw")
    assert buyer.add_funds(100000) == 200
    return {"seller": seller, "buyer": buyer, "store_id": store_id, "book_id": book.id}


def _stock(shop):
    code, reply = shop["seller"].books(shop["store_id"])
    assert code == 200
    (row,) = [b for b in reply["books"] if b["book_id"] == shop["book_id"]]
    return row["stock_level"]


def test_the_server_says_the_sweep_drives_timeouts(server):
    text = _until("start-up log line", lambda: "sweep" in server["log"].read_text()
                  and server["log"].read_text())
    assert "only driver" in text and "every 1s" in text


def test_an_unpaid_order_cancels_itself_and_gives_its_stock_back(shop):
    buyer = shop["buyer"]
    code, order_id = buyer.new_order(shop["store_id"], [(shop["book_id"], 3)])
    assert code == 200
    code, order = buyer.order(order_id)
    assert code == 200 and order["state"] == "unpaid" and order["pay_deadline"]
    assert _stock(shop) == 7

    def cancelled():
        order = buyer.order(order_id)[1]
        return order if order["state"] == "cancelled" else None

    order = _until("order cancelled by the timeout", cancelled)
    assert order["cancel_reason"] == "timeout"
    assert _stock(shop) == 10
    assert buyer.balance() == (200, 100000)
    assert buyer.payment(order_id) in (520, 521)  # too late: cancelled (521: it expired)


def test_a_shipped_order_is_received_automatically_and_the_seller_paid(shop):
    buyer, seller = shop["buyer"], shop["seller"]
    for _ in range(3):  # pay within the 1 s window (a very slow machine may miss it)
        code, order_id = buyer.new_order(shop["store_id"], [(shop["book_id"], 2)])
        assert code == 200
        code = buyer.payment(order_id)
        if code == 200:
            break
        assert code == 521
    assert code == 200
    assert seller.ship(order_id) == 200
    order = seller.order(order_id)[1]
    assert order["state"] == "shipped" and order["receive_deadline"]

    def received():
        order = seller.order(order_id)[1]
        return order if order["state"] == "received" else None

    order = _until("order received by the timeout", received)
    assert order["history"][-1]["by"] == "timeout"
    assert seller.balance() == (200, 2 * PRICE)
    assert buyer.balance() == (200, 100000 - 2 * PRICE)
    assert _stock(shop) == 8
    assert buyer.receive(order_id) == 520  # already received


def test_zz_the_server_stops_cleanly_on_sigterm(server):
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert "sweeper stopped" in server["log"].read_text()
