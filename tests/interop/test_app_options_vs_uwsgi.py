"""``vhost``, ``no-default-app``, the default app, ``umask``, ``safe-pidfile`` and the PROXY
protocol side by side with Debian's real uWSGI: the same ini (ports and paths aside) must give
the same answers, the same files with the same modes, the same log prefixes."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, Procs, read_to_close, wait_until
from tests.interop.helpers import VASSAL_BINARY, backend_argv, copy_app
from tests.interop.helpers import start_twins as _start

KINDS = ("imperium", "uwsgi")
OURS = VASSAL_BINARY == IMPERIUM


def _get(port: int, path: str, host: str = "t") -> tuple[str, bytes]:
    raw = read_to_close(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(), timeout=10)
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    copy_app("routed.py", tmp_path)
    (tmp_path / "other.py").write_text(
        "def application(env, sr):\n"
        "    sr('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [('other ' + env.get('UWSGI_APPID', '-') + ' ' + env['PATH_INFO']).encode()]\n")
    return tmp_path


def test_vhost_chooses_the_app_by_host(apps: Path, procs: Procs) -> None:
    servers = _start(procs, apps, "vhost", """http-socket = 127.0.0.1:{port}
wsgi-file = {base}/routed.py
mount = other.host|={base}/other.py
vhost = true
master = true
""")
    answers = {kind: [_get(port, "/x", "other.host"), _get(port, "/x", "t"), _get(port, "/x", "other.host:80")]
               for kind, (port, _p, _d) in servers.items()}
    assert answers["imperium"] == answers["uwsgi"]
    (s1, b1), (s2, b2), (s3, b3) = answers["imperium"]
    assert b1 == b"other other.host| /x"
    assert b"UWSGI_APPID=t|\n" in b2 and b"UWSGI_APPID=other.host:80|\n" in b3
    for kind, (_port, p, _d) in servers.items():
        wait_until(lambda p=p: "GET /x" in procs.output(p), 10, message=f"{kind} logs")
        out = procs.output(p)
        assert "VirtualHosting mode enabled." in out, kind
        assert any(line.startswith("other.host [pid: ") for line in out.splitlines()), kind


def test_no_default_app_and_the_default_app(apps: Path, procs: Procs) -> None:
    servers = _start(procs, apps, "nodefault", """http-socket = 127.0.0.1:{port}
mount = /first={base}/other.py
mount = /second={base}/routed.py
master = true
""")
    strict = _start(procs, apps, "strict", """http-socket = 127.0.0.1:{port}
mount = /first={base}/other.py
no-default-app = true
master = true
""")
    for group in (servers, strict):
        answers = {kind: [_get(port, "/nowhere"), _get(port, "/first/x")] for kind, (port, _p, _d) in group.items()}
        assert answers["imperium"] == answers["uwsgi"], answers
    # the first app mounted at a /path is the default one (uWSGI's python loader)
    assert _get(servers["imperium"][0], "/nowhere") == ("HTTP/1.1 200 OK", b"other - /nowhere")
    assert _get(strict["imperium"][0], "/nowhere")[0] == "HTTP/1.1 500 Internal Server Error"


def test_umask_and_safe_pidfile(apps: Path, procs: Procs) -> None:
    servers = _start(procs, apps, "umask", """http-socket = 127.0.0.1:{port}
