"""``locks = N`` and ``uwsgi.lock(n)``/``unlock(n)``/``is_locked(n)``: user locks shared by
every process of the instance.

As in uWSGI there are N+1 locks, numbered 0..N (lock 0 always exists), created in the master
before the fork. Each is a robust process-shared mutex (``vassal.api.shm``): a process killed
while holding one does not wedge the others — the next taker gets it. ``lock()`` taken twice
by the same thread raises instead of hanging the thread on itself (uWSGI would deadlock);
``unlock()`` of a lock this thread does not hold does nothing, as in uWSGI. The stats
document lists them as "user 0".."user N" with the pid holding each.

``user_lock(n)`` gives other subsystems (the ``@lock`` decorator of ``uwsgidecorators``) the
same locks.
"""

from __future__ import annotations

from typing import Any

from vassal.api import shm
from vassal.api.context import ApiContext, ApiError

_locks: list[shm.RobustMutex] = []
_MAX = 1 << 16

#: the other locks uWSGI 2.0 registers in every instance before the sharedareas', listed
#: (free) by its stats server; "snmp" comes after the sharedareas (see sharedarea.stats)
FIXED_LOCK_NAMES = ("signal", "filemon", "timer", "rbtimer", "cron", "rpc")


def setup(ctx: ApiContext) -> None:
    n = 0
    if ctx.config is not None and ctx.config.has("locks"):
        n = ctx.config.get("locks")
        if not isinstance(n, int) or n < 0 or n > _MAX:
            raise ApiError(f"locks {n}: must be a number between 0 and {_MAX}")
    mem = shm.anonymous(shm.MUTEX_SIZE * (n + 1))
    _locks[:] = [shm.RobustMutex(mem, shm.MUTEX_SIZE * i, f"user {i}") for i in range(n + 1)]


def user_lock(num: int = 0) -> shm.RobustMutex:
    """Lock ``num``; ValueError as uWSGI's for a number out of range."""
    if not isinstance(num, int) or isinstance(num, bool):
        raise TypeError(f"lock number must be an integer, not {type(num).__name__}")
    if num < 0 or num >= len(_locks):
        raise ValueError("Invalid lock number")
    return _locks[num]


def _not_spooler(ctx: ApiContext) -> None:
    if ctx.spooler:
        raise ValueError("The spooler cannot lock/unlock resources")


def exports(ctx: ApiContext) -> dict[str, Any]:
    def lock(num: int = 0) -> None:
        _not_spooler(ctx)
        user_lock(num).acquire()

    def unlock(num: int = 0) -> None:
        _not_spooler(ctx)
        user_lock(num).release()

    def is_locked(num: int = 0) -> bool:
        _not_spooler(ctx)
        return user_lock(num).locked()

    return {"lock": lock, "unlock": unlock, "is_locked": is_locked}


def stats(ctx: ApiContext) -> dict[str, list]:
    return {"locks": [(lk.name, lk.holder()) for lk in _locks] + [(name, 0) for name in FIXED_LOCK_NAMES]}
