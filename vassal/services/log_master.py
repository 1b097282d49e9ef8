"""The log master (``log-master`` and every option that implies it): the master writes the log.

As uWSGI's (core/logging.c), before the workers exist the master makes a socketpair
(SOCK_SEQPACKET: one write is one message; ``log-master-stream``: SOCK_STREAM) and points
fd 1 and fd 2 at its write end, keeping the real log (the ``logto`` file, or stderr) on a
private fd. Workers, daemons and anything else the master forks inherit the pipe; the
master's select loop reads it (``log-master-bufsize`` bytes per message at most, longer ones
are cut as in uWSGI, and here end with a newline) and sends each message through ``log-drain``/``log-filter``/``log-route``
and the encoders to the ``logger``\\ s, or to the real log when none is configured. With
``req-logger`` request lines have their own pipe and loggers (``log-master-req-stream``).

Differences by design: uWSGI collects in a thread; here the master's loop does it (no thread
in a process that forks). The workers' end of the pipe is blocking, so a line is never
dropped when the master falls behind (uWSGI's non-blocking end drops them); the master's own
lines, and what Python code in the master writes to sys.stdout/sys.stderr, go straight to
the loggers instead of through the pipe it reads itself.

Once a second the master checks the log file: past ``log-maxsize`` bytes, or when a
``touch-logrotate`` file is touched, it rotates (vassal.log.rotate); a touched
``touch-logreopen`` file reopens it. A single writer (the master) means rotation never loses
or splits a line.
"""

from __future__ import annotations

import io
import os
import re
import socket
import sys
from collections.abc import Callable
from typing import Any

from vassal import log as logmod
from vassal.logs import request as reqlog
from vassal.logs.loggers import (
    PLUGINS,
    Encoder,
    Logger,
    LoggerError,
    encode,
    make_encoder,
    make_logger,
)
from vassal.services import Service

#: options that need a log master (uWSGI's UWSGI_OPT_LOG_MASTER / UWSGI_OPT_REQ_LOG_MASTER)
IMPLYING = ("log-master", "touch-logrotate", "touch-logreopen", "log-syslog", "log-socket", "logger",
            "threaded-logger", "log-encoder", "log-req-encoder", "log-drain", "log-filter", "log-route",
            "log-maxsize", "req-logger", "log-req-route")
REQ_IMPLYING = ("req-logger", "log-req-route")
DEFAULT_BUFSIZE = 8192


