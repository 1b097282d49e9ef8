"""The vassal lifecycle: one enum of phases, one table of the transitions allowed.

``Lifecycle`` is the only writer of a vassal's state: its phase, the facts the vassal reported
(ready, accepting, loyal), and the moments they happened. uWSGI's stats fields (``status``,
``loyal``, ``ready``, ``accepting``, ``cursed``, ``last_*``, ``zerg``, ``on_demand``) are
*derived* from it (``status()`` and the properties), never stored beside it.

Phases::

    WAITING ──connection──▶ STARTING ──process exists──▶ RUNNING ◀──byte 1── RELOADING
       ▲                       │                          │   └──touch/SIGHUP──▶ ┘
       │                       └──────────┬───────────────┤
       │                       stop / destroy / byte 22   │ EOF on its fd, killed
       │                                  ▼               ▼
       └──exit── RETURNING          STOPPING ──────▶   CURSED
                 (byte 22 of an          │               │
                  on-demand vassal)      └──exit──▶ EXITED ◀──exit── (any phase with a process)

* ``STARTING``: the emperor asked for the process; it does not exist yet (the fork server
  or the exec thread has not answered). Bytes sent to its fd are queued in the socketpair.
* ``RUNNING``: the process exists. *ready* (byte 1), *accepting* (byte 5) and *loyal*
  (byte 17) are facts recorded within RUNNING, not phases of their own: a vassal may send
  them in any order or not at all (a foreign vassal, a sub-emperor sends 17 alone), loyalty
  survives a reload while readiness does not, and the blacklist only asks "was it ever
  loyal". Making them phases would need a phase per combination.
* ``RELOADING``: byte 1 was sent; ``ready``/``accepting`` are reset; the next byte 1
  (the new incarnation is up) returns it to RUNNING.
* ``STOPPING`` and ``CURSED`` are uWSGI's ``status = 1`` ("marked to die"): asked to stop,
  or its fd failed. After ``emperor-curse-tolerance`` seconds the emperor SIGKILLs it.
* ``RETURNING`` is uWSGI's ``status = 2``: an on-demand vassal that asked to go idle; when
  its process exits it goes back to ``WAITING`` on its socket (the same handle).
* ``WAITING``: an on-demand vassal with no process; the emperor holds its socket.
* ``EXITED``: the process is gone; the emperor then respawns (a new handle), removes it,
  or puts it back to WAITING.

A zerg is not a phase: it is a vassal of the kind ``ZERG`` (fixed when it is made) that goes
through the same phases. ``Kind`` is carried by the lifecycle so that the stats derive
``zerg`` and ``on_demand`` from the same object.
"""

from __future__ import annotations

from enum import Enum

from emperor.clock import Clock, Instant


class Phase(Enum):
    WAITING = "waiting"
    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"
    CURSED = "cursed"
    RETURNING = "returning"
    EXITED = "exited"


class Kind(Enum):
    PLAIN = "plain"
    ZERG = "zerg"  # a broodlord reinforcement (uWSGI: a name with ':')
    ON_DEMAND = "on-demand"  # the emperor holds its socket and starts it on a connection


P = Phase
#: phase -> the phases it may go to. Nothing else may change a phase.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.WAITING: frozenset({P.STARTING, P.EXITED}),
    P.STARTING: frozenset({P.RUNNING, P.STOPPING, P.CURSED, P.RETURNING, P.EXITED}),
    P.RUNNING: frozenset({P.RELOADING, P.STOPPING, P.CURSED, P.RETURNING, P.EXITED}),
    P.RELOADING: frozenset({P.RUNNING, P.STOPPING, P.CURSED, P.RETURNING, P.EXITED}),
    P.STOPPING: frozenset({P.EXITED}),
    P.CURSED: frozenset({P.EXITED}),
    P.RETURNING: frozenset({P.WAITING, P.EXITED}),
    P.EXITED: frozenset(),
}
del P

#: uWSGI's ``status`` integer of each phase: 0 alive and wanted, 1 marked to die, 2 going
#: back to on-demand
_STATUS = {Phase.WAITING: 0, Phase.STARTING: 0, Phase.RUNNING: 0, Phase.RELOADING: 0,
           Phase.STOPPING: 1, Phase.CURSED: 1, Phase.RETURNING: 2, Phase.EXITED: 1}

#: phases in which the vassal is marked to die (the curse tolerance applies)
DYING = frozenset({Phase.STOPPING, Phase.CURSED, Phase.RETURNING})


class IllegalTransition(RuntimeError):
    """A transition the table does not allow: a bug in the caller, never input."""


