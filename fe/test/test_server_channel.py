"""be.server.make_server's connection (be.server.Channel): the main loop no longer
writes while a request thread runs, so these check every path that still needs it,
without timing anything: large and streamed replies, a reply past the high watermark
(the request thread waits for the main loop), pipelined requests and Connection: close."""
import socket
import threading
import time

import pytest

from be.server import Channel, make_server

BIG = 4 * 1024 * 1024


def wsgi(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/big":  # one write far larger than the socket's buffers
        body = b"x" * BIG
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":  # many writes, no length: chunked
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (bytes([65 + n % 26]) * 65536 for n in range(64))
    body = path.encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def server():
    # a low watermark: /stream outgrows it and its thread waits for the main loop
    srv = make_server(wsgi, "127.0.0.1", 0, threads=2, asyncore_use_poll=True,
                      outbuf_high_watermark=256 * 1024)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield srv
    srv.task_dispatcher.shutdown()
    srv.close()


def _exchange(port, raw, wait=0.0):
    """Send raw request bytes, read until the server closes; the bytes received.
    ``wait``: read only after that long, so the socket's buffers fill up first."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        time.sleep(wait)
        chunks = []
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def test_connections_are_channels(server):
    assert server.channel_class is Channel


def test_big_reply_arrives_whole(server):
    reply = _exchange(server.effective_port, b"GET /big HTTP/1.1\r\nHost: x\r\n"
                                             b"Connection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"x" * BIG


def test_streamed_reply_arrives_whole(server):
    reply = _exchange(server.effective_port, b"GET /stream HTTP/1.1\r\nHost: x\r\n"
                                             b"Connection: close\r\n\r\n", wait=0.3)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"chunked" in head.lower()
    data, rest = b"", body
    while True:  # de-chunk
        size, _, rest = rest.partition(b"\r\n")
        size = int(size, 16)
        if size == 0:
            break
        data, rest = data + rest[:size], rest[size + 2:]
    assert data == b"".join(bytes([65 + n % 26]) * 65536 for n in range(64))


def test_pipelined_requests_answered_in_order(server):
    raw = b"".join(f"GET /r{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(20))
    raw += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = _exchange(server.effective_port, raw)
    bodies = [part.split(b"\r\n\r\n", 1)[1][:len(f"/r{n}")]
              for n, part in enumerate(reply.split(b"HTTP/1.1 200 OK")[1:21])]
    assert bodies == [f"/r{n}".encode() for n in range(20)]
    assert reply.endswith(b"/last")
