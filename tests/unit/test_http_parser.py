"""The http-socket parser: environ like uWSGI 2.0's proto/http.c, bodies, pipelining."""

from __future__ import annotations

import socket

import pytest

from vassal.protocols import http as H


def parse(head: bytes) -> dict:
    env, _count, _size = H.parse_head(head, "node", "8080", "10.0.0.1")
    return env


def test_request_line_and_cgi_vars() -> None:
    env = parse(b"GET /a/b%20c/?x=1&y=%2F HTTP/1.1\r\nHost: example.org:8080\r\nX-Some_Under: u")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["REQUEST_URI"] == "/a/b%20c/?x=1&y=%2F"
    assert env["PATH_INFO"] == "/a/b c/"
    assert env["QUERY_STRING"] == "x=1&y=%2F"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SCRIPT_NAME"] == ""
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["REMOTE_ADDR"]) == ("node", "8080", "10.0.0.1")
    assert env["HTTP_HOST"] == "example.org:8080"
    assert env["HTTP_X_SOME_UNDER"] == "u"
    assert "REMOTE_PORT" not in env


def test_content_headers_have_no_prefix_and_repeats_are_joined() -> None:
    env = parse(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Type: text/x\r\nX-Foo: bar\r\nX-Foo: baz")
    assert env["CONTENT_LENGTH"] == "3" and env["CONTENT_TYPE"] == "text/x"
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_FOO"] == "bar, baz"


def test_var_count_and_packet_size_match_uwsgi_log() -> None:
    # uWSGI logged "{18 vars in 170 bytes}" for this request on host "vm", port 21889
    _env, count, size = H.parse_head(b"GET / HTTP/1.0", "vm", "21889", "127.0.0.1")
    assert (count, size) == (18, 170)


def test_utf8_path_is_latin1_decoded_bytes() -> None:
    env = parse(b"GET /%C3%A9 HTTP/1.1")
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/\u00e9"


@pytest.mark.parametrize(("target", "path"), [
    ("/a/../b", "/b"), ("/a/./b/", "/a/b/"), ("/a/b/..", "/a/"), ("/..", ""), ("/.", "/"),
    ("//a//../b", "//a/b"), ("/a/%2e%2e/b", "/a/../b"), ("/p%20q/../r", "/r"), ("/f#x/../y", "/f"),
    ("/a/.b/..c", "/a/.b/..c")])
def test_dot_segments_go_before_percent_decoding(target: str, path: str) -> None:
    """uWSGI's http_url_decode (values checked in the interop twin against uwsgi-core)."""
    env = parse(b"GET %s HTTP/1.1" % target.encode())
    assert env["PATH_INFO"] == path
    assert env["REQUEST_URI"] == target


@pytest.mark.parametrize("head", [b"GARBAGE", b"GET / HTTP/1.1\r\nNoColonHere", b"GET  HTTP/1.1"])
def test_malformed_heads_are_refused(head: bytes) -> None:
    with pytest.raises(H.BadRequest):
        parse(head)


def test_keepalive_rules() -> None:
    assert H.wants_keepalive(parse(b"GET / HTTP/1.1"))
    assert not H.wants_keepalive(parse(b"GET / HTTP/1.1\r\nConnection: close"))
    assert not H.wants_keepalive(parse(b"GET / HTTP/1.0"))
    assert H.wants_keepalive(parse(b"GET / HTTP/1.0\r\nConnection: keep-alive"))


def _reader(data: bytes) -> tuple[H.Reader, socket.socket]:
    a, b = socket.socketpair()
    b.sendall(data)
    b.close()
    return H.Reader(a), a


def next_request(reader: H.Reader) -> H.Request | None:
    """The next request on a connection: a head taken from the buffer (filled as needed)."""
    while (head := reader.take_head(4096)) is None:
        if not reader.fill():
            return None
    return H.parse_request(head, "node", "8080", "10.0.0.1")


def test_content_length_body_and_pipelined_next_request() -> None:
    reader, a = _reader(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /y HTTP/1.1\r\n\r\n")
    with a:
        body = next_request(reader).body_reader(reader)
        assert body.read(2) == b"he"
        assert body.read() == b"llo"
        assert body.read() == b""
        assert next_request(reader).env["PATH_INFO"] == "/y"
        assert next_request(reader) is None


def test_unread_body_is_drained_for_the_next_request() -> None:
    reader, a = _reader(b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcdGET /z HTTP/1.1\r\n\r\n")
    with a:
        assert next_request(reader).body_reader(reader).drain(1 << 20)
        assert next_request(reader).env["PATH_INFO"] == "/z"


def test_chunked_body_read_and_readline() -> None:
    data = (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6;ext=1\r\nline1\n\r\nc\r\nline2\nrest..\r\n0\r\nTrailer: x\r\n\r\n")
    reader, a = _reader(data)
    with a:
        body = next_request(reader).body_reader(reader)
        assert isinstance(body, H.ChunkedBody)
        assert body.readline() == b"line1\n"
        assert body.readline() == b"line2\n"
        assert body.read() == b"rest.."
        assert body.read() == b""
        assert body.complete and not body.overrun


def test_chunked_body_drip_fed_and_then_a_pipelined_request_closes() -> None:
    a, b = socket.socketpair()
    with a, b:
        reader = H.Reader(a)
        b.sendall(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
        body = next_request(reader).body_reader(reader)
        b.sendall(b"c\r\n2\r\nde\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
        assert body.read() == b"abcde"
        # the parser consumed the start of the next request with the body: the worker
        # answers this one and closes the connection
        assert body.overrun


def test_bad_chunk_in_buffered_body_is_a_400_before_the_app() -> None:
    reader, a = _reader(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n")
    with a, pytest.raises(H.BadRequest) as info:
        next_request(reader).body_reader(reader)
    assert info.value.status == 400


def test_head_too_large_is_431() -> None:
    reader, a = _reader(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n")
    with a, pytest.raises(H.BadRequest) as info:
        next_request(reader)
    assert info.value.status == 431


def test_limit_post() -> None:
    req = H.parse_request(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n", "n", "1", "a")
    reader, a = _reader(b"")
    with a, pytest.raises(H.BadRequest) as info:
        req.body_reader(reader, limit_post=10)
    assert info.value.status == 413
