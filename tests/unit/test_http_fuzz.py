"""Property-based fuzzing (hypothesis) of the request parsers: HTTP heads and bodies, and uwsgi
packets. Whatever the bytes, only the parser's own errors escape (BadRequest for a head or a
packet, BodyError for a body); valid requests round-trip into the environ and body they
describe."""

from __future__ import annotations

import random
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from vassal.protocols import http as H
from vassal.protocols import uwsgi as U

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FakeSock:
    """A socket whose recv hands out the given bytes in pieces of the chosen sizes."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.sizes = sizes or [65536]
        self.i = 0

    def recv(self, n: int, flags: int = 0) -> bytes:
        size = min(n, self.sizes[self.i % len(self.sizes)])
        self.i += 1
        out, self.data = self.data[:size], self.data[size:]
        return out


def parse(head: bytes) -> H.Request:
    return H.parse_request(head, "node", "8080", "10.0.0.1")


# --- heads: anything goes in, only BadRequest comes out ------------------------------------

#: bytes that matter to HTTP framing, to make random heads hit the interesting paths
NASTY = st.sampled_from([b"\r\n", b"\r", b"\n", b"\x00", b" ", b"\t", b":", b",", b"\x0b", b"\xff",
                         b"chunked", b"Content-Length", b"Transfer-Encoding", b"HTTP/1.1", b"0",
                         b"-", b"Host", b"%", b"?", b"Upgrade", b"Connection", b"close"])
CHUNKS = st.lists(st.one_of(NASTY, st.binary(max_size=12)), max_size=40).map(b"".join)


@FUZZ
@given(CHUNKS)
@example(b"GET / HTTP/1.1\r\nContent-Length: 1_0\r\n")
@example(b"GET /\xff HTTP/1.1\r\n")
def test_any_head_parses_or_is_refused(data: bytes) -> None:
    head = data + b"\r\n\r\n"
    try:
        req = parse(head)
    except H.BadRequest as exc:
        assert exc.status in (400, 431, 501, 505)
        return
    assert req.env["SERVER_PROTOCOL"] in ("HTTP/1.0", "HTTP/1.1")
    assert not (req.chunked and req.length)


def _outcome(head: bytes, previous: H.Request | None) -> tuple:
    """What a head becomes: its environ and framing, or the status it is refused with."""
    try:
        req = H.parse_request(head, "node", "8080", "10.0.0.1", H.MAX_HEADERS, previous)
    except H.BadRequest as exc:
        return ("refused", exc.status)
    return (req.env, req.length, req.chunked, req.upgrade, req.keep_alive, req.done, req.reusable,
            req.messages)


@FUZZ
@given(st.sampled_from([b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"HEAD /x HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
                        b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"]), CHUNKS)
@example(b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked")
@example(b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nConnection: close")
@example(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /y?q HTTP/1.1\r\nX-A: 1")
@example(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked")
def test_a_kept_parser_decides_the_next_head_as_a_new_one(first: bytes, data: bytes) -> None:
    # the connection's parser goes on with the next head after a bodiless request: whatever
    # that head is, it must come out as it does from a parser of its own
    previous = H.parse_request(first, "node", "8080", "10.0.0.1")
    assert previous.reusable
    head = data + b"\r\n\r\n"
    assert _outcome(head, previous) == _outcome(head, None)


def test_only_a_bodiless_kept_alive_request_leaves_its_parser() -> None:
    assert parse(b"GET / HTTP/1.1\r\n\r\n").reusable
    assert not parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").reusable
    assert not parse(b"GET / HTTP/1.0\r\n\r\n").reusable
    assert not parse(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n").reusable
    assert not parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").reusable
    assert not parse(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").reusable


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(1, 50), min_size=1, max_size=5),
       st.integers(16, 256))
def test_take_head_on_any_stream(data: bytes, sizes: list[int], limit: int) -> None:
    reader = H.Reader(FakeSock(data, sizes))  # type: ignore[arg-type]
    try:
        while reader.fill():
            head = reader.take_head(limit)
            if head is not None:
                assert head.endswith(b"\r\n\r\n") and len(head) <= limit
    except H.BadRequest as exc:
        assert exc.status == 431


# --- valid requests round-trip ---------------------------------------------------------------

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&'*+.^_`|~-",
                min_size=1, max_size=20)
VALUE = st.text("".join(chr(c) for c in range(0x21, 0x7f)) + " \t", max_size=40).map(str.strip)
# no "." or ".." segment: those are removed as uWSGI does (test_http_parser covers that)
PATH = st.lists(st.binary(min_size=1, max_size=8).filter(lambda p: p not in (b".", b"..")), max_size=5).map(
    lambda parts: "/" + "/".join(quote_from_bytes(p, safe="") for p in parts))
QUERY = st.text("abcdefghij=&%20+", max_size=20)
RESERVED = {"content-length", "transfer-encoding", "host", "connection", "upgrade", "expect"}


@FUZZ
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]), PATH,
       st.one_of(st.none(), QUERY), st.sampled_from(["HTTP/1.0", "HTTP/1.1"]),
       st.lists(st.tuples(TOKEN, VALUE), max_size=12), st.one_of(st.none(), st.integers(0, 10**12)))
def test_valid_heads_round_trip(method, path, query, version, headers, length) -> None:
    headers = [(k, v) for k, v in headers if k.lower().replace("_", "-") not in RESERVED]
    uri = path + ("?" + query if query is not None else "")
    lines = [f"{method} {uri} {version}"] + [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    req = parse(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    env = req.env
    assert list(env)[:9] == ["REQUEST_METHOD", "REQUEST_URI", "PATH_INFO", "QUERY_STRING",
                             "SERVER_PROTOCOL", "SCRIPT_NAME", "SERVER_NAME", "SERVER_PORT",
                             "REMOTE_ADDR"]
    assert (env["REQUEST_METHOD"], env["REQUEST_URI"], env["SERVER_PROTOCOL"]) == (method, uri, version)
    assert env["QUERY_STRING"] == (query or "")
    from urllib.parse import unquote_to_bytes

    assert env["PATH_INFO"] == unquote_to_bytes(path).decode("latin-1")
    expected: dict[str, str] = {}
    for k, v in headers:
        key = k.upper().replace("-", "_")
        if key != "CONTENT_TYPE":
            key = "HTTP_" + key
        expected[key] = expected[key] + ", " + v if key in expected else v
    for key, value in expected.items():
        assert env[key] == value
    assert req.length == (length or 0) and not req.chunked
    assert req.keep_alive == (version == "HTTP/1.1")


# --- chunked bodies --------------------------------------------------------------------------


def chunked(body: bytes, cuts: list[int], ext: bool, trailers: bool) -> bytes:
    out = b""
    pos = 0
    for cut in [*cuts, len(body)]:
        piece = body[pos:pos + cut] if cut else b""
        if piece:
            out += b"%x%s\r\n%s\r\n" % (len(piece), b";x=1" if ext else b"", piece)
        pos += len(piece)
        if pos >= len(body):
            break
    return out + b"0\r\n" + (b"T: v\r\n" if trailers else b"") + b"\r\n"


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), max_size=10), st.booleans(),
       st.booleans(), st.lists(st.integers(1, 700), min_size=1, max_size=4), st.booleans())
def test_chunked_bodies_round_trip(body, cuts, ext, trailers, sizes, by_lines) -> None:
    head = b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    reader = H.Reader(FakeSock(head + chunked(body, cuts, ext, trailers), sizes))  # type: ignore[arg-type]
    while (h := reader.take_head(4096)) is None:
        assert reader.fill()
    got = parse(h).body_reader(reader)
    if by_lines:
        data = b"".join(iter(got.readline, b""))
    else:
        data = b""
        while piece := got.read(random.Random(len(body)).randint(1, 100)):
            data += piece
    assert data == body
    assert got.complete and not got.overrun


@FUZZ
@given(CHUNKS, st.lists(st.integers(1, 30), min_size=1, max_size=3))
@example(b"fffffffffffffffffffff\r\n", [64])
def test_any_chunked_body_reads_or_fails_cleanly(data: bytes, sizes: list[int]) -> None:
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    reader = H.Reader(FakeSock(data, sizes))  # type: ignore[arg-type]
    try:
        body = parse(head).body_reader(reader, limit_post=1 << 16)
        body.read()
        body.drain(1 << 16)
    except (H.BadRequest, H.BodyError):
        pass


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 300), st.lists(st.integers(1, 40), min_size=1, max_size=3))
def test_known_length_bodies(data: bytes, length: int, sizes: list[int]) -> None:
    reader = H.Reader(FakeSock(data, sizes))  # type: ignore[arg-type]
    body = parse(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length).body_reader(reader)
    try:
        got = body.read()
    except H.BodyError:
        assume(len(data) < length)
        return
    assert got == data[:length]


# --- uwsgi packets ---------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_any_vars_block_decodes_or_is_refused(block: bytes) -> None:
    try:
        env, count = U.decode_vars(block)
    except H.BadRequest:
        return
    assert count >= len(env)


KEYS = st.binary(min_size=1, max_size=30)


@FUZZ
@given(st.dictionaries(KEYS, st.binary(max_size=200), max_size=20), st.binary(max_size=100),
       st.integers(0, 255), st.integers(0, 255), st.lists(st.integers(1, 50), min_size=1, max_size=3))
def test_uwsgi_packets_round_trip(env: dict[bytes, bytes], body: bytes, m1: int, m2: int,
                                  sizes: list[int]) -> None:
    packet = U.encode_packet(list(env.items()), body, m1, m2)  # type: ignore[arg-type]
    reader = H.Reader(FakeSock(packet, sizes))  # type: ignore[arg-type]
    got = None
    while got is None:
        got = U.take_packet(reader)
        if got is None:
            assert reader.fill()
    gm1, gm2, genv, count, size = got
    assert (gm1, gm2, count, size) == (m1, m2, 2 * len(env), len(packet) - 4 - len(body))
    assert genv == {k.decode("latin-1"): v.decode("latin-1") for k, v in env.items()}
    while reader.fill():
        pass
    assert reader.buf == body


@FUZZ
@given(st.binary(max_size=300), st.integers(4, 0xFFFF))
def test_any_uwsgi_stream_takes_or_is_refused(data: bytes, limit: int) -> None:
    reader = H.Reader(FakeSock(data, [len(data) or 1]))  # type: ignore[arg-type]
    reader.fill()
    try:
        U.take_packet(reader, limit)
    except H.BadRequest:
        pass
