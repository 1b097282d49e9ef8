"""Static files side by side with Debian's real uWSGI: same files, same answers.

Both servers read the same tree and an ini that differs only in its ports; each request goes
to both over ``http-socket`` (and some over the uwsgi protocol) and the status, the headers
and the body must match — except where we mean to differ: a path that resolves outside its
mapped directory (uWSGI's check is a string prefix) is served by uWSGI and refused here.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, Procs, free_port, port_open, read_to_close, wait_until
from tests.interop.helpers import VASSAL_BINARY, backend_argv, copy_app, need_uwsgi
from tests.interop.static_tree import HUGE, make_tree
from vassal.protocols import uwsgi as U
from vassal.protocols.static import http_date

KINDS = ("imperium", "uwsgi")
#: the deliberate difference is asserted only of Imperium (INTEROP_VASSAL_BINARY may be uWSGI)
REFUSES_ESCAPES = VASSAL_BINARY == IMPERIUM
NOW_EXPIRES = 3600  # static-expires-type image/png
MTIME_EXPIRES = 86400  # static-expires-mtime for .css


def _ini(base: Path, http_port: int, uwsgi_port: int, extra: str) -> str:
    return f"""[uwsgi]
http-socket = 127.0.0.1:{http_port}
socket = 127.0.0.1:{uwsgi_port}
wsgi-file = {base}/fallback.py
env = STATIC_BASE={base}/tree
master = true
processes = 1
add-header = X-Added: yes
{extra}"""


MAIN = """static-map = /s={t}/pub
static-map = /favicon.ico={t}/fav.ico
static-map2 = /s2={t}/m2
check-static = {t}/chk
static-index = index.html
static-skip-ext = .py
static-safe = {t}/shared
static-gzip-ext = .css
honour-range = true
static-expires-type = image/png={now}
static-expires-mtime = \\.css$ {mtime}
static-expires-uri = ^/s/expire-uri {now}
disable-sendfile = true
"""

SECOND = """static-map = /s={t}/pub
check-static-docroot = true
file-serve-mode = x-accel-redirect
"""

#: "offloading" is no file-serve-mode: uWSGI ignores it (a real config, kaavapino's, has it)
OFFLOAD = """static-map = /s={t}/pub
offload-threads = 2
file-serve-mode = offloading
"""


def _start(procs: Procs, base: Path, name: str, config: str) -> dict[str, tuple[int, int]]:
    ports: dict[str, tuple[int, int]] = {}
    started = {}
    for kind in KINDS:
        d = base / f"{name}-{kind}"
        d.mkdir()
        http_port, uwsgi_port = free_port(), free_port()
        (d / "s.ini").write_text(_ini(base, http_port, uwsgi_port, config))
        started[kind] = procs.start(backend_argv(kind, d / "s.ini"), cwd=d)
        ports[kind] = (http_port, uwsgi_port)
    for kind, p in started.items():
        wait_until(lambda p=p, kind=kind: p.poll() is not None or port_open(ports[kind][0]), 20,
                   message=f"{kind} {name}")
        assert p.poll() is None, f"{kind} exited:\n{procs.output(p)[-3000:]}"
    return ports


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("static-interop")
    copy_app("fallback.py", base)
    make_tree(base / "tree")
    return base


@pytest.fixture(scope="module")
def servers(tree: Path):
    need_uwsgi()
    procs = Procs(tree)
    t = tree / "tree"
    try:
        yield {"main": _start(procs, tree, "main", MAIN.format(t=t, now=NOW_EXPIRES, mtime=MTIME_EXPIRES)),
               "second": _start(procs, tree, "second", SECOND.format(t=t)),
               "offload": _start(procs, tree, "offload", OFFLOAD.format(t=t))}
    finally:
        procs.kill_all()


def http(port: int, target: str, method: str = "GET", headers: str = "",
         version: str = "HTTP/1.1") -> tuple[int, dict[str, list[str]], bytes]:
    raw = read_to_close(port, f"{method} {target} {version}\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
                        .encode("latin-1"), timeout=10)
    return parse(raw)


def uwsgi(port: int, path: str, **extra: str) -> tuple[int, dict[str, list[str]], bytes]:
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path, "QUERY_STRING": "",
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "t", "SERVER_PORT": "80", "REMOTE_ADDR": "10.1.2.3",
           "HTTP_HOST": "t", **extra}
    return parse(read_to_close(port, U.encode_packet(env), timeout=10))


def parse(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(lines[0].split(" ")[1]), headers, body


def both(servers: dict, which: str, fn, *args, **kw) -> dict:
    return {kind: fn(servers[which][kind][0 if fn is http else 1], *args, **kw) for kind in KINDS}


def assert_same(answers: dict, *, expires: bool = True) -> tuple[int, dict[str, list[str]], bytes]:
    ours, ref = answers["imperium"], answers["uwsgi"]
    assert ours[0] == ref[0], f"status: ours {ours[0]}, uWSGI {ref[0]}"
    # Connection is hop-by-hop: Imperium says "close" when it closes, uWSGI's http-socket
    # closes without saying so; what is compared is the answer itself
    skip = {"connection"} if expires else {"expires", "connection"}
    assert {k: v for k, v in ours[1].items() if k not in skip} == \
           {k: v for k, v in ref[1].items() if k not in skip}
    assert ours[2] == ref[2], f"body: ours {ours[2][:80]!r}, uWSGI {ref[2][:80]!r}"
    return ours


CASES = {
    "file": ("/s/a.txt", "GET", ""),
    "head": ("/s/a.txt", "HEAD", ""),
    "index-slash": ("/s/sub/", "GET", ""),
    "index-no-slash": ("/s/sub", "GET", ""),
    "dir-without-index": ("/s/", "GET", ""),
    "missing": ("/s/missing.txt", "GET", ""),
    "post-goes-to-app": ("/s/a.txt", "POST", "Content-Length: 0\r\n"),
    "skip-ext": ("/s/code.py", "GET", ""),
    "symlink-outside": ("/s/link-out.txt", "GET", ""),
    "symlink-into-safe": ("/s/link-safe.txt", "GET", ""),
    "no-extension": ("/s/noext", "GET", ""),
    "upper-case-extension": ("/s/UPPER.TXT", "GET", ""),
    "percent-encoded": ("/s/with%20space.txt", "GET", ""),
    "mountpoint-is-a-prefix": ("/sa.txt", "GET", ""),
    "gzip-variant": ("/s/style.css", "GET", "Accept-Encoding: gzip, deflate\r\n"),
    "gzip-not-accepted": ("/s/style.css", "GET", ""),
    "not-modified": ("/s/a.txt", "GET", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n"),
    "modified": ("/s/a.txt", "GET", "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n"),
    "bad-ims": ("/s/a.txt", "GET", "If-Modified-Since: yesterday\r\n"),
    "range": ("/s/a.txt", "GET", "Range: bytes=1-3\r\n"),
    "range-suffix": ("/s/a.txt", "GET", "Range: bytes=-2\r\n"),
    "range-open": ("/s/a.txt", "GET", "Range: bytes=2-\r\n"),
    "range-whole": ("/s/a.txt", "GET", "Range: bytes=0-\r\n"),
    "range-past-end": ("/s/a.txt", "GET", "Range: bytes=100-200\r\n"),
    "range-garbage": ("/s/a.txt", "GET", "Range: pages=1\r\n"),
    "range-big-file": ("/s/big.bin", "GET", "Range: bytes=70000-170000\r\n"),
    "big-file": ("/s/big.bin", "GET", ""),
    "check-static": ("/robots.txt", "GET", ""),
    "static-map2": ("/s2/file.txt", "GET", ""),
    "file-mapping": ("/favicon.ico", "GET", ""),
    "expires-mtime": ("/s/style.css", "GET", ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_answer_as_uwsgi(servers: dict, case: str) -> None:
    target, method, headers = CASES[case]
    assert_same(both(servers, "main", http, target, method, headers))


def test_http10_status_line(servers: dict) -> None:
    answers = both(servers, "main", http, "/s/a.txt", version="HTTP/1.0")
    assert_same(answers)


@pytest.mark.parametrize("target", ["/s/img.png", "/s/expire-uri.txt"])
def test_expires_from_now(servers: dict, target: str) -> None:
    before = int(time.time())
    answers = both(servers, "main", http, target)
    after = int(time.time())
    assert_same(answers, expires=False)
    for kind, (status, headers, _body) in answers.items():
        assert status == 200
        stamps = headers.get("expires", [])
        assert len(stamps) == 1, (kind, headers)
        assert stamps[0] in {http_date(t + NOW_EXPIRES) for t in range(before, after + 1)}, (kind, stamps)


def test_expires_from_mtime(servers: dict, tree: Path) -> None:
    mtime = int(os.stat(tree / "tree" / "pub" / "style.css").st_mtime)
    ours = assert_same(both(servers, "main", http, "/s/style.css"))
    assert ours[1]["expires"] == [http_date(mtime + MTIME_EXPIRES)]
    # with the gzip variant the rules see "style.css.gz" (uWSGI's order): no match
    ours = assert_same(both(servers, "main", http, "/s/style.css", "GET", "Accept-Encoding: gzip\r\n"))
    assert ours[1]["content-encoding"] == ["gzip"] and "expires" not in ours[1]


@pytest.mark.parametrize("target", ["/s/%2e%2e/pub-secret/s.txt", "/s/..%2fpub-secret/s.txt",
                                    "/s/link-prefix.txt"])
def test_no_escape_from_the_mapped_directory(servers: dict, target: str) -> None:
    """uWSGI compares realpath() and docroot as strings: /srv/pub-secret "starts with" /srv/pub."""
    answers = both(servers, "main", http, target)
    assert answers["uwsgi"][0] == 200 and answers["uwsgi"][2] == b"secret\n"  # uWSGI's hole
    status, _headers, body = answers["imperium"]
    if REFUSES_ESCAPES:
        assert status == 200 and body.startswith(b"app:"), body  # refused: the app answers
    else:
        assert body == b"secret\n"


def test_no_escape_over_the_uwsgi_protocol(servers: dict) -> None:
    answers = both(servers, "main", uwsgi, "/s/../pub-secret/s.txt")
    assert answers["uwsgi"][2] == b"secret\n"
    assert answers["imperium"][2] == (b"app:/s/../pub-secret/s.txt" if REFUSES_ESCAPES else b"secret\n")


@pytest.mark.parametrize("path", ["/s/a.txt", "/s/sub/", "/s/missing"])
def test_uwsgi_protocol_same_answer(servers: dict, path: str) -> None:
    assert_same(both(servers, "main", uwsgi, path))


@pytest.mark.parametrize("path", ["/s/a.txt", "/s/style.css"])
def test_x_accel_redirect(servers: dict, tree: Path, path: str) -> None:
    ours = assert_same(both(servers, "second", http, path))
    real = os.path.realpath(tree / "tree" / "pub" / path[3:])
    assert ours[1]["x-accel-redirect"] == [real] and ours[2] == b""


def test_check_static_docroot(servers: dict, tree: Path) -> None:
    answers = both(servers, "second", uwsgi, "/robots.txt", DOCUMENT_ROOT=str(tree / "tree" / "chk"))
    ours = assert_same(answers)
    assert ours[1]["x-accel-redirect"] == [str(tree / "tree" / "chk" / "robots.txt")]


@pytest.mark.parametrize("target", ["/s/big.bin", "/s/a.txt", "/wrapped/pub/big.bin"])
def test_offload_threads_send_the_same_bytes(servers: dict, tree: Path, target: str) -> None:
    answers = both(servers, "offload", http, target)
    ours = assert_same(answers)
    name = target.rsplit("/", 1)[1]
    assert ours[0] == 200 and ours[2] == (tree / "tree" / "pub" / name).read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_offload_frees_the_only_worker(servers: dict, kind: str) -> None:
    """One worker, one offload thread: it answers others while a slow client downloads."""
    port = servers["offload"][kind][0]
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(30)
    slow.connect(("127.0.0.1", port))
    try:
        slow.sendall(b"GET /s/huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert http(port, "/s/a.txt")[2] == b"hello\n"
        assert http(port, "/not-static")[2] == b"app:/not-static"
        got = 0
        while data := slow.recv(1 << 20):
            got += len(data)
    finally:
        slow.close()
    assert got > HUGE  # the head and the whole body
