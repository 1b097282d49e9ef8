"""Mules in a real instance: respawn, programmed mules, farms, bad options and calls,
reload mercy, touch-mules-reload, user harakiri."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import IMPERIUM, free_port, pid_alive, wait_until
from tests.fixtures.background import APP, Backend


def ev(b: Backend, expr: str) -> tuple[int, str]:
    return b.get("/eval?" + quote(expr))


def mule_pids(b: Backend) -> list[int]:
    import re

    return [int(m) for m in re.findall(r"spawned uWSGI mule \d+ \(pid: (\d+)\)", b.output())]


PROGRAM = """\
import os, signal, uwsgi
def event(*parts):
    open(os.environ['EVENTS'], 'a').write(' '.join(map(str, parts)) + '\\n')
uwsgi.register_signal  # present in mules too
if os.environ.get('IGNORE_HUP'):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
event('started', 'm%d' % uwsgi.mule_id(), uwsgi.in_farm('pool'))
while True:
    msg = uwsgi.mule_get_msg(timeout=1)
    if msg is None:
        event('signalled', 'm%d' % uwsgi.mule_id())
    elif msg == b'':
        event('timeout', 'm%d' % uwsgi.mule_id())
    elif msg == b'return':
        break
    elif msg == b'harakiri':
        uwsgi.set_user_harakiri(1)
        import time; time.sleep(30)
    else:
        event('got', 'm%d' % uwsgi.mule_id(), msg.decode())
