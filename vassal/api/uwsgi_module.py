"""The ``uwsgi`` module offered to apps (a useful subset of uWSGI's embedded module).

Installed in ``sys.modules['uwsgi']`` before the app is imported, so ``import uwsgi`` works
and tells the app it runs under a uWSGI-compatible server. Values that change per process
(``worker_id()``) are read when called.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import types
from typing import Any

_state: dict[str, Any] = {"worker_id": 0, "masterpid": 0, "board": None, "sockets": [], "logger": None}
_locks: dict[int, threading.RLock] = {}


def _opt_dict(config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in getattr(config, "entries", []):
        value: Any = True if entry.value is None else entry.value.encode()
        key = entry.key
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def install(config: Any, version: str, numproc: int, masterpid: int, board: Any, sockets: list,
            buffer_size: int) -> types.ModuleType:
    """Create the module and register it as ``uwsgi``."""
    m = types.ModuleType("uwsgi", "uWSGI-compatible API offered by Imperium")
    _state.update(masterpid=masterpid, board=board, sockets=sockets)
    m.version = version.encode()
    m.hostname = os.uname().nodename.encode()
    m.numproc = numproc
    m.buffer_size = buffer_size
    m.started_on = int(time.time())
    m.opt = _opt_dict(config)
    m.magic_table = {}
    m.applist = []
    m.applications = None
    m.cores = int(config.get("threads") or 1) if config is not None else 1
    m.has_threads = 1
    m.SPOOL_OK = -2
    m.SPOOL_RETRY = -1
    m.SPOOL_IGNORE = 0

    def worker_id() -> int:
        return _state["worker_id"]

    def masterpid_() -> int:
        return _state["masterpid"]

    def reload() -> bool:
        os.kill(_state["masterpid"], signal.SIGHUP)
        return True

    def stop() -> bool:
        os.kill(_state["masterpid"], signal.SIGINT)
        return True

    def total_requests() -> int:
        b = _state["board"]
        return b.total_requests() if b is not None else 0

    def workers() -> tuple:
        b = _state["board"]
        if b is None:
            return ()
        out = []
        for i in range(1, b.nworkers + 1):
            w = b.workers[i]
            out.append({"id": i, "pid": w.pid, "requests": w.requests, "exceptions": w.exceptions,
                        "status": b.status_name(i), "rss": w.rss, "vsz": w.vsz,
                        "running_time": w.running_time, "last_spawn": w.last_spawn, "tx": w.tx,
                        "avg_rt": w.avg_rt, "respawn_count": w.respawn_count, "harakiri_count": w.harakiri_count,
                        "delta_requests": w.delta_requests, "signals": w.signals, "apps": ()})
        return tuple(out)

    def log(msg: Any) -> bool:
        from vassal.log import log as _log

        _log(msg.decode() if isinstance(msg, bytes) else str(msg))
        return True

    def set_logvar(key: Any, value: Any) -> None:
        from vassal.log import set_logvar as _set

        _set(key, value)

    def get_logvar(key: Any) -> bytes | None:
        from vassal.log import get_logvar as _get

        return _get(key)

    def setprocname(name: Any) -> None:
        try:
            import setproctitle

            setproctitle.setproctitle(name.decode() if isinstance(name, bytes) else str(name))
        except ImportError:
            pass

    def listen_queue(n: int = 0) -> int:
        from vassal.sockets import listen_queue as lq

        socks = _state["sockets"]
        return lq(socks[n]) if 0 <= n < len(socks) else 0

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

    def get_option(name: str) -> Any:
        return m.opt.get(name)

    def accepting(accepting: bool = True) -> None:
        return None

    def mule_id() -> int:
        return 0

    def request_id() -> int:
        return total_requests()

    def disconnect() -> None:
        return None

    def i_am_the_spooler() -> bool:
        return False

    for fn in (worker_id, reload, stop, total_requests, workers, log, setprocname, listen_queue, lock, unlock,
               is_locked, get_option, accepting, mule_id, request_id, disconnect, i_am_the_spooler, set_logvar,
               get_logvar):
        setattr(m, fn.__name__, fn)
    m.masterpid = masterpid_
    sys.modules["uwsgi"] = m
    return m


def set_worker_id(wid: int) -> None:
    _state["worker_id"] = wid
