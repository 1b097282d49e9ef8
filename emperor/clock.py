"""The emperor's two clocks: monotonic for every interval, wall time only for display.

Throttle, blacklist back-off, heartbeat deadlines, curse tolerance and reload mercy are all
measured on ``time.monotonic()``, so a step of the wall clock (NTP, an admin's ``date -s``,
a VM resumed) neither fires nor postpones any of them. uWSGI shows some moments as Unix
timestamps (the stats server's ``born``, ``last_mod``, ``last_heartbeat``, ``cursed``,
a blacklist entry's ``first_attempt``...): those are read from the wall clock at the same
instant and kept beside the monotonic one, never used for arithmetic.

The clock is an object so that tests can inject one that steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Instant:
    """One moment read from both clocks."""

    wall: float  # seconds since the epoch: shown, never subtracted
    mono: float  # time.monotonic(): what deadlines are computed from


class Clock:
    """The real clocks; a test subclass may shift either one."""

    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()

    def now(self) -> Instant:
        return Instant(self.wall(), self.mono())
