"""Hooks: actions run at the moments (phases) of an instance's life, as uWSGI 2.0 runs them.

Two kinds of options, from core/hooks.c and core/uwsgi.c:

- the "advanced" hooks, ``hook-<phase> = ACTION:ARGS`` (``!ACTION:ARGS`` hides the line from
  the log), one chain per phase run in config order;
- the "hardcoded" ones, ``exec-<phase> = COMMAND`` (a shell command that must exit 0) and
  ``call-<phase> = SYMBOL`` (a function to call), run after the phase's hook chain.

Phases and where they run here (``PHASES``): ``asap`` right after the config is read;
``pre-jail`` (first start only), ``in-jail``, ``post-jail`` (as root with ``jailed``),
``as-root``/``as-user`` around the privilege drop (only when started as root, as uWSGI);
``pre-app``/``post-app`` around app loading (in each worker with ``lazy-apps``);
``post-fork`` and ``accepting``/``accepting1`` (+ ``-once``: first spawn of that worker
only) in the workers; ``master-start`` when the master loop starts; ``touch`` for
``hook-touch``; ``emperor-stop``/``emperor-reload``/``emperor-lost`` on the emperor's
messages; ``as-user-atexit`` when the master exits or re-execs; ``as-mule`` in each mule
(vassal.services.mules). ``as-vassal``, ``as-emperor``, ``emperor-start`` belong to the
emperor process and ``as-gateway`` to processes this instance does not run (``ELSEWHERE``).

A failing hook in a fatal phase ends the instance (exit 1 before the workers exist; a
shutdown once they do), as in uWSGI. An action name that does not exist is refused before
anything runs (uWSGI finds out only when the phase comes, and exits 1 then).

``call`` and friends call a *symbol*. uWSGI looks C symbols up in its own process; here a
symbol is, in this order: one of uWSGI's master functions we implement
(``gracefully_kill_them_all``, ``uwsgi_log``, ... see ``vassal.services.control``), a Python
callable named ``package.module:function`` or ``package.module.function`` (called with the
argument string when one is given), or a C function of the process (libc and any library
loaded), called through ctypes with a ``char *`` (``call``, ``callret``) or an ``int``
(``callint``, ``callintret``) argument. ``unix_signal:N FUNCTION`` maps signal N of the
master to one of uWSGI's master functions (``unix_signal:15 gracefully_kill_them_all``).
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vassal.api import metrics as _metrics
from vassal.log import log
from vassal.services import Service, commands, where
from vassal.services import log_verbose as _log_verbose

#: phase -> (text uWSGI logs for it, fatal, its hook- option)
PHASES: dict[str, tuple[str, bool, str]] = {
    "asap": ("asap", True, "hook-asap"),
    "pre-jail": ("pre-jail", True, "hook-pre-jail"),
    "post-jail": ("post-jail", True, "hook-post-jail"),
    "in-jail": ("in-jail", True, "hook-in-jail"),
    "as-root": ("as root", True, "hook-as-root"),
    "as-user": ("as user", True, "hook-as-user"),
    "as-user-atexit": ("atexit", False, "hook-as-user-atexit"),
    "pre-app": ("pre app", True, "hook-pre-app"),
    "post-app": ("post app", True, "hook-post-app"),
    "post-fork": ("post-fork", True, "hook-post-fork"),
    "accepting": ("accepting", True, "hook-accepting"),
    "accepting1": ("accepting1", True, "hook-accepting1"),
    "accepting-once": ("accepting-once", True, "hook-accepting-once"),
    "accepting1-once": ("accepting1-once", True, "hook-accepting1-once"),
    "master-start": ("master-start", True, "hook-master-start"),
    "touch": ("touch", False, "hook-touch"),
    "emperor-stop": ("emperor-stop", False, "hook-emperor-stop"),
    "emperor-reload": ("emperor-reload", False, "hook-emperor-reload"),
    "emperor-lost": ("emperor-lost", False, "hook-emperor-lost"),
    # run by other processes (see ELSEWHERE): listed so that they can call run_phase
    "as-vassal": ("as-vassal", True, "hook-as-vassal"),
    "as-emperor": ("as-emperor", False, "hook-as-emperor"),
    "emperor-start": ("emperor-start", True, "hook-emperor-start"),
    "as-mule": ("as-mule", True, "hook-as-mule"),
    "as-gateway": ("as-gateway", True, "hook-as-gateway"),
}
#: phases of processes other than this instance's master and workers
ELSEWHERE = {"as-vassal": "the emperor (before it execs a vassal)",
             "as-emperor": "the emperor (after it started a vassal)",
             "emperor-start": "the emperor (when it starts)",
             "as-gateway": "gateways"}
#: phases that run before the uwsgi module (and so the metrics) is set up
BEFORE_METRICS = frozenset({"asap", "pre-jail", "in-jail", "post-jail", "as-root", "as-user"})
#: phases with exec-/call- variants: (text uWSGI gives them, fatal exec, fatal call, the
#: exec- option, the call- option)
HARDCODED: dict[str, tuple[str, bool, bool, str, str]] = {
    "asap": ("asap", True, True, "exec-asap", "call-asap"),
    "pre-jail": ("pre-jail", True, True, "exec-pre-jail", "call-pre-jail"),
    "post-jail": ("post-jail", True, True, "exec-post-jail", "call-post-jail"),
    "in-jail": ("in-jail", True, True, "exec-in-jail", "call-in-jail"),
    "as-root": ("as root", True, False, "exec-as-root", "call-as-root"),
    "as-user": ("as user", True, True, "exec-as-user", "call-as-user"),
    "as-user-atexit": ("atexit", False, False, "exec-as-user-atexit", "call-as-user-atexit"),
    "pre-app": ("pre app", True, True, "exec-pre-app", "call-pre-app"),
    "post-app": ("post app", True, False, "exec-post-app", "call-post-app"),
}


class HookError(Exception):
    """A hook value that cannot run: the message is one line naming option and value."""


class FatalHook(Exception):
    """A hook of a fatal phase failed: the instance must end."""


@dataclass
class Context:
    """Where a hook runs: ``control`` is the master's (None before the master loop and in
    workers); ``role`` is "master" or "worker"."""

    role: str = "master"
    control: Any = None
    pending_signals: dict[int, str] = field(default_factory=dict)


# --- actions ----------------------------------------------------------------------------

Action = Callable[[str, Context], int]


def _split(arg: str, what: str, n: int = 2) -> list[str] | None:
    parts = arg.split(" ", n - 1)
    if len(parts) < n:
        log(f"invalid hook {what} syntax, must be: {_SYNTAX[what]}")
        return None
    return parts


_SYNTAX = {"write": "<file> <string>", "writen": "<file> <string>", "append": "<file> <string>",
           "writefifo": "<file> <string>", "chmod": "<file> <mode>", "chown": "<file> <uid> <gid>",
           "chown2": "<file> <uid> <gid>", "spinningfifo": "<file> <string>",
           "unix_signal": "<signum> <func>"}


def _oserror(where: str, exc: OSError) -> int:
    log(f"{where}: {exc.strerror or exc}")
    return -1


def _chdir(arg: str, ctx: Context) -> int:
    try:
        os.chdir(arg)
    except OSError as exc:
        return _oserror("uwsgi_hook_chdir()", exc)
    return 0


def _mkdir(arg: str, ctx: Context) -> int:
    try:
        os.mkdir(arg, 0o777)
    except OSError as exc:
        return _oserror("uwsgi_hook_mkdir()", exc)
    return 0


def _putenv(arg: str, ctx: Context) -> int:
    key, sep, value = arg.partition("=")
    if not key:
        log(f"uwsgi_hook_putenv(): invalid variable {arg!r}")
        return -1
    if sep:
        os.environ[key] = value
    else:
        os.environ.pop(key, None)  # putenv("NAME") removes NAME in glibc
    return 0


def _exec(arg: str, ctx: Context) -> int:
    ret = commands.run_and_wait(arg)
    if ret != 0:
        log(f"command \"{arg}\" exited with non-zero code: {ret}")
    return ret


def _safeexec(arg: str, ctx: Context) -> int:
    _exec(arg, ctx)
    return 0


def _write_file(path: str, data: bytes, flags: int) -> int:
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        return _oserror(f"open(\"{path}\")", exc)
    try:
        os.write(fd, data)
    except OSError as exc:
        return _oserror("write()", exc)
    finally:
        os.close(fd)
    return 0


_TRUNC = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def _writer(what: str, flags: int, newline: bool) -> Action:
    def action(arg: str, ctx: Context) -> int:
        parts = _split(arg, what)
        if parts is None:
            return -1
        return _write_file(parts[0], parts[1].encode() + (b"\n" if newline else b""), flags)

    return action


def _appendn(arg: str, ctx: Context) -> int:
    path, sep, text = arg.partition(" ")
    return _write_file(path, (text.encode() if sep else b"") + b"\n", _APPEND)


def _create(arg: str, ctx: Context) -> int:
    return _write_file(arg, b"", _TRUNC)


def _writefifo(arg: str, ctx: Context) -> int:
    parts = _split(arg, "writefifo")
    if parts is None:
        return -1
    try:
        fd = os.open(parts[0], os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        _oserror(f"open(\"{parts[0]}\")", exc)
        # nobody reads the fifo: not a failure (the zerg dance relies on it)
        return 0 if exc.errno in (errno.ENXIO, errno.ENODEV) else -1
    return _write_fifo(fd, parts[1], "uwsgi_hook_writefifo()/write()")


def _spinningfifo(arg: str, ctx: Context) -> int:
    parts = _split(arg, "spinningfifo")
    if parts is None:
        return -1
    while True:
        log(f"waiting for {parts[0]} ...")
        try:
            fd = os.open(parts[0], os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno not in (errno.ENXIO, errno.ENODEV, errno.ENOENT):
                return _oserror(f"open(\"{parts[0]}\")", exc)
            time.sleep(1)
    return _write_fifo(fd, parts[1], "spinningfifo_hook()/write()")


def _write_fifo(fd: int, text: str, where: str) -> int:
    """Write ``text`` to the fifo opened as ``fd``, then close it; 0, or -1 said as ``where``."""
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        return _oserror(where, exc)
    finally:
        os.close(fd)
    return 0


def _unlink(arg: str, ctx: Context) -> int:
    try:
        os.unlink(arg)
    except OSError as exc:
        return _oserror("uwsgi_hook_unlink()/unlink()", exc)
    return 0


def _chmod(arg: str, ctx: Context) -> int:
    parts = _split(arg, "chmod")
    if parts is None:
        return -1
    try:
        mode = int(parts[1], 8)
    except ValueError:
        log(f"invalid hook chmod mask: {parts[1]}")
        return -1
    try:
        os.chmod(parts[0], mode)
    except OSError as exc:
        return _oserror("uwsgi_hook_chmod()/chmod()", exc)
    return 0


def _sticky(arg: str, ctx: Context) -> int:
    try:
        os.chmod(arg, os.stat(arg).st_mode | stat.S_ISVTX)
    except OSError as exc:
        return _oserror("uwsgi_hook_sticky()", exc)
    return 0


def _chown(numeric: bool) -> Action:
    what = "chown2" if numeric else "chown"

    def action(arg: str, ctx: Context) -> int:
        parts = _split(arg, what, 3)
        if parts is None:
            return -1
        path, user, group = parts
        if numeric:
            if not (user.isdigit() and group.isdigit()):
                log(f"invalid hook chown2 syntax, {'uid' if not user.isdigit() else 'gid'} must be a number")
                return -1
            uid, gid = int(user), int(group)
        else:
            import grp
            import pwd

            try:
                uid = pwd.getpwnam(user).pw_uid
            except KeyError:
                log(f"unable to find uid {user}")
                return -1
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                log(f"unable to find gid {group}")
                return -1
        try:
            os.chown(path, uid, gid)
        except OSError as exc:
            return _oserror(f"uwsgi_hook_{what}()/chown", exc)
        return 0

    return action


def _hostname(arg: str, ctx: Context) -> int:
    try:
        socket.sethostname(arg)
    except OSError as exc:
        return _oserror("uwsgi_hook_hostname()", exc)
    return 0


def _exit(arg: str, ctx: Context) -> int:
    # uWSGI's docs: "exit [num]" (its code reads one-digit codes as 0; we take the number)
    code = int(arg) if arg.strip().lstrip("-").isdigit() else 0
    raise SystemExit(code)


def _print(arg: str, ctx: Context) -> int:
    log(arg)
    return 0


def _wait_for(kind: int) -> Action:
    def action(arg: str, ctx: Context) -> int:
        timeout = 60
        log(f"waiting for {arg} (max {timeout} seconds) ...")
        deadline = time.monotonic() + timeout
        while True:
            try:
                st = os.stat(arg)
                if kind == 0 or (kind == 1 and stat.S_ISREG(st.st_mode)) or (kind == 2 and stat.S_ISDIR(st.st_mode)):
                    _log_verbose(f"{arg} found")
                    return 0
            except OSError:
                pass
            if time.monotonic() > deadline:
                log(f"{arg} unavailable after {timeout} seconds")
                return -1
            time.sleep(1)

    return action


def _wait_for_socket(arg: str, ctx: Context) -> int:
    from vassal.sockets import parse_address

    timeout = 60
    log(f"waiting for {arg} (max {timeout} seconds) ...")
    try:
        family, addr = parse_address(arg)
    except ValueError as exc:
        log(f"wait_for_socket {arg}: {exc}")
        return -1
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect(addr)
            _log_verbose(f"{arg} ready")
            return 0
        except OSError:
            pass
        if time.monotonic() > deadline:
            log(f"{arg} unavailable after {timeout} seconds")
            return -1
        time.sleep(1)


def _unix_signal(arg: str, ctx: Context) -> int:
    parts = _split(arg, "unix_signal")
    if parts is None:
        return -1
    num, func = parts[0], parts[1].strip()
    signum = int(num) if num.strip().isdigit() else 0
    from vassal.services import control

    if func not in control.SIGNAL_FUNCTIONS:
        log(f"unable to find function \"{func}\"")
        return -1
    if ctx.role != "master":
        log(f"unix_signal:{arg}: only the master's signals can be mapped")
        return -1
    if ctx.control is not None:
        ctx.control.map_signal(signum, func)
    else:
        ctx.pending_signals[signum] = func  # installed when the master loop starts
    return 0


def _rpc(arg: str, ctx: Context) -> int:
    """``rpc:FUNC[@NODE] ARGS...``: call a registered RPC function (vassal.api.rpc) and log
    its answer, as uWSGI's hook does; another node is not reachable here."""
    import shlex

    from vassal.api import rpc

    try:
        words = shlex.split(arg)
    except ValueError as exc:
        log(f"rpc hook {arg!r}: {exc}")
        return -1
    if not words or len(words) > 256:
        return -1
    func, at, node = words[0].partition("@")
    if at and node:
        log(f"rpc hook {arg!r}: calling another node ({node}) is not supported by Imperium")
        return -1
    answer = rpc._call_local(func.encode(), tuple(w.encode() for w in words[1:]))
    if answer is None:
        return -1
    log(f"[rpc result from \"{words[0]}\"] {answer.decode('utf-8', 'replace')}")
    return 0


