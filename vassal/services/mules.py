"""The master's side of mules: fork them after the workers, respawn one that dies ("crippled"),
SIGHUP them on reload and SIGINT on shutdown with ``mule-reload-mercy`` before SIGKILL, and
reload them on ``touch-mules-reload``. What a mule does is in ``vassal.api.mules``."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from vassal.api.mules import Mules
from vassal.log import log
from vassal.services.children import Child, ChildrenService, Phase
from vassal.services.signals import Touch


class MuleService(ChildrenService):
    name = "mule"
    reload_signal = signal.SIGHUP
    stop_signal = signal.SIGINT

    def __init__(self, mules: Mules, config: Any, title: Any = None) -> None:
        super().__init__(len(mules.specs))
        self.mules = mules
        self.config = config
        self.mercy = float(config.get("mule-reload-mercy") or 60)
        self._title = title
        self.touches = [Touch(p, 0) for p in config.getlist("touch-mules-reload")]
        self.next_touch_check = 0.0
        self.cursed: set[int] = set()  # mules asked to reload: their death is no accident

    def start(self, master: Any) -> None:
        # uWSGI starts the mules after the workers: so do we, at the first tick
        self.master = master
        for child in self.children:
            self.wait_then_spawn(child, 0.0)
        for touch in self.touches:
            touch.touched()

    def run_child(self, index: int) -> None:
        from vassal.services.hooks import Context, FatalHook, run_phase

        try:
            run_phase(self.config, "as-mule", Context(role="worker"))  # hook-as-mule, fatal
        except FatalHook:
            os.kill(os.getppid(), signal.SIGINT)  # as uWSGI: the instance goes down
        self.mules.run(self.mules.specs[index])

    def title(self, index: int) -> str | None:
        return self._title(f"mule {index + 1}") if self._title else None

    def spawned(self, child: Child, respawn: bool) -> None:
        self.cursed.discard(child.index)
        log(f"spawned uWSGI mule {child.index + 1} (pid: {child.pid})")

    def died(self, child: Child, pid: int, status: int) -> None:
        if child.index not in self.cursed:
            log(f"OOOPS mule {child.index + 1} (pid: {pid}) crippled...trying respawn...")

    def annihilated(self, child: Child, pid: int) -> None:
        log(f"mule {child.index + 1} (pid: {pid}) annihilated")

    def timeout(self, now: float) -> float | None:
        wish = super().timeout(now)
        if self.touches:
            wish = 1.0 if wish is None else min(wish, 1.0)
        return wish

    def tick(self, now: float) -> None:
        super().tick(now)
        if self.stopping_now or not self.touches or now < self.next_touch_check:
            return
        self.next_touch_check = now + 1.0
        for touch in self.touches:
            if touch.touched():
                log(f"{time.ctime()} - *** {touch.path} has been touched... mules reload !!! ***")
                for child in self.children:
                    if child.phase is Phase.RUNNING:
                        self.cursed.add(child.index)
                        self.curse(child, signal.SIGHUP)
