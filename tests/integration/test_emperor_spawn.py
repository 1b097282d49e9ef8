"""The spawn path: forked vassals are indistinguishable from exec'd ones, reload by
re-exec, die with the emperor; the fork server is replaced if it dies."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

from tests.conftest import Procs, free_port, pid_alive, wait_until
from tests.integration.emperor_harness import Emperor, bump_mtime, processes_in_groups

PROBE = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "process_probe.py"


def get(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return r.read()


def probe_vassal(e: Emperor, name: str, out: Path) -> int:
    port = free_port()
    (e.dir / name).write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {PROBE}\n"
                              f"master = true\nprocesses = 1\nenv = PROBE_OUT={out}\n")
    wait_until(lambda: out.exists() and out.stat().st_size, 20,
               message=f"the probe of {name}; log:\n{e.log()[-3000:]}")
    return port


def test_forked_vassal_looks_exactly_like_an_execd_one(procs: Procs, tmp_path: Path) -> None:
    seen = {}
    for method in ("exec", "fork"):
        where = tmp_path / method
        where.mkdir()
        e = Emperor(procs, where, "--emperor-spawn", method, own_binary=True)
        out = where / "probe.json"
        port = probe_vassal(e, "probe.ini", out)
        e.wait_log(f"[emperor] vassal probe.ini is {method}ed (pid: ")
        seen[method] = json.loads(out.read_text())
        pid = int(get(port))
        e.seen_pids.add(pid)
        assert e.stop() == 0
    ex, fk = seen["exec"], seen["fork"]
    # the one path that differs: the temp dir of each run (cwd, and the env naming the file)
    for doc, method in ((ex, "exec"), (fk, "fork")):
        doc["cwd"] = doc["cwd"].replace(f"/{method}/", "/X/")
        doc["env"]["PROBE_OUT"] = doc["env"]["PROBE_OUT"].replace(f"/{method}/", "/X/")
        doc["env"].pop("PWD", None)
    assert ex["cmdline"] == ex["orig_argv"], "exec'd: /proc/PID/cmdline is the argv"
    for key in ex:
        assert fk[key] == ex[key], f"{key} differs: exec'd {ex[key]!r}, forked {fk[key]!r}"
    assert fk["pdeathsig"] == signal.SIGKILL and fk["pgid_is_pid"] and fk["stdin"] == "/dev/null"


def test_binary_path_naming_imperium_itself_is_execd(procs: Procs, tmp_path: Path) -> None:
    """The fork is for the emperor's own command; a binary-path (even our own) asks for exec."""
    from tests.conftest import IMPERIUM

    e = Emperor(procs, tmp_path, "--binary-path", IMPERIUM, own_binary=True)
    out = tmp_path / "probe.json"
    probe_vassal(e, "probe.ini", out)
    e.wait_log("[emperor] vassal probe.ini is execed (pid: ")
    assert "is forked" not in e.log()
    doc = json.loads(out.read_text())
    assert doc["cmdline"] == doc["orig_argv"] and doc["orig_argv"][1] == IMPERIUM
    e.seen_pids.add(e.wait_vassal("probe.ini", accepting=1)["pid"])
    assert e.stop() == 0


def test_forked_vassal_reloads_by_reexec_and_dies_with_a_killed_emperor(procs: Procs,
                                                                         tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, own_binary=True)
    out = tmp_path / "probe.json"
    port = probe_vassal(e, "probe.ini", out)
    e.wait_log("[emperor] vassal probe.ini is forked (pid: ")
    pid = int(get(port))
    master = e.wait_vassal("probe.ini", loyal=1)["pid"]
    out.unlink()
    mark = e.mark()
    bump_mtime(e.dir / "probe.ini")
    e.wait_log("[emperor] reload the uwsgi instance probe.ini", after=mark)
    wait_until(lambda: out.exists() and out.stat().st_size, 20, message="the reloaded probe")
    after = json.loads(out.read_text())
    # the master re-exec'd itself (same pid) from sys.orig_argv: now a plain exec'd process
    assert after["cmdline"] == after["orig_argv"] and after["orig_argv"][-2:] == ["--ini", "probe.ini"]
    assert wait_until(lambda: int(get(port)) != pid, 15, message="a new worker answering")
    assert e.vassal("probe.ini")["pid"] == master
    e.seen_pids.update({pid, master})
    # SIGKILL the emperor: the fork server dies with it, and the vassal with the server
    os.kill(e.proc.pid, signal.SIGKILL)
    e.proc.wait(timeout=10)
    wait_until(lambda: not pid_alive(master) and not processes_in_groups({master}), 10,
               message="the vassal gone with its emperor")


