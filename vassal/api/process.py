"""The instance and this process as the app sees them: ids, counters, reload/stop, the
log, the process title, memory and listen-queue figures (uWSGI's "advanced" functions
that need no subsystem of their own)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import threading
import time
from typing import Any

from vassal.api.context import ApiContext
from vassal.api.request import response as request_response
from vassal.log import log as _log


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
        os.kill(ctx.masterpid, signal.SIGQUIT)  # as uWSGI: the master shuts down
        return True

    def total_requests() -> int:
        b = ctx.board
        return b.total_requests() if b is not None else 0

    def workers() -> tuple:
        return _workers(ctx)

    def log(msg: Any) -> bool:
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
        if not 0 <= n < len(socks):
            raise ValueError(f"unable to find socket {n}")  # uWSGI's words
        return lq(socks[n])

    def get_option(name: str) -> Any:
        return opt.get(name)

    def accepting(accepting: int = 1) -> None:
        b = ctx.board
        if b is not None and 1 <= ctx.worker_id <= b.nworkers:
            b.workers[ctx.worker_id].accepting = 1 if accepting else 0
        return None

    def request_id() -> int:
        """Requests this core of this worker has served (uWSGI's per-core counter)."""
        b = ctx.board
        if b is None or not 1 <= ctx.worker_id <= b.nworkers:
            return 0
        name = threading.current_thread().name
        core = int(name[5:]) if name.startswith("core ") else 0
        return b.workers[ctx.worker_id].cores[core].requests if core < b.ncores else 0

    def mem() -> tuple[int, int]:
        """(rss, vsz) of this process in bytes."""
        try:
            with open("/proc/self/statm", "rb") as f:
                parts = f.read().split()
            page = os.sysconf("SC_PAGE_SIZE")
            return int(parts[1]) * page, int(parts[0]) * page
        except (OSError, ValueError, IndexError):
            return 0, 0

    def is_connected(fd: int) -> bool:
        """True when ``fd`` is a socket with a peer still there."""
        if not isinstance(fd, int):
            raise TypeError("is_connected() argument must be an integer")
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            return False
        try:
            s.getpeername()
            return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        except OSError:
            return False
        finally:
            s.close()

    def micros() -> int:
        return time.time_ns() // 1000

    def i_am_the_spooler() -> None:
        return None  # uWSGI answers None (not False) outside the spooler

    def sendfile(what: Any, chunk: int = 0, pos: int = 0, filesize: int = 0) -> bool | None:
        """Send a file (a path, or an object with fileno()) to the client now, headers
        first if not sent yet (uWSGI's uwsgi.sendfile); None when it cannot be opened."""
        resp = request_response("sendfile")
        opened = isinstance(what, (str, bytes))
        try:
            fd = os.open(what, os.O_RDONLY | os.O_CLOEXEC) if opened else what.fileno()
        except (OSError, AttributeError, ValueError) as exc:
            _log(f"uwsgi.sendfile: {what!r}: {getattr(exc, 'strerror', None) or exc}")
            return None
        try:
            if not resp.head_sent:
                resp.sock.sendall(resp.head(None))
                resp.head_sent = True
            if resp.head_only:
                return True
            size = filesize or max(0, os.fstat(fd).st_size - pos)
            out = resp.sock.fileno()
            sent = 0
            while sent < size:
                n = os.sendfile(out, fd, pos + sent, size - sent)
                if n == 0:
                    break
                sent += n
            resp.body_bytes += sent
            resp.chunks += 1
            resp.via = "sendfile"  # the request log says how the body went (log-sendfile)
            return True
        finally:
            if opened:
                os.close(fd)

    def disconnect() -> None:
        """Close the client connection now; what the app sends after is dropped."""
        resp = request_response("disconnect")
        resp.keep = False
        resp.head_sent = True
        resp.head_only = True
        try:
            resp.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def connection_fd() -> int:
        return request_response("connection_fd").sock.fileno()

    opt = _opt_dict(ctx.config)
    cfg = ctx.config
    names: dict[str, Any] = {
        "version": ctx.version.encode(),
        "hostname": os.uname().nodename.encode(),
        "numproc": ctx.numproc,
        "buffer_size": ctx.buffer_size,
        "started_on": ctx.started_on,
        "opt": opt,
        "applist": [],
        "applications": None,
        "cores": int(cfg.get("threads") or 1) if cfg is not None else 1,
        "has_threads": 1,
        "version_info": _version_info(ctx.version),
        "magic_table": _magic_table(cfg),
        "is_a_reload": bool(os.environ.get("UWSGI_RELOADS")),
        "loop": None,
        "unbit": None,
        "sockets": [ls.fileno() for ls in ctx.sockets],
        # spooler return codes: defined by uWSGI whether or not a spooler runs
        "SPOOL_OK": -2,
        "SPOOL_RETRY": -1,
        "SPOOL_IGNORE": 0,
    }
    for fn in (worker_id, mule_id, masterpid, reload, stop, total_requests, workers, log, setprocname,
               listen_queue, get_option, accepting, request_id, disconnect, i_am_the_spooler, mem,
               is_connected, micros, sendfile, connection_fd, set_logvar, get_logvar):
        names[fn.__name__] = fn
    return names


def _opt_dict(config: Any) -> dict[str, Any]:
    """``uwsgi.opt``: every option and placeholder given, key as written, value as bytes (True
    for a flag given without one). A repeated key keeps its last value: uWSGI's python 3
    plugin means to make a list but never finds the key again (it looks it up as bytes in a
    dict of str keys), and apps written for it see the last value."""
    out: dict[str, Any] = {}
    for entry in getattr(config, "entries", []):
        out[entry.key] = True if entry.value is None else _bytes(entry.value)
    return out


def _bytes(value: str) -> bytes:
    # argv and file names that are not UTF-8 arrive with surrogateescape: give their bytes back
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def _workers(ctx: ApiContext) -> tuple:
    """``uwsgi.workers()`` with py_uwsgi_workers' keys, order and types (uWSGI 2.0).

    Strings are bytes there (``status``, ``mountpoint``, ``chdir``), ``respawn_count``
    counts respawns (0 for a first spawn), ``interpreter`` and ``callable`` are addresses.
    The apps shown for each worker are those of this process (the same for every worker
    unless ``lazy-apps``) for the workers that loaded them.
    """
    b = ctx.board
    if b is None:
        return ()
    interpreter = id(sys.modules.get("__main__"))
    out = []
    for i in range(1, b.nworkers + 1):
        w = b.workers[i]
        status = b.status_name(i)
        apps = tuple(
            {"id": j, "modifier1": 0, "mountpoint": a.mountpoint.encode(),
             "startup_time": int(a.startup_time), "interpreter": interpreter,
             "callable": id(a.callable),
             # per-app counters are kept per worker; the first app gets them
             "requests": int(w.app_requests) if j == 0 else 0,
             "exceptions": int(w.app_exceptions) if j == 0 else 0,
             "chdir": (a.chdir or "").encode()}
            for j, a in enumerate(ctx.apps if w.app_loaded else []))
        # id 0: a slot never spawned (cheaper), as uWSGI
        out.append({"id": i if w.respawn_count else 0, "pid": int(w.pid), "requests": int(w.requests),
                    "delta_requests": int(w.delta_requests), "signals": int(w.signals),
                    "exceptions": int(w.exceptions), "status": status.encode(),
                    "rss": int(w.rss), "vsz": int(w.vsz), "running_time": int(w.running_time),
                    "last_spawn": int(w.last_spawn),
                    "respawn_count": max(0, int(w.respawn_count) - 1), "tx": int(w.tx),
                    "avg_rt": int(w.avg_rt), "apps": apps})
    return tuple(out)


def _version_info(version: str) -> tuple:
    """uWSGI's (base, major, minor, revision, custom) from "2.0.21-imperium-0.1.0"."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?-?(.*)", version)
    if not m:
        return (0, 0, 0, 0, version.encode())
    return (int(m[1]), int(m[2]), int(m[3]), int(m[4] or 0), m[5].encode())


def _magic_table(config: Any) -> dict[bytes, bytes]:
    """The magic variables (%n, %d, ...) as uWSGI's module shows them: one-byte keys."""
    magic = getattr(config, "magic", None) or {}
    out = {}
    for k, v in magic.items():
        if len(k) == 1 and v is not None:
            out[_bytes(k)] = _bytes(str(v))
    return out
