"""Attached daemons: commands the master starts, keeps alive and stops with the instance.

uWSGI 2.0's kinds (core/daemons.c), each run as ``/bin/sh -c COMMAND`` in a session of its
own, stdin on /dev/null (unless ``daemons-honour-stdin`` or the ``stdin`` key), with the
master's sockets and other fds closed:

- ``attach-daemon CMD``: a "dumb" daemon that must stay in the foreground; respawned when it
  exits, killed with the master (PR_SET_PDEATHSIG), stopped on shutdown and reload (the new
  incarnation starts it again);
- ``attach-control-daemon CMD``: the same, and its death stops the instance gracefully;
- ``smart-attach-daemon PIDFILE CMD``: the command daemonizes itself and writes PIDFILE; the
  master follows the pid there (checked every second), respawns it when that process is
  gone, and leaves it running across reloads and shutdown (it is found again by pidfile);
  ``PIDFILE,FREQ`` sets how many checks a fresh one gets to write its pidfile (10);
- ``smart-attach-daemon2 PIDFILE CMD``: the master daemonizes the command and writes PIDFILE;
- ``attach-daemon2 key=val,...``: all of the above (``command``/``cmd``/``exec``, ``freq``,
  ``pidfile``, ``control``, ``daemonize``/``daemon``, ``touch`` (files separated by ``;``:
  touched, the daemon gets its stop signal), ``stopsignal``/``stop_signal``,
  ``reloadsignal``/``reload_signal``, ``stdin``, ``uid``, ``gid``, ``chdir``,
  ``max_throttle``, ``notifypid`` (smart daemons get the stop/reload signal with the master)).

Respawn throttle, as uWSGI: a daemon respawned within 3 seconds of its last start waits
``respawns - seconds since last start`` seconds (at least 1, at most ``max_throttle`` or 300)
before its command runs; the wait happens in the child, never in the master.

Stopping (shutdown, reload) sends the stop signal (SIGTERM; ``reload_signal`` on reloads
when set) to each dumb daemon's process group every second, and SIGKILL after
``reload-mercy`` seconds (3 when 0); the master waits for them without blocking its loop.
``legion-*`` daemons and the ``ns_pid`` key are refused: no legions or PID namespaces here.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from vassal.log import log
from vassal.services import Service, commands, log_verbose, parse_each
from vassal.services.touch import TouchFile

LEGION_OPTIONS = ("legion-attach-daemon", "legion-smart-attach-daemon", "legion-smart-attach-daemon2")


class DaemonConfigError(ValueError):
    """A daemon option that cannot work: one line naming option and value."""


@dataclass
class Daemon:
    command: str
    option: str = "attach-daemon"
    pidfile: str | None = None
    freq: int = 10
    daemonize: bool = False
    control: bool = False
    stop_signal: int = signal.SIGTERM
    reload_signal: int = 0
    honour_stdin: bool = False
    uid: int = 0
    gid: int = 0
    chdir: str | None = None
    max_throttle: int = 0
    notifypid: bool = False
    touch: list[TouchFile] = field(default_factory=list)
    touch_paths: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line each, logged at start-up
    # state
    pid: int = 0
    status: int = 0  # 0 never started, 1 just started, 2 pidfile process found and watched
    spawns: int = 0
    last_spawn: float = float("-inf")  # time.monotonic() (uWSGI's throttle arithmetic, on wall time)
    pidfile_checks: int = 0
    has_daemonized: bool = False
    stopping_until: float = 0.0  # monotonic deadline of a stop in progress
    next_signal: float = 0.0


def _int(value: str | None, default: int, what: str, option: str, raw: str) -> int:
    if value is None:
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise DaemonConfigError(f"{option} = {raw}: {what} must be a number, not {value!r}") from None


def _signal(value: str | None, default: int, what: str, option: str, raw: str) -> int:
    if value is None:
        return default
    v = value.strip().upper()
    if not v.isdigit():
        name = v if v.startswith("SIG") else "SIG" + v
        if hasattr(signal, name):
            return int(getattr(signal, name))
    return _int(value, default, what, option, raw)


def kvlist(text: str) -> dict[str, str]:
    """uWSGI's ``key=val,key=val`` lists (a backslash escapes , and =)."""
    items: list[str] = []
    cur = []
    escaped = False
    for c in text:
        if escaped:
            cur.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    if cur:
        items.append("".join(cur))
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value
    return out


