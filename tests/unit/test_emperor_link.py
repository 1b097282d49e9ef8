"""The vassal side of the emperor protocol, against a fake emperor holding the other end of
the socketpair: every byte a uWSGI 2.0 vassal exchanges."""

from __future__ import annotations

import json
import select
import socket

from emperor.protocol import pack_config
from tests.conftest import IMPERIUM, free_port, port_open, wait_until
from tests.fixtures.instance_helpers import APPS, get

HELLO = str(APPS / "hello.py")


def _start(procs, *args: str, config: bytes | None = None):
    emperor, vassal = socket.socketpair()
    fds = [vassal.fileno()]
    env = {"UWSGI_EMPEROR_FD": str(vassal.fileno())}
    cfg_emperor = None
    if config is not None:
        cfg_emperor, cfg_vassal = socket.socketpair()
        fds.append(cfg_vassal.fileno())
        env["UWSGI_EMPEROR_FD_CONFIG"] = str(cfg_vassal.fileno())
        cfg_emperor.sendall(pack_config(config))
    p = procs.start([IMPERIUM, *args], env=env, pass_fds=fds)
    vassal.close()
    if config is not None:
        cfg_vassal.close()
    return p, emperor, cfg_emperor


def _expect(sock: socket.socket, wanted: set[int], timeout: float = 15.0) -> list[int]:
    """Read bytes until every byte in ``wanted`` was seen; returns all bytes read."""
    seen: list[int] = []
    wait_until(lambda: _read_into(sock, seen) and wanted <= set(seen), timeout,
               message=f"bytes {sorted(wanted)} from the vassal (got {seen})")
    return seen


def _read_into(sock: socket.socket, seen: list[int]) -> bool:
    ready, _, _ = select.select([sock], [], [], 0.05)
    if ready:
        data = sock.recv(64)
        if not data:
            raise EOFError("vassal closed its emperor fd")
        seen.extend(data)
    return True


def test_spawned_accepting_loyal_heartbeat_reload_stop(procs) -> None:
    port = free_port()
    p, emperor, _ = _start(procs, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", HELLO, "--master",
                           "--heartbeat", "1")
    with emperor:
        first = _expect(emperor, {1, 5, 26})
        assert first.index(1) < first.index(5)
        assert get(port, "/pid")[0] == 200
        got = _expect(emperor, {17})
        assert got.count(17) == 1
        _expect(emperor, {26})  # the next heartbeat, about a second later
        first_pid = int(get(port, "/pid")[1])
        emperor.send(bytes([1]))  # reload: a new incarnation says spawned/accepting again
        _expect(emperor, {1, 5})
        wait_until(lambda: int(get(port, "/pid")[1]) != first_pid, 10, message="new worker after reload")
        assert p.poll() is None
        emperor.send(bytes([0]))  # stop
        assert p.wait(timeout=15) == 0
    assert "received message from the Emperor: stop" in procs.output(p)


def test_exits_when_the_emperor_goes_away(procs) -> None:
    port = free_port()
    p, emperor, _ = _start(procs, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", HELLO, "--master")
    _expect(emperor, {1, 5})
    emperor.close()
    assert p.wait(timeout=15) == 0
    assert "lost connection with my Emperor" in procs.output(p)


def test_idle_die_on_idle_sends_22(procs) -> None:
    port = free_port()
    p, emperor, _ = _start(procs, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", HELLO, "--master",
                           "--idle", "1", "--die-on-idle")
    with emperor:
        _expect(emperor, {1, 5})
        _expect(emperor, {22}, timeout=10)
        assert p.poll() is None  # it waits for the emperor's verdict
        emperor.send(bytes([0]))
        assert p.wait(timeout=15) == 0


def test_graceful_stop_byte_2(procs) -> None:
    port = free_port()
    p, emperor, _ = _start(procs, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", HELLO, "--master")
    with emperor:
        _expect(emperor, {1, 5})
        emperor.send(bytes([2]))
        assert p.wait(timeout=15) == 0


def test_config_over_the_config_fd_and_reload(procs) -> None:
    port = free_port()
    ini = (f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {APPS / 'uwsgi_api.py'}\nmaster = true\n"
           "procname = first\n")
    p, emperor, cfg = _start(procs, "--ini", "emperor://app.ini", config=ini.encode())
    assert cfg is not None
    with emperor, cfg:
        _expect(emperor, {1, 5})
        wait_until(lambda: port_open(port), 10, message="vassal port")
        assert json.loads(get(port)[1])["opt"]["procname"] == "first"
        # reload; a 2.0 emperor pushes the new config right away and again when asked (2)
        emperor.send(bytes([1]))
        cfg.sendall(pack_config(ini.replace("first", "second").encode()))
        got = _expect(emperor, {2})
        cfg.sendall(pack_config(ini.replace("first", "second").encode()))
        got += _expect(emperor, {1, 5})
        assert got.index(2) < got.index(1)  # asked for the config before coming back up
        wait_until(lambda: json.loads(get(port)[1])["opt"]["procname"] == "second", 15,
                   message="the new config in effect")
        emperor.send(bytes([0]))
        assert p.wait(timeout=15) == 0
