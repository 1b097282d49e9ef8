"""The master's duties besides the workers, one small module each.

uWSGI's master does far more than fork workers: it runs attached daemons, cron tasks,
timers and signals, the spooler and mules, rotates logs, reads the master FIFO, runs hooks.
Each of those lives here as a ``Service``: the master's single select() loop asks every
service which fds to watch and how soon it wants a tick, hands it its ready fds, the exit
of the children it started and the moment the instance starts stopping. The master itself
stays a loop over workers; a new duty is a new module plus one line in ``vassal.instance``.

Services must follow the master's rule: no threads (the master forks workers at any time).
"""

from __future__ import annotations

import time
from typing import Any

from vassal.log import log


def log_verbose(line: str) -> None:
    """uWSGI's ``uwsgi_log_verbose``: the line prefixed with the ctime() date."""
    log(f"{time.ctime()} - {line}")


class Service:
    """A duty of the master. Every method has a do-nothing default."""

    #: short name for logs and the stats server
    name = "service"

    def start(self, master: Any) -> None:
        """Called once, in the master, before the first worker is forked."""

    def running(self) -> None:
        """Called once the first workers are forked, as the master loop begins."""

    def fds(self) -> list[int]:
        """File descriptors the master loop should select() on for reading."""
        return []

    def on_ready(self, fd: int) -> None:
        """One of ``fds()`` is readable."""

    def wfds(self) -> list[int]:
        """File descriptors the master loop should select() on for writing."""
        return []

    def on_writable(self, fd: int) -> None:
        """One of ``wfds()`` is writable."""

    def timeout(self, now: float) -> float | None:
        """Seconds (monotonic) until this service wants ``tick``; None: no wish."""
        return None

    def tick(self, now: float) -> None:
        """Periodic duty; ``now`` is ``time.monotonic()``."""

    def child_exited(self, pid: int, status: int) -> bool:
        """A child of the master that is not a worker exited: True if it was ours."""
        return False

    def in_worker(self, wid: int) -> None:
        """Called in a freshly forked worker: close what the worker must not hold."""

    def stopping(self, reload: bool) -> None:
        """The instance began to reload (``reload``) or to shut down."""

    def emperor(self, message: str) -> None:
        """The emperor sent "stop" or "reload", or its link was "lost"."""

    def busy(self) -> bool:
        """True while the master must not finish yet (children still stopping)."""
        return False

    def finish(self) -> None:
        """The master is about to exit or re-exec: last cleanup."""

    def kept_sockets(self) -> list[Any]:
        """Listening sockets (ListenSocket) the next incarnation inherits on a reload."""
        return []


def where(config: Any, name: str, value: str) -> str:
    """The file and line (or the command line) where ``name = value`` was given."""
    for given, origin in config.occurrences(name):
        if str(given) == value:
            return str(origin)
    return "?"


def parse_each(config: Any, names: tuple[str, ...], parse: Any, error: type[Exception]) -> list[Any]:
    """``parse(name, value)`` for every option of ``names``, in config order; the first
    ``error`` raised comes back with the file and line of the value appended."""
    out = []
    for name, value in config.items():
        if name in names:
            try:
                out.append(parse(name, value))
            except error as exc:
                raise error(f"{exc} ({where(config, name, value)})") from None
    return out
