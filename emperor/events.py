"""What imperial monitors tell the emperor, and the interface every monitor implements.

A monitor turns its source of truth into events; the emperor folds them into the desired
vassal set. Monitors never touch vassal state themselves (rule 1 of ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

#: config name endings a vassal may have (uwsgi_emperor_is_valid); more via emperor-extra-extension
VALID_EXTENSIONS = (".xml", ".ini", ".yml", ".yaml", ".js", ".json")
MAX_NAME_LENGTH = 254


@dataclass(frozen=True)
class Touch:
    """A vassal exists (or changed) in the monitor's source.

    ``name`` is the vassal's identity. ``path`` is what the vassal is told to load when the
    config lives in a file (None: the name itself). ``config`` is the config body when the
    source holds it (pg, mongodb, amqp, zmq): it is then handed over the config fd.
    An ``mtime`` newer than the running vassal's means reload.
    """

    name: str
    mtime: float
    config: bytes | None = None
    path: str | None = None
    uid: int | None = None
    gid: int | None = None
    socket: str | None = None  # on-demand socket name


@dataclass(frozen=True)
class Destroy:
    """The vassal is gone from the source: stop it."""

    name: str


@dataclass(frozen=True)
class Sync:
    """A complete listing of the source succeeded and these are all the names it holds.

    The emperor stops vassals owned by this monitor whose names are missing. A monitor sends
    Sync only after a *successful* full read: unknown is not empty.
    """

    names: frozenset[str]


@dataclass(frozen=True)
class Unavailable:
    """The source cannot be read right now; its vassals are left alone."""

    reason: str


@dataclass(frozen=True)
class Available:
    """The source is reachable again (after an Unavailable)."""


Event = Touch | Destroy | Sync | Unavailable | Available


def name_bytes(name: str) -> bytes | None:
    """A vassal name as the bytes on disk and in argv; None if it has no byte form.

    Names are ``str`` throughout the emperor, and a name that is not UTF-8 (a file name
    from a directory listing, a zmq frame) is carried with ``surrogateescape``, as
    ``os.fsdecode`` gives it: uWSGI handles names as plain bytes and starts such a vassal,
    so do we. Only a lone surrogate that no byte string decodes to has no byte form.
    """
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def as_name(value: object) -> str | None:
    """A name from a client library (``str``, or ``bytes`` where it could not decode)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "surrogateescape")
    return None


def printable(name: str) -> str:
    """A name for one log line: undecodable bytes as ``\\xNN``, control characters escaped."""
    raw = name_bytes(name)
    text = raw.decode("utf-8", "backslashreplace") if raw is not None else ascii(name)[1:-1]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def is_valid_name(name: str, extra_extensions: tuple[str, ...] = ()) -> bool:
    """uWSGI accepts a vassal only by its ending and a name shorter than 255 bytes.

    Any bytes otherwise, as uWSGI (core/emperor.c ``uwsgi_emperor_is_valid``); a NUL cannot
    be in a C string, so a name holding one is refused here rather than by ``execve``.
    """
    if not isinstance(name, str) or not name or "\0" in name:
        return False
    raw = name_bytes(name)
    if raw is None or len(raw) > MAX_NAME_LENGTH:
        return False
    base = name.split(":", 1)[0] if name.endswith(":zerg") else name
    return base.endswith(VALID_EXTENSIONS + tuple(extra_extensions))


@dataclass
class MonitorContext:
    """What the emperor tells every monitor about its settings."""

    freq: float = 3.0  # emperor-freq: period of the safety-net rescan
    tyrant: bool = False
    tyrant_nofollow: bool = False  # emperor-tyrant-nofollow: uid/gid of the symlink itself
    follow_symlinks: bool = True  # off with emperor-nofollow
    extra_extensions: tuple[str, ...] = ()
    fleet_member: str | None = None  # emperor-fleet-member: this emperor's name in a zoo:// fleet
    fleet_labels: tuple[str, ...] = ()  # emperor-fleet-labels, as given (KEY=VALUE,...)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("imperium.emperor"))


class Monitor(ABC):
    """An async source of events for one ``--emperor`` argument.

    Subclasses set ``scheme`` and implement ``run``, which loops until cancelled and calls
    ``self.emit(event)``. Blocking client libraries run in a thread and use
    ``self.emit_threadsafe``. ``run`` must not raise for an unreachable source: it emits
    ``Unavailable`` and retries with backoff.
    """

    scheme: ClassVar[str]
    #: the source can be listed (a full scan ends with ``Sync`` or ``Unavailable``); a source
    #: of messages only (amqp, zmq) has no first scan to wait for (systemd's READY=1)
    lists: ClassVar[bool] = True

    def __init__(self, arg: str, emit: Callable[[Monitor, Event], None], ctx: MonitorContext) -> None:
        self.arg = arg
        self._emit = emit
        self.ctx = ctx
        self.log = ctx.log
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def id(self) -> str:
        """How the emperor stats and logs name this monitor."""
        return self.arg

    def emit(self, event: Event) -> None:
        self._emit(self, event)

    def emit_threadsafe(self, event: Event) -> None:
        assert self._loop is not None, "start() first"
        self._loop.call_soon_threadsafe(self._emit, self, event)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.run()

    @abstractmethod
    async def run(self) -> None:
        """Watch the source until cancelled."""

    def valid(self, name: str) -> bool:
        return is_valid_name(name, self.ctx.extra_extensions)
