"""The emperor's one read model: what every observer of the emperor is shown.

``snapshot(emperor)`` reads the live vassal table, the blacklist, the throttle and the
monitors' availability once and returns plain rows. The stats server renders them as
uWSGI's JSON (emperor.stats), the Prometheus endpoint as metric families
(emperor.prometheus), the control socket as its answers (emperor.control); ``imperium
top`` reads the stats JSON. None of them keeps a copy: each asks for a snapshot when it
answers, so they can never disagree about a vassal.

The rows carry uWSGI's stats fields (wall-clock moments, as uWSGI shows them) and a few
that uWSGI has no room for: the lifecycle ``state`` (emperor.lifecycle's phase, or the
latest fact while running), an operator's ``hold`` (paused, stopped: emperor.control),
the age of the last heartbeat and the seconds until a blacklisted name is tried again,
both from the monotonic clock.

``Latencies`` keeps the two histograms the emperor observes: from asking for a vassal's
process to its first "ready" (spawn), and from sending "reload" to the new incarnation's
"ready" (reload).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emperor.core import Emperor

try:
    from vassal.options import VERSION
except Exception:  # the option table is another package's; never let stats depend on it
    VERSION = "2.0.21-imperium"

#: bucket upper bounds (seconds) of the spawn and reload latency histograms
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class Histogram:
    """Cumulative-on-read bucket counts, their sum and count (Prometheus' histogram)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, n in zip((*[repr(b) for b in BUCKETS], "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(slots=True)
class Latencies:
    spawn: Histogram = field(default_factory=Histogram)
    reload: Histogram = field(default_factory=Histogram)


@dataclass(slots=True)
class VassalRow:
    id: str
    pid: int
    born: float
    last_mod: float
    last_heartbeat: float
    loyal: int
    ready: int
    accepting: int
    last_loyal: float
    last_ready: float
    last_accepting: float
    first_run: float
    last_run: float
    cursed: float
    zerg: int
    on_demand: str
    uid: int
    gid: int
    monitor: str
    respawns: int
    state: str
    hold: str | None
    heartbeat_age: float | None


@dataclass(slots=True)
class BlacklistRow:
    id: str
    throttle_level: int  # milliseconds, as uWSGI shows it
    attempt: int
    first_attempt: float
    last_attempt: float
    retry_in: float  # seconds until the next start is allowed (0: now)


@dataclass(slots=True)
class MonitorRow:
    id: str
    available: bool


@dataclass(slots=True)
class EmperorView:
    version: str
    pid: int
    uid: int
    gid: int
    cwd: str
    monitors: list[MonitorRow]
    tyrant: int
    throttle_level: int
    vassals: list[VassalRow]
    blacklist: list[BlacklistRow]
    latencies: Latencies
    ready: bool  # every monitor has done its first scan (what sd_notify's READY=1 says)
    #: (name, hold) of the vassals an operator holds that have no process (``stopped``):
    #: not in ``vassals`` (nor in uWSGI's stats JSON), still named on /metrics and by ctl
    held: list[tuple[str, str]] = field(default_factory=list)

    def vassal(self, name: str) -> VassalRow | None:
        for row in self.vassals:
            if row.id == name:
                return row
        return None


def snapshot(emperor: Emperor) -> EmperorView:
    now = emperor.clock.mono()
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    my_uid, my_gid = os.getuid(), os.getgid()
    holds = emperor.control.holds if emperor.control is not None else {}
    rows = []
    for v in list(emperor.vassals.values()):
        life = v.life
        shown = v.shown()
        beat = life.heartbeat_at
        rows.append(VassalRow(
            id=v.name, pid=v.pid, born=v.born, last_mod=v.last_mod,
            last_heartbeat=shown["last_heartbeat"], loyal=v.loyal, ready=v.ready,
            accepting=v.accepting, last_loyal=shown["last_loyal"], last_ready=shown["last_ready"],
            last_accepting=shown["last_accepting"], first_run=shown["first_run"],
            last_run=shown["last_run"], cursed=shown["cursed"], zerg=v.zerg,
            on_demand=v.socket_name or "", uid=v.uid if v.uid is not None else my_uid,
            gid=v.gid if v.gid is not None else my_gid,
            monitor=v.monitor.id if v.monitor is not None else "", respawns=v.respawns,
            state=life.describe(), hold=_hold(holds, v.name),
            heartbeat_age=now - beat.mono if beat is not None else None))
    blacklist = [BlacklistRow(item.id, item.throttle_level_ms(), item.attempt, item.first_wall,
                              item.last_wall, max(0.0, item.retry_at() - now))
                 for item in emperor.blacklist]
    monitors = [MonitorRow(m.id, emperor.monitor_up.get(m.id, True)) for m in emperor.monitors]
    held = [(name, hold.value) for name, hold in holds.items() if name not in emperor.vassals]
    return EmperorView(VERSION, os.getpid(), my_uid, my_gid, cwd, monitors,
                       int(emperor.settings.tyrant), emperor.throttle.level_ms, rows, blacklist,
                       emperor.latencies, emperor.settled, held)


def _hold(holds: dict, name: str) -> str | None:
    hold = holds.get(name)
    return hold.value if hold is not None else None