socket = {dir}/app.sock
wsgi-file = {base}/routed.py
umask = 027
safe-pidfile = {dir}/safe.pid
safe-pidfile2 = {dir}/safe2.pid
vacuum = true
master = true
processes = 2
""")
    modes = {}
    for kind, (_port, p, d) in servers.items():
        for name in ("safe.pid", "safe2.pid"):
            wait_until(lambda d=d, name=name: (d / name).exists() and (d / name).read_text().endswith("\n"), 10,
                       message=f"{kind} {name}")
            assert (d / name).read_text() == f"{p.pid}\n", kind  # the master's pid
        modes[kind] = {name: stat.S_IMODE(os.stat(d / name).st_mode) for name in ("safe.pid", "app.sock")}
    assert modes["imperium"] == modes["uwsgi"]
    assert modes["imperium"]["safe.pid"] == 0o640
    for kind, (_port, p, d) in servers.items():
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        assert not (d / "safe.pid").exists() and not (d / "safe2.pid").exists(), kind


def test_bad_umask_is_refused(apps: Path, procs: Procs) -> None:
    (apps / "bad.ini").write_text("[uwsgi]\nhttp-socket = 127.0.0.1:0\numask = 9x\n")
    p = procs.start(backend_argv("imperium", apps / "bad.ini"), cwd=apps)
    assert p.wait(timeout=30) != 0
    assert "umask (" in procs.output(p) and "bad.ini:3" in procs.output(p)


def _proxied(port: int, line: bytes, requests: int = 1) -> list[bytes]:
    """Bodies of ``requests`` requests sent on one connection opened by ``line``."""
    import socket

    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    with s:
        reqs = [b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"] * (requests - 1) + \
            [b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"]
        s.sendall(line + b"".join(reqs))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    bodies = []
    for part in data.split(b"HTTP/1.1 200 OK")[1:]:
        head, _, rest = part.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) if b"ength: " in head \
            else len(rest)
        bodies.append(rest[:length])
    return bodies


@pytest.mark.parametrize("line", [b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 8080\r\n",
                                  b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n", b"PROXY UNKNOWN\r\n", b""])
def test_proxy_protocol(apps: Path, procs: Procs, line: bytes) -> None:
    (apps / "peer.py").write_text(
        "def application(env, sr):\n"
        "    sr('200 OK', [('Content-Type', 'text/plain')])\n"
        "    keys = ('REMOTE_ADDR', 'REMOTE_PORT', 'SERVER_ADDR')\n"
        "    return [' '.join(k + '=' + env.get(k, '-') for k in keys).encode()]\n")
    servers = _start(procs, apps, "proxy", """http-socket = 127.0.0.1:{port}
wsgi-file = {base}/peer.py
enable-proxy-protocol = true
""")
    answers = {kind: _proxied(port, line) for kind, (port, _p, _d) in servers.items()}
    assert answers["imperium"] == answers["uwsgi"]
    if line.startswith(b"PROXY TCP4"):
        assert answers["imperium"] == [b"REMOTE_ADDR=203.0.113.7 REMOTE_PORT=51234 SERVER_ADDR=10.0.0.2"]
    # a keep-alive connection (Imperium's http-socket has them) keeps the proxied addresses
    assert len(set(_proxied(servers["imperium"][0], line, 3))) == 1


def test_proxy_protocol_believes_only_addresses(apps: Path, procs: Procs) -> None:
    """uWSGI puts whatever the line says into REMOTE_ADDR; here only an IP address counts."""
    (apps / "peer.py").write_text(
        "def application(env, sr):\n"
        "    sr('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [env['REMOTE_ADDR'].encode()]\n")
    servers = _start(procs, apps, "proxybad", """http-socket = 127.0.0.1:{port}
wsgi-file = {base}/peer.py
enable-proxy-protocol = 1
""")
    answers = {kind: _proxied(port, b"PROXY TCP4 <script> 10.0.0.2 1 2\r\n") for kind, (port, _p, _d)
               in servers.items()}
    assert answers["uwsgi"] == [b"<script>"]
    assert answers["imperium"] == [b"127.0.0.1"] or not OURS


def test_http_router_proxy_protocol(apps: Path, procs: Procs) -> None:
    """``http = ADDR`` with ``http-enable-proxy-protocol``: uWSGI's router reads the line; here
    the http socket that ``http`` is reads it."""
    (apps / "peer.py").write_text(
        "def application(env, sr):\n"
        "    sr('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [(env['REMOTE_ADDR'] + ' ' + env.get('REMOTE_PORT', '-')).encode()]\n")
    servers = _start(procs, apps, "router", """plugins = http
