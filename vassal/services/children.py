"""Children of the master that are not workers (mules, spoolers): fork, respawn, stop.

A ``ChildrenService`` keeps a fixed table of child slots. It forks them when the master
starts, forks a slot again when its process dies while the instance runs (after a pause when
it keeps dying within a second of its birth, so a broken program cannot make the master
spin), and on reload or shutdown sends the stop signal and, past the mercy, SIGKILL. The
master waits (``busy``) until every child is reaped before it re-execs or exits.

The life of a slot, one enum and one table of allowed moves (``Phase``, ``MOVES``)::

    (start) ──fork──▶ RUNNING ──dies while the instance runs──▶ RESPAWN_WAIT ──due──▶ RUNNING
                        │  ▲                 (or at once, when it did not die young)
                        │  └──── touch reload: CURSED, dies, forked again ────┘
                        └──reload/shutdown──▶ STOPPING ──dies──▶ GONE

A child is forked the way the master forks workers (``vassal.master._fork_worker``: stop
signals blocked across the fork, default handlers, death with the master) and drops what
only the master may hold: the listening sockets, the stats and zerg servers, the emperor fd.
"""

from __future__ import annotations

import enum
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vassal.log import log
from vassal.master import _fork_worker
from vassal.services import Service

try:  # imported now: after the privileges drop the interpreter's own files may be out of reach
    import setproctitle
except ImportError:  # pragma: no cover
    setproctitle = None  # type: ignore[assignment]

#: a child that dies this soon after its birth counts as a fast death
FAST_DEATH = 1.0
#: fast deaths in a row after which the respawn waits RESPAWN_PAUSE seconds
FAST_DEATHS_MAX = 3
RESPAWN_PAUSE = 2.0


def fork_child(master: Any, run: Callable[[], None], title: str | None = None) -> int:
    """Fork a child of ``master`` that runs ``run()`` (which must not return) and its pid."""

    def child(_unused: int) -> None:
        for ls in master.sockets:
            ls.sock.close()
        for service in master.services:  # what only the master holds (stats server, log pipes)
            service.in_worker(0)
        if master.zerg_server is not None:
            master.zerg_server.close()
        if master.link is not None:
            master.link.close()
        if title and setproctitle is not None:
            setproctitle.setproctitle(title)
        run()

    return _fork_worker(child, 0)


class Phase(enum.Enum):
    NEW = "new"  # not forked yet
    RUNNING = "running"
    CURSED = "cursed"  # asked to stop, to be forked again (touch reload)
    RESPAWN_WAIT = "respawn-wait"  # died young too often: forked again after a pause
    STOPPING = "stopping"  # the instance stops or reloads: not forked again
    GONE = "gone"


#: phase -> phases it may move to
MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.NEW: frozenset({Phase.RUNNING, Phase.RESPAWN_WAIT, Phase.STOPPING, Phase.GONE}),
    Phase.RUNNING: frozenset({Phase.RUNNING, Phase.CURSED, Phase.RESPAWN_WAIT, Phase.STOPPING}),
    Phase.CURSED: frozenset({Phase.RUNNING, Phase.RESPAWN_WAIT, Phase.STOPPING}),
    Phase.RESPAWN_WAIT: frozenset({Phase.RUNNING, Phase.STOPPING, Phase.GONE}),
    Phase.STOPPING: frozenset({Phase.GONE}),
    Phase.GONE: frozenset(),
}


@dataclass
class Child:
    index: int
    phase: Phase = Phase.NEW
    pid: int = 0
    born: float = 0.0  # monotonic
    fast_deaths: int = 0
    respawn_at: float | None = None
    no_mercy_at: float | None = None

    def move(self, to: Phase) -> None:
        if to not in MOVES[self.phase]:
            raise RuntimeError(f"child {self.index}: {self.phase.value} -> {to.value} is not a move")
        self.phase = to


