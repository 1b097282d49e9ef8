"""The binary uwsgi protocol: packets as nginx's uwsgi_pass builds them."""

from __future__ import annotations

import socket
import struct

import pytest

from vassal.protocols import http as H
from vassal.protocols import uwsgi as U


def test_packet_layout() -> None:
    pkt = U.encode_packet({"A": "bc"}, b"body")
    assert pkt[:4] == struct.pack("<BHB", 0, 2 + 1 + 2 + 2, 0)
    assert pkt[4:11] == b"\x01\x00A\x02\x00bc"
    assert pkt[11:] == b"body"


def test_round_trip_through_a_socket() -> None:
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/p", "CONTENT_LENGTH": "3", "HTTP_X": "\u00e9"}
    a, b = socket.socketpair()
    with a, b:
        b.sendall(U.encode_packet(env, b"xyz"))
        b.close()
        reader = H.Reader(a)
        m1, m2, got, count, size = U.read_request(reader)
        assert (m1, m2, count) == (0, 0, 8)
        assert got["HTTP_X"].encode("latin-1").decode() == "\u00e9"
        assert got["PATH_INFO"] == "/p"
        assert size == len(U.encode_vars(env))
        assert H.request_body(reader, got).read() == b"xyz"
        assert U.read_request(reader) is None


def test_truncated_vars_block() -> None:
    with pytest.raises(H.BadRequest):
        U.decode_vars(b"\x05\x00AB")
    a, b = socket.socketpair()
    with a, b:
        b.sendall(struct.pack("<BHB", 0, 100, 0) + b"\x01\x00")
        b.close()
        with pytest.raises(H.BadRequest):
            U.read_request(H.Reader(a))


def test_vars_block_over_buffer_size_is_dropped_without_answer() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(U.encode_packet({"HTTP_COOKIE": "x" * 5000}))
        with pytest.raises(H.BadRequest) as info:
            U.read_request(H.Reader(a), 4096)
    assert info.value.status == 0 and "invalid request block size" in str(info.value)
