"""Logger plugins a log master writes to (``logger``, ``req-logger``, ``log-syslog``, ...).

The ones Debian's uWSGI ships as plugins (logfile, logsocket, syslog), built in here:

- ``file:PATH`` or ``file:logfile=PATH,maxsize=N,backupname=NAME`` (rotates itself by size);
- ``fd:N`` — an inherited file descriptor; ``stdio`` — the instance's own log (fd 2 as it
  was before the log master took it);
- ``socket:ADDR[,PREFIX]`` — one datagram per line to a UDP ``host:port`` or a UNIX socket;
- ``syslog[:IDENT[,FACILITY]]`` — RFC 3164 datagrams to /dev/log at priority info (what
  glibc's syslog(3) sends; ``IMPERIUM_SYSLOG_SOCKET`` names another socket).

A logger spec may start with an id and a space (``logger = errors file:/tmp/err.log``):
such a named logger gets only the lines a ``log-route`` sends it. Encoders
(``log-encoder``, ``log-req-encoder``) transform each line before the loggers see it:
``prefix``, ``suffix``, ``nl``, ``gzip``, ``compress``, ``format`` and ``json`` (with
``${msg}``, ``${msgnl}``, ``${unix}``, ``${micros}``, ``${millis}``, ``${strftime:FMT}``),
each optionally limited to one logger id (``format:myid ...``).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from vassal import log as logmod

SYSLOG_SOCKET = "/dev/log"
_FACILITIES = {"auth": 4, "authpriv": 10, "cron": 9, "daemon": 3, "ftp": 11, "kern": 0, "lpr": 6, "mail": 2,
               "news": 7, "security": 4, "syslog": 5, "user": 1, "uucp": 8, **{f"local{i}": 16 + i for i in range(8)}}
_LOG_INFO = 6


class LoggerError(ValueError):
    """A logger, route or encoder that cannot be set up; the message names it."""


class Logger:
    """One configured logger: ``write`` gets every line (bytes, newline included)."""

    name = "logger"

    def __init__(self, arg: str | None, ident: str | None) -> None:
        self.arg = arg
        self.id = ident

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FileLogger(Logger):
    name = "file"

    def __init__(self, arg: str | None, ident: str | None) -> None:
        super().__init__(arg, ident)
        self.maxsize = 0
        self.backupname: str | None = None
        if not arg:
            raise LoggerError("logger file: needs a path (file:/path/to/log)")
        path = arg
        if "=" in arg:
            opts = dict(kv.partition("=")[::2] for kv in arg.split(","))
            if "logfile" not in opts:
                raise LoggerError(f"logger file:{arg}: missing logfile key")
            path = opts["logfile"]
            self.backupname = opts.get("backupname") or None
            size = opts.get("maxsize", "0")
            if not size.isdigit():
                raise LoggerError(f"logger file:{arg}: maxsize {size!r} is not a number of bytes")
            self.maxsize = int(size)
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise LoggerError(f"logger file:{arg}: cannot open {path}: {exc.strerror}") from None

    def write(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError:
            return
        if self.maxsize and os.lseek(self.fd, 0, os.SEEK_CUR) > self.maxsize:
            self.rotate()

    def rotate(self) -> None:
        size = os.lseek(self.fd, 0, os.SEEK_CUR)
        target = self.backupname or f"{self.path}.{int(time.time())}"
        # as uWSGI: the notice goes to the instance's log, the file is renamed and reopened
        logmod.write_original(f"{time.ctime()} - logsize: {size}, triggering rotation to {target}...\n")
        try:
            os.rename(self.path, target)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            logmod.write_original(f"unable to rotate log: {exc.strerror}\n")
            return
        os.dup2(fd, self.fd, inheritable=False)
        os.close(fd)

    def close(self) -> None:
        os.close(self.fd)


class FdLogger(Logger):
    name = "fd"

    def __init__(self, arg: str | None, ident: str | None) -> None:
        super().__init__(arg, ident)
        if not arg or not arg.isdigit():
            raise LoggerError(f"logger fd:{arg or ''}: needs a file descriptor number")
        self.fd = int(arg)

    def write(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError:
            pass


class StdioLogger(Logger):
    """The instance's log as it was before the log master: the file of logto, or stderr."""

    name = "stdio"

    def write(self, data: bytes) -> None:
        try:
            os.write(logmod.original_fd, data)
        except OSError:
            pass


class SocketLogger(Logger):
    name = "socket"

    def __init__(self, arg: str | None, ident: str | None) -> None:
        super().__init__(arg, ident)
        if not arg:
            raise LoggerError("logger socket: needs an address (socket:HOST:PORT or socket:/path)")
        addr, _, prefix = arg.partition(",")
        self.prefix = prefix.encode()
        if ":" in addr:
            host, _, port = addr.rpartition(":")
            if not port.isdigit():
                raise LoggerError(f"logger socket:{arg}: bad address {addr}")
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.addr: tuple[str, int] | str = (host or "127.0.0.1", int(port))
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.addr = addr
        self.sock.setblocking(False)

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendto(self.prefix + data if self.prefix else data, self.addr)
        except OSError:
            pass  # nobody listening, or the peer is full: a lost line, never a stuck master

    def close(self) -> None:
        self.sock.close()