def test_a_dead_fork_server_is_replaced(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, own_binary=True)
    port = probe_vassal(e, "probe.ini", tmp_path / "probe.json")
    first = e.wait_vassal("probe.ini", loyal=0)["pid"]
    server = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == e.proc.pid
              and b"fork server" in _cmdline(int(p))]
    assert len(server) == 1, "one fork server, a child of the emperor"
    os.kill(int(server[0]), signal.SIGKILL)
    e.wait_log("[emperor] the fork server is gone")
    # its vassal died with it and comes back from a new fork server
    wait_until(lambda: (v := e.vassal("probe.ini")) and v["pid"] not in (first, -1), 20,
               message=f"the vassal respawned; log:\n{e.log()[-3000:]}")
    assert wait_until(lambda: get(port), 20, message="the respawned vassal answering")
    assert e.stop() == 0


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError):
        return -1


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_spawning_never_waits_in_the_emperor_loop(procs: Procs, tmp_path: Path) -> None:
    """Vassals whose start (a start hook) blocks until released: all of them are being made at
    the same time, and the emperor answers its stats and starts a plain vassal meanwhile."""
    from tests.conftest import read_json

    release = tmp_path / "release"
    started = tmp_path / "hooks"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$1" >> {started}\n'
                    f'while [ ! -e {release} ]; do sleep 0.05; done\n')
    hook.chmod(0o755)
    e = Emperor(procs, tmp_path, "--vassals-start-hook", str(hook))
    for name in ("a.ini", "b.ini", "c.ini"):
        e.ini(name)
    try:
        wait_until(lambda: started.exists() and len(started.read_text().split()) == 3, 15,
                   message=f"three start hooks blocked at once; log:\n{e.log()[-2000:]}")
        doc = read_json(e.stats_port)  # the loop is free while they block
        assert sorted(v["id"] for v in doc["vassals"]) == ["a.ini", "b.ini", "c.ini"]
        assert not any(e.records(n, "start") for n in ("a.ini", "b.ini", "c.ini"))
    finally:
        release.touch()
    for name in ("a.ini", "b.ini", "c.ini"):
        e.wait_records(name, "start")
    assert e.stop() == 0


def test_wrapper_override_and_fallback(procs: Procs, tmp_path: Path) -> None:
    """uWSGI's order: each emperor-wrapper-override, the binary, each emperor-wrapper-fallback."""
    missing = str(tmp_path / "no-such-uwsgi")
    e = Emperor(procs, tmp_path, "--emperor-wrapper-override", str(tmp_path / "no-such-wrapper"),
                "--emperor-wrapper-override", str(tmp_path / "fake-vassal"), binary=missing)
    e.ini("over.ini")
    start = e.wait_records("over.ini", "start")[0]
    e.wait_log(f"[emperor] trying to use {tmp_path / 'no-such-wrapper'} as binary wrapper ...")
    e.wait_log(f"[emperor] trying to use {tmp_path / 'fake-vassal'} as binary wrapper ...")
    assert "--ini" in start["argv"] and "[emperor] binary path:" not in e.log()
    assert e.stop() == 0

    other = tmp_path / "second"
    other.mkdir()
    e = Emperor(procs, other, "--emperor-wrapper-fallback", str(other / "fake-vassal"),
                binary=missing)
    e.ini("fall.ini")
    e.wait_records("fall.ini", "start")
    e.wait_log(f"[emperor] binary path: {missing}")
    e.wait_log(f"[emperor] trying to use {other / 'fake-vassal'} as binary fallback ...")
    assert e.stop() == 0


def test_bad_emperor_options_are_refused_by_name(procs: Procs, tmp_path: Path) -> None:
    from tests.conftest import IMPERIUM

    for option, value, why in (("emperor-use-clone", "fs,bogus", "unknown namespace subsystem: bogus"),
                               ("emperor-use-clone", "files", "not a namespace"),
                               ("emperor-cap", "setuid,no_such_cap", "unknown capability: no_such_cap"),
                               ("emperor-spawn", "vfork", "must be fork or exec")):
        p = procs.start([IMPERIUM, "--emperor", str(tmp_path), f"--{option}", value])
        assert p.wait(timeout=15) == 1
        out = procs.output(p)
        assert f"imperium: {option} = {value}" in out and why in out, out


def _spawn_and_wait(make_spawner, argv: list[str]) -> tuple[int, int, bytes]:
    """Spawn ``argv`` through a spawner in a fresh loop: (pid, wait status, what the child
    wrote on its emperor fd)."""
    import asyncio
    import socket as socketmod

    from emperor.spawn import SpawnRequest

    async def go() -> tuple[int, int, bytes]:
        loop = asyncio.get_running_loop()
        started: asyncio.Future = loop.create_future()
        exited: asyncio.Future = loop.create_future()
        spawner = make_spawner(loop, lambda pid, status: exited.set_result((pid, status)))
        ours, theirs = socketmod.socketpair()
        req = SpawnRequest("t.ini", argv, {"PATH": os.defpath}, None, "exec")
        spawner.spawn(req, [theirs.fileno()], lambda pid, err: started.set_result((pid, err)))
        pid, err = await asyncio.wait_for(started, 20)
        theirs.close()
        assert err is None and pid > 0
        got_pid, status = await asyncio.wait_for(exited, 20)
        assert got_pid == pid
        data = ours.recv(100)
        ours.close()
        spawner.close()
        return pid, status, data

    return asyncio.run(go())


# bash: dash cannot write to fds above 9
SCRIPT = ["/bin/bash", "-c", 'printf "fd=$UWSGI_EMPEROR_FD" >&"$UWSGI_EMPEROR_FD"; exit 5']


def test_thread_spawner_the_fallback_without_fork_server() -> None:
    from emperor.spawn import ThreadSpawner

    pid, status, data = _spawn_and_wait(ThreadSpawner, SCRIPT)
    assert os.waitstatus_to_exitcode(status) == 5 and data.startswith(b"fd=")


def test_fork_server_exec_reports_pid_and_status() -> None:
    from emperor.forkserver import ForkServer

    def make(loop, on_exit):
        fs = ForkServer()
        fs.start()
        fs.attach(loop, on_exit)
        return fs

    pid, status, data = _spawn_and_wait(make, SCRIPT)
    assert os.waitstatus_to_exitcode(status) == 5 and data.startswith(b"fd=")
