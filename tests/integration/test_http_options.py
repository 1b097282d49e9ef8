"""Request-path options that only Imperium has to show (their uWSGI twins are in
tests/interop/test_request_options_vs_uwsgi.py): refusals by name and the timeouts."""

from __future__ import annotations

import socket
import time

from tests.conftest import IMPERIUM, free_port, wait_until
from tests.fixtures.instance_helpers import APPS, start

HELLO = str(APPS / "hello.py")


def test_unknown_protocol_is_refused_by_name(procs, tmp_path) -> None:
    p = procs.start([IMPERIUM, "--socket", f"127.0.0.1:{free_port()}", "--protocol", "fastcgi",
                     "--wsgi-file", HELLO])
    assert p.wait(20) != 0
    assert "protocol fastcgi: not supported here (uwsgi or http)" in procs.output(p)


def test_http_keepalive_value_is_the_idle_timeout(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", HELLO, "--http-keepalive=2", "--http-timeout", "60", port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        data = b""
        while not data.endswith(b"Hello World"):
            data += s.recv(4096)
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed by the server once idle for 2 s
        assert 1.5 <= time.monotonic() - t0 < 15


def test_http_headers_timeout_overrides_socket_timeout(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", HELLO, "--socket-timeout", "30", "--http-headers-timeout", "1",
          port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")
        t0 = time.monotonic()
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - t0 < 10


def test_the_answer_before_a_max_requests_recycle_says_close(procs) -> None:
    port = free_port()
    p = start(procs, "--wsgi-file", HELLO, "--max-requests", "2", port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        answers = b""
        for i in range(2):
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            while answers.count(b"Hello World") <= i:
                answers += s.recv(4096)
        assert answers.count(b"Connection: close") == 1
        assert answers.rindex(b"Connection: close") > answers.index(b"Hello World")
        assert s.recv(100) == b""
    wait_until(lambda: "...The work of process" in procs.output(p), 10, message="the recycle")
