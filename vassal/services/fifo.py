"""The master FIFO: ``master-fifo = PATH`` makes a named pipe whose bytes are commands.

As uWSGI 2.0 (core/fifo.c): the FIFO is created (mode 0600, any old file removed) and opened
non-blocking; every byte written to it is one command (``echo r > fifo``; ``echo +++s``
runs four); when the writer closes it, the FIFO is created again, so the next writer finds
a fresh pipe. Up to ten ``master-fifo`` options make slots ``0``-``9``: the first is active,
and writing a slot's digit makes that FIFO the active one from the next writer on.

The commands (``control.FIFO_COMMANDS``): ``r`` graceful reload, ``R`` brutal reload, ``q``
graceful shutdown, ``Q`` brutal shutdown, ``w``/``W`` reload the workers gracefully/brutally,
``c`` chain reload, ``C`` cheap mode, ``p`` pause/resume, ``P`` rewrite the pidfiles, ``f``
fork a new master on the same sockets, ``s`` stats to the log, ``l``/``L`` reopen/rotate the
log, ``B`` ask the emperor for reinforcements, ``+``/``-`` one worker more/less in cheaper
mode (``vassal.services.cheaper``). ``E`` (emperor rescan) and ``S`` (subscriptions) log
that they are not available in this instance.
Newlines and spaces are skipped; any other byte is logged as an unknown command.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from vassal.log import log
from vassal.services import Service, log_verbose
from vassal.services.control import FIFO_COMMANDS


class FifoError(OSError):
    """The FIFO cannot be made: the instance cannot start (uWSGI exits 1)."""


class MasterFifo(Service):
    name = "master-fifo"

    def __init__(self, paths: list[str], control: Any) -> None:
        self.paths = paths
        self.control = control
        self.slot = 0
        self.fd = -1

    def path(self) -> str:
        return self.paths[self.slot] if self.slot < len(self.paths) else self.paths[0]

    def open(self) -> None:
        path = self.path()
        try:
            if os.path.lexists(path) and not stat.S_ISFIFO(os.lstat(path).st_mode) and os.path.isdir(path):
                raise FifoError(f"master-fifo {path}: is a directory")
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            os.mkfifo(path, 0o600)
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FifoError:
            raise
        except OSError as exc:
            raise FifoError(f"master-fifo {path}: {exc.strerror}") from None
        os.set_inheritable(self.fd, False)

    def start(self, master: Any) -> None:
        if self.fd < 0:
            self.open()

    def in_worker(self, wid: int) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def fds(self) -> list[int]:
        return [self.fd] if self.fd >= 0 else []

    def on_ready(self, fd: int) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            log(f"uwsgi_master_fifo_manage()/read(): {exc.strerror}")
            data = b""
        for byte in data:
            self.command(chr(byte))
        if not data:
            # the writer went away: a fresh fifo for the next one (on the active slot)
            os.close(self.fd)
            self.fd = -1
            try:
                self.open()
            except FifoError as exc:
                log(f"imperium: {exc}")

    def command(self, c: str) -> None:
        if c.isdigit():
            self.slot = int(c)
            log_verbose(f"active master fifo is now {self.path()}")
            return
        func = FIFO_COMMANDS.get(c)
        if func is not None:
            self.control.run(func)
        elif not c.isspace() and c != "\0":
            log(f"master-fifo {self.path()}: unknown command {c!r} (ignored)")

    def finish(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
