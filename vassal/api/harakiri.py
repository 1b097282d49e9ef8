"""``uwsgi.set_user_harakiri(seconds)``: a deadline a worker, mule or spooler sets on itself.

The deadline (``time.monotonic()``, one clock for every process; uWSGI keeps wall time, which
a clock step would move) goes to shared memory; the master kills the
process with SIGKILL once it is past (``vassal.services.harakiri``); 0 clears it. Used by
uwsgidecorators' ``@harakiri``. Spoolers keep theirs in the spooler table.
"""

from __future__ import annotations

import ctypes
import mmap
import time
from typing import Any

from vassal.api.role import ME, Role


class UserHarakiri:
    def __init__(self, nworkers: int, nmules: int, spoolers: Any = None) -> None:
        self.nworkers = nworkers
        self.nmules = nmules
        self.spoolers = spoolers
        n = 1 + nworkers + nmules
        self._mm = mmap.mmap(-1, ctypes.sizeof(ctypes.c_double) * n, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.deadlines = (ctypes.c_double * n).from_buffer(self._mm)

    def worker_index(self, wid: int) -> int:
        return wid

    def mule_index(self, mule_id: int) -> int:
        return self.nworkers + mule_id

    def set_user_harakiri(self, seconds: Any) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise ValueError(f"uwsgi.set_user_harakiri: seconds must be an integer >= 0, not {seconds!r}")
        # monotonic (one clock for every process): a wall-clock step must not kill anyone
        deadline = time.monotonic() + seconds if seconds else 0.0
        if ME.role is Role.SPOOLER and self.spoolers is not None:
            self.spoolers.slots[ME.spooler_slot].user_harakiri = deadline
        elif ME.role is Role.MULE:
            self.deadlines[self.mule_index(ME.mule_id)] = deadline
        elif ME.role is Role.WORKER:
            self.deadlines[self.worker_index(ME.worker_id)] = deadline
        # in the master there is nobody to kill it: uWSGI ignores it as well

    def exports(self) -> dict[str, Any]:
        return {"set_user_harakiri": self.set_user_harakiri}
