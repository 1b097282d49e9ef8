"""What vassals write on stdout and stderr, collected by the emperor when asked.

By default a vassal shares the emperor's stdout and stderr, as in uWSGI (whose emperor has
no option for more): lines of different vassals mix with nothing saying whose they are.
With ``emperor-log-prefix`` or ``emperor-vassal-logdir`` (Imperium's options; uWSGI has
no name for this) each vassal's fds 1 and 2 are instead the write end of a pipe the
emperor reads from its loop:

- ``emperor-log-prefix``: each line goes to the emperor's log as ``[NAME] line``;
- ``emperor-vassal-logdir DIR``: each vassal's lines go to ``DIR/NAME.log`` (a ``/`` in a
  name becomes ``_``), prefixed too when ``emperor-log-prefix`` is also given; a symlink or
  a FIFO in its place is not opened (a line naming it goes to the emperor's log).

Lines stay whole: a partial line waits for its end (at most ``MAX_LINE`` bytes, then it is
written as a line of its own), and the last partial line is written when the vassal's
processes have all closed the pipe. ``reopen()`` (SIGUSR2, ``imperium ctl SOCK
reopen-logs``) closes the per-vassal files so that the next line opens them again: after
logrotate renamed ``NAME.log``, lines read before the reopen are in the renamed file and
every later one in the new file; none is lost. The pipe's read end is the emperor's and
outlives the vassal's handle, so a dying vassal's last words are still collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from emperor.events import name_bytes
from emperor.logs import log, output_fd

MAX_LINE = 65536
READ_SIZE = 65536


#: seconds before a vassal log file that failed to open is tried again (a reopen: at once)
REOPEN_DELAY = 5.0


class _Stream:
    __slots__ = ("name", "raw", "partial")

    def __init__(self, name: str) -> None:
        self.name = name
        self.raw = name_bytes(name) or name.encode("utf-8", "replace")
        self.partial = b""


class VassalOutput:
    def __init__(self, prefix: bool, logdir: str | None) -> None:
        self.prefix = prefix
        self.logdir = logdir
        self.loop: asyncio.AbstractEventLoop | None = None
        self.streams: dict[int, _Stream] = {}  # read fd -> its vassal
        self.files: dict[str, int] = {}  # vassal name -> open log file (logdir)
        #: vassal name -> when its log file last failed to open (monotonic): tried again
        #: after REOPEN_DELAY or at a reopen, and logged once until it opens
        self.failed: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.prefix or bool(self.logdir)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def pipe(self, name: str) -> int:
        """A new pipe for a vassal about to be spawned: its write end (the caller hands it to
        the vassal as fds 1 and 2, then closes it)."""
        assert self.loop is not None
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(rfd, False)
        self.streams[rfd] = _Stream(name)
        self.loop.add_reader(rfd, self._readable, rfd)
        return wfd

    def _readable(self, rfd: int) -> None:
        stream = self.streams.get(rfd)
        if stream is None:
            return
        try:
            data = os.read(rfd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._eof(rfd, stream)
            return
        data = stream.partial + data
        end = data.rfind(b"\n")
        if end < 0:
            stream.partial = data
            if len(data) >= MAX_LINE:
                stream.partial = b""
                self._write(stream, [data])
            return
        stream.partial = data[end + 1:]
        self._write(stream, data[:end].split(b"\n"))

    def _eof(self, rfd: int, stream: _Stream) -> None:
        if stream.partial:
            self._write(stream, [stream.partial])
            stream.partial = b""
        self._forget(rfd)
        if self.logdir and not any(s.name == stream.name for s in self.streams.values()):
            self._close_file(stream.name)

    def _forget(self, rfd: int) -> None:
        self.streams.pop(rfd, None)
        if self.loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(rfd)
        with contextlib.suppress(OSError):
            os.close(rfd)

    def _write(self, stream: _Stream, lines: list[bytes]) -> None:
        if self.prefix:
            head = b"[" + stream.raw + b"] "
            data = b"".join(head + line + b"\n" for line in lines)
        else:
            data = b"".join(line + b"\n" for line in lines)
        fd = self._file(stream.name) if self.logdir else output_fd()
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, data)

    def _file(self, name: str) -> int | None:
        fd = self.files.get(name)
        if fd is not None:
            return fd
        assert self.logdir is not None
        now = time.monotonic()
        last = self.failed.get(name)
        if last is not None and now - last < REOPEN_DELAY:
            return None  # its lines are lost meanwhile, without a log line each
        path = os.path.join(self.logdir, file_name(name))
        try:
            # the emperor writes as root what a vassal printed: never through a link someone
            # planted under the vassal's name (a line of its choice appended to /etc/passwd);
            # non-blocking: a FIFO there without a reader (or a full one) costs lines, never
            # the emperor's loop
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                         | os.O_NOFOLLOW | os.O_NONBLOCK, 0o640)
        except OSError as exc:
            if last is None:  # once, not once per line the vassal prints
                log(f"[emperor] cannot open the log file of vassal {name}: {path}: {exc.strerror}")
            self.failed[name] = now
            return None
        self.failed.pop(name, None)
        self.files[name] = fd
        return fd

    def _close_file(self, name: str) -> None:
        fd = self.files.pop(name, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def reopen(self) -> None:
        """Close every vassal log file: the next line of each opens its file again."""
        self.failed.clear()
        for name in list(self.files):
            self._close_file(name)

    def close(self) -> None:
        """The emperor is done: what is still buffered is written, then everything closed."""
        for rfd, stream in list(self.streams.items()):
            # drain what the vassal wrote before it went
            while True:
                try:
                    data = os.read(rfd, READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                stream.partial += data
                *whole, stream.partial = stream.partial.split(b"\n")
                if whole:
                    self._write(stream, whole)
            if stream.partial:
                self._write(stream, [stream.partial])
            self._forget(rfd)
        self.reopen()


def file_name(name: str) -> str:
    """``NAME.log`` for a vassal name: no directory separator, no hidden file."""
    safe = name.replace("/", "_").replace("\0", "_")
    if safe.startswith("."):
        safe = "_" + safe[1:]
    return safe + ".log"