_DAEMON2_KEYS = {"command": "command", "cmd": "command", "exec": "command", "freq": "freq",
                 "pidfile": "pidfile", "control": "control", "daemonize": "daemonize",
                 "daemon": "daemonize", "touch": "touch", "stopsignal": "stopsignal",
                 "stop_signal": "stopsignal", "reloadsignal": "reloadsignal",
                 "reload_signal": "reloadsignal", "stdin": "stdin", "uid": "uid", "gid": "gid",
                 "ns_pid": "ns_pid", "chdir": "chdir", "max_throttle": "max_throttle",
                 "notifypid": "notifypid", "legion": "legion"}


def parse_daemon(option: str, value: str) -> Daemon:
    """One daemon option; DaemonConfigError names the option and value when it cannot run."""
    if option in LEGION_OPTIONS:
        raise DaemonConfigError(f"{option} = {value}: legions are not available in Imperium")
    if option == "attach-daemon2":
        return _parse_daemon2(value)
    command = value.strip()
    d = Daemon(command=command, option=option)
    if option in ("smart-attach-daemon", "smart-attach-daemon2"):
        pidfile, sep, command = value.strip().partition(" ")
        if not sep or not command.strip():
            raise DaemonConfigError(f"{option} = {value}: invalid smart-attach-daemon syntax, "
                                    "must be: <pidfile> <command>")
        pidfile, comma, freq = pidfile.partition(",")
        d.pidfile = pidfile
        d.command = command.strip()
        d.freq = _int(freq, 10, "freq", option, value) if comma else 10
        d.daemonize = option == "smart-attach-daemon2"
    d.control = option == "attach-control-daemon"
    if not d.command:
        raise DaemonConfigError(f"{option}: a command is required")
    return d


def _parse_daemon2(value: str) -> Daemon:
    option = "attach-daemon2"
    keys = kvlist(value)
    unknown = [k for k in keys if k not in _DAEMON2_KEYS]
    kv = {_DAEMON2_KEYS[k]: v for k, v in keys.items() if k in _DAEMON2_KEYS}
    if "legion" in kv:
        raise DaemonConfigError(f"{option} = {value}: legions are not available in Imperium")
    if "ns_pid" in kv:
        raise DaemonConfigError(f"{option} = {value}: ns_pid (a PID namespace) is not available in Imperium")
    if not kv.get("command", "").strip():
        raise DaemonConfigError(f"--{option}: you need to specify a 'command' key")
    d = Daemon(command=kv["command"].strip(), option=option)
    # uWSGI skips keys it does not know: so do we, saying so
    d.warnings = [f"{option} = {value}: unknown key {k!r} ignored" for k in unknown]
    d.freq = _int(kv.get("freq"), 10, "freq", option, value)
    d.pidfile = kv.get("pidfile") or None
    d.daemonize = "daemonize" in kv
    d.control = "control" in kv
    d.stop_signal = _signal(kv.get("stopsignal"), signal.SIGTERM, "stopsignal", option, value)
    d.reload_signal = _signal(kv.get("reloadsignal"), 0, "reloadsignal", option, value)
    d.honour_stdin = "stdin" in kv
    d.uid = _int(kv.get("uid"), 0, "uid", option, value)
    d.gid = _int(kv.get("gid"), 0, "gid", option, value)
    d.chdir = kv.get("chdir") or None
    d.max_throttle = _int(kv.get("max_throttle"), 0, "max_throttle", option, value)
    d.notifypid = "notifypid" in kv
    if d.daemonize and not d.pidfile:
        raise DaemonConfigError(f"{option} = {value}: daemonize needs a pidfile key")
    if "touch" in kv:
        d.touch_paths = [p for p in kv["touch"].split(";") if p]
    return d


