"""Fork-bomb protection of the master: how long a dead worker waits before its respawn.

uWSGI 2.0 (core/master.c, after reaping a worker) counts respawns that follow the previous
one within the master's check interval, whatever the worker died of (an exit code, a
signal, a harakiri); when that count exceeds the number of workers it logs "worker
respawning too fast" and sleeps ``forkbomb-delay`` (2 s) before respawning. Its master is
frozen during that sleep; ours is not: the respawns are postponed instead, and every
respawn due in the meantime waits for the same moment, as it would behind uWSGI's sleep,
and is counted then.
All times are ``time.monotonic()``: a wall-clock step neither triggers nor hides it.
"""

from __future__ import annotations

from vassal.log import log

#: uWSGI's defaults: check-interval (seconds) and forkbomb-delay (seconds)
CHECK_INTERVAL = 1.0
FORKBOMB_DELAY = 2.0


class RespawnGuard:
    def __init__(self, workers: int, interval: float = CHECK_INTERVAL,
                 delay: float = FORKBOMB_DELAY) -> None:
        self.workers = workers
        self.interval = interval
        self.delay = delay
        self.rate = 0
        self.last = float("-inf")
        self.paused_until = float("-inf")

    def respawn_at(self, now: float) -> float:
        """When the worker that just died may be forked again (``now``: at once).

        A death during a pause is counted as uWSGI counts it: reaped when its master wakes.
        """
        at = max(now, self.paused_until)
        if at - self.last <= self.interval:
            self.rate += 1
            if self.rate > self.workers:
                if self.delay > 0:
                    log("worker respawning too fast !!! i have to sleep a bit "
                        f"({int(self.delay)} seconds)...")
                    at = self.paused_until = at + self.delay
                self.rate = 0
        else:
            self.rate = 0
        self.last = at
        return at