def _retryrpc(arg: str, ctx: Context) -> int:
    while _rpc(arg, ctx) != 0:  # as uWSGI: until it answers
        time.sleep(2)
    return 0


def _refused(why: str) -> Action:
    def action(arg: str, ctx: Context) -> int:
        log(f"hook action not available: {why}")
        return -1

    return action


# --- symbols (call, callret, callint, callintret) ---------------------------------------


def _python_callable(symbol: str) -> Callable[..., Any] | None:
    modname, sep, attr = symbol.partition(":")
    if not sep:
        modname, _, attr = symbol.rpartition(".")
    if not modname or not attr:
        return None
    try:
        obj: Any = importlib.import_module(modname)
    except ImportError:
        return None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    return obj if callable(obj) else None


def _c_function(symbol: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), symbol)
    except (AttributeError, OSError):
        return None


def call_symbol(symbol: str, arg: str | None, ctx: Context, *, as_int: bool = False,
                want_ret: bool = False) -> int:
    """Call ``symbol`` (see the module doc); -1 when it cannot be found."""
    from vassal.services import control

    shown = f"{symbol}({arg})" if arg is not None else symbol
    if symbol == "uwsgi_log":
        log(arg or "")
        return 0
    if symbol in control.SIGNAL_FUNCTIONS:
        if ctx.control is None:
            log(f"unable to call function \"{shown}\": only the running master can")
            return -1
        ctx.control.run(symbol)
        return 0
    func = _python_callable(symbol) if ("." in symbol or ":" in symbol) else None
    if func is not None:
        result = func(arg) if arg is not None else func()
        return int(result) if want_ret and isinstance(result, int) else 0
    cfunc = _c_function(symbol)
    if cfunc is None:
        log(f"unable to call function \"{shown}\"")
        return -1
    if arg is None:
        cfunc.restype = ctypes.c_int
        result = cfunc()
    elif as_int:
        cfunc.restype = ctypes.c_int
        result = cfunc(ctypes.c_int(_atoi(arg)))
    else:
        cfunc.restype = ctypes.c_int
        result = cfunc(ctypes.c_char_p(arg.encode()))
    return int(result) if want_ret else 0


