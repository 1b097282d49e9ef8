"""Real nginx (`uwsgi_pass`, Debian's `uwsgi_params`) in front of our `socket =` vassal.

One nginx serves four ports: our vassal over TCP and over a UNIX socket, and the real
uWSGI over both, as the reference. Each request test runs against all four, so a
difference between us and uWSGI shows up as a failing `imperium-*` case next to a passing
`uwsgi-*` one; the last test compares the WSGI environ the two servers build.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import pytest

from tests.conftest import Procs, free_port, port_open, wait_until
from tests.interop.helpers import (
    backend_argv,
    copy_app,
    http_request,
    need_nginx,
    need_uwsgi,
    start_nginx,
)

KINDS = ("imperium", "uwsgi")
TRANSPORTS = ("tcp", "unix")
#: values that differ between two servers for reasons that have nothing to do with them
VOLATILE = {"REMOTE_PORT", "SERVER_PORT", "HTTP_X_CASE"}
#: keys uWSGI leaves out when nginx does not send them but we may add: PEP 3333 lets a
#: server omit an empty SCRIPT_NAME or include it, and apps can rely on neither
ALLOWED_EXTRA = {"SCRIPT_NAME": ""}


@dataclass
class Stack:
    ports: dict[tuple[str, str], int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def port(self, kind: str, transport: str) -> int:
        if kind in self.failures:
            pytest.fail(f"{kind} backend did not come up: {self.failures[kind]}")
        return self.ports[(kind, transport)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    need_nginx()
    need_uwsgi()
    base = tmp_path_factory.mktemp("nginx-interop")
    procs = Procs(base)
    st = Stack()
    upstreams: dict[int, str] = {}
    backends = {}
    try:
        for kind in KINDS:
            d = base / kind
            copy_app("echo.py", d)
            tcp = free_port()
            ini = d / "app.ini"
            # %d: the directory of this ini, as in uWSGI's magic variables
            ini.write_text(f"[uwsgi]\nsocket = 127.0.0.1:{tcp}\nsocket = %d/app.sock\n"
                           "wsgi-file = %d/echo.py\nmaster = true\nprocesses = 2\n")
            backends[kind] = (procs.start(backend_argv(kind, ini), cwd=d), tcp, d / "app.sock")
            for transport, target in (("tcp", f"127.0.0.1:{tcp}"),
                                      ("unix", f"unix:{d / 'app.sock'}")):
                port = free_port()
                st.ports[(kind, transport)] = port
                upstreams[port] = target
        for kind, (p, tcp, sock) in backends.items():
            try:
                wait_until(lambda p=p, tcp=tcp, sock=sock: p.poll() is not None or (
                    port_open(tcp) and sock.exists()), 20, message=f"{kind} sockets")
                if p.poll() is not None:
                    raise AssertionError(f"exited with {p.returncode}")
            except AssertionError as exc:
                st.failures[kind] = f"{exc}\n{procs.output(p)[-3000:]}"
        start_nginx(procs, base / "nginx", upstreams)
        yield st
    finally:
        procs.kill_all()


CASES = [pytest.param(k, t, id=f"{k}-{t}") for k in KINDS for t in TRANSPORTS]


@pytest.mark.parametrize(("kind", "transport"), CASES)
def test_get_with_query_and_headers(stack: Stack, kind: str, transport: str) -> None:
    port = stack.port(kind, transport)
    resp = http_request(port, "GET", "/some/path%20x/?a=1&b=two%20words&c=&a=2",
                        headers={"X-Custom": "hello world", "Accept": "text/x-test",
                                 "Cookie": "k=v; k2=v2", "User-Agent": "interop/1.0"})
    assert resp.status == 200, resp.body[:500]
    doc = json.loads(resp.body)
    env = doc["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/some/path x/"  # nginx's $document_uri is decoded
    assert env["QUERY_STRING"] == "a=1&b=two%20words&c=&a=2"
    assert env["REQUEST_URI"] == "/some/path%20x/?a=1&b=two%20words&c=&a=2"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_CUSTOM"] == "hello world"
    assert env["HTTP_ACCEPT"] == "text/x-test"
    assert env["HTTP_COOKIE"] == "k=v; k2=v2"
    assert env["HTTP_USER_AGENT"] == "interop/1.0"
    assert env["HTTP_HOST"] == "127.0.0.1"  # Debian's uwsgi_params sends $host, no port
    assert env["wsgi.url_scheme"] == "http"
    assert doc["body_len"] == 0
    # response headers come back through nginx, repeated ones too
    assert resp.header("X-Echo-Method") == "GET"
    assert resp.header("Content-Type") == "application/json"
    assert sorted(resp.all("Set-Cookie")) == ["a=1; Path=/", "b=2; Path=/"]


@pytest.mark.parametrize(("kind", "transport"), CASES)
def test_https_param_sets_url_scheme(stack: Stack, kind: str, transport: str) -> None:
    env = json.loads(http_request(stack.port(kind, transport), "GET", "/tls/x").body)["environ"]
    assert env["HTTPS"] == "on"
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(("kind", "transport"), CASES)
def test_packet_over_buffer_size_is_refused(stack: Stack, kind: str, transport: str) -> None:
    # a 6 KB cookie makes the uwsgi packet larger than buffer-size (4096 by default): uWSGI
    # logs "invalid request block size" and drops it, nginx answers 502; the limit is what
    # protects workers from huge headers, and users raise it with buffer-size
    resp = http_request(stack.port(kind, transport), "GET", "/big-headers",
                        headers={"Cookie": "c=" + "x" * 6000})
    assert resp.status == 502, (f"{resp.status}: a 6000-byte cookie got through; uWSGI drops "
                                 "uwsgi packets over buffer-size")
    small = http_request(stack.port(kind, transport), "GET", "/small",
                         headers={"Cookie": "c=" + "x" * 3000})
    assert small.status == 200


@pytest.mark.parametrize(("kind", "transport"), CASES)
def test_post_body_round_trips(stack: Stack, kind: str, transport: str) -> None:
    port = stack.port(kind, transport)
    body = os.urandom(1 << 20)  # larger than any socket buffer: nginx streams it in pieces
    resp = http_request(port, "POST", "/upload?x=1", body=body,
                        headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200, resp.body[:500]
    doc = json.loads(resp.body)
    assert doc["body_len"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert doc["environ"]["REQUEST_METHOD"] == "POST"
    assert doc["environ"]["CONTENT_LENGTH"] == str(len(body))
    assert doc["environ"]["CONTENT_TYPE"] == "application/octet-stream"
    assert resp.header("X-Echo-Method") == "POST"


@pytest.mark.parametrize(("kind", "transport"), CASES)
def test_chunked_upload_reaches_app_whole(stack: Stack, kind: str, transport: str) -> None:
    port = stack.port(kind, transport)
    body = b"".join(b"line %d\n" % i for i in range(5000))
    resp = http_request(port, "PUT", "/chunked", body=body, chunked=True,
                        headers={"Content-Type": "text/plain"})
    assert resp.status == 200, resp.body[:500]
    doc = json.loads(resp.body)
    assert doc["body_len"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert doc["environ"]["REQUEST_METHOD"] == "PUT"


@pytest.mark.parametrize(("kind", "transport"), CASES)
def test_status_codes_pass_through(stack: Stack, kind: str, transport: str) -> None:
    port = stack.port(kind, transport)
    for code, reason in ((404, "Not Found"), (418, "I'm a teapot"), (201, "Created")):
        resp = http_request(port, "GET", f"/status/{code}")
        assert (resp.status, resp.reason) == (code, reason)
        assert json.loads(resp.body)["environ"]["PATH_INFO"] == f"/status/{code}"


@pytest.mark.parametrize(("kind", "transport"), CASES)
def test_streamed_response_arrives_intact(stack: Stack, kind: str, transport: str) -> None:
    port = stack.port(kind, transport)
    size = 3_000_001
    resp = http_request(port, "GET", f"/big?{size}")
    assert resp.status == 200
    assert len(resp.body) == size
    expected = (b"0123456789abcdef" * 4096) * (size // 65536 + 1)
    chunks = [expected[:65536]] * (size // 65536) + [expected[:size % 65536]]
    assert resp.body == b"".join(chunks)


def _environ(port: int, method: str, path: str, body: bytes | None) -> tuple[dict, list]:
    resp = http_request(port, method, path, body=body,
                        headers={"X-Case": "MiXeD", "X-Dup": "1",
                                 "Content-Type": "text/plain"})
    assert resp.status == 200, resp.body[:500]
    doc = json.loads(resp.body)
    return doc["environ"], doc["has"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_environ_matches_real_uwsgi(stack: Stack, transport: str) -> None:
    """The same requests through nginx give our app the environ uWSGI gives it."""
    for method, path, body in (("GET", "/a/b?q=1&r=%2F", None), ("POST", "/p", b"x=1&y=2"),
                               ("DELETE", "/", None)):
        ours, ours_objs = _environ(stack.port("imperium", transport), method, path, body)
        ref, ref_objs = _environ(stack.port("uwsgi", transport), method, path, body)
        cgi = {k for k in ref if k.isupper()} - VOLATILE
        ours_cgi = {k for k in ours if k.isupper()} - VOLATILE
        extra = {k: ours[k] for k in ours_cgi - cgi}
        assert not cgi - ours_cgi, f"{method} {path}: missing {sorted(cgi - ours_cgi)}"
        assert all(ALLOWED_EXTRA.get(k, object()) == v for k, v in extra.items()), (
            f"{method} {path}: extra {extra}")
        for k in sorted(cgi):
            assert ours[k] == ref[k], f"{method} {path}: {k} is {ours[k]!r}, uWSGI: {ref[k]!r}"
        for k in ("wsgi.version", "wsgi.url_scheme", "wsgi.multiprocess", "wsgi.run_once"):
            assert ours.get(k) == ref.get(k), f"{k}: {ours.get(k)!r}, uWSGI: {ref.get(k)!r}"
        for k in ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper"):
            assert k in ref_objs and k in ours_objs, f"{k} missing from our environ"

