"""Foreign vassals: Debian's real uWSGI (uwsgi-core) governed by our emperor.

``binary-path = /usr/bin/uwsgi-core``: the vassal gets uWSGI's argv (``--ini NAME``) and
``UWSGI_EMPEROR_FD``, tells us it is spawned (1), accepting (5) and loyal (17, after its
first request), reloads gracefully on touch and stops on delete. A config pushed over the
config fd (``emperor://NAME``, from a zmq monitor) is read by the real uWSGI too.
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import UWSGI_CORE, Procs, free_port, need_service, wait_until
from tests.integration.emperor_harness import Emperor, bump_mtime, processes_in_groups

HELLO = Path(__file__).resolve().parent.parent / "interop" / "apps" / "hello.py"
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"


@pytest.fixture(autouse=True)
def _need_uwsgi() -> None:
    need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(PLUGIN),
                 f"{UWSGI_CORE} with its python3 plugin")


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, r.read()


def uwsgi_ini(port: int, extra: str = "") -> str:
    return (f"[uwsgi]\nplugins = python3\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {HELLO}\n"
            f"master = true\nprocesses = 2\nworker-reload-mercy = 2\n{extra}")


def workers(pid: int) -> set[int]:
    return set(processes_in_groups({pid})) - {pid}


def test_real_uwsgi_vassal_spawn_reload_stop(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, binary=UWSGI_CORE)
    port = free_port()
    ini = e.dir / "hello.ini"
    ini.write_text(uwsgi_ini(port))
    e.wait_log("[emperor] vassal hello.ini has been spawned", 20)
    e.wait_log("[emperor] vassal hello.ini is ready to accept requests", 20)
    v = e.wait_vassal("hello.ini", ready=1, accepting=1)
    pid = v["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:3] == [UWSGI_CORE.encode(), b"--ini", b"hello.ini"]
    assert "*** has_emperor mode detected (fd: " in e.log()
    assert wait_until(lambda: get(port), 10, message="HTTP 200")[0] == 200
    e.wait_log("[emperor] vassal hello.ini is now loyal", 10)
    before = wait_until(lambda: len(w := workers(pid)) == 2 and w, 10, message="2 workers")

    mark = e.mark()
    bump_mtime(ini)
    e.wait_log("[emperor] reload the uwsgi instance hello.ini", after=mark)
    e.wait_log("gracefully", 10, after=mark)  # uWSGI's own reload lines
    # the re-exec'd master does not send 1 again, but worker 1 sends 5 when it accepts
    e.wait_log("[emperor] vassal hello.ini is ready to accept requests", 20, after=mark)
    after = wait_until(lambda: len(w := workers(pid)) == 2 and not (w & before) and w, 20,
                       message="new workers after the reload")
    assert after.isdisjoint(before)
    assert e.vassal("hello.ini")["pid"] == pid and e.vassal("hello.ini")["respawns"] == 1
    assert wait_until(lambda: get(port), 10, message="HTTP 200 after the reload")[0] == 200

    mark = e.mark()
    ini.unlink()
    e.wait_log("[emperor] stop the uwsgi instance hello.ini", after=mark)
    e.wait_log("[emperor] removed uwsgi instance hello.ini", 20, after=mark)
    wait_until(lambda: not processes_in_groups({pid}), 10, message="the vassal and its workers gone")
    e.seen_pids.add(pid)
    assert e.stop() == 0


def test_real_uwsgi_reads_its_config_from_the_config_fd(procs: Procs, tmp_path: Path) -> None:
    zport, port = free_port(), free_port()
    e = Emperor(procs, tmp_path, binary=UWSGI_CORE,
                monitors=[f"zmq://tcp://127.0.0.1:{zport}", str(tmp_path / "vassals")])
    import zmq

    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"tcp://127.0.0.1:{zport}")
    try:
        push.send_multipart([b"touch", b"pushed.ini", uwsgi_ini(port).encode()])
        v = e.wait_vassal("pushed.ini", accepting=1, timeout=20)
        with open(f"/proc/{v['pid']}/cmdline", "rb") as f:
            assert b"emperor://pushed.ini" in f.read().split(b"\0")
        assert wait_until(lambda: get(port, "/x"), 10, message="HTTP 200")[1] == b"Hello from /x"
        e.seen_pids.add(v["pid"])
        push.send_multipart([b"destroy", b"pushed.ini"])
        e.wait_log("[emperor] removed uwsgi instance pushed.ini", 20)
    finally:
        push.close()
        ctx.term()
    assert e.stop() == 0


def test_real_uwsgi_vassals_stopped_by_royal_death(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, binary=UWSGI_CORE)
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        (e.dir / f"app{i}.ini").write_text(uwsgi_ini(port))
    for i, port in enumerate(ports):
        e.wait_vassal(f"app{i}.ini", accepting=1, timeout=20)
        wait_until(lambda p=port: get(p), 10, message="HTTP 200")
    pids = {e.vassal(f"app{i}.ini")["pid"] for i in range(2)}
    e.seen_pids.update(pids)
    t0 = time.monotonic()
    assert e.stop() == 0
    assert time.monotonic() - t0 < 10
    assert not processes_in_groups(pids)


def test_our_emperor_as_a_vassal_of_real_uwsgi(procs: Procs, tmp_path: Path) -> None:
    """A sub-emperor: uWSGI's emperor governs ours, which governs its own vassals."""
    from tests.conftest import IMPERIUM
    from tests.integration.emperor_harness import fake_launcher

    top, sub = tmp_path / "top", tmp_path / "sub"
    top.mkdir()
    sub.mkdir()
    fake = fake_launcher(tmp_path)
    record = tmp_path / "leaf.jsonl"
    (sub / "leaf.ini").write_text(f"[uwsgi]\nfake-record = {record}\n")
    stats_port = free_port()
    parent = procs.start([UWSGI_CORE, "--emperor", str(top), "--binary-path", IMPERIUM,
                          "--emperor-freq", "1", "--emperor-stats", f"127.0.0.1:{stats_port}"],
                         cwd=tmp_path)
    (top / "sub.ini").write_text(f"[uwsgi]\nemperor = {sub}\nbinary-path = {fake}\n"
                                 "emperor-freq = 1\nreload-mercy = 2\n")

    def log() -> str:
        return procs.output(parent)
    wait_until(lambda: "*** starting uWSGI sub-Emperor ***" in log(), 20, message=f"sub-emperor\n{log()}")
    wait_until(lambda: "[emperor] vassal sub.ini is now loyal" in log(), 10,
               message=f"the sub-emperor's loyalty, seen by uWSGI\n{log()}")
    wait_until(lambda: record.exists() and '"start"' in record.read_text(), 10,
               message=f"the leaf vassal\n{log()}")
    import json as _json

    leaf_pid = _json.loads(record.read_text().splitlines()[0])["pid"]
    (top / "sub.ini").unlink()  # uWSGI sends 0: our sub-emperor stops its vassals and exits
    wait_until(lambda: "[emperor] stop requested by my Emperor" in log(), 10, message=log())
    wait_until(lambda: "removed uwsgi instance sub.ini" in log(), 15, message=log())
    assert "The Emperor is buried." in log()
    wait_until(lambda: not processes_in_groups({leaf_pid}), 5, message="the leaf vassal gone")