def _atoi(text: str) -> int:
    digits = ""
    for i, c in enumerate(text.strip()):
        if c.isdigit() or (i == 0 and c in "+-"):
            digits += c
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


def _caller(as_int: bool, want_ret: bool) -> Action:
    def action(arg: str, ctx: Context) -> int:
        symbol, sep, rest = arg.partition(" ")
        return call_symbol(symbol, rest if sep else None, ctx, as_int=as_int, want_ret=want_ret)

    return action


ACTIONS: dict[str, Action] = {
    "cd": _chdir, "chdir": _chdir, "mkdir": _mkdir, "putenv": _putenv,
    "chmod": _chmod, "chown": _chown(False), "chown2": _chown(True), "sticky": _sticky,
    "exec": _exec, "safeexec": _safeexec, "create": _create, "creat": _create,
    "write": _writer("write", _TRUNC, False), "writen": _writer("writen", _TRUNC, True),
    "append": _writer("append", _APPEND, False), "appendn": _appendn,
    "writefifo": _writefifo, "unlink": _unlink, "spinningfifo": _spinningfifo,
    "call": _caller(False, False), "callret": _caller(False, True),
    "callint": _caller(True, False), "callintret": _caller(True, True),
    "hostname": _hostname, "unix_signal": _unix_signal,
    "wait_for_fs": _wait_for(0), "wait_for_file": _wait_for(1), "wait_for_dir": _wait_for(2),
    "wait_for_socket": _wait_for_socket,
    "exit": _exit, "print": _print, "log": _print,
    "mount": _refused("mount (filesystem namespaces are not built in Imperium)"),
    "umount": _refused("umount (filesystem namespaces are not built in Imperium)"),
    "alarm": _refused("alarm (the alarm subsystem is not built in Imperium)"),
    "rpc": _rpc, "retryrpc": _retryrpc,
    # uWSGI's router_metrics actions, as hooks (vassal.api.metrics)
    **{name: _metrics.hook_action(name) for name in _metrics.ACTIONS},
}
#: actions refused at start-up: they could never succeed here
UNAVAILABLE = {"mount", "umount", "alarm"}