def daemons_from_config(config: Any) -> list[Daemon]:
    """Every daemon option, in config order; DaemonConfigError for the first bad one."""
    names = ("attach-daemon", "attach-control-daemon", "smart-attach-daemon", "smart-attach-daemon2",
             "attach-daemon2", *LEGION_OPTIONS)
    return parse_each(config, names, parse_daemon, DaemonConfigError)


def check_pidfile(path: str) -> int:
    """The live pid the pidfile names, else -1 (uWSGI's ``uwsgi_check_pidfile``)."""
    try:
        with open(path, "rb") as f:
            text = f.read(64)
    except OSError:
        return -1
    digits = text.strip().split(b"\n", 1)[0].strip()
    try:
        pid = int(digits)
    except ValueError:
        return -1
    return pid if pid > 0 and commands.pid_alive(pid) else -1


class Daemons(Service):
    name = "daemons"

    def __init__(self, config: Any, daemons: list[Daemon], control: Any) -> None:
        self.daemons = daemons
        self.control = control
        self.honour_stdin = bool(config.get("daemons-honour-stdin"))
        mercy = int(config.get("reload-mercy") or 0)
        self.stop_mercy = mercy if mercy else 3
        self.last_check = 0
        self.stopping_now = False
        self.reload = False
        for d in daemons:
            d.touch = [TouchFile(p) for p in d.touch_paths]

    # --- life cycle ----------------------------------------------------------------------

    def running(self) -> None:
        for d in self.daemons:
            if d.pidfile:
                pid = check_pidfile(d.pidfile)
                if pid > 0:
                    d.pid = pid
                    d.status = 2
                    log(f"[uwsgi-daemons] found valid/active pidfile for \"{d.command}\" (pid: {pid})")
                    continue
            self.spawn(d)

    def spawn(self, d: Daemon) -> None:
        now = time.monotonic()
        throttle = 0
        if now - d.last_spawn <= 3:
            throttle = int(d.spawns - (now - d.last_spawn))
            throttle = max(throttle, 1)
            throttle = min(throttle, d.max_throttle if d.max_throttle > 0 else 300)
        respawn = d.spawns > 0
        honour = self.honour_stdin or d.honour_stdin

        def prepare() -> None:
            _daemon_child(d, throttle, respawn)

        # a self-daemonizing child makes its session after its second fork (as uWSGI): the
        # daemon then leads its own process group, which the stop signals go to
        pid = commands.spawn(d.command, prepare=prepare, keep_stdin=honour, pdeathsig=not d.pidfile,
                             new_session=not d.daemonize)
        if pid <= 0:
            return
        d.pid = pid
        d.status = 1
        d.has_daemonized = False
        d.pidfile_checks = 0
        d.spawns += 1
        d.last_spawn = now

    def child_exited(self, pid: int, status: int) -> bool:
        for d in self.daemons:
            if d.pid != pid:
                continue
            if d.pidfile:
                # a smart daemon's first process: it daemonized (or died); the pidfile tells
                if not d.has_daemonized:
                    d.has_daemonized = True
                return True
            d.pid = 0
            if self.stopping_now or not self.control._running():
                log(f"daemon \"{d.command}\" (pid: {pid}) annihilated")
                return True
            if d.control:
                log(f"control daemon \"{d.command}\" (pid: {pid}) died: stopping the instance")
                self.control.do_gracefully_kill_them_all()
                return True
            self.spawn(d)
            return True
        return False

    def timeout(self, now: float) -> float | None:
        if self.stopping_now:
            return 0.2
        return 1.0 if self.daemons else None

    def tick(self, now: float) -> None:
        if self.stopping_now:
            self._stop_step(now)
            return
        second = int(time.time())
        if second == self.last_check or not self.control._running():
            return
        self.last_check = second
        for d in self.daemons:
            if d.pidfile:
                self._smart_check(d)
            if d.pid > 0 and d.touch:
                for tf in d.touch:
                    if tf.check():
                        log_verbose(f"*** {tf.path} has been touched... reloading daemon \"{d.command}\" "
                                    f"(pid: {d.pid}) !!! ***")
                        commands.kill_group(d.pid, d.stop_signal)
                        break

    def _smart_check(self, d: Daemon) -> None:
        pid = check_pidfile(d.pidfile or "")
        if pid <= 0:
            if d.status == 2:
                self.spawn(d)
                return
            d.pidfile_checks += 1
            if d.pidfile_checks >= d.freq:
                if not d.has_daemonized:
                    log_verbose(f"[uwsgi-daemons] \"{d.command}\" (pid: {d.pid}) did not daemonize !!!")
                    d.pidfile_checks = 0
                else:
                    log(f"[uwsgi-daemons] found changed pidfile for \"{d.command}\" (old_pid: {d.pid} "
                        f"new_pid: {pid})")
                    self.spawn(d)
        elif pid != d.pid:
            log(f"[uwsgi-daemons] found changed pid for \"{d.command}\" (old_pid: {d.pid} new_pid: {pid})")
            d.pid = pid
        else:
            d.status = 2

    # --- stopping ------------------------------------------------------------------------

    def stopping(self, reload: bool) -> None:
        self.stopping_now = True
        self.reload = reload
        deadline = time.monotonic() + self.stop_mercy
        for d in self.daemons:
            if d.pid > 0 and not d.pidfile:
                log(f"[uwsgi-daemons] stopping daemon (pid: {d.pid}): {d.command}")
                d.stopping_until = deadline
                d.next_signal = 0.0
            elif d.pid > 0 and d.pidfile and d.notifypid:
                sig = (d.reload_signal or signal.SIGHUP) if reload else d.stop_signal
                commands.kill_group(d.pid, sig)
        self._stop_step(time.monotonic())

    def _stop_step(self, now: float) -> None:
        for d in self.daemons:
            if d.pid <= 0 or d.pidfile or not d.stopping_until:
                continue
            if now >= d.stopping_until:
                log(f"[uwsgi-daemons] daemon did not die in time, killing (pid: {d.pid}): {d.command}")
                commands.kill_group(d.pid, signal.SIGKILL)
                d.stopping_until = 0.0
            elif now >= d.next_signal:
                sig = d.reload_signal if (self.reload and d.reload_signal > 0) else d.stop_signal
                commands.kill_group(d.pid, sig)
                d.next_signal = now + 1.0

    def busy(self) -> bool:
        return any(d.pid > 0 and not d.pidfile for d in self.daemons)

    def finish(self) -> None:
        for d in self.daemons:
            if d.pid > 0 and not d.pidfile:
                commands.kill_group(d.pid, signal.SIGKILL)

    # --- stats ---------------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """The stats server's ``daemons`` list. uWSGI 2.0 prints respawns as 0 always (a
        misplaced cast); this is the real count of restarts."""
        return [{"cmd": d.command, "pid": max(d.pid, 0), "respawns": max(d.spawns - 1, 0)}
                for d in self.daemons]


def _daemon_child(d: Daemon, throttle: int, respawn: bool) -> None:
    """In the daemon's child, after fds are closed and before exec (uWSGI's order)."""
    if d.chdir:
        os.chdir(d.chdir)
    if d.gid:
        os.setgid(d.gid)
    if d.uid:
        os.setuid(d.uid)
    if d.daemonize:
        if os.fork() != 0:
            os._exit(0)
        os.setsid()
        if d.pidfile:
            with open(d.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
    if throttle:
        log(f"[uwsgi-daemons] throttling \"{d.command}\" for {throttle} seconds")
        time.sleep(throttle)
    log(f"[uwsgi-daemons] {'re' if respawn else ''}spawning \"{d.command}\" (uid: {os.getuid()} gid: {os.getgid()})")
