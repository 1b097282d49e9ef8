"""The master's side of uWSGI signals: routing, timers, crons, file monitors, touch-signal.

Signal numbers written by workers, mules and spoolers arrive on the master ends of their
shared pipes; the master routes each to its target (``SignalHub.route``). The events that
raise signals are all kept here, in the master's loop:

- ``timer = SIG SECS`` / ``uwsgi.add_timer``: every SECS seconds from registration;
- ``rbtimer = SIG SECS`` / ``uwsgi.add_rb_timer(sig, secs, iterations)``: the same, stopping
  after ``iterations`` (0: never); uWSGI keeps these in a red-black tree, a heap would do,
  a list is enough for the few a program has;
- ``uwsgi.add_cron(sig, minute, hour, day, month, weekday)``: uWSGI's crontab fields (-1 is
  ``*``, -N is ``*/N``), checked against local time every loop, fired at most once a minute;
- ``uwsgi.add_file_monitor(sig, path)``: inotify (through ``inotify_simple``), as uWSGI does;
- ``touch-signal = FILE SIG``: the file's mtime, checked once a second like uWSGI's touches.

Workers, mules and spoolers ask for timers, crons and monitors with a datagram on the
control socket (``SignalHub.control``); identical requests are kept once, so lazy apps that
register the same timer in every worker get one timer, not one per worker.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from inotify_simple import INotify
from inotify_simple import flags as inflags

from vassal.api.signals import NSIGNALS, SignalHub, drain
from vassal.log import log
from vassal.services import Service

#: what a file monitor reacts to (uWSGI's inotify mask)
FILEMON_MASK = (inflags.ATTRIB | inflags.CREATE | inflags.DELETE | inflags.DELETE_SELF | inflags.MODIFY
                | inflags.MOVE_SELF | inflags.MOVED_FROM | inflags.MOVED_TO)
#: requests of each kind a program may make; more is a runaway loop, not a schedule
MAX_REQUESTS = 1024


class SignalOptionError(ValueError):
    """A ``timer``/``rbtimer``/``touch-signal`` value that cannot be used; names the option."""


@dataclass
class Timer:
    sig: int
    secs: int
    due: float  # monotonic
    iterations: int = 0  # rb timers: how many times (0: forever)
    done: int = 0


@dataclass
class Cron:
    sig: int
    minute: int
    hour: int
    day: int
    month: int
    week: int
    last: float = 0.0  # wall time of the last run


@dataclass
class Touch:
    """A ``touch-signal`` file, tracked as uWSGI's uwsgi_check_touches does."""

    path: str
    sig: int
    mtime: int = 0
    missing: bool = False
    warned: bool = field(default=False, repr=False)

    def touched(self) -> bool:
        try:
            mtime = int(os.stat(self.path).st_mtime)
        except OSError:
            if self.mtime and not self.missing:
                self.missing = True  # removed: that counts as a touch
                self.mtime = 0
                return True
            if not self.mtime and not self.missing:
                log(f"unable to stat() {self.path}, events will be triggered as soon as the file is created")
                self.missing = True
            return False
        if self.missing:
            self.missing = False
            self.mtime = mtime
            return True
        if self.mtime and mtime > self.mtime:
            self.mtime = mtime
            return True
        self.mtime = mtime
        return False


def cron_matches(tm: time.struct_time, minute: int, hour: int, day: int, month: int, week: int) -> bool:
    """uWSGI's uwsgi_cron_task_needs_execution: -1 is every, -N every N; day and weekday are
    ORed when both are given; weekday 7 is Sunday too."""
    now_min, now_hour, now_day, now_mon = tm.tm_min, tm.tm_hour, tm.tm_mday, tm.tm_mon
    now_wday = (tm.tm_wday + 1) % 7  # struct_time: Monday is 0; cron: Sunday is 0

    def field_ok(want: int, have: int) -> bool:
        if want < 0:
            return have % -want == 0
        return want == have

    wk = 0 if week == 7 else week
    base = field_ok(minute, now_min) and field_ok(hour, now_hour) and field_ok(month, now_mon)
    if day >= 0 and week >= 0:
        return base and (now_day == day or now_wday == wk)
    return base and field_ok(day, now_day) and field_ok(wk, now_wday)


def _pair_option(option: str, value: str, first: str, second: str) -> tuple[str, str]:
    parts = value.split(None, 1)
    if len(parts) != 2:
        raise SignalOptionError(f"{option} = {value!r}: expected '{first} {second}'")
    return parts[0], parts[1].strip()


def _signum(option: str, text: str) -> int:
    try:
        sig = int(text)
    except ValueError:
        raise SignalOptionError(f"{option}: {text!r} is not a signal number") from None
    if not 0 <= sig < NSIGNALS:
        raise SignalOptionError(f"{option}: signal number {sig} is out of range (0-255)")
    return sig


