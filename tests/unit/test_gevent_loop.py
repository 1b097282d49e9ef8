"""The gevent loop's check for a request already waiting on a new connection."""

from __future__ import annotations

import socket

from vassal.gevent_loop import _pending


def test_pending_says_whether_bytes_wait_without_reading_them() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert not _pending(a.fileno())
        b.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert _pending(a.fileno())
        assert a.recv(100) == b"GET / HTTP/1.1\r\n\r\n"  # nothing was consumed
        assert not _pending(a.fileno())
        fd = a.fileno()
    assert not _pending(fd)  # closed since: no


def test_pending_on_tcp() -> None:
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        with socket.create_connection(ls.getsockname()) as c:
            s, _ = ls.accept()
            with s:
                assert not _pending(s.fileno())
                c.sendall(b"x")  # loopback: queued at the peer when sendall returns
                assert _pending(s.fileno())