"""


def test_a_crashed_mule_is_respawned(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, ["mule = true"], "mule")
    wait_until(lambda: mule_pids(b), 10, message="mule spawned")
    first = mule_pids(b)[0]
    b.get("/mule/1?crash")
    wait_until(lambda: "crippled...trying respawn..." in b.output() and len(mule_pids(b)) == 2, 10,
               message="respawn")
    assert f"OOOPS mule 1 (pid: {first}) crippled...trying respawn..." in b.output()
    b.get("/mule/1?after")
    wait_until(lambda: ["message", "m1", "after"] in b.events("message"), 10, message="message after respawn")


def test_programmed_mule_reads_messages_timeouts_and_signals(procs, tmp_path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    b = Backend(procs, "imperium", tmp_path, [f"mule = {tmp_path / 'prog.py'}", "mule = true",
                                              "farm = pool:1,2"], "")
    assert b.wait_events("started")[0][1:] == ["m1", "True"]  # mule 2 runs no program
    b.get("/mule/1?hello")
    assert b.wait_events("got")[0][1:] == ["m1", "hello"]
    b.wait_events("timeout")  # mule_get_msg(timeout=1) gave b''
    assert ev(b, "uwsgi.register_signal(60, 'mule1', print)")[0] == 200
    b.get("/signal/60")
    b.wait_events("signalled")  # signals=True: the handler runs and mule_get_msg returns None
    b.get("/mule/1?return")  # the program ends: the mule is started again
    wait_until(lambda: len(b.events("started")) >= 2, 10, message="programmed mule restarted")
    assert "OOOPS mule 1" in b.output()


def test_mule_module_callable(procs, tmp_path) -> None:
    (tmp_path / "brain.py").write_text(
        "import os, time, uwsgi\n"
        "def main():\n"
        "    open(os.environ['EVENTS'], 'a').write('brain m%d\\n' % uwsgi.mule_id())\n"
        "    time.sleep(3600)\n")
    b = Backend(procs, "imperium", tmp_path, ["mule = brain:main", f"pythonpath = {tmp_path}"], "")
    assert b.wait_events("brain")[0][1] == "m1"


@pytest.mark.parametrize("options,message", [
    (["mule", "farm = pool:2"], "farm = 'pool:2': invalid mule id '2' (this instance has 1 mules)"),
    (["mule", "farm = pool"], "farm = 'pool': invalid farm value, must be in the form name:mule[,muleN]"),
    (["mules = -1"], "option mules: -1 is negative (command line)"),
    (["mule", "farm = a:1", "farm = a:1"], "farm = 'a:1': a farm named 'a' is already defined"),
])
def test_bad_mule_options(procs, tmp_path, options, message) -> None:
    args = []
    for o in options:
        k, _, v = o.partition(" = ")
        args += [f"--{k}"] + ([v] if v else [])
    p = procs.start([IMPERIUM, "--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", str(APP), *args],
                    env={"EVENTS": str(tmp_path / "ev")})
    assert p.wait(timeout=20) == 1
    assert f"imperium: {message}" in procs.output(p)


def test_bad_mule_calls(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, ["mule = true", "farm = pool:1"], "mule")
    for expr, message in [
        ("uwsgi.mule_msg(b'x', 5)", "uwsgi.mule_msg: invalid mule number 5 (this instance has 1 mules)"),
        ("uwsgi.mule_msg(b'x', 'nofarm')", "uwsgi.mule_msg: unknown farm 'nofarm'"),
        ("uwsgi.mule_msg(b'x', 1.5)", "uwsgi.mule_msg: invalid mule 1.5"),
        ("uwsgi.mule_msg(12)", "the message must be bytes or str, not int"),
        ("uwsgi.farm_msg('nofarm', b'x')", "uwsgi.farm_msg: unknown farm 'nofarm'"),
        ("uwsgi.mule_get_msg()", "you can receive mule messages only in a mule !!!"),
        ("uwsgi.farm_get_msg()", "you can receive farm messages only in a mule !!!"),
    ]:
        status, body = ev(b, expr)
        assert status == 500 and message in body, (expr, body)
    assert ev(b, "uwsgi.mule_id(), uwsgi.in_farm()") == (200, "(0, None)")
    assert ev(b, "uwsgi.farm_msg('pool', 'via farm_msg')") == (200, "None")
    assert b.wait_events("message")[0][1:] == ["m1", "via farm_msg"]


def test_mule_msg_without_mules(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, [], "")
    assert ev(b, "uwsgi.mule_msg(b'x')") == (500, "MuleError: uwsgi.mule_msg: no mule configured")


def test_reload_waits_for_mules_with_mercy(procs, tmp_path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    b = Backend(procs, "imperium", tmp_path, [f"mule = {tmp_path / 'prog.py'}", "mule-reload-mercy = 1"], "")
    b.env["IGNORE_HUP"] = "1"
    b.stop()
    before = len(b.events("started"))  # the first start's mule may not have begun yet
    b.start()
    b.wait_events("started", before + 1)  # the mule of this start ignores SIGHUP from now on
    pid = mule_pids(b)[-1]
    os.kill(b.proc.pid, 1)  # graceful reload: the mule ignores SIGHUP, the mercy ends it
    wait_until(lambda: "is taking too much time to die...NO MERCY !!!" in b.output(), 15, message="no mercy")
    wait_until(lambda: not pid_alive(pid), 10, message="old mule gone")
    wait_until(lambda: len(b.events("started")) >= before + 2, 20, message="mule of the new incarnation")


def test_touch_mules_reload_and_user_harakiri(procs, tmp_path) -> None:
    touch = tmp_path / "reload-mules"
    touch.write_text("")
    (tmp_path / "prog.py").write_text(PROGRAM)
    b = Backend(procs, "imperium", tmp_path, [f"mule = {tmp_path / 'prog.py'}", f"touch-mules-reload = {touch}"], "")
    b.wait_events("started")
    t = time.time() + 5
    os.utime(touch, (t, t))
    wait_until(lambda: len(b.events("started")) >= 2, 15, message="mules reloaded")
    assert "has been touched... mules reload !!!" in b.output()
    b.get("/mule/1?harakiri")
    wait_until(lambda: "*** HARAKIRI ON MULE 1 (pid: " in b.output(), 15, message="user harakiri")
    wait_until(lambda: len(b.events("started")) >= 3, 15, message="mule respawned after harakiri")


def test_mule_and_spooler_processes_leave_with_the_instance(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, ["mules = 2", f"spooler = {tmp_path / 'spool'}"], "spooler")
    wait_until(lambda: len(mule_pids(b)) == 2, 10, message="two mules")
    import re

    spooler_pid = int(re.search(r"spooler on dir .* with pid (\d+)", b.output()).group(1))
    kids = [*mule_pids(b), spooler_pid]
    b.stop()
    assert not [p for p in kids if pid_alive(p)]
    assert Path(b.events_path).exists()


def test_reload_brings_back_timers_spooler_and_mules(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, ["mule = true", f"spooler = {tmp_path / 'spool'}",
                                              "spooler-frequency = 1", "timer = 20 1"], "timer,mule,spooler")
    b.wait_events("signal", 1)
    old = mule_pids(b)
    os.kill(b.proc.pid, 1)  # graceful reload: the master re-execs itself
    wait_until(lambda: len(mule_pids(b)) > len(old), 20, message="mule of the new incarnation")
    assert "binary reloading uWSGI..." in b.output()
    n = len(b.events("signal"))
    b.wait_events("signal", n + 2)
    b.get("/spool?after=reload")
    b.get("/mule/1?after-reload")
    assert b.wait_events("job")[0][1] == "spooler"
    b.wait_events("message")
    assert not [p for p in old if pid_alive(p)]