class SyslogLogger(Logger):
    name = "syslog"

    def __init__(self, arg: str | None, ident: str | None) -> None:
        super().__init__(arg, ident)
        self.ident = "uwsgi"
        self.facility = _FACILITIES["daemon"]
        if arg:
            name, comma, facility = arg.partition(",")
            self.ident = name
            if comma:
                self.facility = _FACILITIES.get(facility, self.facility)  # uWSGI ignores unknown ones
        self.path = os.environ.get("IMPERIUM_SYSLOG_SOCKET", SYSLOG_SOCKET)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def write(self, data: bytes) -> None:
        stamp = time.strftime("%b %d %H:%M:%S")
        if stamp[4] == "0":
            stamp = stamp[:4] + " " + stamp[5:]  # syslog's day is space-padded
        msg = f"<{self.facility * 8 + _LOG_INFO}>{stamp} {self.ident}: ".encode() + data
        try:
            self.sock.sendto(msg, self.path)
        except OSError:
            pass  # syslog(3) drops what it cannot send, and so do we

    def close(self) -> None:
        self.sock.close()


PLUGINS: dict[str, type[Logger]] = {cls.name: cls for cls in (FileLogger, FdLogger, StdioLogger, SocketLogger,
                                                                SyslogLogger)}


def make_logger(spec: str) -> Logger:
    """A logger from ``[ID ]NAME[:ARG]`` (uWSGI's syntax; an id is letters and digits)."""
    ident = None
    head, space, rest = spec.partition(" ")
    if space and head.isalnum():
        ident, spec = head, rest
    name, colon, arg = spec.partition(":")
    cls = PLUGINS.get(name)
    if cls is None:
        raise LoggerError(f"unable to find logger {name} (built in: {', '.join(PLUGINS)})")
    return cls(arg if colon and arg else None, ident)


# --- encoders ------------------------------------------------------------------------------


def _vars(args: str) -> list[tuple[bool, str]]:
    """``foo ${var} bar`` as (is_var, text) pieces."""
    return [(bool(m.group(1)), m.group(1) or m.group(2)) for m in re.finditer(r"\$\{([^}]*)\}|(\$|[^$]+)", args)]


def _expand(pieces: list[tuple[bool, str]], msg: bytes, escape: Callable[[bytes], bytes]) -> bytes:
    out = []
    for is_var, text in pieces:
        if not is_var:
            out.append(text.encode())
        elif text == "msg":
            out.append(escape(msg[:-1] if msg.endswith(b"\n") else msg))
        elif text == "msgnl":
            out.append(escape(msg))
        elif text == "unix":
            out.append(str(int(time.time())).encode())
        elif text == "micros":
            out.append(str(int(time.time() * 1_000_000)).encode())
        elif text == "millis":
            out.append(str(int(time.time() * 1000)).encode())
        elif text.startswith("strftime:"):
            out.append(escape(time.strftime(text[9:]).encode()))
    return b"".join(out)


def _json_escape(data: bytes) -> bytes:
    return json.dumps(data.decode("utf-8", "replace"))[1:-1].encode()


@dataclass
class Encoder:
    name: str
    args: str
    use_for: str | None  # a logger id, or None for every logger (and the raw log)
    fn: Callable[[bytes], bytes] = field(repr=False, default=lambda b: b)

    def applies(self, logger: Logger | None) -> bool:
        return self.use_for is None or (logger is not None and logger.id == self.use_for)


def make_encoder(spec: str) -> Encoder:
    """``NAME[:LOGGERID][ ARGS]``, as ``log-encoder`` takes it."""
    head, _, args = spec.partition(" ")
    name, colon, use_for = head.partition(":")
    enc = Encoder(name, args, use_for if colon else None)
    if name == "prefix":
        enc.fn = lambda b: args.encode() + b
    elif name == "suffix":
        enc.fn = lambda b: b + args.encode()
    elif name == "nl":
        enc.fn = lambda b: b + b"\n"
    elif name == "gzip":
        enc.fn = lambda b: gzip.compress(b)
    elif name == "compress":
        enc.fn = zlib.compress
    elif name in ("format", "json"):
        pieces = _vars(args)
        escape = _json_escape if name == "json" else (lambda b: b)
        enc.fn = lambda b: _expand(pieces, b, escape)
    else:
        raise LoggerError(f"log encoder \"{name}\" not found")
    return enc


def encode(encoders: list[Encoder], logger: Logger | None, data: bytes) -> bytes:
    for enc in encoders:
        if enc.applies(logger):
            data = enc.fn(data)
    return data
