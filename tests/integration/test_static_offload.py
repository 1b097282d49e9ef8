"""offload-threads: a one-worker instance keeps answering while a slow client downloads.

The worker writes the response head, hands the file to an offload thread and goes back to
accept; the thread pushes the body as fast as the client reads it. Without offload threads
the only worker would be stuck in sendfile(2) until the slow client read everything.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tests.conftest import Procs, free_port, read_json, wait_until
from tests.fixtures.instance_helpers import APPS, get, start

BIG = 64 << 20  # far more than the socket buffers of both ends can hold


def _big_file(path: Path) -> bytes:
    """A sparse file with markers at both ends (cheap to make, easy to check)."""
    head, tail = b"BEGIN" + os.urandom(64), os.urandom(64) + b"END"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(BIG)
        f.seek(BIG - len(tail))
        f.write(tail)
    return head + tail


def _slow_client(port: int, target: str) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return s


def _read_all(s: socket.socket) -> bytes:
    chunks = []
    while data := s.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def test_worker_answers_while_a_slow_client_downloads(procs: Procs, tmp_path: Path) -> None:
    pub = tmp_path / "pub"
    pub.mkdir()
    markers = _big_file(pub / "big.bin")
    port, stats = free_port(), free_port()
    start(procs, "--wsgi-file", str(APPS / "hello.py"), "--static-map", f"/s={pub}", "--offload-threads", "1",
          "--processes", "1", "--master", "--socket-timeout", "60", "--stats", f"127.0.0.1:{stats}", port=port)
    slow = _slow_client(port, "/s/big.bin")
    try:
        # the worker handed the body over: it answers others while the slow client stalls
        status, body = get(port, "/", timeout=10)
        assert status == 200 and body
        def offloaded() -> dict | None:
            doc = read_json(stats)
            return doc if doc["workers"][0]["cores"][0]["offloaded_requests"] == 1 else None

        doc = wait_until(offloaded, 10, message="the offloaded request in the stats")
        assert doc["sockets"][0]["can_offload"] == 1
        assert doc["workers"][0]["cores"][0]["static_requests"] == 1
        data = _read_all(slow)
    finally:
        slow.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and f"Content-Length: {BIG}".encode() in head
    assert len(body) == BIG, "the offloaded body arrived whole"
    assert body.startswith(markers[:69]) and body.endswith(markers[69:])


def test_file_wrapper_bodies_are_offloaded_too(procs: Procs, tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x")
    markers = _big_file(tmp_path / "big.bin")
    app = tmp_path / "wrap.py"
    app.write_text(f"""
def application(env, start_response):
    if env["PATH_INFO"] != "/big":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"free"]
    f = open({str(tmp_path / "big.bin")!r}, "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return env["wsgi.file_wrapper"](f)
""")
    port = free_port()
    start(procs, "--wsgi-file", str(app), "--offload-threads", "2", "--processes", "1", "--master",
          "--socket-timeout", "60", port=port)
    slow = _slow_client(port, "/big")
    try:
        assert get(port, "/other", timeout=10) == (200, b"free")
        data = _read_all(slow)
    finally:
        slow.close()
    _head, _, body = data.partition(b"\r\n\r\n")
    assert len(body) == BIG and body.startswith(markers[:69]) and body.endswith(markers[69:])


def test_a_client_that_stops_reading_is_dropped(procs: Procs, tmp_path: Path) -> None:
    """No progress for socket-timeout seconds: the thread lets the transfer go."""
    pub = tmp_path / "pub"
    pub.mkdir()
    _big_file(pub / "big.bin")
    port = free_port()
    start(procs, "--wsgi-file", str(APPS / "hello.py"), "--static-map", f"/s={pub}", "--offload-threads", "1",
          "--processes", "1", "--master", "--socket-timeout", "1", port=port)
    slow = _slow_client(port, "/s/big.bin")
    try:
        slow.recv(100)  # the head went out; then we stall
        wait_until(lambda: _server_closed(port), 20, interval=0.5, message="the stalled transfer dropped")
    finally:
        slow.close()


def _server_closed(port: int) -> bool:
    """True once no connection to ``port`` is established on the server side (ss)."""
    import subprocess

    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return not out.strip()