def parse(value: str, option: str, shown: str | None = None) -> tuple[str, str, bool]:
    """(action, args, private) of one ``hook-*`` value; HookError when it cannot run (the
    message names the option and ``shown``, the whole value, default ``value``)."""
    where = f"{option} = {shown if shown is not None else value}"
    action, sep, args = value.partition(":")
    if not sep:
        raise HookError(f"{where}: invalid hook syntax, must be action:args")
    private = action.startswith("!")
    if private:
        action = action[1:]
    if action not in ACTIONS:
        raise HookError(f"{where}: hook action not found: {action}")
    if action in UNAVAILABLE:
        raise HookError(f"{where}: hook action {action} is not available in Imperium")
    return action, args, private


# --- running phases ---------------------------------------------------------------------


def run_chain(values: list[str], phase_text: str, fatal: bool, ctx: Context, option: str = "hook") -> None:
    """Run ``hook-*`` values in order; FatalHook when one fails and ``fatal``."""
    for value in values:
        try:
            action, args, private = parse(value, option)
        except HookError as exc:
            log(f"imperium: {exc}")
            if fatal:
                raise FatalHook(str(exc)) from None
            continue
        if private:
            log(f"running --- PRIVATE HOOK --- ({phase_text})...")
        else:
            log(f"running \"{value}\" ({phase_text})...")
        try:
            ret = ACTIONS[action](args, ctx)
        except SystemExit:
            raise
        except Exception as exc:  # noqa: BLE001 - a Python callable may raise anything
            log(f"hook \"{value}\" ({phase_text}) raised {type(exc).__name__}: {exc}")
            ret = -1
        if fatal and ret != 0:
            _log_verbose("FATAL hook failed, destroying instance")
            raise FatalHook(f"{option} = {value} failed")