class _Touch:
    """uWSGI's touch check: a file whose mtime grew, or that appeared or vanished."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mtime = self._stat()
        if self.mtime is None:
            logmod.log(f"unable to stat() {path}, events will be triggered as soon as the file is created")

    def _stat(self) -> int | None:
        try:
            return int(os.stat(self.path).st_mtime)
        except OSError:
            return None

    def touched(self) -> bool:
        now = self._stat()
        before, self.mtime = self.mtime, now
        if now is None:
            return before is not None
        return before is None or now > before


class _DirectRaw(io.RawIOBase):
    """sys.stdout/sys.stderr of the master: to the dispatcher in the master, to fd 2 in a
    child that inherited the object (a logging handler made while the app loaded)."""

    def __init__(self, master: LogMaster) -> None:
        self.master = master

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        if os.getpid() == self.master.pid:
            self.master.dispatch(data)
        else:
            try:
                os.write(2, data)
            except OSError:
                pass
        return len(data)


class LogMaster(Service):
    name = "log-master"

    def __init__(self, config: Any) -> None:
        self.bufsize = max(1, int(config.get("log-master-bufsize") or DEFAULT_BUFSIZE))
        self.stream = bool(config.get("log-master-stream"))
        self.req_stream = bool(config.get("log-master-req-stream"))
        self.maxsize = int(config.get("log-maxsize") or 0)
        self.rotate_touch = [_Touch(p) for p in config.getlist("touch-logrotate")]
        self.reopen_touch = [_Touch(p) for p in config.getlist("touch-logreopen")]
        self.loggers: list[Logger] = [
            *_each(config, "log-syslog", lambda v: make_logger(f"syslog:{v}" if v else "syslog")),
            *_each(config, "log-socket", lambda v: make_logger(f"socket:{v}")),
            *_each(config, "logger", make_logger)]
        self.req_loggers: list[Logger] = _each(config, "req-logger", make_logger)
        self.encoders: list[Encoder] = _each(config, "log-encoder", make_encoder)
        self.req_encoders: list[Encoder] = _each(config, "log-req-encoder", make_encoder)
        self.drain = _each(config, "log-drain", _regexp)
        self.filter = _each(config, "log-filter", _regexp)
        self.routes = _each(config, "log-route", lambda v: _route(v, self.loggers))
        self.req_routes = _each(config, "log-req-route", lambda v: _route(v, self.req_loggers))
        self.with_req = any(config.has(o) for o in REQ_IMPLYING)
        self.pid = os.getpid()
        self.pending: dict[int, bytes] = {}  # stream mode: the unfinished line per pipe
        self.log_r = self.log_w = self.req_r = self.req_w = -1
        self.saved_streams: tuple[Any, Any] | None = None
        self.next_check = 0.0  # monotonic time of the next log file check

    # --- set-up, in the master before the app loads ----------------------------------------

    def setup(self) -> None:
        """Take fd 1 and fd 2 for the pipe; the real log stays on ``vassal.log.original_fd``."""
        original = os.dup(1)
        os.set_inheritable(original, False)
        logmod.original_fd = original
        self.log_r, self.log_w = self._pipe(self.stream)
        if self.with_req:
            self.req_r, self.req_w = self._pipe(self.req_stream)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(self.log_w, 1)
        os.dup2(self.log_w, 2)
        logmod.set_direct(self.dispatch)
        self.saved_streams = (sys.stdout, sys.stderr)
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(_DirectRaw(self)), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.BufferedWriter(_DirectRaw(self)), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)

    def _pipe(self, stream: bool) -> tuple[int, int]:
        kind = socket.SOCK_STREAM if stream else socket.SOCK_SEQPACKET
        r, w = socket.socketpair(socket.AF_UNIX, kind)
        if not stream:  # a message must fit the buffers whole
            for s, opt in ((r, socket.SO_RCVBUF), (w, socket.SO_SNDBUF)):
                if s.getsockopt(socket.SOL_SOCKET, opt) < self.bufsize:
                    s.setsockopt(socket.SOL_SOCKET, opt, self.bufsize)
        r.setblocking(False)
        return r.detach(), w.detach()

    # --- Service ---------------------------------------------------------------------------

    def start(self, master: Any) -> None:
        self.pid = os.getpid()

    def fds(self) -> list[int]:
        return [fd for fd in (self.log_r, self.req_r) if fd >= 0]

    def on_ready(self, fd: int) -> None:
        stream = self.stream if fd == self.log_r else self.req_stream
        handler = self.dispatch if fd == self.log_r else self.dispatch_req
        for _ in range(256):  # a bounded batch: the master has other duties
            try:
                data = os.read(fd, self.bufsize)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            if stream:
                data = self.pending.pop(fd, b"") + data
                cut = data.rfind(b"\n") + 1
                if cut < len(data):
                    self.pending[fd] = data[cut:]
                data = data[:cut]
                if not data:
                    continue
            elif len(data) == self.bufsize and not data.endswith(b"\n"):
                data += b"\n"  # cut to log-master-bufsize: the next message starts a line of its own
            handler(data)

    def timeout(self, now: float) -> float | None:
        return max(0.0, self.next_check - now) if logmod.logfile else None

    def tick(self, now: float) -> None:
        # once a second, as uWSGI's master: the loop also turns for every log message
        if not logmod.logfile or now < self.next_check:
            return
        self.next_check = now + 1.0
        rotate = bool(self.maxsize and logmod.logsize() > self.maxsize)
        rotate = any([t.touched() for t in self.rotate_touch]) or rotate
        reopen = any([t.touched() for t in self.reopen_touch])
        if rotate:
            logmod.rotate()
        elif reopen:
            logmod.reopen()

    def in_worker(self, wid: int) -> None:
        for fd in (self.log_r, self.req_r, logmod.original_fd):
            if fd > 2:
                os.close(fd)
        logmod.original_fd = 2
        logmod.set_direct(None)
        if self.saved_streams is not None:
            sys.stdout, sys.stderr = self.saved_streams
        reqlog.req_fd = self.req_w if self.req_w >= 0 else None
        for logger in self.loggers + self.req_loggers:
            logger.close()

    def finish(self) -> None:
        """Write what the pipes still hold; fd 1 and fd 2 go back to the real log for whatever
        runs next (a re-exec starts on it), while this process's last lines ("goodbye to
        uWSGI.") still reach the loggers."""
        for fd in self.fds():
            self.on_ready(fd)
        for fd, rest in self.pending.items():
            (self.dispatch if fd == self.log_r else self.dispatch_req)(rest)
        self.pending.clear()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(logmod.original_fd, 1)
        os.dup2(logmod.original_fd, 2)

    # --- where a message goes --------------------------------------------------------------

    def dispatch(self, data: bytes) -> None:
        """One message of the log: drain, filter, route, then the loggers or the real log."""
        if any(r.search(data) for r in self.drain):
            return
        if self.filter and not any(r.search(data) for r in self.filter):
            return
        self._deliver(data, self.routes, self.loggers, self.encoders)

    def dispatch_req(self, data: bytes) -> None:
        self._deliver(data, self.req_routes, self.req_loggers, self.req_encoders)

    def _deliver(self, data: bytes, routes: list, loggers: list[Logger], encoders: list[Encoder]) -> None:
        routed = False
        for pattern, target in routes:
            if target is not None and pattern.search(data):
                target.write(encode(encoders, target, data))
                routed = True
        if routed:
            return
        raw = True
        for logger in loggers:
            if logger.id is None:
                logger.write(encode(encoders, logger, data))
                raw = False
        if raw:
            try:
                os.write(logmod.original_fd, encode(encoders, None, data))
            except OSError:
                pass


