"""uWSGI signals: 256 numbered events routed by the master to workers, mules or the spooler.

How uWSGI does it (core/signal.c) and so how we do it:

- A handler is registered with ``uwsgi.register_signal(num, target, fn)`` in the master (at
  app load: every process forked later has it) or in a worker (then only that worker has it).
  The registration lands in a table in shared memory, one area of 256 entries per worker plus
  the master's; an entry holds the *target* that says where the signal goes.
- Raising a signal (``uwsgi.signal(num)``, a timer, a cron, a file monitor, ``touch-signal``)
  sends its number, one byte, to the master. The master reads the target in its own area
  (else, unlike uWSGI, in the first worker area that has one: with ``lazy-apps`` only the
  workers register) and writes the byte to the pipes of the target processes.
- Pipes are UNIX socketpairs made before any fork: one shared by all workers (target
  ``worker``: whichever worker reads the byte first runs the handler), one per worker
  (``workerN``, ``workers``, ``active-workers``), one shared by the mules and one per mule, one
  per farm, one for the spoolers. The master holds end 0, children read end 1. A child sends
  to the master on end 1 of its shared pipe (the two directions of a socketpair are separate).
- A worker watches its two pipes in the epoll set of every core thread, next to the listening
  sockets, so a handler runs in a worker thread between requests (never inside a request),
  as in uWSGI. Mules and spoolers watch theirs in their own loops.

Timers, red-black timers, crons and file monitors live in the master (``vassal.services.
signals``); any process asks for one with a datagram on a control socket the master reads, so
no lock is shared between processes.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import mmap
import os
import select
import socket
import termios
import threading
import time
from collections.abc import Callable
from typing import Any

from vassal.api.role import ME, Role, end_me
from vassal.log import log
from vassal.scoreboard import STATUS_CHEAP
from vassal.wsgi import print_app_exception

NSIGNALS = 256
#: longest target name uWSGI keeps (char receiver[64])
TARGET_MAX = 63
#: longest file name a file monitor accepts (uWSGI: 0xff - 1)
FILEMON_PATH_MAX = 254


#: the values a positive cron field can match (weekday 7 is Sunday too, as in uWSGI)
CRON_RANGES = {"minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12), "week": (0, 7)}


class SignalError(ValueError):
    """A bad call of the signal API; the message names the call."""


class _Entry(ctypes.Structure):
    _fields_ = [("registered", ctypes.c_uint8), ("receiver", ctypes.c_char * (TARGET_MAX + 1))]


def socket_pair(kind: int = socket.SOCK_STREAM, bufsize: int = 0) -> tuple[socket.socket, socket.socket]:
    """A non-blocking, non-inheritable UNIX socketpair (uWSGI's signal and message pipes)."""
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    for s in (a, b):
        s.setblocking(False)
        if bufsize:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
    return a, b


def check_signum(call: str, num: Any) -> int:
    if isinstance(num, bool) or not isinstance(num, int):
        raise SignalError(f"uwsgi.{call}: the signal number must be an integer, not {type(num).__name__}")
    if not 0 <= num < NSIGNALS:
        raise SignalError(f"uwsgi.{call}: signal number {num} is out of range (0-255)")
    return num


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


class SignalHub:
    """Everything about signals the master and its children share, made before any fork."""

    def __init__(self, nworkers: int, nmules: int, farms: list[str], spooler: bool, bufsize: int = 0,
                 board: Any = None) -> None:
        self.nworkers = nworkers
        self.nmules = nmules
        self.farms = list(farms)
        self.has_spooler = spooler
        self.board = board
        areas = nworkers + 1
        self._mm = mmap.mmap(-1, ctypes.sizeof(_Entry) * NSIGNALS * areas,
                             flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.table = (_Entry * (NSIGNALS * areas)).from_buffer(self._mm)
        self.workers_pipe = socket_pair(bufsize=bufsize)
        self.worker_pipes = [None] + [socket_pair(bufsize=bufsize) for _ in range(nworkers)]
        self.mules_pipe = socket_pair(bufsize=bufsize) if nmules else None
        self.mule_pipes = [socket_pair(bufsize=bufsize) for _ in range(nmules)]
        self.farm_pipes = {name: socket_pair(bufsize=bufsize) for name in self.farms}
        self.spooler_pipe = socket_pair(bufsize=bufsize) if spooler else None
        # requests for timers, crons and file monitors: datagrams to the master
        self.control = socket_pair(socket.SOCK_SEQPACKET)
        self.handlers: dict[int, Callable[[int], Any]] = {}  # this process's handlers
        self.on_signal: Callable[[int], None] | None = None  # bookkeeping hook (worker stats)
        self.after_signal: Callable[[], None] | None = None  # ... and when the handler is done
        self.mule_farms: dict[int, list[str]] = {}  # mule id -> its farms (set by the mules)
        self.routed = 0
        self.unrouted = 0
        self._local = threading.local()

    # --- the table -----------------------------------------------------------------------

    def _entry(self, area: int, sig: int) -> _Entry:
        return self.table[area * NSIGNALS + sig]

    def _my_area(self) -> int:
        return ME.worker_id if ME.role is Role.WORKER else 0

    def target_of(self, sig: int) -> str | None:
        """The target the master routes ``sig`` to: the master's registration, else the first
        worker's that has one; None when nobody registered it."""
        for area in range(self.nworkers + 1):
            entry = self._entry(area, sig)
            if entry.registered:
                return entry.receiver.decode("utf-8", "replace")
        return None

    def reset_worker_area(self, wid: int) -> None:
        """A worker (re)starts with what the master registered (as uWSGI copies it)."""
        ctypes.memmove(ctypes.addressof(self._entry(wid, 0)), ctypes.addressof(self._entry(0, 0)),
                       ctypes.sizeof(_Entry) * NSIGNALS)

    def check_target(self, call: str, target: str) -> None:
        """Refuse a target that cannot be routed (uWSGI accepts it and logs at each signal)."""
        t = target
        if t in ("", "worker", "worker0", "workers", "active-workers"):
            return
        if t == "spooler":
            if not self.has_spooler:
                raise SignalError(f"uwsgi.{call}: target 'spooler' but this instance has no spooler")
            return
        if t in ("mule", "mule0", "mules"):
            if not self.nmules:
                raise SignalError(f"uwsgi.{call}: target {t!r} but this instance has no mules")
            return
        for prefix, count, what in (("worker", self.nworkers, "workers"), ("mule", self.nmules, "mules"),
                                    ("farm", len(self.farms), "farms")):
            rest = t[len(prefix):]
            if t.startswith(prefix) and rest.isdigit():
                n = int(rest)
                if not 1 <= n <= count:
                    raise SignalError(f"uwsgi.{call}: invalid target {t!r} (this instance has {count} {what})")
                return
        if t.startswith("farm_"):
            if t[5:] not in self.farms:
                raise SignalError(f"uwsgi.{call}: invalid target {t!r}: no farm named {t[5:]!r}")
            return
        raise SignalError(f"uwsgi.{call}: invalid target {t!r} (worker, workerN, workers, active-workers, "
                          "mule, muleN, mules, farm_NAME, farmN, spooler or '')")

    # --- routing, in the master ----------------------------------------------------------

    def route(self, sig: int) -> None:
        """Deliver ``sig`` to its target's pipes (the master's job)."""
        target = self.target_of(sig)
        if target is None or target in ("", "worker", "worker0"):
            # unregistered signals go to a worker too: signal_wait() may be waiting for them
            self._send(self.workers_pipe[0], sig, "workers pool")
        elif target == "workers":
            for wid in range(1, self.nworkers + 1):
                self._send(self.worker_pipes[wid][0], sig, f"worker {wid}")
        elif target == "active-workers":
            for wid in range(1, self.nworkers + 1):
                if self._active(wid):
                    self._send(self.worker_pipes[wid][0], sig, f"worker {wid}")
        elif target.startswith("worker"):
            wid = int(target[6:])
            self._send(self.worker_pipes[wid][0], sig, f"worker {wid}")
        elif target == "spooler":
            if self.spooler_pipe is not None:
                self._send(self.spooler_pipe[0], sig, "the spooler")
        elif target == "mules":
            for i, pair in enumerate(self.mule_pipes):
                self._send(pair[0], sig, f"mule {i + 1}")
        elif target in ("mule", "mule0"):
            if self.mules_pipe is not None:
                self._send(self.mules_pipe[0], sig, "a mule")
        elif target.startswith("mule"):
            n = int(target[4:])
            self._send(self.mule_pipes[n - 1][0], sig, f"mule {n}")
        elif target.startswith("farm_"):
            pair = self.farm_pipes.get(target[5:])
            if pair is not None:
                self._send(pair[0], sig, f"farm {target[5:]}")
        elif target.startswith("farm"):
            name = self.farms[int(target[4:]) - 1]
            self._send(self.farm_pipes[name][0], sig, f"farm {name}")
        else:  # not reachable: targets are checked at registration
            log(f"^^^ UNSUPPORTED SIGNAL TARGET: {target} ^^^")

    def _active(self, wid: int) -> bool:
        if self.board is None:
            return True
        w = self.board.workers[wid]
        return w.pid > 0 and w.status != STATUS_CHEAP

    def _send(self, sock: socket.socket, sig: int, who: str) -> bool:
        try:
            sock.send(bytes((sig,)))
        except BlockingIOError:
            size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            log(f"*** SIGNAL QUEUE IS FULL: buffer size {size} bytes (you can tune it with --signal-bufsize) ***")
            log(f"could not deliver signal {sig} to {who}")
            self.unrouted += 1
            return False
        except OSError as exc:
            log(f"could not deliver signal {sig} to {who}: {exc.strerror}")
            self.unrouted += 1
            return False
        self.routed += 1
        return True

    def queued(self, wid: int = 0) -> int:
        """Signals waiting in the shared worker pipe (0) or in worker ``wid``'s (stats)."""
        sock = self.workers_pipe[1] if wid == 0 else self.worker_pipes[wid][1]
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, "little")

    # --- in the process that runs the handlers -------------------------------------------

    def my_pipes(self) -> list[socket.socket]:
        """The pipes this process reads signals from: its shared one, then its own, farms'."""
        if ME.role is Role.WORKER:
            return [self.workers_pipe[1], self.worker_pipes[ME.worker_id][1]]
        if ME.role is Role.MULE:
            out = [self.mules_pipe[1], self.mule_pipes[ME.mule_id - 1][1]] if self.mules_pipe else []
            return out + [self.farm_pipes[name][1] for name in self.farms_of_mule(ME.mule_id)]
        if ME.role is Role.SPOOLER and self.spooler_pipe is not None:
            return [self.spooler_pipe[1]]
        return []

    def farms_of_mule(self, mule_id: int) -> list[str]:
        return self.mule_farms.get(mule_id, [])

    def _uplink(self) -> socket.socket | None:
        """Where this process sends signals to the master (None: this is the master)."""
        if ME.role is Role.WORKER:
            return self.workers_pipe[1]
        if ME.role is Role.MULE:
            return self.mules_pipe[1] if self.mules_pipe else None
        if ME.role is Role.SPOOLER:
            return self.spooler_pipe[1] if self.spooler_pipe else None
        return None

    def receive(self, sock: socket.socket) -> int | None:
        """Read one signal from ``sock`` and run its handler; the number, or None if none was
        waiting (another process took it). A closed pipe means the master is gone: exit."""
        try:
            data = sock.recv(1)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            log(f"[uwsgi-signal] read(): {exc.strerror}")
            data = b""
        if not data:
            what, num = _whoami()
            log(f"{time.ctime()} - uWSGI {what} {num} error: the master disconnected from this {what}. "
                f"Shutting down the {what}.")
            end_me(0)
        sig = data[0]
        if self.handle(sig) != 0:
            what, num = _whoami()
            log(f"{time.ctime()} - error managing signal {sig} on {what} {num}")
        return sig

    def handle(self, sig: int) -> int:
        """Run this process's handler for ``sig``: 0, or -1 when none or it raised."""
        handler = self.handlers.get(sig)
        if handler is None:
            return -1
        if self.on_signal is not None:
            self.on_signal(sig)
        try:
            handler(sig)
        except Exception:  # noqa: BLE001 - a handler's error is logged, the process goes on
            print_app_exception()
            return -1
        finally:
            if self.after_signal is not None:
                self.after_signal()
        return 0

    def watch(self) -> dict[int, Callable[[], Any]]:
        """fd -> callback for a loop (a worker's epoll) that runs this process's handlers."""
        return {s.fileno(): (lambda s=s: self.receive(s)) for s in self.my_pipes()}

    # --- the uwsgi module functions ------------------------------------------------------

    def register_signal(self, num: Any, who: Any, handler: Any) -> None:
        sig = check_signum("register_signal", num)
        target = _text(who)
        if len(target) > TARGET_MAX:
            raise SignalError(f"uwsgi.register_signal: target {target[:20]!r}... longer than {TARGET_MAX} characters")
        if not callable(handler):
            raise SignalError("uwsgi.register_signal: the handler is not callable")
        if ME.role not in (Role.MASTER, Role.WORKER):
            raise SignalError("uwsgi.register_signal: only the master and the workers can register "
                              f"signal handlers (this is a {ME.role.value})")
        self.check_target("register_signal", target)
        area = self._my_area()
        entry = self._entry(area, sig)
        if entry.registered and area == 0:
            raise SignalError(f"uwsgi.register_signal: signal {sig} is already registered in the master "
                              "(uWSGI does not allow re-registering it there)")
        entry.receiver = target.encode()
        entry.registered = 1
        self.handlers[sig] = handler
        shown = "default, any worker" if not target else target
        log(f"[uwsgi-signal] signum {sig} registered (wid: {area} modifier1: 0 target: {shown})")
        if area == 0:
            for wid in range(1, self.nworkers + 1):
                self.reset_worker_area(wid)

    def signal(self, num: Any, remote: Any = None) -> None:
        sig = check_signum("signal", num)
        if remote is not None:
            raise SignalError("uwsgi.signal: sending signals to a remote node is not supported by Imperium")
        uplink = self._uplink()
        if uplink is None:
            self.route(sig)
        else:
            self._send(uplink, sig, "the master")

    def signal_registered(self, num: Any) -> bool | None:
        sig = check_signum("signal_registered", num)
        return True if self._entry(self._my_area(), sig).registered else None

    def signal_wait(self, num: Any = None) -> bytes:
        want = None if num is None else check_signum("signal_wait", num)
        pipes = self.my_pipes()
        if not pipes:
            raise SignalError(f"uwsgi.signal_wait: the {ME.role.value} receives no signals "
                              "(call it in a worker, a mule or a spooler)")
        self._local.received = -1
        while True:
            try:
                ready, _, _ = select.select(pipes, [], [])
            except InterruptedError:
                continue
            except OSError as exc:
                raise SystemError(f"error waiting for signal: {exc}") from None
            for sock in ready:
                try:
                    data = sock.recv(1)
                except (BlockingIOError, InterruptedError):
                    continue
                if not data:
                    raise SystemError("error waiting for signal: the master is gone")
                sig = data[0]
                self.handle(sig)
                if want is None or sig == want:
                    self._local.received = sig
                    return b""

    def signal_received(self) -> int:
        return getattr(self._local, "received", -1)

    def _request(self, call: str, msg: dict) -> None:
        try:
            self.control[1].send(json.dumps(msg).encode())
        except BlockingIOError:
            raise SignalError(f"uwsgi.{call}: the master's request queue is full, try again") from None
        except OSError as exc:
            raise SignalError(f"uwsgi.{call}: cannot reach the master ({exc.strerror})") from None

    def add_timer(self, num: Any, seconds: Any) -> None:
        sig = check_signum("add_timer", num)
        secs = _seconds("add_timer", seconds)
        self._request("add_timer", {"kind": "timer", "sig": sig, "secs": secs})

    def add_rb_timer(self, num: Any, seconds: Any, iterations: Any = 0) -> None:
        sig = check_signum("add_rb_timer", num)
        secs = _seconds("add_rb_timer", seconds)
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise SignalError(f"uwsgi.add_rb_timer: iterations must be an integer >= 0, not {iterations!r}")
        self._request("add_rb_timer", {"kind": "rbtimer", "sig": sig, "secs": secs, "iterations": iterations})

    def add_cron(self, num: Any, minute: Any, hour: Any, day: Any, month: Any, weekday: Any) -> bool:
        sig = check_signum("add_cron", num)
        fields = {"minute": minute, "hour": hour, "day": day, "month": month, "week": weekday}
        for name, value in fields.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise SignalError(f"uwsgi.add_cron: {name} must be an integer (-1: every, -N: every N)")
            low, high = CRON_RANGES[name]
            if 0 <= value < low or value > high:
                # uWSGI takes it, and the signal never comes
                raise SignalError(f"uwsgi.add_cron: {name} {value} never matches ({low}-{high}, "
                                  "-1: every, -N: every N)")
        self._request("add_cron", {"kind": "cron", "sig": sig, **fields})
        return True

    def add_file_monitor(self, num: Any, path: Any) -> None:
        sig = check_signum("add_file_monitor", num)
        name = os.fsdecode(path) if isinstance(path, (bytes, str)) else None
        if not name:
            raise SignalError("uwsgi.add_file_monitor: the path must be a non-empty string")
        if len(os.fsencode(name)) > FILEMON_PATH_MAX:
            raise SignalError(f"uwsgi.add_file_monitor: invalid filename length (max {FILEMON_PATH_MAX})")
        if not os.path.exists(name):
            raise SignalError(f"uwsgi.add_file_monitor: {name}: no such file or directory")
        self._request("add_file_monitor", {"kind": "filemon", "sig": sig, "path": os.path.abspath(name)})

    def exports(self) -> dict[str, Any]:
        """The signal functions of the ``uwsgi`` module."""
        return {name: getattr(self, name) for name in (
            "register_signal", "signal", "signal_registered", "signal_wait", "signal_received", "add_timer",
            "add_rb_timer", "add_cron", "add_file_monitor")}

    def close_unused(self) -> None:
        """In a child: close the ends of the pipes this process never uses (hygiene, and so
        that a pipe's reader sees EOF only when the master is gone)."""
        mine = {s.fileno() for s in self.my_pipes()}
        up = self._uplink()
        if up is not None:
            mine.add(up.fileno())
        mine.add(self.control[1].fileno())
        pairs = [self.workers_pipe, *self.worker_pipes[1:], *self.mule_pipes, *self.farm_pipes.values(),
                 self.control]
        pairs += [p for p in (self.mules_pipe, self.spooler_pipe) if p is not None]
        for pair in pairs:
            for s in pair:
                if s.fileno() >= 0 and s.fileno() not in mine:
                    s.close()


def _seconds(call: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SignalError(f"uwsgi.{call}: seconds must be an integer, not {type(value).__name__}")
    if value < 1:
        raise SignalError(f"uwsgi.{call}: seconds must be at least 1, not {value}")
    return value


def _whoami() -> tuple[str, int]:
    if ME.role is Role.WORKER:
        return "worker", ME.worker_id
    if ME.role is Role.MULE:
        return "mule", ME.mule_id
    if ME.role is Role.SPOOLER:
        return "spooler", os.getpid()
    return "master", os.getpid()


def drain(sock: socket.socket, limit: int = 4096) -> bytes:
    """Everything waiting on a non-blocking socket (the master reads many signals at once)."""
    try:
        return sock.recv(limit)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError as exc:
        if exc.errno in (errno.ECONNRESET,):
            return b""
        raise