http = 127.0.0.1:{port}
wsgi-file = {base}/peer.py
http-enable-proxy-protocol = 1
master = true
""")
    answers = {kind: _proxied(port, b"PROXY TCP4 198.51.100.9 10.0.0.2 4242 80\r\n") for kind, (port, _p, _d)
               in servers.items()}
    assert answers["imperium"] == answers["uwsgi"] == [b"198.51.100.9 4242"]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("reaper", [True, False])
def test_reaper(apps: Path, procs: Procs, reaper: bool) -> None:
    """The app leaves an exited child behind; with ``reaper`` the worker collects it after the
    request, without it the zombie stays (both servers alike)."""
    (apps / "forks.py").write_text(
        "import os\n"
        "def application(env, sr):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    sr('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [str(pid).encode()]\n")
    servers = _start(procs, apps, f"reaper{reaper}", """http-socket = 127.0.0.1:{port}
wsgi-file = {base}/forks.py
""" + ("reaper = true\n" if reaper else ""))
    for kind, (port, _p, _d) in servers.items():
        pid = int(_get(port, "/")[1])
        if reaper:
            # the child may exit after the request ended: the next request's reaping collects it
            wait_until(lambda port=port, pid=pid: _get(port, "/") and not os.path.exists(f"/proc/{pid}"), 10,
                       message=f"{kind} reaps {pid}")
        else:
            wait_until(lambda pid=pid: _zombie(pid), 10, message=f"{kind}: {pid} is a zombie")
            _get(port, "/")
            assert _zombie(pid), kind


def _uwsgi_get(port: int, **extra: str) -> bytes:
    from vassal.protocols import uwsgi as U

    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/p", "PATH_INFO": "/p", "QUERY_STRING": "",
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "t", "SERVER_PORT": "80", "REMOTE_ADDR": "10.1.2.3",
           "HTTP_HOST": "t", "SCRIPT_NAME": "", **extra}
    return read_to_close(port, U.encode_packet(env), timeout=10)


def test_dynamic_apps(apps: Path, procs: Procs) -> None:
    """No app in the config: the web server names it per request (UWSGI_SCRIPT, UWSGI_MODULE +
    UWSGI_CALLABLE, UWSGI_FILE), mounted at SCRIPT_NAME (HOST|SCRIPT_NAME with vhost)."""
    (apps / "second.py").write_text(
        "def app(env, sr):\n"
        "    sr('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [('second ' + env['SCRIPT_NAME']).encode()]\n"
        "def make():\n"
        "    return app\n")
    for vhost in ("", "vhost = true\n"):
        servers = _start(procs, apps, f"dynamic{bool(vhost)}", """socket = 127.0.0.1:{port}
pythonpath = {base}
master = true
""" + vhost)
        asks = [dict(UWSGI_SCRIPT="other", SCRIPT_NAME="/a"), dict(UWSGI_SCRIPT="second:app", SCRIPT_NAME="/b"),
                dict(UWSGI_SCRIPT="second:make()", SCRIPT_NAME="/c"),
                dict(UWSGI_MODULE="second", UWSGI_CALLABLE="app", SCRIPT_NAME="/d"),
                dict(UWSGI_FILE=str(apps / "other.py"), SCRIPT_NAME="/e"),
                dict(SCRIPT_NAME="/a"), dict(SCRIPT_NAME="/b"), dict(SCRIPT_NAME="/zz"),
                dict(UWSGI_SCRIPT="no_such_module", SCRIPT_NAME="/f")]
        answers = {kind: [_uwsgi_get(port, **ask) for ask in asks] for kind, (port, _p, _d) in servers.items()}
        assert answers["imperium"] == answers["uwsgi"], answers
        assert answers["imperium"][1].endswith(b"second /b")