def _each(config: Any, option: str, make: Callable[[str], Any]) -> list[Any]:
    """``make`` applied to every value of ``option``; a bad one is a one-line error naming
    the option, the value and where it was given."""
    out = []
    for value, origin in config.occurrences(option):
        try:
            out.append(make(value))
        except LoggerError as exc:
            raise LoggerError(f"{option} {value!r} ({origin}): {exc}") from None
    return out


def _regexp(text: str) -> re.Pattern[bytes]:
    try:
        return re.compile(os.fsencode(text))
    except re.error as exc:
        raise LoggerError(f"bad regular expression: {exc}") from None


def _route(value: str, loggers: list[Logger]) -> tuple[re.Pattern[bytes], Logger | None]:
    ident, space, pattern = value.partition(" ")
    if not space:
        raise LoggerError("syntax is LOGGERID REGEXP")
    # as uWSGI: a route to an id no logger has is kept and sends nowhere
    return _regexp(pattern), next((lg for lg in loggers if lg.id == ident), None)


_active: list[LogMaster] = []


def setup(config: Any) -> LogMaster | None:
    """Start the log master if the config asks for one (call once, early, in the master)."""
    if not any(config.has(o) and config.get(o) not in (False, None, 0) for o in IMPLYING):
        return None
    lm = LogMaster(config)
    lm.setup()
    _active[:] = [lm]
    return lm


def active() -> list[Service]:
    """The log master made by ``setup``, as a list for vassal.instance._services."""
    return list(_active)


def list_loggers() -> None:
    """``logger-list``: the built-in loggers, as uWSGI prints its loaded ones."""
    logmod.log("*** uWSGI loaded loggers ***")
    for name in PLUGINS:
        logmod.log(name)
    logmod.log("--- end of loggers list ---")
