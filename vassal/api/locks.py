"""``uwsgi.lock(n)``, ``unlock(n)``, ``is_locked(n)``: the instance's user locks."""

from __future__ import annotations

import threading
from typing import Any

from vassal.api.context import ApiContext

_locks: dict[int, threading.RLock] = {}


def exports(ctx: ApiContext) -> dict[str, Any]:
    def lock(num: int = 0) -> None:
        _locks.setdefault(num, threading.RLock()).acquire()

    def unlock(num: int = 0) -> None:
        lk = _locks.get(num)
        if lk is not None:
            try:
                lk.release()
            except RuntimeError:
                pass

    def is_locked(num: int = 0) -> bool:
        lk = _locks.get(num)
        if lk is None:
            return False
        got = lk.acquire(blocking=False)
        if got:
            lk.release()
        return not got

    return {"lock": lock, "unlock": unlock, "is_locked": is_locked}
