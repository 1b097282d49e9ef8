"""The instance and this process as the app sees them: ids, counters, reload/stop, the
log, the process title, memory and listen-queue figures (uWSGI's "advanced" functions
that need no subsystem of their own)."""

from __future__ import annotations

import os
import signal
from typing import Any

from vassal.api.context import ApiContext


def exports(ctx: ApiContext) -> dict[str, Any]:
    def worker_id() -> int:
        return ctx.worker_id

    def mule_id() -> int:
        return ctx.mule_id

    def masterpid() -> int:
        return ctx.masterpid

    def reload() -> bool:
        os.kill(ctx.masterpid, signal.SIGHUP)
        return True

    def stop() -> bool:
        os.kill(ctx.masterpid, signal.SIGINT)
        return True

    def total_requests() -> int:
        b = ctx.board
        return b.total_requests() if b is not None else 0

    def workers() -> tuple:
        b = ctx.board
        if b is None:
            return ()
        out = []
        for i in range(1, b.nworkers + 1):
            w = b.workers[i]
            out.append({"id": i, "pid": w.pid, "requests": w.requests, "exceptions": w.exceptions,
                        "status": "busy" if w.busy_cores else "idle", "rss": w.rss, "vsz": w.vsz,
                        "running_time": w.running_time, "last_spawn": w.last_spawn, "tx": w.tx,
                        "avg_rt": w.avg_rt, "respawn_count": w.respawn_count,
                        "harakiri_count": w.harakiri_count, "delta_requests": w.delta_requests,
                        "signals": w.signals, "apps": ()})
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

        socks = ctx.sockets
        return lq(socks[n]) if 0 <= n < len(socks) else 0

    def get_option(name: str) -> Any:
        return opt.get(name)

    def accepting(accepting: bool = True) -> None:
        return None

    def request_id() -> int:
        return total_requests()

    def disconnect() -> None:
        return None

    def i_am_the_spooler() -> bool:
        return False

    opt = _opt_dict(ctx.config)
    cfg = ctx.config
    names: dict[str, Any] = {
        "version": ctx.version.encode(),
        "hostname": os.uname().nodename.encode(),
        "numproc": ctx.numproc,
        "buffer_size": ctx.buffer_size,
        "started_on": ctx.started_on,
        "opt": opt,
        "magic_table": {},
        "applist": [],
        "applications": None,
        "cores": int(cfg.get("threads") or 1) if cfg is not None else 1,
        "has_threads": 1,
        # spooler return codes: defined by uWSGI whether or not a spooler runs
        "SPOOL_OK": -2,
        "SPOOL_RETRY": -1,
        "SPOOL_IGNORE": 0,
    }
    for fn in (worker_id, mule_id, masterpid, reload, stop, total_requests, workers, log, setprocname,
               listen_queue, get_option, accepting, request_id, disconnect, i_am_the_spooler, set_logvar,
               get_logvar):
        names[fn.__name__] = fn
    return names


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