class ChildrenService(Service):
    """A fixed set of child processes; subclasses say how to run, name and stop one."""

    name = "children"
    #: signal for a reload and for a shutdown; mercy before SIGKILL (seconds)
    reload_signal: int = signal.SIGHUP
    stop_signal: int = signal.SIGINT
    mercy: float = 60.0

    def __init__(self, count: int) -> None:
        self.children = [Child(i) for i in range(count)]
        self.master: Any = None
        self.stopping_now = False

    # --- for subclasses ------------------------------------------------------------------

    def run_child(self, index: int) -> None:
        """The child's body (in the child); must not return."""
        raise NotImplementedError

    def title(self, index: int) -> str | None:
        return None

    def spawned(self, child: Child, respawn: bool) -> None:
        """Log the birth of a child (and keep any bookkeeping)."""

    def died(self, child: Child, pid: int, status: int) -> None:
        """Log the death of a child while the instance runs (it is respawned next)."""

    def annihilated(self, child: Child, pid: int) -> None:
        """Log the end of a child while the instance stops."""

    # --- the service ---------------------------------------------------------------------

    def start(self, master: Any) -> None:
        self.master = master
        for child in self.children:
            self.spawn(child)

    def spawn(self, child: Child, respawn: bool = False) -> None:
        child.move(Phase.RUNNING)
        child.respawn_at = None
        child.no_mercy_at = None
        child.born = time.monotonic()
        child.pid = fork_child(self.master, lambda: self.run_child(child.index), self.title(child.index))
        self.spawned(child, respawn)

    def wait_then_spawn(self, child: Child, delay: float) -> None:
        child.move(Phase.RESPAWN_WAIT)
        child.respawn_at = time.monotonic() + delay

    def child_exited(self, pid: int, status: int) -> bool:
        child = next((c for c in self.children if c.pid == pid), None)
        if child is None:
            return False
        child.pid = 0
        if child.phase is Phase.STOPPING:
            child.move(Phase.GONE)
            self.annihilated(child, pid)
            return True
        self.died(child, pid, status)
        if time.monotonic() - child.born < FAST_DEATH:
            child.fast_deaths += 1
        else:
            child.fast_deaths = 0
        if child.fast_deaths >= FAST_DEATHS_MAX:
            log(f"{self.name} respawning too fast !!! i have to sleep a bit ({int(RESPAWN_PAUSE)} seconds)...")
            self.wait_then_spawn(child, RESPAWN_PAUSE)
        else:
            self.spawn(child, respawn=True)
        return True

    def timeout(self, now: float) -> float | None:
        due = [t for c in self.children for t in (c.respawn_at, c.no_mercy_at) if t is not None]
        return min(due) - now if due else None

    def tick(self, now: float) -> None:
        for child in self.children:
            if child.phase is Phase.RESPAWN_WAIT and now >= (child.respawn_at or 0.0):
                self.spawn(child, respawn=True)
            if child.pid and child.no_mercy_at is not None and now >= child.no_mercy_at:
                log(f"{self.describe(child)} (pid: {child.pid}) is taking too much time to die...NO MERCY !!!")
                self.kill(child, signal.SIGKILL)
                child.no_mercy_at = None

    def describe(self, child: Child) -> str:
        return f"{self.name} {child.index + 1}"

    def kill(self, child: Child, sig: int) -> None:
        if child.pid:
            try:
                os.kill(child.pid, sig)
            except ProcessLookupError:
                pass

    def curse(self, child: Child, sig: int, then: Phase = Phase.CURSED) -> None:
        """Ask a child to stop with ``sig``; SIGKILL after the mercy."""
        if child.pid:
            child.move(then)
            self.kill(child, sig)
            child.no_mercy_at = time.monotonic() + self.mercy
        elif then is Phase.STOPPING:
            child.move(Phase.GONE)

    def stopping(self, reload: bool) -> None:
        self.stopping_now = True
        for child in self.children:
            child.respawn_at = None
            if child.phase is not Phase.GONE:
                self.curse(child, self.reload_signal if reload else self.stop_signal, then=Phase.STOPPING)

    def busy(self) -> bool:
        return any(c.pid for c in self.children)
