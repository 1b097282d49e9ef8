"""Request-path settings read from the options, and the socket options of bound sockets."""

from __future__ import annotations

import socket

import pytest

from vassal.config import load_config
from vassal.sockets import bind_socket, socket_specs
from vassal.worker import WorkerSettings


def settings(*argv: str) -> WorkerSettings:
    return WorkerSettings.from_config(load_config(list(argv), {}), "2.0", None)


def test_timeouts_follow_uwsgi_names() -> None:
    s = settings()
    assert (s.head_timeout, s.keepalive_timeout) == (4.0, 60.0)
    s = settings("--socket-timeout", "7", "--http-timeout", "30")
    assert (s.head_timeout, s.keepalive_timeout) == (7.0, 30.0)
    s = settings("--http-headers-timeout", "2", "--http-keepalive=9")
    assert (s.head_timeout, s.keepalive_timeout) == (2.0, 9.0)
    assert settings("--http-keepalive").keepalive_timeout == 60.0  # alone: just "on"


def test_post_buffering_bufsize_is_at_least_post_buffering() -> None:
    s = settings("--post-buffering", "65536")
    assert (s.post_buffering, s.post_buffering_bufsize) == (65536, 65536)
    assert settings("--post-buffering", "100").post_buffering_bufsize == 8192


def test_write_error_family_and_file_wrapper() -> None:
    s = settings("--disable-write-exception", "--ignore-sigpipe", "--ignore-write-errors",
                 "--wsgi-disable-file-wrapper", "--http-auto-chunked", "--heartbeat", "3")
    assert (s.disable_write_exception, s.ignore_sigpipe, s.ignore_write_errors) == (True, True, True)
    assert (s.file_wrapper, s.auto_chunked, s.heartbeat) == (False, True, 3)
    assert settings().file_wrapper


def test_socket_protocols() -> None:
    items = [("socket", "a:1"), ("http-socket", "b:2"), ("http11-socket", "c:3"), ("http", "d:4"),
             ("master", "true")]
    assert socket_specs(items) == [("a:1", "uwsgi", "socket"), ("b:2", "http", "http-socket"),
                                   ("c:3", "http", "http11-socket"), ("d:4", "http", "http")]
    assert socket_specs(items[:1], "http")[0][1] == "http"
    assert socket_specs(items[:1], "HTTP11")[0][1] == "http"
    with pytest.raises(ValueError, match="protocol scgi: not supported"):
        socket_specs(items, "scgi")


def test_defer_accept_and_reuse_port_on_bound_sockets() -> None:
    ls = bind_socket("127.0.0.1:0", "http", defer_accept=4, reuse_port=True)
    with ls.sock:
        assert ls.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
        assert ls.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    ls = bind_socket("127.0.0.1:0", "http")
    with ls.sock:
        assert ls.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0
        assert ls.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
