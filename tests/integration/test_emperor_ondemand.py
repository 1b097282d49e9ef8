"""On-demand vassals: the emperor binds the socket, starts the vassal on the first
connection, hands it the socket as fd 0, and takes it back when the vassal goes idle."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests import procstat
from tests.conftest import Procs, free_port, read_to_close, wait_until
from tests.integration.emperor_harness import Emperor

HELLO = Path(__file__).resolve().parent.parent / "interop" / "apps" / "hello.py"


def http_get(addr: str | int) -> bytes:
    """One HTTP/1.0 exchange over TCP (a port) or a UNIX socket (a path); raises on refusal."""
    return read_to_close(addr, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", timeout=15)


def vassal_ini(idle: int = 0) -> str:
    lines = ["[uwsgi]", f"wsgi-file = {HELLO}", "master = true", "processes = 1", "protocol = http"]
    if idle:
        lines += [f"idle = {idle}", "die-on-idle = true"]
    return "\n".join(lines) + "\n"


def test_unix_on_demand_starts_on_connection_and_returns_to_waiting(procs: Procs, tmp_path: Path) -> None:
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    e = Emperor(procs, tmp_path, "--emperor-on-demand-directory", str(sockets), own_binary=True)
    (e.dir / "app.ini").write_text(vassal_ini(idle=1))
    path = str(sockets / "app.socket")
    e.wait_log(f'[uwsgi-emperor] app.ini -> "on demand" instance detected, waiting for '
               f'connections on socket "{path}" ...')
    v = e.wait_vassal("app.ini", on_demand=path)
    assert v["pid"] == -1 and v["ready"] == 0  # no process until a connection comes
    body = http_get(path)
    assert body.startswith(b"HTTP/1.") and b" 200 " in body.split(b"\r\n", 1)[0], body[:200]
    first = e.wait_vassal("app.ini", loyal=1)["pid"]
    assert first > 0
    e.seen_pids.add(first)
    # idle 1 s + die-on-idle: byte 22, back to waiting on the socket the emperor kept
    e.wait_log('[uwsgi-emperor] app.ini -> back to "on demand" mode, waiting for connections '
               f'on socket "{path}" ...', 20)
    assert e.vassal("app.ini")["pid"] == -1
    body = http_get(path)  # starts it again
    assert b" 200 " in body.split(b"\r\n", 1)[0]
    again = e.wait_vassal("app.ini", loyal=1)["pid"]
    assert again not in (-1, first)
    e.seen_pids.add(again)
    assert e.stop() == 0


def test_tcp_on_demand_by_extension_refuses_no_connection_across_idle(procs: Procs,
                                                                      tmp_path: Path) -> None:
    port = free_port()
    e = Emperor(procs, tmp_path, "--emperor-on-demand-extension", ".socket", own_binary=True)
    (e.dir / "web.ini.socket").write_text(f"127.0.0.1:{port}\nignored second line\n")
    (e.dir / "web.ini").write_text(vassal_ini(idle=1))
    e.wait_vassal("web.ini", on_demand=f"127.0.0.1:{port}", pid=-1)
    # the narrow moment: the vassal has said it goes idle (byte 22) and is stopping; a
    # connection made right then must still be answered, by it or by the next process
    for _ in range(3):
        mark = e.mark()
        assert b" 200 " in http_get(port).split(b"\r\n", 1)[0]
        v = e.vassal("web.ini")
        if v and v["pid"] > 0:
            e.seen_pids.add(v["pid"])
        e.wait_log("bringing back instance web.ini to on-demand mode", 20, after=mark)
        answer = http_get(port).split(b"\r\n", 1)[0]
        assert b" 200 " in answer, answer
        e.wait_log('-> back to "on demand" mode', 20, after=mark)
    assert e.stop() == 0


def test_a_crashed_on_demand_vassal_keeps_its_socket_and_queued_connections(procs: Procs,
                                                                            tmp_path: Path) -> None:
    """The vassal dies on its own (SIGKILL) with a connection queued on its socket: the emperor
    keeps the socket (same inode, never closed), and the next process answers that connection."""
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    e = Emperor(procs, tmp_path, "--emperor-on-demand-directory", str(sockets), own_binary=True)
    (e.dir / "app.ini").write_text(vassal_ini())
    path = str(sockets / "app.socket")
    e.wait_vassal("app.ini", on_demand=path, pid=-1)
    inode = os.stat(path).st_ino
    assert b" 200 " in http_get(path).split(b"\r\n", 1)[0]
    first = e.wait_vassal("app.ini", loyal=1)["pid"]
    e.seen_pids.add(first)
    os.killpg(first, signal.SIGSTOP)  # nobody accepts: the next connection stays queued
    # a worker running on the other core stops at its next return to user space: wait for it
    wait_until(lambda: all(p.state in ("T", "t") for p in procstat.table().values()
                           if p.pgrp == first and not p.exited), 10, message="the vassal stopped")
    queued = socket.socket(socket.AF_UNIX)
    queued.settimeout(20)
    try:
        queued.connect(path)
        queued.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        os.killpg(first, signal.SIGKILL)
        answer = b""
        while chunk := queued.recv(65536):
            answer += chunk
    finally:
        queued.close()
    assert b" 200 " in answer.split(b"\r\n", 1)[0], answer[:300]
    again = e.wait_vassal("app.ini", loyal=1)["pid"]
    assert again not in (-1, first)
    e.seen_pids.add(again)
    assert os.stat(path).st_ino == inode, "the socket was bound again"
    assert "cannot bind" not in e.log()
    assert e.stop() == 0


def test_on_demand_exec_names_the_socket(procs: Procs, tmp_path: Path) -> None:
    """emperor-on-demand-exec: the first line the command prints for the config is the socket
    (run in a worker thread; a vassal it prints nothing for starts at once)."""
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    script = tmp_path / "which-socket.sh"
    script.write_text(f'#!/bin/sh\ncase "$1" in *lazy*) echo "{sockets}/$(basename "$1").sock";; esac\n')
    script.chmod(0o755)
    e = Emperor(procs, tmp_path, "--emperor-on-demand-exec", str(script), own_binary=True)
    (e.dir / "lazy.ini").write_text(vassal_ini())
    port = free_port()
    (e.dir / "eager.ini").write_text(vassal_ini() + f"http-socket = 127.0.0.1:{port}\n")
    path = str(sockets / "lazy.ini.sock")
    e.wait_vassal("lazy.ini", on_demand=path, pid=-1, timeout=15)
    eager = e.wait_vassal("eager.ini", accepting=1, timeout=20)  # nothing printed: started now
    assert eager["on_demand"] == "" and eager["pid"] > 0
    e.seen_pids.add(eager["pid"])
    assert b" 200 " in http_get(port).split(b"\r\n", 1)[0]
    assert b" 200 " in http_get(path).split(b"\r\n", 1)[0]
    e.seen_pids.add(e.wait_vassal("lazy.ini", loyal=1)["pid"])
    assert e.stop() == 0


def test_touch_while_waiting_and_a_changed_socket(procs: Procs, tmp_path: Path) -> None:
    """A touch while waiting records the new mtime only; another socket name restarts the
    vassal on the new socket; no socket name any more starts it as a plain vassal."""
    from tests.integration.emperor_harness import bump_mtime

    e = Emperor(procs, tmp_path, "--emperor-on-demand-extension", ".socket")
    first, second = str(tmp_path / "one.sock"), str(tmp_path / "two.sock")
    (e.dir / "w.ini.socket").write_text(first + "\n")
    ini = e.ini("w.ini")
    e.wait_vassal("w.ini", on_demand=first, pid=-1)
    mark = e.mark()
    bump_mtime(ini)
    e.wait_log('[emperor] updated configuration for "on demand" instance w.ini', after=mark)
    assert e.vassal("w.ini")["pid"] == -1 and not e.records("w.ini", "start")

    (e.dir / "w.ini.socket").write_text(second + "\n")
    bump_mtime(ini, 4)
    e.wait_log(f'[uwsgi-emperor] w.ini -> on-demand socket changed ("{first}" -> "{second}"): '
               "restarting it", after=mark)
    e.wait_vassal("w.ini", on_demand=second, pid=-1)
    with socket.socket(socket.AF_UNIX) as s:  # the old socket is closed
        assert s.connect_ex(first) != 0

    (e.dir / "w.ini.socket").unlink()
    bump_mtime(ini, 6)
    e.wait_records("w.ini", "start")  # out of on-demand mode: started at once
    assert e.wait_vassal("w.ini", loyal=1)["on_demand"] == ""
    assert e.stop() == 0


def test_on_demand_socket_that_cannot_be_bound_is_contained(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-on-demand-extension", ".socket")
    (e.dir / "bad.ini.socket").write_text(str(tmp_path / "no" / "such" / "dir.sock"))
    e.ini("bad.ini")
    e.ini("good.ini")
    e.wait_vassal("good.ini", loyal=1)  # no .socket file: started at once
    e.wait_log(f"[emperor] cannot bind the on-demand socket {tmp_path / 'no' / 'such' / 'dir.sock'} "
               "of vassal bad.ini: ")
    assert e.vassal("bad.ini") is None and e.proc.poll() is None
    # fixed: the next try binds it
    (e.dir / "bad.ini.socket").write_text(str(tmp_path / "ok.sock"))
    wait_until(lambda: (v := e.vassal("bad.ini")) and v["on_demand"] == str(tmp_path / "ok.sock"),
               15, message=f"bad.ini waiting on its socket; log:\n{e.log()[-2000:]}")
    assert e.stop() == 0


def test_pg_socket_column_makes_an_on_demand_vassal(procs: Procs, tmp_path: Path) -> None:
    """A monitor's socket column (pg here): the config comes over the config fd, the socket
    from the row."""
    from tests.integration.test_monitor_pg import pg_table

    with pg_table() as table:  # a missing PostgreSQL fails under CI=true
        path = str(tmp_path / "pg-app.sock")
        table.put("pgapp.ini", vassal_ini(), socket=path)
        query = f"SELECT name,config,EXTRACT(epoch FROM ts),uid,gid,socket FROM {table.name}"
        e = Emperor(procs, tmp_path, monitors=[table.arg(notify=True, query=query)], own_binary=True)
        e.wait_vassal("pgapp.ini", on_demand=path, pid=-1, timeout=15)
        body = http_get(path)
        assert b" 200 " in body.split(b"\r\n", 1)[0], body[:300]
        pid = e.wait_vassal("pgapp.ini", loyal=1)["pid"]
        e.seen_pids.add(pid)
        table.delete("pgapp.ini")
        e.wait_gone("pgapp.ini", 15)
        assert e.stop() == 0
