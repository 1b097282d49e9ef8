"""Cron fields, daemon options, the master FIFO, touch files, reload-on-exception, autoreload."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vassal.config import load_config
from vassal.services import cron, daemons
from vassal.services.autoreload import Watcher
from vassal.services.fifo import MasterFifo
from vassal.services.reload_rules import reload_on_exception_rule
from vassal.services.touch import TouchFile


def cfg(*args: str):
    return load_config(list(args), environ={})


# --- cron -------------------------------------------------------------------------------


def tm(minute: int, hour: int = 10, mday: int = 15, month: int = 6, wday_sun0: int = 3) -> time.struct_time:
    # struct_time's weekday counts from Monday
    return time.struct_time((2026, month, mday, hour, minute, 0, (wday_sun0 - 1) % 7, 1, -1))


def test_cron_fields_as_uwsgi() -> None:
    every = cron.CronEntry()
    assert cron.needs_run(tm(7), every)
    five = cron.CronEntry(minute=-5)
    assert cron.needs_run(tm(10), five) and not cron.needs_run(tm(11), five)
    at = cron.CronEntry(minute=30, hour=2)
    assert cron.needs_run(tm(30, 2), at) and not cron.needs_run(tm(30, 3), at)
    # day of month OR weekday when both are given; weekday 7 is Sunday
    both = cron.CronEntry(minute=0, hour=0, day=1, week=0)
    assert cron.needs_run(tm(0, 0, mday=1, wday_sun0=4), both)
    assert cron.needs_run(tm(0, 0, mday=9, wday_sun0=0), both)
    assert not cron.needs_run(tm(0, 0, mday=9, wday_sun0=2), both)
    sunday = cron.CronEntry(minute=0, hour=0, week=7)
    assert cron.needs_run(tm(0, 0, wday_sun0=0), sunday)
    june = cron.CronEntry(month=6)
    assert cron.needs_run(tm(1, month=6), june) and not cron.needs_run(tm(1, month=7), june)


def test_cron_parsing() -> None:
    e = cron.parse_cron("cron", "-1 -1 -1 -1 -1 touch /tmp/x y")
    assert (e.minute, e.command, e.unique) == (-1, "touch /tmp/x y", False)
    assert cron.parse_cron("unique-cron", "0 3 -1 -1 -1 backup").unique
    e = cron.parse_cron("cron2", "minute=-5,unique=1,harakiri=0 echo hi")
    assert (e.minute, e.hour, e.unique, e.mercy, e.command) == (-5, -1, True, -1, "echo hi")
    assert cron.parse_cron("cron2", "harakiri=30 echo").mercy == 30
    assert cron.parse_cron("cron2", "echo plain").command == "echo plain"
    assert cron.parse_cron("cron2", "bogus=1,hour=3 cmd").warnings == ["cron2 = bogus=1,hour=3 cmd: unknown key 'bogus' ignored"]
    assert daemons.parse_daemon("attach-daemon2", "cmd=x,color=red").warnings == [
        "attach-daemon2 = cmd=x,color=red: unknown key 'color' ignored"]
    for option, value, msg in (("cron", "1 2 3 echo", "invalid cron syntax"),
                               ("cron", "a b c d e cmd", "invalid cron syntax"),
                               ("cron2", "minute=5", "no command"),
                               ("cron2", "legion=x cmd", "legions are not available"),
                               ("legion-cron", "mylegion 1 2 3 4 5 cmd", "legions are not available")):
        with pytest.raises(cron.CronConfigError, match=msg):
            cron.parse_cron(option, value)


@given(st.text(max_size=80), st.sampled_from(["cron", "cron2", "unique-cron"]))
def test_cron_parser_fuzz(value: str, option: str) -> None:
    try:
        entry = cron.parse_cron(option, value)
    except cron.CronConfigError as exc:
        assert option in str(exc)
    else:
        assert entry.command


def test_cron_runs_callables_once_a_minute() -> None:
    c = cron.Cron(cfg(), [])
    calls: list[float] = []
    c.table.add(-1, -1, -1, -1, -1, action=lambda entry, now: calls.append(now))
    c.running()
    c.tick(0.0)
    c.last_second = 0  # a second later
    c.tick(0.0)
    assert len(calls) == 1


# --- daemons ----------------------------------------------------------------------------


def test_daemon_options() -> None:
    d = daemons.parse_daemon("attach-daemon", "  memcached -p 11311 ")
    assert (d.command, d.pidfile, d.control) == ("memcached -p 11311", None, False)
    assert daemons.parse_daemon("attach-control-daemon", "x").control
    d = daemons.parse_daemon("smart-attach-daemon", "/tmp/p.pid,5 redis-server --daemonize yes")
    assert (d.pidfile, d.freq, d.command, d.daemonize) == ("/tmp/p.pid", 5, "redis-server --daemonize yes", False)
    assert daemons.parse_daemon("smart-attach-daemon2", "/tmp/p.pid cmd").daemonize
    d = daemons.parse_daemon("attach-daemon2", r"cmd=sh -c 'a\,b',stopsignal=2,reload_signal=HUP,touch=/a;/b,"
                                               "max_throttle=5,stdin=1,pidfile=/tmp/p,daemonize=1")
    assert d.command == "sh -c 'a,b'"
    assert (d.stop_signal, d.reload_signal, d.touch_paths, d.max_throttle) == (2, signal.SIGHUP, ["/a", "/b"], 5)
    assert d.honour_stdin and d.daemonize and d.pidfile == "/tmp/p"


@pytest.mark.parametrize("option,value,msg", [
    ("smart-attach-daemon", "/tmp/only-a-pidfile", "invalid smart-attach-daemon syntax"),
    ("attach-daemon2", "freq=3", "you need to specify a 'command' key"),
    ("attach-daemon2", "cmd=x,ns_pid=1", "ns_pid"),
    ("attach-daemon2", "cmd=x,legion=l", "legions are not available"),
    ("attach-daemon2", "cmd=x,daemonize=1", "needs a pidfile"),
    ("attach-daemon2", "cmd=x,uid=root", "uid must be a number"),
    ("legion-attach-daemon", "lg cmd", "legions are not available"),
    ("attach-daemon", "   ", "a command is required"),
])
def test_daemon_refusals(option: str, value: str, msg: str) -> None:
    with pytest.raises(daemons.DaemonConfigError, match=msg):
        daemons.parse_daemon(option, value)


@given(st.text(max_size=80), st.sampled_from(["attach-daemon", "smart-attach-daemon", "attach-daemon2"]))
def test_daemon_parser_fuzz(value: str, option: str) -> None:
    try:
        d = daemons.parse_daemon(option, value)
    except daemons.DaemonConfigError as exc:
        assert option in str(exc)
    else:
        assert d.command


def test_check_pidfile(tmp_path: Path) -> None:
    p = tmp_path / "pid"
    assert daemons.check_pidfile(str(p)) == -1
    p.write_text(f"{os.getpid()}\n")
    assert daemons.check_pidfile(str(p)) == os.getpid()
    p.write_text("junk")
    assert daemons.check_pidfile(str(p)) == -1
    p.write_text("999999999")
    assert daemons.check_pidfile(str(p)) == -1


# --- master fifo ------------------------------------------------------------------------


class FakeControl:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, func: str) -> None:
        self.ran.append(func)


def write_fifo(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    os.write(fd, data)
    os.close(fd)


def test_fifo_commands_slots_and_recreation(tmp_path: Path, capfd) -> None:
    paths = [str(tmp_path / "f0"), str(tmp_path / "f1")]
    (tmp_path / "f0").write_text("an old regular file")
    control = FakeControl()
    fifo = MasterFifo(paths, control)
    fifo.open()
    try:
        write_fifo(paths[0], b"rw\nX\x00cq")
        fifo.on_ready(fifo.fd)
        assert control.ran == ["grace_them_all", "uwsgi_reload_workers", "uwsgi_chain_reload",
                               "gracefully_kill_them_all"]
        assert "unknown command 'X'" in capfd.readouterr().err
        fifo.on_ready(fifo.fd)  # the writer closed: a fresh fifo on the same path
        write_fifo(paths[0], b"1")
        fifo.on_ready(fifo.fd)
        fifo.on_ready(fifo.fd)  # EOF: now slot 1
        assert "active master fifo is now " + paths[1] in capfd.readouterr().err
        write_fifo(paths[1], b"Q")
        fifo.on_ready(fifo.fd)
        assert control.ran[-1] == "kill_them_all"
    finally:
        fifo.finish()


def test_fifo_that_cannot_be_made(tmp_path: Path) -> None:
    from vassal.services.fifo import FifoError

    with pytest.raises(FifoError, match="master-fifo .*/nodir/f"):
        MasterFifo([str(tmp_path / "nodir" / "f")], FakeControl()).open()


# --- touch, reload rules, autoreload ----------------------------------------------------


def test_touch_file_rule(tmp_path: Path, capfd) -> None:
    p = tmp_path / "t"
    tf = TouchFile(str(p))
    assert "unable to stat()" in capfd.readouterr().err
    assert not tf.check()
    p.write_text("x")
    assert tf.check()  # created
    assert not tf.check()
    os.utime(p, (1, 1))
    assert tf.check()  # mtime moved
    p.unlink()
    assert tf.check()  # removed
    assert not tf.check()


def test_reload_on_exception_rules() -> None:
    assert reload_on_exception_rule(cfg()) is None
    every = reload_on_exception_rule(cfg("--reload-on-exception"))
    assert every is not None and every(ValueError("x"))
    rule = reload_on_exception_rule(cfg("--reload-on-exception-type", "ZeroDivisionError",
                                        "--reload-on-exception-value", "gone",
                                        "--reload-on-exception-repr", "builtins.KeyError: 'k'"))
    assert rule is not None
    assert rule(ZeroDivisionError("division by zero"))
    assert rule(RuntimeError("gone"))
    assert rule(KeyError("k"))
    assert not rule(ValueError("other"))


def test_autoreload_watcher(tmp_path: Path) -> None:
    mod = tmp_path / "imperium_autoreload_probe.py"
    mod.write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        __import__("imperium_autoreload_probe")
        w = Watcher(set())
        assert w.changed() is None
        os.utime(mod, (1, 1))
        assert w.changed() == str(mod)
        ignoring = Watcher({"imperium_autoreload_probe"})
        ignoring.changed()
        os.utime(mod, (2, 2))
        assert ignoring.changed() is None
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("imperium_autoreload_probe", None)
