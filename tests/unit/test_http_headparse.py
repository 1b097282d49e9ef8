"""The C accelerator of request heads (vassal/protocols/_headparse.c) against the Python path.

The accelerator answers only the plain case and says None for everything else; where it
answers, its environ (keys, values, order) and keep-alive decision must be exactly what
parse_request() gives, and it must never answer a head parse_request() refuses or frames
differently (a body, an upgrade). Random heads come from a grammar of near-valid requests
(the framing fields, odd spacing, dot segments, escapes, bytes above 0x7f) and from raw bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import need_service
from vassal.protocols import http as H
from vassal.scoreboard import VARS_SIZE, Scoreboard

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fast():
    if H.fast_parse is None:
        need_service("request head accelerator", False,
                     "the C accelerator (vassal/protocols/_headparse.c) was not compiled by the install")
    return H.fast_parse


METHODS = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get", b"G\x00T",
                           b"", b"CONNECT", b"PRI", b"GETX", b"MKCOL"])
TARGET_PARTS = st.sampled_from([b"/", b"a", b"..", b".", b"%2e", b"%20", b"%zz", b"%4", b"%", b"?", b"=",
                                b"&", b"#", b"\xc3\xa9", b"\x7f", b" ", b"*", b"http://h/", b"%C3%A9", b"~"])
TARGETS = st.lists(TARGET_PARTS, max_size=8).map(b"".join)
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1.",
                            b"HTTP/0.9", b"RTSP/1.0", b"HTTP/1.10"])
NAMES = st.sampled_from([b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"Transfer-Encoding",
                         b"Upgrade", b"Connection", b"X-Foo", b"x-foo", b"Content_Length", b"Content-Type",
                         b"Cookie", b"User-Agent", b"Bad Name", b"", b"X\xff", b"Accept", b"Expect",
                         b"Keep-Alive", b"Transfer_Encoding", b"A" * 40])
VALUES = st.one_of(
    st.sampled_from([b"close", b"Close", b"keep-alive", b"Keep-Alive", b"upgrade", b"", b" x ", b"\x00",
                     b"\r", b"\xe9t\xe9", b"5", b"0", b"chunked", b"1_0", b"a, close", b"\tv\t",
                     b"websocket", b"100-continue", b"localhost:8080"]),
    st.binary(max_size=10))
SEPS = st.sampled_from([b": ", b":", b" : ", b":\t", b" :"])
EOLS = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])
HEADERS = st.lists(st.tuples(NAMES, SEPS, VALUES, EOLS), max_size=12)


@st.composite
def heads(draw) -> bytes:
    line = draw(METHODS) + b" " + draw(TARGETS) + b" " + draw(VERSIONS)
    if draw(st.booleans()) and draw(st.booleans()):
        line = draw(st.sampled_from([line + b" ", b" " + line, line.replace(b" ", b"  ", 1)]))
    fields = b"".join(n + s + v + e for n, s, v, e in draw(HEADERS))
    return line + b"\r\n" + fields + b"\r\n"


def python_parse(head: bytes, max_headers: int) -> tuple[dict, bool, H.Request] | str:
    try:
        req = H.parse_request(head, "node", "8080", "10.0.0.1", max_headers)
    except H.BadRequest as exc:
        return f"refused {exc.status}: {exc}"
    return req.env, req.keep_alive, req


def check(fast, head: bytes, max_headers: int = H.MAX_HEADERS) -> bool:
    """True when the accelerator answered (and agreed), False when it handed the head over."""
    got = fast(head, "node", "8080", "10.0.0.1", max_headers)
    if got is None:
        assert fast(head, "node", "8080", "10.0.0.1", max_headers, BASE) is None
        return False
    want = python_parse(head, max_headers)
    assert not isinstance(want, str), f"C answered a head the Python path refuses ({want}): {head!r}"
    env, keep, req = want
    assert not req.length and not req.chunked and not req.upgrade, f"C answered a head with a body: {head!r}"
    assert list(got[0].items()) == list(env.items()), head
    assert got[1] is keep and got[2] is False, head
    # with the worker's base entries: after the request's, and left out of the log's figures
    based, keep2, written = fast(head, "node", "8080", "10.0.0.1", max_headers, BASE)
    assert list(based.items()) == list(env.items()) + list(BASE.items()) and keep2 is keep and not written
    assert H.packet_size(based, len(based) - len(BASE)) == H.packet_size(env)
    # and the stats server's record of it, as the scoreboard reads it back
    board = Scoreboard(1, 1)
    vmap, offsets = board.vars_slots(1)
    prefix = b"node\x008080\x0010.0.0.1\x00"
    *_, written = fast(head, "node", "8080", "10.0.0.1", max_headers, BASE, vmap, offsets[0], prefix, VARS_SIZE - 5)
    assert written is (len(prefix) + len(head) < VARS_SIZE - 5)
    if written:
        assert board.get_vars(1, 0) == [f"{k}={v}" for k, v in env.items()]
    return True


BASE = {"wsgi.version": (1, 0), "wsgi.run_once": False, "uwsgi.node": b"node"}


@FUZZ
@given(heads(), st.sampled_from([H.MAX_HEADERS, 1, 3]))
@example(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 100)
@example(b"GET /a%20b?x=%41 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 100)
@example(b"GET / HTTP/1.1\r\nX-Empty:\r\nHost: a\r\n\r\n", 100)
def test_accelerated_heads_match_the_python_path(fast, head: bytes, max_headers: int) -> None:
    check(fast, head, max_headers)


SAFE_NAMES = st.sampled_from([b"Host", b"host", b"X-Foo", b"User-Agent", b"Accept", b"Connection", b"Cookie",
                              b"Content-Type", b"X-Forwarded-For", b"If-None-Match", b"Referer", b"x_y",
                              b"A" * 40, b"Accept-Encoding", b"X-Real-IP"])
SAFE_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xff, blacklist_characters="\x7f"),
                      max_size=20).map(lambda t: t.strip().encode("latin-1"))


@st.composite
def plain_heads(draw) -> bytes:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"PUT"]))
    path = b"/" + b"/".join(draw(st.lists(st.sampled_from([b"a", b"b.c", b"%20", b"%C3%A9", b"%zz", b"x%4",
                                                            b"~u", b"", b"_-"]), max_size=5)))
    query = draw(st.sampled_from([b"", b"?", b"?a=1&b=%20", b"?x=/./..#"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    names = draw(st.lists(SAFE_NAMES, max_size=10, unique_by=lambda n: n.lower().replace(b"-", b"_")))
    fields = b"".join(n + b": " + draw(SAFE_VALUES) + b"\r\n" for n in names)
    return method + b" " + path + query + b" " + version + b"\r\n" + fields + b"\r\n"


@FUZZ
@given(plain_heads())
def test_plain_heads_are_answered_in_c_as_python_does(fast, head: bytes) -> None:
    assert check(fast, head), f"the accelerator left a plain head to Python: {head!r}"


@FUZZ
@given(st.binary(max_size=80))
def test_raw_bytes_match_the_python_path(fast, data: bytes) -> None:
    check(fast, b"GET / HTTP/1.1\r\n" + data + b"\r\n\r\n")
    check(fast, data + b"\r\n\r\n")


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.0\r\n\r\n",
    b"HEAD /%41%zz HTTP/1.1\r\nUser-Agent: wrk\r\nAccept: */*\r\nX-Long-Name-Here: v\r\n\r\n",
    b"DELETE /a HTTP/1.1\r\nConnection: close\r\nCookie: a=b\r\n\r\n",
    b"GET /" + b"%41b" * 400 + b"?q HTTP/1.1\r\n" + b"X" * 600 + b": long\r\n\r\n",  # heap buffers
])
def test_plain_heads_are_answered_in_c(fast, head: bytes) -> None:
    assert check(fast, head)


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",  # a body
    b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",  # framing fields: Python's checks
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # refused by the Python path
    b"GET / HTTP/1.1\r\nX-A: 1\r\nX-A: 2\r\n\r\n",  # joined by the Python path
    b"GET /a/../b HTTP/1.1\r\n\r\n",  # dot segments
    b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",  # bytes above 0x7f
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 1_0\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",  # too many
])
def test_other_heads_are_left_to_python(fast, head: bytes) -> None:
    assert fast(head, "node", "8080", "10.0.0.1", H.MAX_HEADERS) is None


def test_the_worker_uses_the_accelerator(fast) -> None:
    from vassal import worker

    assert worker._fast_parse is fast
