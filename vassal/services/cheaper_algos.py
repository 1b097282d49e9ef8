"""The cheaper algorithms: each master cycle, how many workers to add (> 0) or stop (< 0).

uWSGI's cheaper subsystem (core/master_utils.c and the cheaper_busyness plugin) asks its
algorithm once per master cycle (a second) for one number: positive, that many cheaped
workers are spawned again (lowest ids first); negative, that many idle running workers are
cheaped (the oldest first); zero, nothing. The algorithms here are pure: they read a
``Snapshot`` of the workers and the listen queue, keep their own counters, and return that
number; ``vassal.services.cheaper`` is the one that acts. So they are tested cycle by cycle
without a process, and the numbers below are uWSGI 2.0's.

- ``spare`` (the default): every cycle with all running workers busy counts as overloaded;
  more than ``cheaper-overload`` such cycles in a row (a cycle with an idle worker takes one
  back) spawn ``cheaper-step`` workers. With no overload left, and more than one idle worker,
  one worker is cheaped every ``cheaper-overload`` cycles down to ``cheaper``.
- ``spare2`` (uWSGI 2.1, not in Debian's 2.0): keeps ``cheaper`` idle workers ready. Fewer
  idle than that spawns ``min(cheaper-step, missing)``; more idle than that for
  ``cheaper-idle`` cycles in a row cheaps one.
- ``backlog``: a listen queue longer than ``cheaper-overload`` spawns ``cheaper-step``
  workers; a shorter one cheaps one (down to ``cheaper``). Linux TCP sockets only: a UNIX
  socket's queue reads 0 here as in uWSGI.
- ``busyness`` (uWSGI's cheaper_busyness plugin, built in here): every ``cheaper-overload``
  seconds, the share of that window the running workers spent in requests. Above
  ``cheaper-busyness-max`` percent spawns ``cheaper-step``; below ``-min`` for
  ``-multiplier`` windows cheaps one (a worker spawned back too soon after a cheap adds
  ``-penalty`` to the multiplier); a listen queue above ``-backlog-alert`` (checked every
  cycle), or non-empty for ``-backlog-nonzero`` seconds, spawns ``-backlog-step``
  "emergency" workers, which are cheaped again after ``-backlog-multiplier`` windows.
- ``manual``: never acts; the master FIFO's ``+`` and ``-`` do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

#: the algorithms by their uWSGI names, in the order ``cheaper-algo-list`` prints them
NAMES = ("busyness", "spare", "spare2", "backlog", "manual")
DEFAULT = "spare"


@dataclass(frozen=True)
class WorkerView:
    """One worker slot as the algorithms see it."""

    wid: int
    running: bool  # spawned and not cheaped (uWSGI: cheaped == 0 and pid > 0)
    cheaped: bool  # cheaped and gone: may be spawned again (cheaped == 1 and pid == 0)
    busy: bool  # in a request now
    running_time: int = 0  # microseconds spent in requests, over the slot's life
    last_spawn: int = 0  # wall-clock seconds, as the stats show it


@dataclass(frozen=True)
class Snapshot:
    """The instance at one master cycle."""

    workers: tuple[WorkerView, ...]
    backlog: int = 0  # the longest listen queue of the instance's sockets
    now: float = 0.0  # monotonic seconds

    @property
    def running(self) -> int:
        return sum(1 for w in self.workers if w.running)

    @property
    def busy(self) -> int:
        return sum(1 for w in self.workers if w.running and w.busy)

    @property
    def idle(self) -> int:
        return sum(1 for w in self.workers if w.running and not w.busy)

    @property
    def spawnable(self) -> int:
        return sum(1 for w in self.workers if w.cheaped)

    def up_to(self, step: int) -> int:
        """How many cheaped workers a spawn of ``step`` finds (uWSGI's loop takes at least one)."""
        return min(max(step, 1), self.spawnable)


@dataclass(frozen=True)
class Busyness:
    """The cheaper_busyness plugin's options; 0 means "the default", as in uWSGI."""

    max: int = 50
    min: int = 25
    multiplier: int = 10
    penalty: int = 2
    verbose: bool = False
    backlog_alert: int = 33
    backlog_multiplier: int = 3
    backlog_step: int = 1
    backlog_nonzero: int = 60


@dataclass(frozen=True)
class Settings:
    """What the algorithms read (checked by ``vassal.services.cheaper``)."""

    minimum: int  # cheaper
    processes: int
    step: int = 1
    overload: int = 3  # cycles (spare), queue length (backlog), seconds (busyness); >= 1
    idle: int = 10  # cheaper-idle (spare2)
    busyness: Busyness = field(default_factory=Busyness)


class Algorithm(Protocol):
    def decide(self, snap: Snapshot, can_spawn: bool) -> int: ...


class Manual:
    """``manual``: the FIFO decides."""

    def __init__(self, s: Settings, log: Callable[[str], None]) -> None:
        pass

    def decide(self, snap: Snapshot, can_spawn: bool) -> int:
        return 0


class Spare:
    """``spare``: uWSGI 2.0's uwsgi_cheaper_algo_spare (spawn after *more than* N cycles)."""

    def __init__(self, s: Settings, log: Callable[[str], None]) -> None:
        self.s = s
        self.overload_count = 0
        self.idle_count = 0

    def decide(self, snap: Snapshot, can_spawn: bool) -> int:
        if snap.idle == 0:
            self.overload_count += 1
            self.idle_count = 0
        elif self.overload_count > 0:
            self.overload_count -= 1
        if can_spawn and self.overload_count > self.s.overload:
            self.overload_count = 0
            return snap.up_to(self.s.step)
        if self.overload_count == 0:
            running, busy = snap.running, snap.busy
            if running > busy and running - busy == 1:
                return 0  # stable: exactly one spare worker
            self.idle_count += 1
            if running > self.s.minimum and self.idle_count % self.s.overload == 0:
                return -1
        return 0


class Spare2:
    """``spare2``: uWSGI 2.1's uwsgi_cheaper_algo_spare2 (``cheaper`` idle workers ready)."""

    def __init__(self, s: Settings, log: Callable[[str], None]) -> None:
        self.s = s
        self.idle_count = 0

    def decide(self, snap: Snapshot, can_spawn: bool) -> int:
        idle = snap.idle
        if idle < self.s.minimum:
            self.idle_count = 0
            if not can_spawn:
                return 0
            return min(self.s.minimum - idle, snap.spawnable, max(self.s.step, 1))
        if idle == self.s.minimum:
            self.idle_count = 0
            return 0
        self.idle_count += 1
        if self.idle_count < self.s.idle:
            return 0
        self.idle_count = 0
        return -1


class Backlog:
    """``backlog``: uWSGI's uwsgi_cheaper_algo_backlog."""

    def __init__(self, s: Settings, log: Callable[[str], None]) -> None:
        self.s = s

    def decide(self, snap: Snapshot, can_spawn: bool) -> int:
        if can_spawn and snap.backlog > self.s.overload:
            return snap.up_to(self.s.step)
        if snap.backlog < self.s.overload and snap.running > self.s.minimum:
            return -1
        return 0


class BusynessAlgo:
    """``busyness``: the cheaper_busyness plugin's algorithm, on monotonic seconds."""

    SPAWN, CHEAP = 1, 2  # last_action

    def __init__(self, s: Settings, log: Callable[[str], None], now: float = 0.0) -> None:
        self.s = s
        self.b = s.busyness
        self.log = log
        self.window = s.overload  # seconds
        n = s.processes
        self.last_values = [0] * n  # running_time at the last window
        self.was_busy = [0] * n  # cycles seen busy in this window
        self.tcheck = now
        self.last_cheaped: float | None = None
        self.multi = self.b.multiplier
        self.min_multi = self.b.multiplier
        self.last_action = 0
        self.tolerance = 0
        self.emergency = 0
        self.backlog_nonzero_since: float | None = None
        self.next_cheap = 0.0
        self._set_next_cheap(now)
        b = self.b
        log(f"[busyness] settings: min={b.min}%, max={b.max}%, overload={s.overload}, "
            f"multiplier={b.multiplier}, respawn penalty={b.penalty}")
        log(f"[busyness] backlog alert is set to {b.backlog_alert} request(s), step is {b.backlog_step}")
        log(f"[busyness] backlog non-zero alert is set to {b.backlog_nonzero} second(s)")

    def _verbose(self, line: str) -> None:
        if self.b.verbose:
            self.log(line)

    def _set_next_cheap(self, now: float) -> None:
        if self.emergency > 0:
            # emergency workers go after a short wait: a spike may be over as fast as it came
            self._verbose(f"[busyness] {self.emergency} emergency worker(s) running, using "
                          f"{self.window * self.b.backlog_multiplier} seconds cheaper timer")
            self.next_cheap = now + self.window * self.b.backlog_multiplier
        else:
            self.next_cheap = now + self.window * self.multi

    def _decrease_multi(self) -> None:
        if self.multi > self.min_multi:
            self.multi -= 1
            self.log(f"[busyness] decreasing cheaper multiplier to {self.multi}")

    def _emergency(self, snap: Snapshot) -> int:
        self.multi = self.min_multi
        self.last_action = self.SPAWN
        n = min(max(self.b.backlog_step, 1), snap.spawnable)
        self._set_next_cheap(snap.now)
        if n > 0:
            self.emergency += n
            self.log(f"[busyness] {snap.backlog} requests in listen queue, spawning {n} emergency "
                     f"worker(s) ({self.emergency})!")
        else:
            self.log(f"[busyness] {snap.backlog} requests in listen queue but we are already started "
                     f"maximum number of workers ({self.s.processes})")
        return n

    def decide(self, snap: Snapshot, can_spawn: bool) -> int:
        now = snap.now
        active = snap.running
        for i, w in enumerate(snap.workers):
            if w.running:
                self.was_busy[i] += 1 if w.busy else 0
            else:
                self.was_busy[i] = 0
        if now - self.tcheck >= self.window:
            return self._window(snap, can_spawn, active)
        if can_spawn and snap.backlog > self.b.backlog_alert and active < self.s.processes:
            return self._emergency(snap)  # checked every cycle, not only once a window
        if snap.backlog > 0:
            if self.backlog_nonzero_since is None:
                self._verbose(f"[busyness] backlog is starting to fill ({snap.backlog})")
                self.backlog_nonzero_since = now
            elif can_spawn and now - self.backlog_nonzero_since >= self.b.backlog_nonzero:
                self.log(f"[busyness] backlog was non-zero for {int(now - self.backlog_nonzero_since)} "
                         "second(s), spawning new worker(s)")
                self.backlog_nonzero_since = now
                return self._emergency(snap)
        elif self.backlog_nonzero_since is not None:
            self._verbose("[busyness] backlog is now empty")
            self.backlog_nonzero_since = None
        return 0

    def _window(self, snap: Snapshot, can_spawn: bool, active: int) -> int:
        now = snap.now
        window_us = self.window * 1_000_000
        self.tcheck = now
        total = 0
        for i, w in enumerate(snap.workers):
            if w.running:
                delta = w.running_time - self.last_values[i]
                percent = min(100, max(0, delta) * 100 // window_us)
                if delta == 0 and self.was_busy[i] > 0:
                    # busy but no request ended in the window: requests longer than it
                    self._verbose(f"[busyness] worker {w.wid} was busy {self.was_busy[i]} time(s) in last "
                                  "cycle but no request was completed during this time, marking as 100% busy")
                    percent = 100
                self.was_busy[i] = 0
                total += percent
                if active > 1:
                    self._verbose(f"[busyness] worker nr {w.wid} {self.window}s average busyness is at {percent}%")
            self.last_values[i] = w.running_time
        avg = total // active if active else 0
        self._verbose(f"[busyness] {self.window}s average busyness of {active} worker(s) is at {avg}%")
        if avg > self.b.max:
            self.tolerance = 0
            n = snap.up_to(self.s.step) if can_spawn else 0
            if n > 0:
                self.last_action = self.SPAWN
                since_cheap = None if self.last_cheaped is None else int((now - self.last_cheaped) // self.window)
                if since_cheap is not None and since_cheap <= self.multi:
                    # cheaped and needed again within the multiplier: wait longer next time
                    self.multi += self.b.penalty
                    self.log(f"[busyness] worker(s) respawned to fast, increasing cheaper multiplier to "
                             f"{self.multi} (+{self.b.penalty})")
                else:
                    self._decrease_multi()
                self._set_next_cheap(now)
                self.log(f"[busyness] {self.window}s average busyness is at {avg}%, will spawn {n} new worker(s)")
            else:
                self.log(f"[busyness] {self.window}s average busyness is at {avg}% but we already started "
                         f"maximum number of workers available with current limits ({active})")
            return n
        if can_spawn and snap.backlog > self.b.backlog_alert and active < self.s.processes:
            return self._emergency(snap)
        if avg < self.b.min:
            if active == 1:
                return 0
            self.tolerance = 0
            if active > self.s.minimum:
                if now >= self.next_cheap:
                    if self.last_action == self.CHEAP:
                        self._decrease_multi()
                    self._set_next_cheap(now)
                    self.log(f"[busyness] {self.window}s average busyness is at {avg}%, cheap one of "
                             f"{active} running workers")
                    self.last_cheaped = now
                    self.last_action = self.CHEAP
                    if self.emergency > 0:
                        self.emergency -= 1
                    return -1
                self._verbose(f"[busyness] need to wait {int(self.next_cheap - now)} more second(s) to cheap worker")
            return 0
        if active == 1:
            return 0
        if self.emergency > 0:
            self.emergency -= 1  # busy enough again: emergency workers are ordinary ones now
        # min <= busyness <= max: a short bump delays the next cheap, three in a row restart it
        self.tolerance += 1
        if self.tolerance >= 3:
            self._verbose(f"[busyness] {self.window}s average busyness is at {avg}%, {self.tolerance} "
                          "non-idle cycle(s), resetting cheaper timer")
            self._set_next_cheap(now)
        else:
            self._verbose(f"[busyness] {self.window}s average busyness is at {avg}%, {self.tolerance} "
                          "non-idle cycle(s), adjusting cheaper timer")
            self.next_cheap += self.window
        return 0


_CLASSES: dict[str, Callable[..., Algorithm]] = {
    "spare": Spare, "spare2": Spare2, "backlog": Backlog, "busyness": BusynessAlgo, "manual": Manual,
}


def make(name: str, s: Settings, log: Callable[[str], None], now: float) -> Algorithm:
    """The algorithm called ``name`` (one of ``NAMES``)."""
    if name == "busyness":
        return BusynessAlgo(s, log, now)
    return _CLASSES[name](s, log)
