"""`http-socket` side by side with Debian's real uWSGI: same requests, same WSGI environ.

A client talking straight to the vassal (no nginx) must give the application what uWSGI's
http-socket parser gives it: the CGI variables, the HTTP_ headers, the wsgi.* values, the
body; and the answer must come back with the app's status and headers.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tests.conftest import Procs, free_port, port_open, read_to_close, wait_until
from tests.interop.helpers import backend_argv, copy_app, http_request, need_uwsgi

KINDS = ("imperium", "uwsgi")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    need_uwsgi()
    base = tmp_path_factory.mktemp("http-socket-interop")
    procs = Procs(base)
    ports: dict[str, int] = {}
    try:
        started = {}
        for kind in KINDS:
            d = base / kind
            copy_app("echo.py", d)
            port = free_port()
            (d / "h.ini").write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\n"
                                     "wsgi-file = %d/echo.py\nmaster = true\nprocesses = 2\n")
            started[kind] = procs.start(backend_argv(kind, d / "h.ini"), cwd=d)
            ports[kind] = port
        for kind, p in started.items():
            wait_until(lambda p=p, kind=kind: p.poll() is not None or port_open(ports[kind]), 20,
                       message=f"{kind} http-socket")
            assert p.poll() is None, f"{kind} exited:\n{procs.output(p)[-3000:]}"
        yield ports
    finally:
        procs.kill_all()


def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes as they are (http.client would tidy them) and read to the close."""
    return read_to_close(port, data, timeout=10)


def environ_of(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", head
    return json.loads(body)


REQUESTS = {
    "get-query": b"GET /a/b%20c/?x=1&y=%2F&z HTTP/1.1\r\nHost: example.org:8080\r\n"
                 b"User-Agent: t/1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Some_Under: u\r\n"
                 b"Connection: close\r\n\r\n",
    "post-form": b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/"
                 b"x-www-form-urlencoded\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
                 b"a=1&b=2&c=3",
    "http10": b"GET /old?q HTTP/1.0\r\n\r\n",
    "root-no-headers": b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
}
#: set by each server from its own socket; compared for presence only
PER_SERVER = {"SERVER_PORT", "REMOTE_PORT", "SERVER_NAME"}


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_environ_matches_uwsgi(servers: dict[str, int], case: str) -> None:
    docs = {kind: environ_of(raw_request(port, REQUESTS[case])) for kind, port in
            servers.items()}
    ours, ref = docs["imperium"]["environ"], docs["uwsgi"]["environ"]
    ref_cgi = {k for k in ref if k.isupper()}
    ours_cgi = {k for k in ours if k.isupper()}
    assert ours_cgi == ref_cgi, f"missing {sorted(ref_cgi - ours_cgi)}, extra {sorted(ours_cgi - ref_cgi)}"
    for k in sorted(ref_cgi - PER_SERVER):
        assert ours[k] == ref[k], f"{k}: ours {ours[k]!r}, uWSGI {ref[k]!r}"
    assert ours["SERVER_PORT"] == str(servers["imperium"])
    for k in ("wsgi.version", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess",
              "wsgi.run_once"):
        assert ours.get(k) == ref.get(k), f"{k}: ours {ours.get(k)!r}, uWSGI {ref.get(k)!r}"
    assert docs["imperium"]["body_sha256"] == docs["uwsgi"]["body_sha256"]
    assert {"wsgi.input", "wsgi.errors", "wsgi.file_wrapper"} <= set(docs["imperium"]["has"])


#: request targets whose PATH_INFO uWSGI's http-socket rebuilds (dot segments removed on the
#: raw target, a fragment dropped; %2e stays a name, empty segments stay)
ODD_TARGETS = ("/a/../b", "/a/./b/", "/x/../../y", "/a/b/..", "/a/.", "/..", "/.", "//a//../b",
               "/a/%2e%2e/b", "/a/.b/..c/...", "/p%20q/../r%2Fs", "/frag#x/../y", "/a/..?q=/../z")


def test_path_info_of_dot_segments_matches_uwsgi(servers: dict[str, int]) -> None:
    seen = {}
    for kind, port in servers.items():
        seen[kind] = []
        for target in ODD_TARGETS:
            raw = raw_request(port, b"GET %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % target.encode())
            env = environ_of(raw)["environ"]
            seen[kind].append((target, env["PATH_INFO"], env["REQUEST_URI"], env["QUERY_STRING"]))
    assert seen["imperium"] == seen["uwsgi"]
    assert ("/a/../b", "/b", "/a/../b", "") in seen["imperium"]


@pytest.mark.parametrize("kind", KINDS)
def test_large_post_and_response_headers(servers: dict[str, int], kind: str) -> None:
    body = os.urandom(3 << 20)
    resp = http_request(servers[kind], "POST", "/status/201?big", body=body,
                        headers={"Content-Type": "application/octet-stream"})
    assert (resp.status, resp.reason) == (201, "Created")
    doc = json.loads(resp.body)
    assert doc["body_len"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert sorted(resp.all("Set-Cookie")) == ["a=1; Path=/", "b=2; Path=/"]
    assert resp.header("X-Echo-Method") == "POST"
    assert resp.header("Content-Length") == str(len(resp.body))


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_body_arrives_whole(servers: dict[str, int], kind: str) -> None:
    resp = http_request(servers[kind], "GET", "/big?1000003")
    assert resp.status == 200 and len(resp.body) == 1000003


@pytest.mark.parametrize("kind", KINDS)
def test_head_over_buffer_size_is_refused(servers: dict[str, int], kind: str) -> None:
    # uWSGI logs "invalid HTTP request size (max 4096)" and drops the connection; we may
    # answer 431 instead, but the app must never see a head larger than buffer-size
    big = (b"GET /big-head HTTP/1.1\r\nHost: h\r\nCookie: c=" + b"x" * 6000 +
           b"\r\nConnection: close\r\n\r\n")
    try:
        answer = raw_request(servers[kind], big)
    except ConnectionResetError:
        answer = b""
    assert not answer.startswith(b"HTTP/1.1 200") and not answer.startswith(b"HTTP/1.0 200")
    assert answer == b"" or answer.split(b" ")[1] in (b"400", b"413", b"431"), answer[:200]
    ok = raw_request(servers[kind], b"GET / HTTP/1.1\r\nHost: h\r\nCookie: c=" + b"x" * 3000 +
                     b"\r\nConnection: close\r\n\r\n")
    assert ok.split(b" ")[1] == b"200"
