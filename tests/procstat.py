"""Processes as Linux shows them in ``/proc/PID/stat``: the one parser tests and benches share.

Only the fields the helpers need are kept. The command name (field 2) may itself hold
spaces and parentheses, so the line is split after its *last* ``)``; what follows is a plain
space-separated list (see proc(5)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: clock ticks per second: the unit of utime, stime and starttime
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str  # R, S, D, Z (zombie), X (dead), ...
    ppid: int
    pgrp: int
    session: int
    cpu: float  # utime + stime, in seconds
    starttime: int  # ticks since boot: tells a pid from a later process that reuses it

    @property
    def exited(self) -> bool:
        """A zombie (or dead) entry: the process no longer runs, only its parent hasn't reaped it."""
        return self.state in ("Z", "X")


def parse(pid: int, line: str) -> ProcStat:
    """One ``/proc/PID/stat`` line; ValueError/IndexError if it is not one."""
    # after the ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice threads itrealvalue starttime ...
    f = line[line.rindex(")") + 1:].split()
    return ProcStat(pid=pid, state=f[0], ppid=int(f[1]), pgrp=int(f[2]), session=int(f[3]),
                    cpu=(int(f[11]) + int(f[12])) / TICK, starttime=int(f[19]))


def read(pid: int) -> ProcStat | None:
    """``pid``'s entry, or None if there is no such process (or it vanished while read)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse(pid, f.read())
    except (OSError, ValueError, IndexError):
        return None


def table() -> dict[int, ProcStat]:
    """Every process, from one pass over /proc: tree, group and liveness questions at once."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := read(int(entry))) is not None:
            out[info.pid] = info
    return out
