"""The master's check of user harakiri deadlines (``uwsgi.set_user_harakiri``) of workers and
mules, once a second: a process past its deadline is killed with SIGKILL and respawned by
its owner, with uWSGI's log lines. Spoolers' deadlines are checked by the spooler service."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from vassal.api.harakiri import UserHarakiri
from vassal.log import log
from vassal.services import Service


class UserHarakiriService(Service):
    name = "user-harakiri"

    def __init__(self, harakiri: UserHarakiri, worker_pid: Callable[[int], int],
                 mule_pid: Callable[[int], int]) -> None:
        self.h = harakiri
        self.worker_pid = worker_pid
        self.mule_pid = mule_pid
        self.next_check = 0.0

    def timeout(self, now: float) -> float | None:
        return 1.0

    def tick(self, now: float) -> None:
        if now < self.next_check:
            return
        self.next_check = now + 1.0
        for wid in range(1, self.h.nworkers + 1):
            i = self.h.worker_index(wid)
            if self.h.deadlines[i] and self.h.deadlines[i] < now:
                self.h.deadlines[i] = 0.0
                pid = self.worker_pid(wid)
                if pid > 0:
                    log(f"{time.ctime()} - HARAKIRI (user) triggered by worker {wid} core 0 !!!")
                    _kill(pid)
        for mule_id in range(1, self.h.nmules + 1):
            i = self.h.mule_index(mule_id)
            if self.h.deadlines[i] and self.h.deadlines[i] < now:
                self.h.deadlines[i] = 0.0
                pid = self.mule_pid(mule_id)
                if pid > 0:
                    log(f"*** HARAKIRI ON MULE {mule_id} (pid: {pid}) ***")
                    _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