def run_phase(config: Any, phase: str, ctx: Context | None = None) -> None:
    """``hook-<phase>``, then ``exec-<phase>``, then ``call-<phase>`` of ``config``."""
    ctx = ctx or Context()
    text, fatal, hook_option = PHASES[phase]
    run_chain(_values(config, hook_option), text, fatal, ctx, hook_option)
    if phase not in HARDCODED:
        return
    text, exec_fatal, call_fatal, exec_option, call_option = HARDCODED[phase]
    for cmd in _values(config, exec_option):
        if phase in ("as-user", "as-user-atexit"):
            log(f"running \"{cmd}\" (as uid: {os.getuid()} gid: {os.getgid()}) ...")
        else:
            log(f"running \"{cmd}\" ({text})...")
        ret = commands.run_and_wait(cmd)
        if ret != 0:
            log(f"command \"{cmd}\" exited with non-zero code: {ret}")
            if exec_fatal:
                raise FatalHook(f"{exec_option} = {cmd} exited with code {ret}")
    for symbol in _values(config, call_option):
        try:
            ret = call_symbol(symbol, None, ctx)
        except SystemExit:
            raise
        except Exception as exc:  # noqa: BLE001
            log(f"{call_option} = {symbol} raised {type(exc).__name__}: {exc}")
            ret = -1
        if ret != 0:
            if ret != -1:
                log(f"unable to call function \"{symbol}\"")
            if call_fatal:
                raise FatalHook(f"{call_option} = {symbol} failed")