def parse_options(config: Any) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[Touch]]:
    """(timers, rb timers, touch-signal files) from the options; SignalOptionError if bad."""
    timers: list[tuple[int, int]] = []
    rbtimers: list[tuple[int, int]] = []
    for option, out in (("timer", timers), ("rbtimer", rbtimers)):
        for value in config.getlist(option):
            sig_text, secs_text = _pair_option(option, value, "SIGNAL", "SECONDS")
            sig = _signum(option, sig_text)
            try:
                secs = int(secs_text)
            except ValueError:
                raise SignalOptionError(f"{option} = {value!r}: {secs_text!r} is not a number of seconds") from None
            if secs < 1:
                raise SignalOptionError(f"{option} = {value!r}: seconds must be at least 1")
            out.append((sig, secs))
    touches = []
    for value in config.getlist("touch-signal"):
        path, sig_text = _pair_option("touch-signal", value, "FILE", "SIGNAL")
        touches.append(Touch(path, _signum("touch-signal", sig_text)))
    return timers, rbtimers, touches


class SignalService(Service):
    """Routes signals and raises the timed and file events (see the module docstring)."""

    name = "signals"

    def __init__(self, hub: SignalHub, config: Any) -> None:
        self.hub = hub
        timers, rbtimers, self.touches = parse_options(config)
        now = time.monotonic()
        self.timers = [Timer(sig, secs, now + secs) for sig, secs in timers]
        self.timers += [Timer(sig, secs, now + secs, iterations=0) for sig, secs in rbtimers]
        self.crons: list[Cron] = []
        self.inotify: INotify | None = None
        self.watches: dict[int, list[int]] = {}  # inotify watch descriptor -> signals
        self.seen: set[tuple] = set()  # requests already applied (identical ones are kept once)
        self.next_touch_check = 0.0
        self.inputs = [p[0] for p in (hub.workers_pipe, hub.mules_pipe, hub.spooler_pipe) if p is not None]

    def start(self, master: Any) -> None:
        for touch in self.touches:  # the mtimes the instance starts with, as uWSGI records them
            touch.touched()

    def fds(self) -> list[int]:
        fds = [s.fileno() for s in self.inputs]
        fds.append(self.hub.control[0].fileno())
        if self.inotify is not None:
            fds.append(self.inotify.fileno())
        return fds

    def on_ready(self, fd: int) -> None:
        if fd == self.hub.control[0].fileno():
            self._requests()
        elif self.inotify is not None and fd == self.inotify.fileno():
            self._file_events()
        else:
            for sock in self.inputs:
                if sock.fileno() == fd:
                    for sig in drain(sock):
                        self.hub.route(sig)

    def timeout(self, now: float) -> float | None:
        if not self.timers:
            return None
        return min(t.due for t in self.timers) - now

    def tick(self, now: float) -> None:
        fired = False
        for t in self.timers:
            if now >= t.due:
                self.hub.route(t.sig)
                t.done += 1
                # keep the cadence; after a long stall start again from now instead of bursting
                t.due = t.due + t.secs if now - t.due < t.secs else now + t.secs
                fired = True
        if fired:
            self.timers = [t for t in self.timers if not t.iterations or t.done < t.iterations]
        if self.crons:
            wall = time.time()
            tm = time.localtime(wall)
            for c in self.crons:
                if cron_matches(tm, c.minute, c.hour, c.day, c.month, c.week) and wall - c.last >= 60:
                    log(f"{time.ctime(wall)} - [uwsgi-cron] routing signal {c.sig}")
                    self.hub.route(c.sig)
                    c.last = wall
        if self.touches and now >= self.next_touch_check:
            self.next_touch_check = now + 1.0
            for touch in self.touches:
                if touch.touched():
                    self.hub.route(touch.sig)
                    log(f"{time.ctime()} - [uwsgi-touch-signal] raising {touch.sig}")

    def _requests(self) -> None:
        while True:
            data = drain(self.hub.control[0], 65536)
            if not data:
                return
            try:
                req = json.loads(data)
                self._apply(req)
            except (ValueError, KeyError, TypeError) as exc:
                log(f"[uwsgi-signal] bad request from a process: {exc}")

    def _apply(self, req: dict) -> None:
        key = tuple(sorted(req.items()))
        if key in self.seen:
            return
        kind = req["kind"]
        if sum(1 for k in self.seen if dict(k)["kind"] == kind) >= MAX_REQUESTS:
            log(f"you can register max {MAX_REQUESTS} {kind}s !!!")
            return
        self.seen.add(key)
        sig = int(req["sig"])
        if kind == "timer":
            self.timers.append(Timer(sig, int(req["secs"]), time.monotonic() + int(req["secs"])))
        elif kind == "rbtimer":
            self.timers.append(Timer(sig, int(req["secs"]), time.monotonic() + int(req["secs"]),
                                     iterations=int(req["iterations"])))
        elif kind == "cron":
            self.crons.append(Cron(sig, int(req["minute"]), int(req["hour"]), int(req["day"]),
                                   int(req["month"]), int(req["week"])))
        elif kind == "filemon":
            self._watch(str(req["path"]), sig)

    def _watch(self, path: str, sig: int) -> None:
        if self.inotify is None:
            self.inotify = INotify(nonblocking=True)
        try:
            wd = self.inotify.add_watch(path, FILEMON_MASK)
        except OSError as exc:
            log(f"[uwsgi-filemon] unable to monitor {path}: {exc.strerror}")
            return
        self.watches.setdefault(wd, []).append(sig)

    def _file_events(self) -> None:
        assert self.inotify is not None
        try:
            events = self.inotify.read(timeout=0)
        except OSError:
            return
        for wd in dict.fromkeys(e.wd for e in events):  # one signal per watch per batch, as uWSGI
            for sig in self.watches.get(wd, []):
                self.hub.route(sig)

    def finish(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None
