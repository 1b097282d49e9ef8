"""Request-path options side by side with Debian's real uWSGI: the same ini, the same client,
the same observable outcome (what the app saw, what was logged, what the client got).

Covered: ``post-buffering`` (memory and disk), ``wsgi-disable-file-wrapper``,
``protocol``/``socket-protocol``, the write-error family (``disable-write-exception``,
``ignore-write-errors``, ``ignore-sigpipe``), ``reuse-port`` and ``http-auto-chunked`` with
``http-keepalive`` (a router option in uWSGI: its twin runs uWSGI's ``http`` router).
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import UWSGI_CORE, Procs, free_port, port_open, wait_until
from tests.interop.helpers import VASSAL_BINARY, copy_app, need_uwsgi

KINDS = ("imperium", "uwsgi")


@pytest.fixture(autouse=True)
def _need_uwsgi() -> None:
    need_uwsgi()


class Server:
    def __init__(self, procs: Procs, tmp: Path, kind: str, body: str, plugins: str = "python3",
                 name: str = "s", port: int | None = None, wait: bool = True) -> None:
        self.dir = tmp / f"{kind}-{name}"
        copy_app("path.py", self.dir)
        self.port = port or free_port()
        ini = self.dir / f"{name}.ini"
        ini.write_text(f"[uwsgi]\nplugins = {plugins}\n" + body.format(port=self.port)
                       + "\nwsgi-file = %d/path.py\n")
        argv = [VASSAL_BINARY] if kind == "imperium" else [UWSGI_CORE]
        self.procs = procs
        self.proc = procs.start([*argv, "--ini", str(ini)], cwd=self.dir)
        if wait:
            wait_until(lambda: self.proc.poll() is not None or port_open(self.port), 20,
                       message=f"{kind} on {self.port}")
            assert self.proc.poll() is None, self.log()[-3000:]

    def log(self) -> str:
        return self.procs.output(self.proc)

    def file(self, name: str) -> str:
        path = self.dir / name
        return path.read_text() if path.exists() else ""


def request(port: int, raw: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


# --- post-buffering --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["off", "memory", "disk"])
def test_post_buffering_runs_the_app_only_with_the_whole_body(procs: Procs, tmp_path: Path, kind: str,
                                                               mode: str) -> None:
    option = {"off": "", "memory": "post-buffering = 4096", "disk": "post-buffering = 50"}[mode]
    srv = Server(procs, tmp_path, kind, f"http-socket = 127.0.0.1:{{port}}\nprocesses = 1\n"
                                        f"socket-timeout = 2\n{option}")
    # a body that never comes: the client sends 10 of 100 bytes and goes away
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /calls HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
    body = bytes(range(100))
    answer = request(srv.port, b"POST /calls HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
                               b"Content-Length: 100\r\n\r\n" + body)
    assert answer.split(b"\r\n")[0].endswith(b"200 OK"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"length": 100}
    calls = srv.file("calls.log").splitlines()
    # with post-buffering the app never sees the incomplete request (one process: in order)
    assert len(calls) == (2 if mode == "off" else 1), (calls, srv.log()[-2000:])
    if mode != "off":
        line = (f"[uwsgi-body-read] Error reading {90 if mode == 'memory' else 50} bytes. "
                "Content-Length: 100 consumed: 0 left: 100 message: Client closed connection")
        assert line in srv.log(), srv.log()[-2000:]


# --- the environ ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_file_wrapper_can_be_left_out(procs: Procs, tmp_path: Path, kind: str) -> None:
    on = Server(procs, tmp_path, kind, "http-socket = 127.0.0.1:{port}", name="on")
    off = Server(procs, tmp_path, kind, "http-socket = 127.0.0.1:{port}\nwsgi-disable-file-wrapper = true",
                 name="off")
    get = b"GET /environ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    assert "wsgi.file_wrapper" in json.loads(request(on.port, get).partition(b"\r\n\r\n")[2])
    names = json.loads(request(off.port, get).partition(b"\r\n\r\n")[2])
    assert "wsgi.file_wrapper" not in names and "wsgi.input" in names


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("option", ["protocol", "socket-protocol"])
def test_a_plain_socket_can_speak_http(procs: Procs, tmp_path: Path, kind: str, option: str) -> None:
    srv = Server(procs, tmp_path, kind, f"socket = 127.0.0.1:{{port}}\n{option} = http")
    answer = request(srv.port, b"GET /environ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]


# --- a client that goes away ---------------------------------------------------------------


def leave_early(port: int, path: str) -> None:
    """Ask for a large answer, read a little of it, and close (the server's writes then fail)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        s.recv(4096)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", ["default", "disable-write-exception", "ignore-write-errors",
                                     "ignore-sigpipe"])