class Lifecycle:
    """The state of one vassal: its phase, the facts it reported, and when."""

    def __init__(self, clock: Clock, kind: Kind = Kind.PLAIN, *,
                 phase: Phase = Phase.STARTING) -> None:
        self.clock = clock
        self.kind = kind
        self.phase = phase
        self.ready = False
        self.accepting = False
        self.loyal = False
        self.ready_at: Instant | None = None
        self.accepting_at: Instant | None = None
        self.loyal_at: Instant | None = None
        self.heartbeat_at: Instant | None = None
        self.cursed_at: Instant | None = None  # when it was marked to die (uWSGI's cursed_at)
        self.asked_to_stop = False  # sent 0/2 by the emperor (a curse is not asking)
        self.voluntary = False  # stopped by its own byte 22

    # --- the one writer --------------------------------------------------------------------

    def to(self, phase: Phase) -> None:
        if phase is self.phase:
            return
        if phase not in TRANSITIONS[self.phase]:
            raise IllegalTransition(f"{self.phase.value} -> {phase.value}")
        self.phase = phase
        if phase in DYING:
            self.cursed_at = self.clock.now()
        elif phase is Phase.RELOADING or phase is Phase.WAITING:
            self.ready = self.accepting = False
        if phase is Phase.WAITING:
            self.asked_to_stop = self.voluntary = False
            self.heartbeat_at = None

    def can(self, phase: Phase) -> bool:
        return phase is self.phase or phase in TRANSITIONS[self.phase]

    def started(self) -> None:
        """The process exists."""
        if self.phase is Phase.STARTING:
            self.to(Phase.RUNNING)

    def stop(self, *, voluntary: bool = False) -> bool:
        """Mark to die because the emperor asked (byte 0/2 goes out); False if already dying
        or without a process to ask (WAITING: the emperor removes it instead)."""
        if self.phase in DYING or self.phase is Phase.EXITED or self.phase is Phase.WAITING:
            return False
        self.to(Phase.STOPPING)
        self.asked_to_stop = True
        self.voluntary = voluntary
        return True

    def back_to_waiting(self) -> bool:
        """An on-demand vassal asked to go idle (uWSGI's emperor_back_to_ondemand)."""
        if self.phase in DYING or self.phase is Phase.EXITED or self.phase is Phase.WAITING:
            return False
        self.to(Phase.RETURNING)
        self.asked_to_stop = True
        return True

    def curse(self) -> bool:
        """Its fd failed or it was killed: marked to die. uWSGI keeps status 2 (and only
        moves the mark's time) for a vassal already going back to on-demand."""
        if self.phase is Phase.RETURNING:
            self.cursed_at = self.clock.now()
            return True
        if self.phase in DYING or self.phase is Phase.EXITED or self.phase is Phase.WAITING:
            return False
        self.to(Phase.CURSED)
        return True

    def curse_again(self) -> None:
        """A dying vassal SIGKILLed and still there: the next SIGKILL one tolerance later."""
        if self.phase in DYING:
            self.cursed_at = self.clock.now()

    def reloading(self) -> None:
        self.to(Phase.RELOADING)

    def exited(self) -> None:
        self.to(Phase.EXITED)

    # --- facts the vassal reports ------------------------------------------------------------

    def on_ready(self) -> None:
        """Byte 1: spawned (again, after a reload)."""
        self.ready = True
        self.ready_at = self.clock.now()
        if self.phase is Phase.RELOADING:
            self.to(Phase.RUNNING)

    def on_accepting(self) -> None:
        self.accepting = True
        self.accepting_at = self.clock.now()

    def on_loyal(self) -> None:
        self.loyal = True
        self.loyal_at = self.clock.now()

    def on_heartbeat(self) -> None:
        self.heartbeat_at = self.clock.now()

    def forget_heartbeat(self) -> None:
        """After a missed heartbeat: no deadline until the next one arrives (as uWSGI)."""
        self.heartbeat_at = None

    # --- what uWSGI shows, derived ------------------------------------------------------------

    def status(self) -> int:
        return _STATUS[self.phase]

    @property
    def dying(self) -> bool:
        return self.phase in DYING

    @property
    def zerg(self) -> bool:
        return self.kind is Kind.ZERG

    @property
    def on_demand(self) -> bool:
        return self.kind is Kind.ON_DEMAND

    def describe(self) -> str:
        """One word for logs and ``imperium top``: the phase, or the latest fact while running."""
        if self.phase is Phase.RUNNING:
            if self.loyal:
                return "loyal"
            if self.accepting:
                return "accepting"
            if self.ready:
                return "ready"
        return self.phase.value


def wall(instant: Instant | None) -> float:
    """The wall-clock seconds of a moment, 0 for never (what uWSGI prints)."""
    return instant.wall if instant is not None else 0.0
