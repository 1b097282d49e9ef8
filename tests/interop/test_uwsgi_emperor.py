"""A REAL uWSGI emperor (Debian's uwsgi-core) drives `imperium` vassals.

`uwsgi-core --emperor DIR --binary-path .venv/bin/imperium` spawns our instance server for
each ini dropped in DIR, with `--ini NAME`, `UWSGI_EMPEROR_FD` and its own idea of
loyalty. We check what the emperor sees (its log lines and its stats server) and what the
vassal does (serves, reloads on touch with its new config, stops on delete or when the
emperor dies), so the fd protocol is proven against the reference implementation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import (
    UWSGI_CORE,
    Procs,
    descendants,
    free_port,
    need_service,
    pid_alive,
    port_open,
    read_json,
    wait_until,
)
from tests.interop.helpers import VASSAL_BINARY, children, copy_app, http_request, status_of


class RealEmperor:
    """Debian's uWSGI emperor on a temp vassal dir, spawning our binary."""

    def __init__(self, procs: Procs, tmp: Path, *extra_args: str) -> None:
        need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK), f"{UWSGI_CORE} (Debian uwsgi-core)")
        self.procs = procs
        self.dir = tmp / "vassals"
        self.dir.mkdir()
        self.apps = tmp / "apps"
        copy_app("hello.py", self.apps)
        self.stats_port = free_port()
        self.proc = procs.start([UWSGI_CORE, "--emperor", str(self.dir),
                                 "--binary-path", VASSAL_BINARY, "--emperor-freq", "1",
                                 "--emperor-stats", f"127.0.0.1:{self.stats_port}",
                                 *extra_args],
                                cwd=tmp)
        wait_until(lambda: port_open(self.stats_port) or self.proc.poll() is not None, 10,
                   message="the uWSGI emperor's stats server")
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return self.procs.output(self.proc)

    def wait_log(self, text: str, timeout: float = 15, after: int = 0) -> None:
        wait_until(lambda: text in self.log()[after:], timeout,
                   message=f"emperor log line {text!r}; log:\n{self.log()[-3000:]}")

    def vassal(self, name: str) -> dict | None:
        for v in read_json(self.stats_port)["vassals"]:
            if v["id"] == name:
                return v
        return None

    def write_vassal(self, name: str, http_port: int, processes: int = 2,
                     extra: str = "") -> Path:
        ini = self.dir / name
        ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{http_port}\n"
                       f"wsgi-file = {self.apps}/hello.py\nmaster = true\n"
                       f"processes = {processes}\n{extra}")
        return ini


class _Broken(BaseException):
    """Escapes wait_until, which retries on Exception."""


def touch_later(path: Path, seconds: int = 2) -> None:
    """A newer mtime: the emperor compares whole seconds, so a same-second touch is lost."""
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + seconds))


def spawn_and_serve(emperor: RealEmperor, name: str, processes: int = 2,
                    extra: str = "") -> tuple[int, int]:
    port = free_port()
    emperor.write_vassal(name, port, processes, extra)

    def serving() -> bool:
        # a vassal that dies before serving is blacklisted: say so now, not at the deadline
        if "unloyal bad behaving vassal found" in emperor.log():
            raise _Broken(f"vassal {name} keeps dying; emperor log:\n{emperor.log()[-3000:]}")
        return status_of(port) == 200

    try:
        wait_until(serving, 30,
                   message=f"vassal {name} serving 200; emperor log:\n{emperor.log()[-3000:]}")
    except _Broken as exc:
        pytest.fail(str(exc))
    return port, emperor.vassal(name)["pid"]


def test_real_emperor_spawns_our_vassal(procs: Procs, tmp_path: Path) -> None:
    emperor = RealEmperor(procs, tmp_path)
    port, pid = spawn_and_serve(emperor, "hello.ini")
    # the vassal told the emperor it was spawned (byte 1) and that it accepts (byte 5)
    emperor.wait_log("vassal hello.ini has been spawned")
    emperor.wait_log("vassal hello.ini is ready to accept requests")
    # after a request served, the vassal declares loyalty (byte 17)
    emperor.wait_log("vassal hello.ini is now loyal")
    v = emperor.vassal("hello.ini")
    assert v["loyal"] and v["ready"] and v["accepting"], v
    assert v["pid"] == pid and pid in children(emperor.proc.pid)
    assert v["respawns"] == 0 and v["cursed"] == 0, v
    # the emperor ran our binary, as it says in its log
    assert f"binary path: {VASSAL_BINARY}" in emperor.log()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().split(b"\0")
    assert b"--ini" in cmdline and b"hello.ini" in cmdline, cmdline
    assert len(children(pid)) >= 2, "the vassal master should have 2 workers"
    assert read_json(emperor.stats_port)["blacklist"] == []


def test_touch_reloads_with_the_new_config(procs: Procs, tmp_path: Path) -> None:
    emperor = RealEmperor(procs, tmp_path)
    port, pid = spawn_and_serve(emperor, "app.ini", processes=2)
    emperor.wait_log("vassal app.ini is now loyal")
    old_workers = wait_until(lambda: len(children(pid)) >= 2 and children(pid), 10,
                             message="2 workers")
    mark = len(emperor.log())
    ini = emperor.write_vassal("app.ini", port, processes=3)
    touch_later(ini)
    emperor.wait_log("reload the uwsgi instance app.ini", after=mark)
    # a graceful reload: same master, new workers, and the new config (3 workers)
    new_workers = wait_until(
        lambda: (w := children(pid)) and len(w) == 3 and not (w & old_workers) and w, 30,
        message=f"3 new workers under {pid} (had {old_workers}); log:\n{emperor.log()[-3000:]}")
    assert pid_alive(pid)
    wait_until(lambda: status_of(port) == 200, 15, message="serving again after reload")
    # it announces itself again after the reload, and becomes loyal again
    emperor.wait_log("vassal app.ini is ready to accept requests", after=mark)
    v = emperor.vassal("app.ini")
    assert v["pid"] == pid and v["respawns"] == 1, v
    assert not any(pid_alive(w) for w in old_workers - new_workers)