def test_write_errors(procs: Procs, tmp_path: Path, kind: str, variant: str) -> None:
    option = "" if variant == "default" else f"{variant} = true"
    srv = Server(procs, tmp_path, kind, f"http-socket = 127.0.0.1:{{port}}\nsocket-timeout = 5\n{option}")
    leave_early(srv.port, "/writer")
    outcome = wait_until(lambda: srv.file("outcome.txt"), 20, message="the app's outcome")
    # the write callable raises OSError("write error") into the app, unless told not to
    assert outcome == ("no error" if variant == "disable-write-exception" else "OSError: write error"), \
        srv.log()[-2000:]
    leave_early(srv.port, "/yielder")
    sent = int(wait_until(lambda: srv.file("closed.txt"), 20, message="the generator closed"))
    assert sent < 400  # the iteration stopped at the failed write, and close() ran
    wait_until(lambda: "GET /yielder" in srv.log() or "/yielder" in srv.log(), 10, message="log")
    failed_write = "uwsgi_response_write" in srv.log()
    assert failed_write == (variant != "ignore-write-errors"), srv.log()[-3000:]
    if variant == "ignore-sigpipe":
        assert "SIGPIPE" not in srv.log()
    if variant == "default":
        assert "during GET /writer (127.0.0.1)" in srv.log()


# --- sockets -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_reuse_port_lets_two_instances_share_a_port(procs: Procs, tmp_path: Path, kind: str) -> None:
    port = free_port()
    first = Server(procs, tmp_path, kind, "http-socket = 127.0.0.1:{port}\nreuse-port = true", name="a",
                   port=port)
    second = Server(procs, tmp_path, kind, "http-socket = 127.0.0.1:{port}\nreuse-port = true", name="b",
                    port=port, wait=False)
    wait_until(lambda: "spawned uWSGI worker 1" in second.log() or second.proc.poll() is not None, 20,
               message="the second instance")
    assert second.proc.poll() is None and first.proc.poll() is None, second.log()[-2000:]
    third = Server(procs, tmp_path, kind, "http-socket = 127.0.0.1:{port}", name="c", port=port, wait=False)
    try:
        code = third.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a third instance without reuse-port started:\n{third.log()[-2000:]}")
    assert code != 0
    assert "in use" in third.log().lower()


# --- http-auto-chunked ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_auto_chunked_keeps_the_connection(procs: Procs, tmp_path: Path, kind: str) -> None:
    srv = Server(procs, tmp_path, kind, "http = 127.0.0.1:{port}\nhttp-keepalive = 1\nhttp-auto-chunked = true",
                 plugins="python3,corerouter,http")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        for _ in range(2):
            s.sendall(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
            data = b""
            while not data.endswith(b"\r\n0\r\n\r\n"):
                chunk = s.recv(65536)
                assert chunk, f"closed after {data!r}"
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert b"\r\nTransfer-Encoding: chunked" in head
            decoded, rest = b"", body
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                if not size:
                    break
                decoded, rest = decoded + rest[:size], rest[size + 2:]
            assert decoded == b"part0\npart1\npart2\n"
