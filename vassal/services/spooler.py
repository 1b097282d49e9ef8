"""The master's side of the spooler: start a process per spooler slot, respawn it when it
dies, kill it when it runs a job past ``spooler-harakiri``, restart them all on
``touch-spoolers-reload``, and SIGKILL them on reload and shutdown (as uWSGI does: a job cut
short stays on disk and runs again). What a spooler does is in ``vassal.api.spooler``."""

from __future__ import annotations

import signal
from typing import Any

from vassal.api.spooler import Spoolers
from vassal.log import log
from vassal.services.children import Child, ChildrenService, Phase
from vassal.services.signals import Touch


class SpoolerService(ChildrenService):
    name = "spooler"
    reload_signal = signal.SIGKILL
    stop_signal = signal.SIGKILL

    def __init__(self, spoolers: Spoolers, config: Any, title: Any = None) -> None:
        super().__init__(len(spoolers.slot_dirs))
        self.spoolers = spoolers
        self.mercy = float(config.get("reload-mercy") or 60)
        self._title = title
        self.touches = [Touch(p, 0) for p in config.getlist("touch-spoolers-reload")]
        self.next_touch_check = 0.0

    def start(self, master: Any) -> None:
        for touch in self.touches:
            touch.touched()
        super().start(master)

    def run_child(self, index: int) -> None:
        self.spoolers.run(index)

    def title(self, index: int) -> str | None:
        return self._title("spooler") if self._title else None

    def spawned(self, child: Child, respawn: bool) -> None:
        slot = self.spoolers.slots[child.index]
        slot.pid = child.pid
        slot.running = 0
        slot.harakiri = 0.0
        slot.user_harakiri = 0.0
        if respawn:
            slot.respawns += 1
        log(f"spawned the uWSGI spooler on dir {self.spoolers.slot_dirs[child.index]} with pid {child.pid}")

    def died(self, child: Child, pid: int, status: int) -> None:
        self.spoolers.slots[child.index].pid = 0
        log("OOOPS the spooler is no more...trying respawn...")

    def annihilated(self, child: Child, pid: int) -> None:
        self.spoolers.slots[child.index].pid = 0
        log(f"spooler (pid: {pid}) annihilated")

    def stopping(self, reload: bool) -> None:
        for child in self.children:
            if child.pid:
                log(f"killing the spooler with pid {child.pid}")
        super().stopping(reload)

    def describe(self, child: Child) -> str:
        return f"spooler {child.index + 1}"

    def timeout(self, now: float) -> float | None:
        wish = super().timeout(now)
        if self.spoolers.settings.harakiri or self.touches:
            wish = 1.0 if wish is None else min(wish, 1.0)
        return wish

    def tick(self, now: float) -> None:
        super().tick(now)
        if self.stopping_now:
            return
        for child in self.children:
            slot = self.spoolers.slots[child.index]
            for field in ("harakiri", "user_harakiri"):
                deadline = getattr(slot, field)
                if child.pid and deadline and deadline < now:
                    log(f"*** HARAKIRI ON THE SPOOLER (pid: {child.pid}) ***")
                    self.kill(child, signal.SIGKILL)
                    setattr(slot, field, 0.0)
        if self.touches and now >= self.next_touch_check:
            self.next_touch_check = now + 1.0
            for touch in self.touches:
                if touch.touched():
                    log(f"*** {touch.path} has been touched... spoolers reload !!! ***")
                    for child in self.children:
                        # the spooler ends after the job in hand; forked again as usual
                        if child.phase is Phase.RUNNING:
                            self.curse(child, signal.SIGHUP)
