"""The cheaper subsystem: the number of running workers follows the load.

``cheaper = N`` (N lower than ``processes``) starts ``cheaper-initial`` workers (default N)
and lets an algorithm (``cheaper-algo``, see ``cheaper_algos``) add and remove workers
between N and ``processes``. As uWSGI's ``uwsgi_calc_cheaper`` (core/master_utils.c), once
per master cycle (a second) this service:

1. sums the RSS of the running workers when ``cheaper-rss-limit-soft`` is set: at or above
   the soft limit no worker may be added; at or above ``cheaper-rss-limit-hard`` (with more
   than one running) one worker is cheaped and the algorithm is not asked;
2. else applies what the master FIFO asked (``+``/``-``, counted since the last cycle),
   instead of the algorithm;
3. else asks the algorithm;
4. spawns the cheaped workers with the lowest ids, or cheaps the idle running worker spawned
   longest ago. A decrease with no idle worker to cheap is carried to the next cycle (as
   uWSGI does, in place of the algorithm); what is carried, like the FIFO's count, is bounded
   by ``processes``.

The master executes (``Master.start_worker``/``Master.cheap_worker``): a cheaped worker is
told to stop gracefully (it finishes the request it may have taken meanwhile), is logged
"uWSGI worker N cheaped." when reaped, is not respawned, and shows ``"status": "cheap"`` in
the stats (``Scoreboard`` field ``cheaped``, written by the master only). One that has not
exited after ``worker-reload-mercy`` seconds is killed. Nothing runs while the instance
reloads or stops, sleeps in cheap mode (``idle``, the FIFO's ``C``; waking spawns N workers)
or is paused (the FIFO's ``p``). The FIFO's ``+`` and ``-`` come through ``nudge``.

Bad values stop the start with one line naming the option, as uWSGI refuses them (``cheaper``
not lower than ``processes``; a hard RSS limit without a soft one, or not above it; the soft
limit without ``memory-report``), plus what uWSGI would crash on later
(``cheaper-overload = 0`` divides by zero in its algorithms).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from vassal import stats as statsmod
from vassal.log import log
from vassal.services import Service
from vassal.services import cheaper_algos as algos
from vassal.sockets import listen_queue

#: options that make uWSGI read the workers' memory (UWSGI_OPT_MEMORY), as memory-report does
_MEMORY_OPTIONS = ("memory-report", "reload-on-rss", "evil-reload-on-rss", "reload-on-as",
                   "evil-reload-on-as")
#: the master's cycle: the algorithms count in these
CYCLE = 1.0


class CheaperError(ValueError):
    """A cheaper option the instance cannot start with; the message is the one line."""


@dataclass(frozen=True)
class CheaperConfig:
    algo: str
    initial: int
    rss_soft: int  # bytes, 0: no limit
    rss_hard: int
    mercy: float  # worker-reload-mercy: seconds a cheaped worker gets to exit
    settings: algos.Settings


def _where(config: Any, name: str) -> str:
    origin = config.origin(name)
    return f"{name} ({origin})" if origin is not None else name


def list_algorithms() -> None:
    """``cheaper-algo-list``: the algorithms built in, as uWSGI prints its loaded ones."""
    log("")
    log("*** uWSGI loaded cheaper algorithms ***")
    for name in algos.NAMES:
        log(name)
    log("--- end of cheaper algorithms list ---")
    log("")


def from_config(config: Any) -> CheaperConfig | None:
    """The checked cheaper settings, None when cheaper mode is off; CheaperError if refused."""
    processes = max(1, int(config.get("processes") or 1))
    minimum = int(config.get("cheaper") or 0)
    if minimum and minimum >= processes:
        raise CheaperError(f"{_where(config, 'cheaper')}: invalid cheaper value: must be lower than "
                           f"processes ({minimum} >= {processes})")
    soft = int(config.get("cheaper-rss-limit-soft") or 0)
    hard = int(config.get("cheaper-rss-limit-hard") or 0)
    if soft and not any(config.get(o) for o in _MEMORY_OPTIONS):
        raise CheaperError(f"{_where(config, 'cheaper-rss-limit-soft')}: enabling cheaper-rss-limit-soft "
                           "requires enabling also memory-report")
    if hard and not soft:
        raise CheaperError(f"{_where(config, 'cheaper-rss-limit-hard')}: enabling cheaper-rss-limit-hard "
                           "requires setting also cheaper-rss-limit-soft")
    if hard and hard <= soft:
        raise CheaperError(f"{_where(config, 'cheaper-rss-limit-hard')}: cheaper-rss-limit-hard value must "
                           f"be higher than cheaper-rss-limit-soft value ({hard} <= {soft})")
    if not minimum:
        return None
    overload = int(config.get("cheaper-overload"))
    if overload < 1:
        raise CheaperError(f"{_where(config, 'cheaper-overload')}: must be at least 1 "
                           "(the algorithms count in cheaper-overload cycles)")
    initial = int(config.get("cheaper-initial") or 0)
    if not initial:
        initial = minimum
    elif initial < minimum:
        log(f"warning: invalid cheaper-initial value ({initial}), must be equal or higher than cheaper "
            f"({minimum}), using {minimum} as initial number of workers")
        initial = minimum
    elif initial > processes:
        log(f"warning: invalid cheaper-initial value ({initial}), must be lower or equal than worker count "
            f"({processes}), using {processes} as initial number of workers")
        initial = processes
    algo = config.get("cheaper-algo") or algos.DEFAULT
    if algo not in algos.NAMES:
        log(f"{_where(config, 'cheaper-algo')}: unable to find requested cheaper algorithm {algo!r}, "
            "falling back to spare")
        algo = algos.DEFAULT
    b = algos.Busyness()

    def opt(name: str, default: int) -> int:
        return int(config.get(name) or 0) or default  # 0 means the default, as in the plugin

    busyness = algos.Busyness(
        max=opt("cheaper-busyness-max", b.max), min=opt("cheaper-busyness-min", b.min),
        multiplier=opt("cheaper-busyness-multiplier", b.multiplier),
        penalty=opt("cheaper-busyness-penalty", b.penalty), verbose=bool(config.get("cheaper-busyness-verbose")),
        backlog_alert=opt("cheaper-busyness-backlog-alert", b.backlog_alert),
        backlog_multiplier=opt("cheaper-busyness-backlog-multiplier", b.backlog_multiplier),
        backlog_step=opt("cheaper-busyness-backlog-step", b.backlog_step),
        backlog_nonzero=opt("cheaper-busyness-backlog-nonzero", b.backlog_nonzero))
    settings = algos.Settings(minimum=minimum, processes=processes, step=int(config.get("cheaper-step")),
                              overload=overload, idle=int(config.get("cheaper-idle")), busyness=busyness)
    return CheaperConfig(algo=algo, initial=initial, rss_soft=soft, rss_hard=hard,
                         mercy=float(config.get("worker-reload-mercy") or 60), settings=settings)


class Cheaper(Service):
    name = "cheaper"

    def __init__(self, conf: CheaperConfig) -> None:
        self.conf = conf
        self.master: Any = None
        self.control: Any = None
        self.algo: algos.Algorithm | None = None
        self.fifo_delta = 0
        self.next_check = 0.0
        self.dying: dict[int, float] = {}  # pid of a cheaped worker -> monotonic deadline

    @property
    def minimum(self) -> int:
        return self.conf.settings.minimum

    # --- Service -------------------------------------------------------------------------

    def start(self, master: Any) -> None:
        self.master = master
        master.cheaper = self
        # the FIFO's p (pause) lives in the control service: no scaling while workers are stopped
        self.control = next((s for s in master.services if s.name == "control"), None)
        board = master.board
        for wid in range(self.conf.initial + 1, board.nworkers + 1):
            board.workers[wid].cheaped = 1  # the master spawns only the others
        now = time.monotonic()
        self.algo = algos.make(self.conf.algo, self.conf.settings, log, now)
        self.next_check = now + CYCLE

    def timeout(self, now: float) -> float | None:
        wish = self.next_check - now
        if self.dying:
            wish = min(wish, min(self.dying.values()) - now)
        return wish

    def tick(self, now: float) -> None:
        if self.dying:
            self._no_mercy(now)
        if now < self.next_check:
            return
        self.next_check = now + CYCLE
        if self.master.can_scale() and not getattr(self.control, "paused", False):
            self.cycle(now)

    def stopping(self, reload: bool) -> None:
        self.dying.clear()  # the master's own mercy covers every worker from now on

    # --- the master FIFO -----------------------------------------------------------------

    def nudge(self, delta: int) -> None:
        """``+`` (1) or ``-`` (-1) from the master FIFO: applied at the next cycle."""
        self._carry(delta)

    def _carry(self, delta: int) -> None:
        # no more than every worker can be started or cheaped: a flood of '-' on the FIFO
        # must not become a loop of millions of steps every cycle
        n = self.conf.settings.processes
        self.fifo_delta = max(-n, min(n, self.fifo_delta + delta))

    # --- one cycle -----------------------------------------------------------------------

    def snapshot(self, now: float) -> algos.Snapshot:
        m = self.master
        board = m.board
        views = []
        for wid in range(1, board.nworkers + 1):
            w = board.workers[wid]
            views.append(algos.WorkerView(wid=wid, running=not w.cheaped and w.pid > 0,
                                          cheaped=bool(w.cheaped) and w.pid == 0, busy=w.busy_cores > 0,
                                          running_time=w.running_time, last_spawn=w.last_spawn))
        backlog = max((listen_queue(ls) for ls in m.sockets), default=0)
        return algos.Snapshot(tuple(views), backlog, now)

    def rss(self) -> tuple[int, int]:
        """(total RSS in bytes, count) of the workers not cheaped."""
        board = self.master.board
        total = running = 0
        for wid in range(1, board.nworkers + 1):
            w = board.workers[wid]
            if not w.cheaped:
                running += 1
                if w.pid > 0:
                    total += statsmod._memory(w.pid)[0]
        return total, running

    def cycle(self, now: float) -> None:
        assert self.algo is not None
        needed = 0
        can_spawn = True
        if self.conf.rss_soft:
            total, running = self.rss()
            if self.conf.rss_hard and running > 1 and total >= self.conf.rss_hard:
                log(f"cheaper hard rss memory limit exceeded, cheap one of {running} workers")
                needed, can_spawn = -1, False
            elif total >= self.conf.rss_soft:
                can_spawn = False
        snap = self.snapshot(now)
        if self.fifo_delta:
            if can_spawn:
                needed = self.fifo_delta
            self.fifo_delta = 0
        elif not needed:
            needed = self.algo.decide(snap, can_spawn)
            if needed > 0 and not can_spawn:
                needed = 0
        self.apply(needed, snap)

    def apply(self, needed: int, snap: algos.Snapshot) -> None:
        m = self.master
        if needed > 0:
            for w in snap.workers:
                if needed == 0:
                    break
                if w.cheaped:
                    m.start_worker(w.wid)
                    needed -= 1
            return
        taken: set[int] = set()
        while needed < 0:
            idle = [w for w in snap.workers if w.running and not w.busy and w.wid not in taken]
            if idle:
                oldest = min(idle, key=lambda w: (w.last_spawn, w.wid))
                taken.add(oldest.wid)
                pid = m.board.workers[oldest.wid].pid
                m.cheap_worker(oldest.wid)
                if pid > 0:
                    self.dying[pid] = time.monotonic() + self.conf.mercy
            else:
                self._carry(-1)  # nobody idle to cheap now: try again next cycle
            needed += 1

    def _no_mercy(self, now: float) -> None:
        pids = self.master.pids
        for pid, deadline in list(self.dying.items()):
            if pid not in pids:
                del self.dying[pid]
            elif now >= deadline:
                log(f"worker {pids[pid]} (pid: {pid}) is taking too much time to die...NO MERCY !!!")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                del self.dying[pid]
