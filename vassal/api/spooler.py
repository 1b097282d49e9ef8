"""The spooler: background jobs kept as files in a directory, run by spooler processes.

Jobs are files in uWSGI's own format (core/spooler.c), so a real uWSGI spooler and ours run
each other's jobs and a job survives a restart of the instance:

- the name is ``uwsgi_spoolfile_on_HOST_PID_COUNTER_RAND_SEC_USEC`` in the spooler directory,
  or in its subdirectory named after the job's ``priority``;
- the content is a uwsgi packet: a 4-byte header (modifier1 17, little-endian size of the
  vars, modifier2 0), the vars (le16 key length, key, le16 value length, value ...), then the
  ``body`` if any;
- the writer creates the file exclusively and holds an fcntl write lock while writing; a
  spooler takes the same lock (non-blocking) before running a job and skips locked files;
- ``at`` (run not before this Unix time) is the file's mtime.

A spooler process scans its directory, runs each due job through ``uwsgi.spooler`` (the
function the app sets), deletes the file when the function returns ``SPOOL_OK`` (-2), keeps
it for the next scan on ``SPOOL_RETRY`` (-1), an exception or a non-integer, and also keeps it
on ``SPOOL_IGNORE`` (0: "not mine", so uWSGI logs that no spooler function was found). It
sleeps ``spooler-frequency`` seconds between scans (30), and is woken at once (SIGUSR1) when a
process of the instance spools a job.

Differences from uWSGI, on purpose: jobs in priority subdirectories run with or without
``spooler-ordered`` (uWSGI 2.0 leaves them on disk forever unless it is set); ``spool()``
accepts str as well as bytes, merges keyword arguments into a dict argument (uWSGI drops
them then), and refuses a non-numeric ``priority`` (a subdirectory name: ``../x`` would
escape the spooler directory) or ``at``.
"""

from __future__ import annotations

import ctypes
import enum
import fcntl
import importlib.util
import itertools
import mmap
import os
import random
import re
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from vassal.api.role import ME, Role, become, end_me, run_post_fork_hook, uwsgi_module
from vassal.log import log
from vassal.protocols.http import BadRequest
from vassal.protocols.uwsgi import decode_vars, encode_vars
from vassal.wsgi import print_app_exception

PREFIX = "uwsgi_spoolfile_on_"
SPOOL_OK = -2
SPOOL_RETRY = -1
SPOOL_IGNORE = 0
#: the vars block of a job is one uwsgi packet: at most 64 KiB (bigger data goes in the body)
MAX_VARS = 0xFFFF
_HEADER = struct.Struct("<BHB")


class Modifier1(enum.IntEnum):
    """modifier1 of the uwsgi packet a spool file starts with."""

    SPOOLER = 17


class SpoolError(ValueError):
    """A spool request that cannot be written; the message names the call."""


@dataclass
class SpoolerSettings:
    """The spooler options of an instance."""

    dirs: list[str]  # real paths, one per directory (in option order)
    processes: int = 1  # per directory
    frequency: int = 30
    ordered: bool = False
    max_tasks: int = 0
    harakiri: int = 0
    chdir: str | None = None
    imports: list[str] = field(default_factory=list)
    quiet: bool = False

    @classmethod
    def from_config(cls, config: Any) -> SpoolerSettings | None:
        given = config.getlist("spooler")
        if not given:
            return None
        dirs = []
        for d in given:
            if not os.access(d, os.R_OK | os.W_OK | os.X_OK):
                try:
                    os.mkdir(d, 0o750)
                except OSError as exc:
                    raise SpoolError(f"spooler {d}: cannot use the directory: {exc.strerror}") from None
            real = os.path.realpath(d)
            if not os.path.isdir(real):
                raise SpoolError(f"spooler {d}: not a directory")
            dirs.append(real)

        def positive(name: str) -> int:
            value = int(config.get(name) or 0)
            if value < 0:
                raise SpoolError(f"{name} = {value}: must not be negative")
            return value

        return cls(dirs=dirs, processes=max(1, positive("spooler-processes")),
                   frequency=positive("spooler-frequency") or 30, ordered=bool(config.get("spooler-ordered")),
                   max_tasks=positive("spooler-max-tasks"), harakiri=positive("spooler-harakiri"),
                   chdir=config.get("spooler-chdir"), imports=list(config.getlist("spooler-import")),
                   quiet=bool(config.get("spooler-quiet")))