def has_phase(config: Any, phase: str) -> bool:
    options = [PHASES[phase][2], *HARDCODED.get(phase, ())[3:]]
    return any(_values(config, option) for option in options)


def _values(config: Any, option: str) -> list[str]:
    try:
        return list(config.getlist(option))
    except KeyError:
        return []


def validate(config: Any) -> list[str]:
    """One line per hook value that can never run (unknown action, bad syntax, a phase of
    another process): checked before anything runs."""
    errors = []
    for phase, (_text, _fatal, option) in PHASES.items():
        if phase == "touch":
            continue  # hook-touch values are FILE ACTION:ARGS (below)
        for value in _values(config, option):
            try:
                action = parse(value, option)[0]
            except HookError as exc:
                errors.append(f"{exc} ({where(config, option, value)})")
                continue
            if action in _metrics.ACTIONS and phase in BEFORE_METRICS:
                errors.append(f"{option} = {value}: the {action} action needs the metrics, which exist "
                              f"from the pre-app phase on ({where(config, option, value)})")
    for value in _values(config, "hook-touch"):
        path, sep, action = value.partition(" ")
        if not sep:
            errors.append(f"hook-touch = {value}: invalid syntax, must be: <file> <action> "
                          f"({where(config, 'hook-touch', value)})")
            continue
        try:
            parse(action, "hook-touch", value)
        except HookError as exc:
            errors.append(f"{exc} ({where(config, 'hook-touch', value)})")
    return errors


class HookPhases(Service):
    """The phases that happen in the master loop: ``master-start``, the emperor's messages
    and ``as-user-atexit`` (before the master exits or re-execs)."""

    name = "hooks"

    def __init__(self, config: Any, control: Any) -> None:
        self.config = config
        self.control = control
        self.ctx = Context(role="master", control=control)

    def _run(self, phase: str) -> None:
        try:
            run_phase(self.config, phase, self.ctx)
        except FatalHook:
            self.control.do_kill_them_all()

    def running(self) -> None:
        self._run("master-start")

    def emperor(self, message: str) -> None:
        self._run({"stop": "emperor-stop", "reload": "emperor-reload", "lost": "emperor-lost"}[message])

    def finish(self) -> None:
        self._run("as-user-atexit")
