"""Response heads and start_response (PEP 3333) as the worker writes them."""

from __future__ import annotations

import socket
import sys

import pytest

from vassal.worker import _Response


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_head_adds_length_only_for_keepalive_and_bodies(pair) -> None:
    a, _ = pair
    r = _Response(a, "HTTP/1.1", True, "X-Extra: 1\r\n")
    r.start_response("200 OK", [("Content-Type", "text/plain")])
    head = r.head(5)
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Extra: 1\r\nContent-Length: 5\r\n\r\n"
    assert r.has_length and r.nheaders == 1 and r.head_bytes == len(head)
    closing = _Response(a, "HTTP/1.0", False, "")
    closing.start_response("200 OK", [])
    assert closing.head(5) == b"HTTP/1.0 200 OK\r\n\r\n"
    no_content = _Response(a, "HTTP/1.1", True, "")
    no_content.start_response("204 No Content", [])
    assert b"Content-Length" not in no_content.head(0) and no_content.has_length


def test_app_connection_close_header_ends_keepalive(pair) -> None:
    a, _ = pair
    r = _Response(a, "HTTP/1.1", True, "")
    r.start_response("200 OK", [("Connection", "close")])
    r.head(3)
    assert not r.keep


def test_start_response_twice_needs_exc_info(pair) -> None:
    a, _ = pair
    r = _Response(a, "HTTP/1.1", True, "")
    r.start_response("200 OK", [])
    with pytest.raises(AssertionError):
        r.start_response("500 Oops", [])
    try:
        raise ValueError("late")
    except ValueError:
        r.start_response("500 Internal Server Error", [], sys.exc_info())  # before the head: replaces
    assert r.status.startswith("500")


def test_exc_info_after_the_head_reraises(pair) -> None:
    a, b = pair
    r = _Response(a, "HTTP/1.1", True, "")
    write = r.start_response("200 OK", [])
    write(b"partial")
    assert b.recv(100).endswith(b"\r\n\r\npartial")
    try:
        raise KeyError("too late")
    except KeyError:
        with pytest.raises(KeyError):
            r.start_response("500 Oops", [], sys.exc_info())


def test_non_latin1_header_is_a_type_error(pair) -> None:
    a, _ = pair
    r = _Response(a, "HTTP/1.1", True, "")
    r.start_response("200 OK", [("X-Name", "\u20ac")])
    with pytest.raises(TypeError):
        r.head(0)


def test_http_answers_say_whether_the_connection_stays(pair) -> None:
    a, _ = pair

    def head(protocol: str, keep: bool, headers: list, length: int | None = 5) -> bytes:
        r = _Response(a, protocol, keep, "")
        r.http = True
        r.start_response("200 OK", headers)
        return r.head(length)

    assert b"Connection" not in head("HTTP/1.1", True, [])  # 1.1 stays open by default
    assert head("HTTP/1.1", False, []).endswith(b"\r\nConnection: close\r\n\r\n")
    assert head("HTTP/1.1", True, [], None).endswith(b"\r\nConnection: close\r\n\r\n")  # no length
    assert head("HTTP/1.0", True, []).endswith(b"\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection" not in head("HTTP/1.0", False, [])
    assert head("HTTP/1.1", True, [("Connection", "close")]).count(b"Connection") == 1