class _Slot(ctypes.Structure):
    """One spooler process, in shared memory (read by the stats, the API and the master)."""

    _fields_ = [
        ("pid", ctypes.c_int64),
        ("tasks", ctypes.c_uint64),
        ("respawns", ctypes.c_uint64),
        ("running", ctypes.c_int32),
        ("pending", ctypes.c_int32),  # a job was spooled while it ran one: look again at once
        ("frequency", ctypes.c_int32),  # uwsgi.set_spooler_frequency (0: the option's)
        ("harakiri", ctypes.c_double),  # time.monotonic() after which the master kills it (0: none)
        ("user_harakiri", ctypes.c_double),
        ("current", ctypes.c_char * 256),  # the job being run: left set when the process dies
    ]


# --- the file format -----------------------------------------------------------------------


def pack_job(pairs: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    if sum(4 + len(k) + len(v) for k, v in pairs) > MAX_VARS:
        raise SpoolError("uwsgi.spool: args buffer is limited to 64k, use the 'body' for bigger values")
    block = encode_vars(pairs)
    return _HEADER.pack(Modifier1.SPOOLER, len(block), 0) + block + body


def unpack_job(data: bytes) -> tuple[dict[bytes, bytes], bytes]:
    """(vars, body) of a spool file's content; ValueError when it is not one."""
    if len(data) < 4:
        raise ValueError("shorter than a uwsgi header")
    _m1, size, _m2 = _HEADER.unpack_from(data)
    if len(data) < 4 + size:
        raise ValueError(f"vars block of {size} bytes truncated")
    try:
        env, _count = decode_vars(data[4:4 + size])
    except BadRequest as exc:
        raise ValueError(str(exc)) from None
    # decode_vars gives latin-1 text: encoding back is lossless
    return {k.encode("latin-1"): v.encode("latin-1") for k, v in env.items()}, data[4 + size:]


def job_name(hostname: str, pid: int, counter: int, now: float) -> str:
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{PREFIX}{hostname}_{pid}_{counter}_{random.getrandbits(31)}_{sec}_{usec}"


def _natural_key(name: str) -> list:
    """versionsort(3)'s order: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def as_bytes(call: str, what: str, value: Any, numbers: bool = True, error: type = SpoolError) -> bytes:
    """A value given to the API as bytes: str is UTF-8, numbers their text (when allowed)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode()
    raise error(f"uwsgi.{call}: {what} must be bytes or str, not {type(value).__name__}")


# --- the spoolers of an instance ------------------------------------------------------------


class Spoolers:
    """Settings, shared state and API of an instance's spoolers (one slot per process)."""

    def __init__(self, settings: SpoolerSettings, hostname: str) -> None:
        self.settings = settings
        self.hostname = hostname
        self.slot_dirs = [d for d in settings.dirs for _ in range(settings.processes)]
        self._mm = mmap.mmap(-1, ctypes.sizeof(_Slot) * len(self.slot_dirs),
                             flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.slots = (_Slot * len(self.slot_dirs)).from_buffer(self._mm)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.signal_hub: Any = None
        self._stop_after_task = False
        self._last: set[str] = set()  # jobs that killed a spooler process: run after the others

    # --- spooling (any process) ----------------------------------------------------------

    def spool(self, *args: Any, **kwargs: Any) -> bytes:
        if len(args) > 1:
            raise SpoolError("uwsgi.spool: takes one dict (or keyword arguments)")
        if args and not isinstance(args[0], dict):
            raise SpoolError("uwsgi.spool: The argument of spooler callable must be a dictionary")
        items = dict(args[0]) if args else {}
        items.update(kwargs)
        if not items:
            raise SpoolError("uwsgi.spool: The argument of spooler callable must be a dictionary")
        pairs: list[tuple[bytes, bytes]] = []
        body = b""
        for key, value in items.items():
            k = as_bytes("spool", "a key", key)
            if k == b"body":
                body = as_bytes("spool", "the body", value)
                continue
            pairs.append((k, as_bytes("spool", f"the value of {k.decode('utf-8', 'replace')!r}", value)))
        opts = dict(pairs)
        directory = self._directory(opts.get(b"spooler"))
        priority = opts.get(b"priority")
        if priority is not None and not priority.isdigit():
            raise SpoolError(f"uwsgi.spool: priority must be a number (it names a subdirectory), "
                             f"not {priority!r}")
        at = 0
        if b"at" in opts:
            try:
                at = int(float(opts[b"at"]))
            except ValueError:
                raise SpoolError(f"uwsgi.spool: at must be a Unix time, not {opts[b'at']!r}") from None
        packet = pack_job(pairs, body)
        path = self._write(directory, priority, packet, at)
        if not self.settings.quiet:
            log(f"[spooler] written {len(packet)} bytes to file {path}")
        self._wake(directory)
        return path.encode()

    def _directory(self, name: bytes | None) -> str:
        if not name:
            return self.settings.dirs[0]
        text = os.fsdecode(name)
        for d in self.settings.dirs:
            if text == d or os.path.realpath(text) == d:
                return d
        log(f'[uwsgi-spooler] unable to find spooler "{text}"')
        raise SpoolError(f'uwsgi.spool: unable to find spooler "{text}" (spooler directories: '
                         f'{", ".join(self.settings.dirs)})')

    def _write(self, directory: str, priority: bytes | None, packet: bytes, at: int) -> str:
        with self._lock:  # the counter is per process; the pid in the name separates processes
            counter = next(self._counter)
        base = directory
        if priority is not None:
            base = os.path.join(directory, priority.decode())
            try:
                os.mkdir(base, 0o777)
            except FileExistsError:
                pass
            except OSError as exc:
                raise SpoolError(f"uwsgi.spool: cannot create {base}: {exc.strerror}") from None
        path = os.path.join(base, job_name(self.hostname, os.getpid(), counter, time.time()))
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError as exc:
            raise SpoolError(f"uwsgi.spool: cannot create {path}: {exc.strerror}") from None
        try:
            # a spooler that finds the file before it is complete sees the lock and skips it
            fcntl.lockf(fd, fcntl.LOCK_EX)
            view = memoryview(packet)
            while view:
                view = view[os.write(fd, view):]
            if at > 0:
                os.utime(fd, (at, at))
        except OSError as exc:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise SpoolError(f"uwsgi.spool: cannot write {path}: {exc.strerror}") from None
        os.close(fd)  # and the lock goes with it
        return path

    def _wake(self, directory: str) -> None:
        # an idle spooler gets SIGUSR1, as in uWSGI; a busy one is not interrupted (a signal
        # could break a job's system call) but told to scan again when it is done: uWSGI
        # tells it nothing, and the job then waits a whole spooler-frequency
        for i, d in enumerate(self.slot_dirs):
            slot = self.slots[i]
            if d != directory or slot.pid <= 0:
                continue
            if slot.running:
                slot.pending = 1
                continue
            try:
                os.kill(int(slot.pid), signal.SIGUSR1)
            except OSError:
                pass

    # --- the rest of the API -------------------------------------------------------------

    def spooler_jobs(self) -> list[bytes]:
        """The job files at the top of the first spooler directory (as uWSGI lists them)."""
        d = self.settings.dirs[0]
        out = []
        try:
            names = os.listdir(d)
        except OSError:
            return out
        for name in names:
            if not name.startswith(PREFIX):
                continue
            path = os.path.join(d, name)
            try:
                if stat.S_ISREG(os.lstat(path).st_mode) and os.access(path, os.R_OK | os.W_OK):
                    out.append(path.encode())
            except OSError:
                continue
        return out

    def spooler_pid(self) -> int:
        return int(self.slots[0].pid)

    def spooler_pids(self) -> list[int]:
        return [int(s.pid) for s in self.slots]

    def set_spooler_frequency(self, seconds: Any) -> bool:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise SpoolError(f"uwsgi.set_spooler_frequency: seconds must be an integer >= 0, not {seconds!r}")
        for s in self.slots:
            s.frequency = seconds
        return True

    def spooler_get_task(self, path: Any) -> dict | None:
        name = os.fsdecode(path)
        got = self._read(name)
        if got is None:
            return None
        env, body = got
        return self._task_dict(name, env, body)

    def exports(self) -> dict[str, Any]:
        """The spooler functions of the ``uwsgi`` module."""
        names = {name: getattr(self, name) for name in ("spooler_jobs", "spooler_pid", "spooler_pids",
                                                         "set_spooler_frequency", "spooler_get_task")}
        names.update(spool=self.spool, send_to_spooler=self.spool,
                     spoolers=tuple(d.encode() for d in self.settings.dirs))
        return names

    # --- reading jobs --------------------------------------------------------------------

    @staticmethod
    def _task_dict(name: str, env: dict[bytes, bytes], body: bytes) -> dict:
        task: dict = {"spooler_task_name": name.encode()}
        task.update(env)
        if body:
            task["body"] = body
        return task

    @staticmethod
    def _read(path: str, keep: list | None = None) -> tuple[dict[bytes, bytes], bytes] | None:
        """(vars, body) of a job file if nobody holds its lock; with ``keep`` the open, locked
        fd is appended to it (the caller closes it: that releases the lock). A file whose
        content is not a job raises ValueError."""
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None  # being written, or another spooler runs it
        try:
            if not os.access(path, os.R_OK | os.W_OK):  # unlinked under us
                os.close(fd)
                return None
            # read on this fd only: closing any other fd of the file (a dup) would drop the lock
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            data = b"".join(chunks)
        except OSError:
            os.close(fd)
            return None
        if len(data) < 4:  # just created, not written yet: next scan
            os.close(fd)
            return None
        try:
            got = unpack_job(data)
        except ValueError:
            os.close(fd)
            raise
        if keep is None:
            os.close(fd)
        else:
            keep.append(fd)
        return got

    # --- the spooler process -------------------------------------------------------------

    def run(self, slot_index: int) -> None:
        """The body of spooler process ``slot_index`` (forked by the master); never returns."""
        become(Role.SPOOLER, spooler_slot=slot_index)
        if self.signal_hub is not None:
            self.signal_hub.close_unused()
        slot = self.slots[slot_index]
        slot.pid = os.getpid()
        slot.running = 0
        slot.tasks = 0
        crashed = slot.current.decode(errors="replace")
        if crashed:
            # the previous spooler died in this job: the others go first, so one poisonous
            # job cannot keep the rest of the queue from ever running
            log(f"[spooler] job {crashed} killed the previous spooler process: it runs after the others")
            self._last.add(crashed)
            slot.current = b""
        directory = self.slot_dirs[slot_index]
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(sig, lambda _s, _f: end_me())
        signal.signal(signal.SIGHUP, self._graceful)
        signal.signal(signal.SIGUSR1, lambda _s, _f: None)  # a job was spooled: the wakeup fd says so
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 19)
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        run_post_fork_hook()
        for name in self.settings.imports:
            _import(name)
        pipes = self.signal_hub.my_pipes() if self.signal_hub is not None else []
        while True:
            try:
                os.chdir(directory)
            except OSError as exc:
                log(f"[spooler] chdir() to {directory}: {exc.strerror}")
                end_me(1)
            # a scan that finished jobs, or during which jobs were spooled, is followed at once
            # by another
            slot.pending = 0
            done = self._scan(slot, directory)
            if self._stop_after_task:
                end_me(0)
            timeout = 0 if done or slot.pending else (slot.frequency or self.settings.frequency)
            try:
                ready, _, _ = select.select([wake_r, *pipes], [], [], timeout)
            except InterruptedError:
                ready = []
            if wake_r in ready:  # SIGUSR1: a job was spooled
                try:
                    while wake_r.recv(512):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            for sock in pipes:
                if sock in ready:
                    self.signal_hub.receive(sock)
            if self._stop_after_task:
                end_me(0)

    def _graceful(self, _signum: int, _frame: Any) -> None:
        """SIGHUP (touch-spoolers-reload): finish the job in hand, then exit to be respawned."""
        self._stop_after_task = True
        slot = self.slots[ME.spooler_slot]
        if not slot.running:
            end_me(0)

    def _scan(self, slot: _Slot, directory: str, sub: str | None = None) -> int:
        """Run the due jobs of ``directory`` (and of its priority subdirectories); the number
        of jobs done (removed)."""
        where = os.path.join(directory, sub) if sub else directory
        try:
            with os.scandir(where) as it:
                names = [e.name for e in it]
        except OSError as exc:
            log(f"[spooler] opendir() {where}: {exc.strerror}")
            return 0
        if self.settings.ordered:
            names.sort(key=_natural_key)
        if self._last:
            names.sort(key=lambda n: n in self._last)  # stable: the order otherwise stays
        done = 0
        for name in names:
            if self._stop_after_task:
                break
            if name.startswith(PREFIX):
                done += self._task(slot, directory, where, name)
            elif sub is None and name.isdigit() and _real_dir(os.path.join(where, name)):
                done += self._scan(slot, directory, name)
        return done

    def _task(self, slot: _Slot, directory: str, where: str, name: str) -> int:
        """Run one job file if it is due and free: 1 if it was done and removed, else 0."""
        path = os.path.join(where, name)
        try:
            st = os.lstat(path)
        except OSError:
            return 0
        if int(st.st_mtime) > int(time.time()):  # `at` is in the future
            return 0
        if not stat.S_ISREG(st.st_mode):
            return 0
        held: list[int] = []
        try:
            got = self._read(path, held)
        except ValueError as exc:
            log(f"[spooler] {path} is not a spooler job ({exc}): removed")
            _unlink(path)
            return 0
        if got is None:
            return 0
        env, body = got
        done = 0
        try:
            slot.running = 1
            slot.current = name.encode()[:255]
            if not self.settings.quiet:
                log(f"[spooler {directory} pid: {os.getpid()}] managing request {name} ...")
            if self.settings.chdir:
                try:
                    os.chdir(self.settings.chdir)
                except OSError as exc:
                    log(f"[spooler] chdir() to {self.settings.chdir}: {exc.strerror}")
            started = time.time()
            ret = self._call(slot, name, env, body)
            if ret != SPOOL_IGNORE:
                slot.tasks += 1
                if ret == SPOOL_OK:
                    if not self.settings.quiet:
                        log(f"[spooler {directory} pid: {os.getpid()}] done with task {name} after "
                            f"{int(time.time() - started)} seconds")
                    _unlink(path)
                    done = 1
            else:
                log("unable to find the spooler function, have you loaded it into the spooler process ?")
        finally:
            for fd in held:
                os.close(fd)
            slot.running = 0
            slot.current = b""
            self._last.discard(name)
        if self.settings.max_tasks and slot.tasks >= self.settings.max_tasks:
            log(f"[spooler {directory} pid: {os.getpid()}] maximum number of tasks reached "
                f"({self.settings.max_tasks}) recycling ...")
            end_me()
        os.chdir(directory)
        return done

    def _call(self, slot: _Slot, name: str, env: dict[bytes, bytes], body: bytes) -> int:
        func = getattr(uwsgi_module(), "spooler", None)
        if func is None or not callable(func):
            return SPOOL_IGNORE
        task = self._task_dict(name, env, body)
        if self.settings.harakiri:
            slot.harakiri = time.monotonic() + self.settings.harakiri
        try:
            ret = func(task)
        except Exception:  # noqa: BLE001 - the job's error is printed, the job is retried
            print_app_exception()
            return SPOOL_RETRY
        finally:
            slot.harakiri = 0.0
        if isinstance(ret, bool) or not isinstance(ret, int):
            return SPOOL_RETRY
        return ret


def _real_dir(path: str) -> bool:
    """A directory, not a symlink to one (a priority directory never leads out of the spool)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log(f"[spooler] unlink() {path}: {exc.strerror}")


def _import(name: str) -> None:
    """``spooler-import``: a module name, or a file path (uWSGI's rule: a '/' or '.py')."""
    try:
        if "/" in name or name.endswith(".py"):
            modname = os.path.splitext(os.path.basename(name))[0].replace(".", "_").replace("-", "_")
            spec = importlib.util.spec_from_file_location(modname, name)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {name}")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            spec.loader.exec_module(mod)
        else:
            __import__(name)
    except Exception:  # noqa: BLE001 - uWSGI prints the error and carries on
        print_app_exception()
