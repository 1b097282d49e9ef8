"""Slow clients: a head drip-fed a byte at a time holds a file descriptor, never a worker.

Before the head phase was made non-blocking, each drip-fed connection occupied a single-
threaded worker for as long as the client kept sending (every recv restarted the 4 s socket
timeout), and with as many such connections as workers nothing else was answered.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.conftest import free_port, wait_until
from tests.fixtures.instance_helpers import APPS, get, start

HELLO = str(APPS / "hello.py")


class Dripper(threading.Thread):
    """Sends a request head one byte every ``every`` seconds; records how the server ended it."""

    def __init__(self, port: int, every: float = 0.2, limit: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=limit)
        # the server's head deadline runs from its accept, which is after this connect and
        # maybe before this thread gets to run on a loaded box: measure from here
        self.t0 = time.monotonic()
        self.sent = 0
        self.every = every
        self.limit = limit
        self.answer = b""
        self.closed_after: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = self.t0
        head = b"GET /slow HTTP/1.1\r\nHost: h\r\nX-Long: " + b"a" * 10000
        self.sock.setblocking(False)
        for byte in head:
            if self.stop.is_set() or time.monotonic() - t0 > self.limit:
                break
            # read first: an answer that came while we slept is taken before the next byte
            # (a byte sent to a closed socket brings a reset that can hide the answer)
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                data = None
            except OSError:  # reset: closed by the server
                self.closed_after = time.monotonic() - t0
                break
            if data is not None:
                self.answer += data
                if not data:
                    self.closed_after = time.monotonic() - t0
                    break
                continue
            try:
                self.sock.send(bytes([byte]))
            except OSError:
                self.closed_after = time.monotonic() - t0
                break
            self.sent += 1
            time.sleep(self.every)
        self.sock.close()


def test_drip_fed_heads_do_not_occupy_the_workers(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", HELLO, "--master", "--processes", "2", "--socket-timeout", "2",
          port=port)
    drippers = [Dripper(port) for _ in range(4)]
    for d in drippers:
        d.start()
    try:
        wait_until(lambda: all(d.sent >= 2 for d in drippers), 10,
                   message="every dripper has sent its first bytes")
        assert all(d.is_alive() for d in drippers)  # and is being held
        # both single-threaded workers are free for everyone else
        for _ in range(5):
            status, body = get(port, "/", timeout=10)
            assert status == 200 and body == b"Hello World"
        # and each drip-fed head is cut at the head deadline (2 s here), with a 408
        wait_until(lambda: all(d.closed_after is not None for d in drippers), 15,
                   message="the server to close every drip-fed connection")
        for d in drippers:
            assert d.closed_after >= 1.5, d.closed_after
            assert d.answer.startswith(b"HTTP/1.1 408 "), d.answer[:100]
    finally:
        for d in drippers:
            d.stop.set()


def test_silent_connection_is_closed_at_the_head_deadline(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", HELLO, "--socket-timeout", "1", "--no-defer-accept", port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t0 = time.monotonic()
        assert s.recv(100) == b""  # nothing sent, nothing owed: closed without an answer
        assert time.monotonic() - t0 >= 0.8
    assert get(port)[0] == 200


def test_keepalive_connections_wait_parked(procs) -> None:
    # more idle keep-alive connections than workers: every one is still served in turn
    port = free_port()
    start(procs, "--wsgi-file", HELLO, "--processes", "1", port=port)
    conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
    try:
        for _round in range(2):
            for c in conns:
                c.sendall(b"GET /ka HTTP/1.1\r\nHost: h\r\n\r\n")
                data = b""
                while b"Hello World" not in data:
                    chunk = c.recv(4096)
                    assert chunk, "closed"
                    data += chunk
    finally:
        for c in conns:
            c.close()


def test_drip_fed_uwsgi_packets_do_not_occupy_the_worker(procs, tmp_path) -> None:
    """The uwsgi protocol gets the same head deadline: a packet head (or its vars) drip-fed
    to the one worker holds a descriptor, not the worker, and is dropped at the deadline."""
    from tests.conftest import IMPERIUM, port_open, read_to_close
    from vassal.protocols.uwsgi import encode_packet

    port = free_port()
    p = procs.start([IMPERIUM, "--socket", f"127.0.0.1:{port}", "--wsgi-file", HELLO, "--master",
                     "--processes", "1", "--socket-timeout", "2"], cwd=tmp_path)
    wait_until(lambda: p.poll() is not None or port_open(port), 20, message="instance")
    packet = encode_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.1",
                            "HTTP_HOST": "h", "X_PAD": "p" * 200})
    drips = []
    for cut in (2, 40):  # inside the 4-byte head, inside the vars
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(packet[:cut])
        drips.append(s)
    try:
        t0 = time.monotonic()
        for _ in range(3):  # the single worker answers everyone else meanwhile
            assert read_to_close(port, packet, timeout=3).startswith(b"HTTP/1.1 200 OK")
        for s in drips:
            assert s.recv(100) == b""  # closed without an answer, as uWSGI drops a bad packet
        assert 1.5 <= time.monotonic() - t0 < 10
    finally:
        for s in drips:
            s.close()