def test_delete_stops_the_vassal(procs: Procs, tmp_path: Path) -> None:
    emperor = RealEmperor(procs, tmp_path)
    port, pid = spawn_and_serve(emperor, "gone.ini")
    emperor.wait_log("vassal gone.ini is now loyal")
    everyone = {pid, *descendants(pid)}
    (emperor.dir / "gone.ini").unlink()
    emperor.wait_log("removed uwsgi instance gone.ini")
    wait_until(lambda: not port_open(port), 15, message="the vassal's port closed")
    wait_until(lambda: not any(pid_alive(p) for p in everyone), 15,
               message=f"vassal processes {everyone} gone")
    assert read_json(emperor.stats_port)["vassals"] == []
    # removed after loyalty: a clean removal, not a blacklisting
    assert read_json(emperor.stats_port)["blacklist"] == []
    assert emperor.proc.poll() is None


def test_vassal_dies_with_its_emperor(procs: Procs, tmp_path: Path) -> None:
    emperor = RealEmperor(procs, tmp_path)
    port, pid = spawn_and_serve(emperor, "orphan.ini")
    everyone = {pid, *descendants(pid)}
    emperor.proc.send_signal(signal.SIGKILL)
    emperor.proc.wait(timeout=10)
    # the emperor fd hits EOF (and uWSGI set PDEATHSIG): nothing of the vassal may survive
    wait_until(lambda: not any(pid_alive(p) for p in everyone), 15,
               message=f"vassal processes {everyone} gone after the emperor died")
    assert not port_open(port)


def test_emperor_shutdown_stops_vassals_gracefully(procs: Procs, tmp_path: Path) -> None:
    emperor = RealEmperor(procs, tmp_path)
    ports, pids = [], []
    for name in ("a.ini", "b.ini"):
        port, pid = spawn_and_serve(emperor, name)
        ports.append(port)
        pids.append(pid)
    everyone = {p for pid in pids for p in (pid, *descendants(pid))}
    t0 = time.monotonic()
    emperor.proc.send_signal(signal.SIGINT)
    try:
        rc = emperor.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the uWSGI emperor did not finish; log:\n{emperor.log()[-3000:]}")
    assert rc == 0, emperor.log()[-3000:]
    # our vassals obeyed the stop byte: no "NO MERCY" SIGKILL after reload-mercy was needed
    assert "NO MERCY" not in emperor.log(), emperor.log()[-3000:]
    assert "The Emperor is buried" in emperor.log()
    assert time.monotonic() - t0 < 30
    wait_until(lambda: not any(pid_alive(p) for p in everyone), 10,
               message="every vassal process gone")
    assert not any(port_open(p) for p in ports)


def test_heartbeat_keeps_the_vassal_alive(procs: Procs, tmp_path: Path) -> None:
    # the emperor kills a vassal whose heartbeats (byte 26) stop for 2 s once it sent one
    emperor = RealEmperor(procs, tmp_path, "--emperor-required-heartbeat", "2")
    port, pid = spawn_and_serve(emperor, "beat.ini", extra="heartbeat = 1\n")
    seen: set[int] = set()

    def beats() -> bool:
        v = emperor.vassal("beat.ini")
        if v and v["last_heartbeat"]:
            seen.add(v["last_heartbeat"])
        return len(seen) >= 3

    wait_until(beats, 10, message=f"3 heartbeats in the emperor's stats (saw {seen}); "
                                  f"log:\n{emperor.log()[-2000:]}")
    assert "sent no heartbeat" not in emperor.log()
    assert emperor.vassal("beat.ini")["pid"] == pid and pid_alive(pid)
    assert status_of(port) == 200


def test_graceful_shutdown_lets_requests_finish(procs: Procs, tmp_path: Path) -> None:
    # with emperor-graceful-shutdown the emperor sends 2 (graceful stop) instead of 0
    emperor = RealEmperor(procs, tmp_path, "--emperor-graceful-shutdown")
    stats = free_port()
    port, pid = spawn_and_serve(emperor, "slow.ini", extra=f"stats = 127.0.0.1:{stats}\n")
    everyone = {pid, *descendants(pid)}
    answers: list[object] = []

    def slow() -> None:
        try:
            answers.append(http_request(port, "GET", "/sleep/1.5", timeout=20))
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            answers.append(exc)

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    wait_until(lambda: any(w["status"] == "busy" for w in read_json(stats)["workers"]), 10,
               message="the slow request in a worker")
    (emperor.dir / "slow.ini").unlink()
    emperor.wait_log("stop the uwsgi instance slow.ini")
    t.join(20)
    assert answers and not isinstance(answers[0], Exception), answers
    assert answers[0].status == 200 and answers[0].body == b"Hello from /sleep/1.5"
    wait_until(lambda: not any(pid_alive(p) for p in everyone), 15,
               message=f"vassal processes {everyone} gone after the graceful stop")
    assert not port_open(port)
