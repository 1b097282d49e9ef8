"""The life of a vassal under our emperor, with real processes (the fake protocol vassal).

Spawn (argv, env, cwd as uWSGI gives them), ready/accepting/loyal, touch → reload, delete →
stop, death → respawn, voluntary shutdown, exile, the config fd, hooks, pidfile, tyrant.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

from tests.conftest import Procs, free_port, need_root, wait_until
from tests.integration.emperor_harness import SH_VASSAL, Emperor, bump_mtime, stays


def test_spawn_reload_on_touch_stop_on_delete(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)
    ini = e.ini("app.ini")
    start = e.wait_records("app.ini", "start")[0]
    # argv, cwd and env are uWSGI's: BINARY --ini NAME, run from the vassal dir
    assert start["argv"][1:] == ["--ini", "app.ini"]
    assert start["cwd"] == str(e.dir)
    assert start["env"]["UWSGI_EMPEROR_FD"].isdigit()
    assert "UWSGI_EMPEROR_FD_CONFIG" not in start["env"]
    assert start["pgid"] == start["pid"]  # its own process group
    e.wait_log("[emperor] vassal app.ini has been spawned")
    e.wait_log("[emperor] vassal app.ini is ready to accept requests")
    e.wait_log("[emperor] vassal app.ini is now loyal")
    v = e.wait_vassal("app.ini", loyal=1, ready=1, accepting=1)
    assert v["pid"] == start["pid"] and v["respawns"] == 0 and v["cursed"] == 0
    assert v["monitor"] == str(e.dir)

    bump_mtime(ini)
    reload = e.wait_records("app.ini", "reload")[0]
    assert reload["pid"] == start["pid"]
    e.wait_log("[emperor] reload the uwsgi instance app.ini")
    e.wait_vassal("app.ini", respawns=1)

    mark = e.mark()
    ini.unlink()
    e.wait_records("app.ini", "stop")
    e.wait_log("[emperor] stop the uwsgi instance app.ini", after=mark)
    e.wait_log("[emperor] removed uwsgi instance app.ini", after=mark)
    e.wait_gone("app.ini")
    assert e.stats()["blacklist"] == []  # it was loyal
    assert e.stop() == 0
    assert "The Emperor is buried." in e.log()


def test_same_mtime_is_not_a_reload_and_invalid_names_are_ignored(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)
    ini = e.ini("app.ini")
    e.wait_records("app.ini", "start")
    (e.dir / "app.skel").write_text("[uwsgi]\n")
    (e.dir / "notes.txt").write_text("hello\n")
    os.utime(ini, ns=(ini.stat().st_atime_ns, ini.stat().st_mtime_ns))  # same mtime: attrib only
    e.ini("barrier.ini")  # events are handled in order: once this runs, the others were seen
    e.wait_records("barrier.ini", "start")
    stays(lambda: [v["id"] for v in e.stats()["vassals"]] == ["app.ini", "barrier.ini"], 1.5,
          "only valid names become vassals")
    assert e.records("app.ini", "reload") == []
    assert e.stop() == 0


def test_dead_vassal_is_respawned(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)
    e.ini("app.ini")
    first = e.wait_records("app.ini", "start")[0]
    e.wait_vassal("app.ini", loyal=1)
    os.kill(first["pid"], signal.SIGKILL)
    second = e.wait_records("app.ini", "start", 2)[1]
    assert second["pid"] != first["pid"]
    e.wait_log(f"[emperor] vassal app.ini (pid: {first['pid']}) killed by signal 9")
    assert e.stats()["blacklist"] == []  # loyal vassals are not blacklisted
    assert e.stop() == 0


def test_argv_and_environment_as_uwsgi(procs: Procs, tmp_path: Path) -> None:
    inc = tmp_path / "defaults.ini"
    inc.write_text("[uwsgi]\n")
    env = {"UWSGI_VASSAL_SOCKET": "/tmp/%n.sock", "UWSGI_RELOADS": "3", "NOTIFY_SOCKET": "/x"}
    e = Emperor(procs, tmp_path, "--vassal-set", "processes=8", "--vassals-set", "fake-foo=1",
                "--vassals-include", str(inc), "--vassals-inherit", "i.ini",
                "--vassals-include-before", "b.ini", "--vassals-inherit-before", "a.ini",
                "--emperor-magic-exec", "--vassals-start-hook", "/bin/true", env=env)
    e.ini("app.ini")
    start = e.wait_records("app.ini", "start")[0]
    assert start["argv"][1:] == [
        "--inherit", "a.ini", "--include", "b.ini", "--set", "processes=8", "--set", "fake-foo=1",
        "--ini", "app.ini", "--inherit", "i.ini", "--include", str(inc)]
    venv = start["env"]
    assert venv["UWSGI_SOCKET"] == "/tmp/%n.sock"
    assert "UWSGI_VASSAL_SOCKET" not in venv and "UWSGI_RELOADS" not in venv
    assert venv["UWSGI_VASSALS_DIR"] == str(e.dir)
    assert "NOTIFY_SOCKET" not in venv
    # an executable config with emperor-magic-exec is given as exec://NAME
    exe = e.ini("run.ini", directory=tmp_path)  # made executable, then moved in
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    os.rename(exe, e.dir / "run.ini")
    rec = e.wait_records("run.ini", "start")[0]
    assert "exec://run.ini" in rec["argv"]
    e.wait_log("[emperor] running vassal start-hook: /bin/true app.ini")
    e.wait_log("[emperor] app.ini start-hook returned 0")
    assert e.stop() == 0


def test_loader_flag_follows_the_extension(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-extra-extension", ".conf")
    record = tmp_path / "all.jsonl"
    for name in ("a.json", "b.yaml", "c.xml", "d.conf", "e.js", "f.yml"):
        (e.dir / name).write_text("")
    e.ini("z.ini", record=record)
    wait_until(lambda: len(e.stats()["vassals"]) == 7, 10, message="7 vassals")

    def flags() -> dict[str, str]:
        out = {}
        for v in e.stats()["vassals"]:
            with open(f"/proc/{v['pid']}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            # the launcher execs python fake_vassal.py ARGS...: the flag is 2 before the end
            if len(argv) >= 3 and any(a.endswith(b"fake_vassal.py") for a in argv):
                out[v["id"]] = argv[-3].decode()
        return out

    wait_until(lambda: len(flags()) == 7, 15, message="7 vassals exec'd")
    assert flags() == {"a.json": "--json", "b.yaml": "--yaml", "c.xml": "--xml", "d.conf": "--config",
                     "e.js": "--json", "f.yml": "--yaml", "z.ini": "--ini"}
    assert e.stop() == 0


def test_voluntary_shutdown_and_exile(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)
    e.ini("idle.ini", voluntary_after=0.3)
    first = e.wait_records("idle.ini", "start")[0]
    e.wait_records("idle.ini", "stop")
    e.wait_log("[emperor] stop the uwsgi instance idle.ini")
    # like uWSGI's monitors, the config is found again at the next scan: it comes back
    second = e.wait_records("idle.ini", "start", 2)[1]
    assert second["pid"] != first["pid"]

    exiled = e.ini("exile.ini", exit_at_once=26)
    e.wait_log("[emperor] vassal exile.ini exiled itself (exit code 26)")
    e.wait_gone("exile.ini")
    stays(lambda: len(e.records("exile.ini", "start")) == 1, 2.5, "an exiled vassal stays away")
    bump_mtime(exiled)  # ... until its config changes
    e.wait_records("exile.ini", "start", 2)
    assert e.stop() == 0


def test_config_over_the_config_fd(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    e = Emperor(procs, tmp_path, monitors=[f"zmq://tcp://127.0.0.1:{port}", str(tmp_path / "vassals")])
    import zmq

    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"tcp://127.0.0.1:{port}")
    record = tmp_path / "zmq.jsonl"
    try:
        body = f"[uwsgi]\nfake-record = {record}\nfake-version = 1\n"
        wait_until(lambda: push.send_multipart([b"touch", b"z.ini", body.encode()]) or
                   e.records("z.ini", "start", record), 10, interval=0.3,
                   message="the zmq vassal to start")
        start = e.records("z.ini", "start", record)[0]
        assert start["argv"][1:] == ["--ini", "emperor://z.ini"]
        assert start["env"]["UWSGI_EMPEROR_FD_CONFIG"].isdigit()
        assert "fake-version = 1" in start["config"]
        time.sleep(0.01)  # zmq touches use the current time as mtime: make it newer
        push.send_multipart([b"touch", b"z.ini", body.replace("= 1", "= 2").encode()])
        # (the touches repeated until the PULL socket got one may have reloaded it with v1)
        wait_until(lambda: [r for r in e.records("z.ini", "reload", record)
                            if "fake-version = 2" in r["config"]], 10,
                   message="a reload with the new config read from the config fd")
        push.send_multipart([b"destroy", b"z.ini"])
        e.wait_records("z.ini", "stop", record=record)
        e.wait_gone("z.ini")
    finally:
        push.close()
        ctx.term()
    assert e.stop() == 0


def test_hooks_and_pidfile(procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "hooks.txt"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$0 $1 $UWSGI_VASSALS_DIR\" >> {out}\n")
    hook.chmod(0o755)
    pidfile = tmp_path / "emperor.pid"
    e = Emperor(procs, tmp_path, "--vassals-start-hook", str(hook), "--vassals-stop-hook", str(hook),
                "--emperor-pidfile", str(pidfile))
    assert int(pidfile.read_text()) == e.proc.pid
    ini = e.ini("app.ini")
    e.wait_records("app.ini", "start")
    wait_until(lambda: out.exists() and f"{hook} app.ini {e.dir}" in out.read_text(), 5,
               message="the start hook")
    ini.unlink()
    e.wait_log(f"[emperor] running vassal stop-hook: {hook} app.ini")
    e.wait_log("[emperor] app.ini stop-hook returned 0")
    assert out.read_text().count(f"{hook} app.ini {e.dir}") == 2
    assert e.stop() == 0
    assert not pidfile.exists()


def test_tyrant_mode(procs: Procs, tmp_path: Path) -> None:
    """The vassal runs as its config's owner; root-owned configs and owner changes stop it."""
    need_root("tyrant mode needs root to change uid")
    e = Emperor(procs, tmp_path, "--emperor-tyrant", binary=str(SH_VASSAL))
    e.dir.chmod(0o777)  # the vassal (nobody) writes its record next to its config
    (e.dir / "root.ini").write_text("[uwsgi]\n")
    e.wait_log("[emperor-tyrant] invalid permissions for vassal root.ini")
    owned = e.dir / "user.ini"
    staging = tmp_path / "user.ini.staging"  # owned before the emperor can see it
    staging.write_text("[uwsgi]\n")
    os.chown(staging, 65534, 65534)
    staging.rename(owned)
    rec = e.dir / "user.ini.rec"
    # a whole line: the file exists a moment before the vassal has written it
    wait_until(lambda: rec.exists() and rec.read_text().endswith("\n"), 30,
               message=f"the tyrant vassal to start; log:\n{e.log()}")
    pid, uid, gid = rec.read_text().split()[:3]
    assert (uid, gid) == ("65534", "65534")
    e.seen_pids.add(int(pid))
    e.wait_log("[emperor-tyrant] dropping privileges to 65534 65534 for instance user.ini")
    e.wait_vassal("user.ini", uid=65534, gid=65534)
    assert e.vassal("root.ini") is None
    os.chown(owned, 65534, 0)  # a change of owner stops the vassal
    e.wait_log("[emperor-tyrant] !!! permissions of vassal user.ini changed. stopping the instance... !!!")
    assert e.stop() == 0


def test_missing_binary_is_logged_not_fatal(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, binary=str(tmp_path / "no-such-binary"))
    (e.dir / "app.ini").write_text("[uwsgi]\n")
    e.wait_log(f"[emperor] binary path: {tmp_path / 'no-such-binary'}")
    e.wait_log("[emperor] is the uwsgi binary in your system PATH ?")
    assert e.proc.poll() is None
    assert e.stop() == 0
