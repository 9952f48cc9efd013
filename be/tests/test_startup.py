"""Start-up failures end at once with one clear line and exit status 2: an
unreachable or malformed MONGODB_URI (for the server and the watcher), and a port
that another process holds. Real processes, as an operator would start them."""
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(args, **env):
    full = dict(os.environ, BOOKSTORE_CONNECT_TIMEOUT_S="1", **env)
    for name in [k for k, v in env.items() if v is None]:
        full.pop(name)
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.startswith(("bookstore:",
                                                                         "be.watcher:"))]
    return done.returncode, lines, done.stderr


@pytest.mark.parametrize("args", [["app.py", "--port", "0"], ["-m", "be.watcher"]])
def test_unreachable_mongodb_is_one_line_and_status_2(args):
    # port 1 on loopback: connection refused at once, every time
    code, lines, stderr = run(args, MONGODB_URI="mongodb://someone:s3cret@127.0.0.1:1/")
    assert code == 2, stderr
    assert len(lines) == 1 and "cannot reach MongoDB at 127.0.0.1:1 within 1 s" in lines[0]
    assert "Traceback" not in stderr and "s3cret" not in stderr


def test_malformed_uri_is_one_line_and_status_2():
    code, lines, stderr = run(["app.py"], MONGODB_URI="mongodb://[bad")
    assert code == 2 and len(lines) == 1 and "not a valid MongoDB URI" in lines[0], stderr
    assert "Traceback" not in stderr


def test_port_in_use_is_one_line_and_status_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines, stderr = run(["app.py", "--memory", "--port", str(port)],
                                  MONGODB_URI=None)
    assert code == 2, stderr
    assert lines == [f"bookstore: cannot listen on 127.0.0.1:{port}: another process is "
                     "listening there (stop it or pass --port)"]
    assert "Traceback" not in stderr
