"""Zerg mode: an instance hands its listening sockets to zergs over a UNIX socket (SCM_RIGHTS)."""

from __future__ import annotations

import os
import signal

from tests.conftest import IMPERIUM, UWSGI_CORE, free_port, need_service, pid_alive, wait_until
from tests.fixtures.instance_helpers import APPS, get, raw, start
from vassal.protocols import uwsgi as U

HELLO = str(APPS / "hello.py")


def _kill_server(master: int, worker: int) -> None:
    """SIGKILL the zerg server's master, then its worker, and wait until both are gone."""
    os.kill(master, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: not pid_alive(worker), 10, message="server worker gone")


def test_zerg_serves_on_the_servers_socket(procs, tmp_path) -> None:
    port = free_port()
    zs = str(tmp_path / "zerg.sock")
    server = start(procs, "--wsgi-file", HELLO, "--master", "--zerg-server", zs, port=port)
    wait_until(lambda: os.path.exists(zs), 10, message="zerg server socket")
    server_pid = int(get(port, "/pid")[1])
    zerg = procs.start([IMPERIUM, "--zerg", zs, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", HELLO,
                        "--master"])
    wait_until(lambda: "attached from zerg server" in procs.output(zerg), 10, message="zerg attached")
    assert zerg.poll() is None, procs.output(zerg)
    # the server goes away; the zerg holds its own copy of the listening socket and keeps serving.
    # (SIGSTOP would not do: a stopped worker stays queued in epoll and may be the one woken.)
    _kill_server(server.pid, server_pid)
    status, body = get(port, "/pid")
    assert status == 200 and int(body) != server_pid


def test_zerg_without_server_fails_unless_fallback(procs, tmp_path) -> None:
    port = free_port()
    p = procs.start([IMPERIUM, "--zerg", str(tmp_path / "none.sock"), "--http-socket", f"127.0.0.1:{port}",
                     "--wsgi-file", HELLO])
    assert p.wait(timeout=20) == 1
    assert "cannot attach to zerg server" in procs.output(p)
    start(procs, "--zerg", str(tmp_path / "none.sock"), "--zerg-fallback", "--wsgi-file", HELLO, port=port)
    assert get(port)[0] == 200


def test_real_uwsgi_zerg_attaches_to_our_server(procs, tmp_path) -> None:
    """Real uWSGI zergs speak the uwsgi protocol on every socket they receive (as nginx feeds them)."""
    need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK), "Debian uwsgi-core")
    port, uport = free_port(), free_port()
    zs = str(tmp_path / "zerg.sock")
    server = start(procs, "--socket", f"127.0.0.1:{uport}", "--wsgi-file", HELLO, "--master", "--zerg-server", zs,
                   port=port)
    wait_until(lambda: os.path.exists(zs), 10, message="zerg server socket")
    server_pid = int(get(port, "/pid")[1])
    zerg = procs.start([UWSGI_CORE, "--plugin", "python3", "--zerg", zs, "--wsgi-file", HELLO, "--master"])
    wait_until(lambda: "spawned uWSGI worker 1" in procs.output(zerg), 15, message="uWSGI zerg up")
    assert f"attached to INET address 127.0.0.1:{uport}" in procs.output(zerg)
    _kill_server(server.pid, server_pid)
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/pid", "SERVER_PROTOCOL": "HTTP/1.1", "QUERY_STRING": ""}
    out = raw(uport, U.encode_packet(env))
    assert out.startswith(b"HTTP/1.1 200") and int(out.split(b"\r\n\r\n", 1)[1]) != server_pid, out
