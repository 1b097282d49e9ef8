"""The PROXY v1 line (vassal/protocols/proxy.py): what is believed, what is only consumed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vassal.protocols import proxy

REQ = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize("line,expected", [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n", {"REMOTE_ADDR": "1.2.3.4", "REMOTE_PORT": "1111",
                                                 "SERVER_ADDR": "5.6.7.8", "SERVER_PORT": "80"}),
    (b"PROXY TCP6 ::1 ::2 1 2\r\n", {"REMOTE_ADDR": "::1", "REMOTE_PORT": "1", "SERVER_ADDR": "::2",
                                     "SERVER_PORT": "2"}),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\n", {"REMOTE_ADDR": "1.2.3.4", "REMOTE_PORT": "1111",
                                               "SERVER_ADDR": "5.6.7.8", "SERVER_PORT": "80"}),
    (b"PROXY UNKNOWN\r\n", None), (b"PROXY TCP4 evil 5.6.7.8 1 2\r\n", None),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", None), (b"PROXY TCP4 1.2.3.4\r\n", None),
    (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", None),
])
def test_line(line: bytes, expected: dict | None) -> None:
    rest, got = proxy.take_line(line + REQ)
    assert rest == REQ and got == expected


def test_no_line_end_is_not_consumed() -> None:
    head = b"PROXY " + b"x" * 200 + REQ
    assert proxy.take_line(head) == (head, None)


@given(st.binary(max_size=150))
def test_never_fails(tail: bytes) -> None:
    rest, got = proxy.take_line(proxy.PREFIX + tail)
    assert isinstance(rest, bytes) and (got is None or set(got) == {"REMOTE_ADDR", "REMOTE_PORT", "SERVER_ADDR",
                                                                     "SERVER_PORT"})
