"""Broodlord, the vassal's side: ask the emperor for reinforcements (byte 30, SOS).

uWSGI's master (core/master.c) checks once a second:

* ``vassal-sos-backlog N``: the connections waiting in the listen queues of its TCP sockets
  (what the stats server shows as ``listen_queue``) reach N: one SOS, every check while
  it lasts ("asking Emperor for reinforcements (backlog: N)..."); checked only under an
  emperor;
* ``vassal-sos SECS``: every worker is busy: one SOS at most every SECS seconds
  ("asking Emperor for reinforcements (overload: N)...").

An emperor running with ``emperor-broodlord`` answers with a zerg vassal (the ``[zerg]``
section of the same config) that attaches to this instance's ``zerg-server``. Without an
emperor the master says so once, as uWSGI does.
"""

from __future__ import annotations

import time
from typing import Any

from vassal.log import log
from vassal.master import RUNNING
from vassal.services import Service
from vassal.sockets import listen_queue

CHECK = 1.0  # seconds between checks, as uWSGI's master cycle


class SosService(Service):
    name = "sos"

    def __init__(self, backlog: int, busy_seconds: int) -> None:
        self.backlog = backlog
        self.busy_seconds = busy_seconds
        self.master: Any = None
        self.next_check = 0.0
        self.last_sos = 0.0
        self.overloaded = 0
        self.warned = False

    @classmethod
    def from_config(cls, config: Any) -> SosService | None:
        backlog = int(config.get("vassal-sos-backlog") or 0)
        busy = int(config.get("vassal-sos") or 0)
        return cls(backlog, busy) if backlog > 0 or busy > 0 else None

    def start(self, master: Any) -> None:
        self.master = master
        self.next_check = time.monotonic() + CHECK

    def timeout(self, now: float) -> float | None:
        return self.next_check - now

    def tick(self, now: float) -> None:
        if now < self.next_check or self.master is None:
            return
        self.next_check = now + CHECK
        m = self.master
        if m.state != RUNNING:
            return  # reloading or stopping: no reinforcements
        if self.backlog > 0 and m.link is not None:  # uWSGI: only with an emperor
            queue = sum(listen_queue(ls) for ls in m.sockets)
            if queue >= self.backlog:
                log(f"asking Emperor for reinforcements (backlog: {queue})...")
                self.sos()
        if self.busy_seconds > 0:
            workers = [m.board.workers[w] for w in range(1, m.n + 1)]
            if workers and all(w.busy_cores > 0 for w in workers):
                self.overloaded += 1
                if now - self.last_sos > self.busy_seconds:
                    log(f"asking Emperor for reinforcements (overload: {self.overloaded})...")
                    self.sos()
                    self.last_sos = now

    def sos(self) -> None:
        link = self.master.link
        if link is None:
            if not self.warned:
                self.warned = True
                log("[broodlord] instance not governed by an Emperor !!!")
            return
        link.sos()
