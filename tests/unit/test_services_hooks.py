"""Hooks: parsing, the actions, phases (hook- then exec- then call-), fatal failures."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vassal.config import load_config
from vassal.services import hooks
from vassal.services.hooks import Context, FatalHook, HookError


def cfg(*args: str):
    return load_config(list(args), environ={})


def test_parse_names_option_and_value() -> None:
    assert hooks.parse("write:/tmp/x hello", "hook-pre-app") == ("write", "/tmp/x hello", False)
    assert hooks.parse("!exec:secret", "hook-asap") == ("exec", "secret", True)
    with pytest.raises(HookError, match=r"hook-pre-app = nosuch:x: hook action not found: nosuch"):
        hooks.parse("nosuch:x", "hook-pre-app")
    with pytest.raises(HookError, match=r"hook-asap = print: invalid hook syntax|must be action:args"):
        hooks.parse("printhello", "hook-asap")
    with pytest.raises(HookError, match="mount is not available"):
        hooks.parse("mount:proc none /proc", "hook-as-root")


def test_validate_reports_every_phase_and_hook_touch() -> None:
    c = cfg("--hook-accepting1-once", "bogus:1", "--hook-touch", "/tmp/f nope:2", "--hook-touch", "nospace")
    errors = hooks.validate(c)
    assert errors[0] == "hook-accepting1-once = bogus:1: hook action not found: bogus (command line)"
    assert any("hook-touch = /tmp/f nope:2" in e for e in errors)
    assert any("hook-touch = nospace: invalid syntax" in e for e in errors)


def test_metric_actions_are_refused_before_the_metrics_exist() -> None:
    c = cfg("--metric", "c", "--hook-as-user", "metricinc:c", "--hook-pre-app", "metricinc:c",
            "--hook-master-start", "metricset:c,3")
    assert hooks.validate(c) == ["hook-as-user = metricinc:c: the metricinc action needs the metrics, "
                                 "which exist from the pre-app phase on (command line)"]


@given(st.text(max_size=60))
def test_parse_never_raises_anything_else(value: str) -> None:
    try:
        hooks.parse(value, "hook-asap")
    except HookError as exc:
        assert "hook-asap = " in str(exc)


def run(value: str, ctx: Context | None = None) -> int:
    action, args, _ = hooks.parse(value, "hook-test")
    return hooks.ACTIONS[action](args, ctx or Context())


def test_file_actions(tmp_path: Path) -> None:
    f = tmp_path / "f"
    assert run(f"write:{f} one two") == 0
    assert f.read_text() == "one two"
    assert run(f"writen:{f} x") == 0
    assert f.read_text() == "x\n"
    assert run(f"append:{f} y") == 0
    assert run(f"appendn:{f} z") == 0
    assert run(f"appendn:{f}") == 0
    assert f.read_text() == "x\nyz\n\n"
    assert run(f"chmod:{f} 600") == 0
    assert f.stat().st_mode & 0o777 == 0o600
    assert run(f"chmod:{f} rw") == -1
    assert run(f"unlink:{f}") == 0
    assert not f.exists()
    assert run(f"unlink:{f}") == -1
    assert run(f"create:{f}") == 0 and f.read_text() == ""
    d = tmp_path / "d"
    assert run(f"mkdir:{d}") == 0 and d.is_dir()
    assert run(f"mkdir:{d}") == -1
    assert run(f"write:{tmp_path}/missing/dir x") == -1
    assert run(f"write:{f}") == -1  # no text: invalid syntax


def test_writefifo_without_reader_is_not_a_failure(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert run(f"writefifo:{fifo} r") == 0
    r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert run(f"writefifo:{fifo} 2p") == 0
        assert os.read(r, 10) == b"2p"
        assert run(f"spinningfifo:{fifo} q") == 0  # a reader is there: no waiting
        assert os.read(r, 10) == b"q"
    finally:
        os.close(r)


def test_env_cwd_exec_print(tmp_path: Path, capfd) -> None:
    old = os.getcwd()
    try:
        assert run(f"cd:{tmp_path}") == 0
        assert os.getcwd() == str(tmp_path)
    finally:
        os.chdir(old)
    assert run("putenv:IMPERIUM_HOOK_TEST=yes") == 0
    assert os.environ.pop("IMPERIUM_HOOK_TEST") == "yes"
    assert run("exec:exit 3") == 3
    assert run("safeexec:exit 3") == 0
    assert run("print:hello hook") == 0
    assert "hello hook" in capfd.readouterr().err


def test_exit_action() -> None:
    with pytest.raises(SystemExit) as info:
        run("exit:17")
    assert info.value.code == 17
    with pytest.raises(SystemExit) as info:
        run("exit:")
    assert info.value.code == 0


def test_call_python_and_c_symbols(tmp_path: Path, capfd) -> None:
    assert run("call:os.getpid") == 0
    assert run("callret:os.getpid") != 0  # a non-zero return is a failure for callret
    assert run(f"call:os.mkdir {tmp_path}/made") == 0
    assert (tmp_path / "made").is_dir()
    assert run("call:getpid") == 0  # libc, through ctypes
    assert run(f"callret:chdir {tmp_path}/nowhere") == -1  # chdir() returned -1
    assert run("callint:abs -5") == 0
    assert run("callintret:abs -5") == 5
    assert run("call:uwsgi_log from a hook") == 0
    assert run("call:no_such_symbol_at_all") == -1
    assert "unable to call function \"no_such_symbol_at_all\"" in capfd.readouterr().err


def test_unix_signal_before_the_master_is_kept_for_it() -> None:
    ctx = Context(role="master")
    assert run("unix_signal:15 gracefully_kill_them_all", ctx) == 0
    assert ctx.pending_signals == {15: "gracefully_kill_them_all"}
    assert run("unix_signal:15 not_a_function", ctx) == -1
    assert run("unix_signal:15", ctx) == -1
    assert run("unix_signal:10 kill_them_all", Context(role="worker")) == -1


def test_phase_order_and_logging(tmp_path: Path, capfd) -> None:
    out = tmp_path / "order"
    c = cfg("--hook-pre-app", f"appendn:{out} hook", "--exec-pre-app", f"echo exec >> {out}",
            "--call-pre-app", "uwsgi_log", "--hook-pre-app", f"!appendn:{out} private")
    hooks.run_phase(c, "pre-app")
    assert out.read_text() == "hook\nprivate\nexec\n"
    err = capfd.readouterr().err
    assert f'running "appendn:{out} hook" (pre app)...' in err
    assert "running --- PRIVATE HOOK --- (pre app)..." in err
    assert f'running "echo exec >> {out}" (pre app)...' in err


def test_fatal_and_non_fatal_phases(tmp_path: Path) -> None:
    with pytest.raises(FatalHook):
        hooks.run_phase(cfg("--hook-asap", "exec:false"), "asap")
    with pytest.raises(FatalHook):
        hooks.run_phase(cfg("--exec-pre-app", "exit 2"), "pre-app")
    with pytest.raises(FatalHook):
        hooks.run_phase(cfg("--call-as-user", "no_such_symbol_here"), "as-user")
    # atexit and as-root calls are not fatal, as in uWSGI
    hooks.run_phase(cfg("--hook-as-user-atexit", "exec:false", "--exec-as-user-atexit", "false"),
                    "as-user-atexit")
    hooks.run_phase(cfg("--call-as-root", "no_such_symbol_here"), "as-root")
    # the chain stops at the failure
    f = tmp_path / "after"
    with pytest.raises(FatalHook):
        hooks.run_phase(cfg("--hook-pre-app", "exec:false", "--hook-pre-app", f"write:{f} x"), "pre-app")
    assert not f.exists()


def test_a_raising_python_callable_is_a_failed_hook() -> None:
    with pytest.raises(FatalHook):
        hooks.run_phase(cfg("--hook-post-app", "call:json.loads not-json"), "post-app")


def test_every_phase_has_its_options() -> None:
    from vassal.options import OPTIONS

    for phase in hooks.PHASES:
        assert f"hook-{phase}" in OPTIONS, phase
    for phase in hooks.HARDCODED:
        assert f"exec-{phase}" in OPTIONS and f"call-{phase}" in OPTIONS, phase
    for phase in hooks.ELSEWHERE:
        assert OPTIONS[f"hook-{phase}"].ignored, phase  # said to have no effect here


def test_signal_functions_cover_the_fifo_table() -> None:
    from vassal.services import control

    assert set(control.FIFO_COMMANDS.values()) <= set(control.SIGNAL_FUNCTIONS)
    for func in control.SIGNAL_FUNCTIONS:
        assert hasattr(control.MasterControl, "do_" + func), func
    assert signal.SIGTERM == 15


def test_rpc_action_calls_a_registered_function(capfd) -> None:
    from vassal.api import rpc

    rpc._table[b"hello"] = (lambda *a: b"hi " + b" ".join(a), 0)
    try:
        assert run("rpc:hello a 'b c'") == 0
        assert '[rpc result from "hello"] hi a b c' in capfd.readouterr().err
        assert run("rpc:nothere x") == -1
        assert run("rpc:hello@127.0.0.1:3031 x") == -1
    finally:
        rpc._table.pop(b"hello", None)
