"""A real ``python app.py`` on a data folder, as an operator runs it: killed with
SIGKILL under a concurrent mixed workload it restarts with every change it
acknowledged and a clean audit; a torn or corrupt journal tail costs only the
damaged record; two servers never share a folder; and the plain run command
keeps the shop across restarts in ./data.

Every start is awaited by polling /ping with a deadline; every kill moment comes
from a seeded random generator (the seed is in the test's name).
"""
import base64
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from be.audit import TRANSITIONS, audit
from be.backend import Backend
from be.clock import ManualClock
from be.config import Settings
from be.model import search
from be.tests.support.datadirs import frames_of
from be.watcher import sweep

pytestmark = pytest.mark.embedded_only  # the embedded engine's data folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "pw"
START_DEADLINE_S = 60
FAST_HASH = "pbkdf2:sha256:1000"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra):
    env = dict(os.environ, BOOKSTORE_PASSWORD_METHOD=FAST_HASH, PYTHONUNBUFFERED="1", **extra)
    for name in ("MONGODB_URI", "BOOKSTORE_DATA_DIR"):
        env.pop(name, None)
    return env


class Server:
    """One ``python app.py`` process; ``start`` returns once /ping answers."""

    def __init__(self, args, log_path, cwd=ROOT, env=None):
        self.args, self.log_path, self.cwd = list(args), log_path, cwd
        self.env = env or server_env()
        self.proc = None
        self.url = None

    def start(self):
        port = _free_port()
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "app.py"), *self.args, "--port", str(port)],
                cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "ping", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)  # polling for the server to listen, with a deadline
        self.kill()
        pytest.fail(f"server not up within {START_DEADLINE_S} s:\n{self.log()}")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self):
        """SIGTERM: the clean shutdown (a snapshot)."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0, self.log()

    def log(self):
        with open(self.log_path) as f:
            return f.read()


def picture(book):
    """A book's own picture, 2 KiB: on a data folder it is kept in a file
    (be.embedded.blobs), written while the server may be killed."""
    return b"\x89PNG\r\n\x1a\n" + hashlib.sha256(book.encode()).digest() * 64


def call(session, url, path, body, token=None):
    """POST ``body``; the status code, or None when no reply came (a kill)."""
    try:
        reply = session.post(url + path, json=body, headers={"token": token} if token else {},
                             timeout=30)
    except requests.RequestException:
        return None, None
    return reply.status_code, reply.json() if reply.content else None


def reachable(state):
    """The states an order in ``state`` can be in later (itself included)."""
    seen, todo = {state}, [state]
    while todo:
        for later in TRANSITIONS[todo.pop()]:
            if later not in seen:
                seen.add(later)
                todo.append(later)
    return seen


class Progress:
    """Replies the workers got, so the test can kill after a drawn number of them."""

    def __init__(self):
        self.count = 0
        self.cv = threading.Condition()

    def tick(self):
        with self.cv:
            self.count += 1
            self.cv.notify_all()

    def wait_for(self, target, timeout=120):
        with self.cv:
            assert self.cv.wait_for(lambda: self.count >= target, timeout), \
                f"only {self.count} of {target} replies within {timeout} s"


class Worker:
    """One client thread: its own buyer, seller and store; it registers users, adds
    funds and books, orders, pays, ships, receives and cancels at random, and
    records what the server acknowledged (200) and what it only tried."""

    ACTIONS = ("register", "funds", "add_book", "order", "order", "order", "pay", "pay",
               "ship", "receive", "cancel")

    def __init__(self, n, seed):
        self.n = n
        self.rng = random.Random(seed * 1000 + n)
        self.buyer, self.seller, self.store = f"w{n}_buyer", f"w{n}_seller", f"w{n}_store"
        self.books = [f"w{n}_book{k}" for k in range(5)]
        self.users = {}            # user id -> password, registration acknowledged
        self.funds_acked = 0       # add_funds acknowledged (buyer)
        self.funds_tried = 0       # add_funds sent, acknowledged or not
        self.new_books = []        # add_book acknowledged
        self.orders = {}           # order id -> state after the last acknowledged action
        self.k = 0
        self.tokens = {}

    def setup(self, url):
        s = requests.Session()
        for uid in (self.buyer, self.seller):
            assert call(s, url, "auth/register", {"user_id": uid, "password": PASSWORD})[0] == 200
            code, body = call(s, url, "auth/login", {"user_id": uid, "password": PASSWORD,
                                                    "terminal": "crash-test"})
            assert code == 200
            self.tokens[uid] = body["token"]
        assert self._seller(s, url, "seller/create_store", {"store_id": self.store})[0] == 200
        for book in self.books:
            assert self._seller(s, url, "seller/add_book", {
                "store_id": self.store, "stock_level": 10**6,
                "book_info": {"id": book, "title": book, "price": 100}})[0] == 200
        assert self._funds(s, url, 10**7) == 200

    def _seller(self, s, url, path, body):
        return call(s, url, path, dict(body, user_id=self.seller), self.tokens[self.seller])

    def _buyer(self, s, url, path, body):
        return call(s, url, path, dict(body, user_id=self.buyer), self.tokens[self.buyer])

    def _funds(self, s, url, value):
        self.funds_tried += value
        code, _ = self._buyer(s, url, "buyer/add_funds", {"password": PASSWORD,
                                                          "add_value": value})
        if code == 200:
            self.funds_acked += value
        return code

    def _pick(self, states):
        ids = [oid for oid, st in self.orders.items() if st in states]
        return self.rng.choice(ids) if ids else None

    def run(self, url, stop, progress):
        s = requests.Session()
        while not stop.is_set():
            progress.tick()
            self.k += 1
            action = self.rng.choice(self.ACTIONS)
            if action == "register":
                uid = f"w{self.n}_user{self.k}"
                if call(s, url, "auth/register", {"user_id": uid, "password": uid})[0] == 200:
                    self.users[uid] = uid
            elif action == "funds":
                self._funds(s, url, self.rng.randint(1, 1000))
            elif action == "add_book":
                book = f"w{self.n}_new{self.k}"
                code, _ = self._seller(s, url, "seller/add_book", {
                    "store_id": self.store, "stock_level": 5,
                    "book_info": {"id": book, "title": book, "price": 7,
                                  "pictures": [base64.b64encode(picture(book)).decode()]}})
                if code == 200:
                    self.new_books.append(book)
            elif action == "order":
                lines = self.rng.sample(self.books, self.rng.randint(1, 3))
                code, body = self._buyer(s, url, "buyer/new_order", {
                    "store_id": self.store, "books": [{"id": b, "count": 1} for b in lines]})
                if code == 200:
                    self.orders[body["order_id"]] = "unpaid"
            else:
                path, party, states, after = {
                    "pay": ("buyer/payment", "buyer", {"unpaid"}, "paid"),
                    "ship": ("seller/ship", "seller", {"paid"}, "shipped"),
                    "receive": ("buyer/receive", "buyer", {"shipped"}, "received"),
                    "cancel": ("buyer/cancel_order", "buyer", {"unpaid", "paid"}, "cancelled"),
                }[action]
                oid = self._pick(states)
                if oid is None:
                    continue
                body = {"order_id": oid}
                if action == "pay":
                    body["password"] = PASSWORD
                send = self._buyer if party == "buyer" else self._seller
                code, _ = send(s, url, path, body)
                if code == 200:
                    self.orders[oid] = after

    def check_and_adopt(self, url):
        """After a restart: every acknowledged change is there; then continue from
        what the server holds (an unacknowledged action may or may not have landed)."""
        s = requests.Session()
        for uid, password in self.users.items():
            code, _ = call(s, url, "auth/login", {"user_id": uid, "password": password,
                                                  "terminal": "check"})
            assert code == 200, f"acknowledged registration of {uid} lost"
        for oid, acked in list(self.orders.items()):
            reply = s.get(url + f"orders/{oid}", params={"user_id": self.buyer},
                          headers={"token": self.tokens[self.buyer]}, timeout=30)
            assert reply.status_code == 200, f"acknowledged order {oid} lost: {reply.text}"
            state = reply.json()["order"]["state"]
            assert state in reachable(acked), f"order {oid}: acknowledged {acked}, found {state}"
            self.orders[oid] = state


def recovered(folder, settings_overrides=None):
    """The folder loaded in this process (the server is dead), after what the
    running system would do: time past the recovery lease, then a sweep."""
    settings = Settings.from_env(data_dir=str(folder), mongodb_uri="",
                                 password_method=FAST_HASH, **(settings_overrides or {}))
    clock = ManualClock()
    ctx = Backend(settings, clock=clock)
    clock.advance(settings.stuck_after_s + 1)
    sweep(ctx)
    return ctx


@pytest.mark.parametrize("seed", [20240611])
def test_sigkill_under_load_keeps_every_acknowledged_change(tmp_path, seed):
    folder = tmp_path / "data"
    server = Server(["--data-dir", str(folder)], tmp_path / "server.log").start()
    workers = [Worker(n, seed) for n in range(4)]
    try:
        for w in workers:
            w.setup(server.url)
        kills = random.Random(seed)
        for _ in range(4):
            stop, progress = threading.Event(), Progress()
            threads = [threading.Thread(target=w.run, args=(server.url, stop, progress))
                       for w in workers]
            for t in threads:
                t.start()
            # the kill comes after a number of calls drawn from the seeded generator,
            # with every worker's next request in flight
            progress.wait_for(kills.randint(50, 400))
            server.kill()
            stop.set()
            for t in threads:
                t.join(60)
            server.start()
            for w in workers:
                w.check_and_adopt(server.url)
        server.kill()
    finally:
        server.kill()
    assert sum(len(w.orders) for w in workers) > 20  # the load did something
    assert server.log().count("records replayed") == 5

    ctx = recovered(folder)
    try:
        violations = audit(ctx.db, settled=True)
        assert not violations, "\n".join(v.render() for v in violations)
        for w in workers:
            user = ctx.db.users.find_one({"_id": w.buyer})
            assert w.funds_acked <= user["deposited"] <= w.funds_tried
            for book in w.new_books:
                assert ctx.db.listings.count_documents({"store_id": w.store, "book_id": book}) == 1
                assert search.get_picture(ctx, book, 0, w.store) == (picture(book), "image/png")
            for oid, state in w.orders.items():  # as adopted after the last restart
                assert ctx.db.orders.find_one({"_id": oid})["state"] in reachable(state)
    finally:
        ctx.close()


def _registered(url, count, prefix="u"):
    s = requests.Session()
    for i in range(count):
        assert call(s, url, "auth/register", {"user_id": f"{prefix}{i}",
                                              "password": PASSWORD})[0] == 200


def _can_log_in(url, user_id):
    code, _ = call(requests.Session(), url, "auth/login", {"user_id": user_id,
                                                           "password": PASSWORD, "terminal": "t"})
    return code == 200


@pytest.mark.parametrize("damage", ["torn", "flipped"])
def test_a_damaged_journal_tail_costs_only_the_damaged_record(tmp_path, damage):
    folder = tmp_path / "data"
    server = Server(["--data-dir", str(folder)], tmp_path / "server.log").start()
    try:
        _registered(server.url, 6)
    finally:
        server.kill()
    journal = folder / "journal-00000001.log"
    offset, length, ops = frames_of(journal)[-1]
    assert [op["put"]["_id"] for op in ops if op["c"] == "users"] == ["u5"]
    with open(journal, "r+b") as f:
        if damage == "torn":
            f.truncate(offset + length // 2)
        else:
            f.seek(offset + length - 20)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
    server.start()
    try:
        assert all(_can_log_in(server.url, f"u{i}") for i in range(5))
        assert not _can_log_in(server.url, "u5")
        why = "torn frame" if damage == "torn" else "checksum mismatch"
        assert f"torn or corrupt record at byte {offset} ({why}" in server.log()
        _registered(server.url, 1, prefix="after")
    finally:
        server.kill()
    server.start()  # the cut journal goes on growing and reads back whole
    try:
        assert _can_log_in(server.url, "after0") and _can_log_in(server.url, "u4")
    finally:
        server.kill()


def test_a_second_server_on_the_folder_refuses_with_one_line(tmp_path):
    folder = tmp_path / "data"
    first = Server(["--data-dir", str(folder)], tmp_path / "first.log").start()
    try:
        done = subprocess.run([sys.executable, "app.py", "--data-dir", str(folder),
                               "--port", str(_free_port())], cwd=ROOT, env=server_env(),
                              capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("bookstore:")]
    assert lines == [f"bookstore: data folder {folder} is in use by another bookstore server "
                     f"(pid {first.proc.pid}): stop it, or give this one another --data-dir"]
    assert "Traceback" not in done.stderr


def test_the_plain_run_command_keeps_the_shop_in_data(tmp_path):
    server = Server([], tmp_path / "server.log", cwd=tmp_path).start()
    try:
        _registered(server.url, 1)
    finally:
        server.stop()  # Ctrl-C / SIGTERM: a clean shutdown writes a snapshot
    assert sorted(os.listdir(tmp_path / "data")) == [
        "LOCK", "journal-00000002.log", "snapshot-00000002.bson"]
    assert f"data folder {tmp_path / 'data'}: no snapshot" in server.log()
    server.start()
    try:
        assert _can_log_in(server.url, "u0")
        assert f"data folder {tmp_path / 'data'}: snapshot 2 (" in server.log()
    finally:
        server.stop()

    memory = Server(["--memory"], tmp_path / "memory.log", cwd=tmp_path / "elsewhere")
    os.mkdir(tmp_path / "elsewhere")
    memory.start()
    try:
        _registered(memory.url, 1)
    finally:
        memory.stop()
    assert os.listdir(tmp_path / "elsewhere") == []
    assert "in memory" in memory.log()
