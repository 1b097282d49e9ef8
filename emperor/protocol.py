"""The emperor fd protocol, shared by the emperor and by vassals.

uWSGI 2.0 talks to each vassal over one end of an AF_UNIX stream socketpair whose number the
vassal finds in ``UWSGI_EMPEROR_FD``. Messages are single bytes (see ``shared/spec``). A
config that did not come from a file travels over a second socketpair named by
``UWSGI_EMPEROR_FD_CONFIG``, framed by a 4-byte uwsgi packet header (modifier1 115).

This module has no dependency on the rest of Imperium so that any Python program can import
it to be a well-behaved vassal::

    from emperor.protocol import VassalLink
    link = VassalLink.from_environ()
    if link:
        link.spawned(); link.accepting(); link.loyal()
        ...            # select() on link.fileno(); link.read_command() tells stop/reload
"""

from __future__ import annotations

import os
import socket
import struct
from enum import IntEnum

ENV_FD = "UWSGI_EMPEROR_FD"
ENV_CONFIG_FD = "UWSGI_EMPEROR_FD_CONFIG"
CONFIG_MODIFIER1 = 115
#: exit status that tells the emperor "remove me for good" (UWSGI_EXILE_CODE)
EXILE_CODE = 26
RELOAD_CODE = 17
END_CODE = 30


class ToVassal(IntEnum):
    """Bytes the emperor sends to a vassal."""

    STOP = 0
    RELOAD = 1
    GRACEFUL_STOP = 2


class ToEmperor(IntEnum):
    """Bytes a vassal sends to its emperor."""

    SPAWNED = 1
    CONFIG_REQUEST = 2
    ACCEPTING = 5
    LOYAL = 17
    VOLUNTARY_SHUTDOWN = 22
    HEARTBEAT = 26
    SOS = 30


def pack_config(config: bytes) -> bytes:
    """Frame a config for the config fd: uwsgi header (115, le16 size, 0) then the bytes."""
    if len(config) > 0xFFFF:
        raise ValueError(f"config of {len(config)} bytes does not fit a uwsgi packet (max 65535)")
    return struct.pack("<BHB", CONFIG_MODIFIER1, len(config), 0) + config


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes or raise EOFError."""
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise EOFError("emperor config fd closed")
        chunks += chunk
    return bytes(chunks)


def read_config(sock: socket.socket) -> bytes:
    """Read one framed config from the config fd (blocking)."""
    modifier1, size, _modifier2 = struct.unpack("<BHB", recv_exact(sock, 4))
    if modifier1 != CONFIG_MODIFIER1:
        raise ValueError(f"unexpected modifier1 {modifier1} on the emperor config fd")
    return recv_exact(sock, size)


class VassalLink:
    """The vassal's end of the emperor protocol."""

    def __init__(self, fd: int, config_fd: int | None = None) -> None:
        self.sock = socket.socket(fileno=fd)
        self.config_sock = socket.socket(fileno=config_fd) if config_fd is not None else None
        self._config_cache: bytes | None = None

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None, *, pop: bool = True) -> VassalLink | None:
        """Build the link from ``UWSGI_EMPEROR_FD``; None when not started by an emperor.

        With ``pop`` the variables are removed so that children do not believe they are vassals.
        """
        env = os.environ if environ is None else environ
        raw = env.get(ENV_FD)
        if raw is None:
            return None
        raw_cfg = env.get(ENV_CONFIG_FD)
        if pop:
            env.pop(ENV_FD, None)
            env.pop(ENV_CONFIG_FD, None)
        return cls(int(raw), int(raw_cfg) if raw_cfg else None)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: ToEmperor) -> bool:
        """Send one byte; False when the emperor is gone."""
        try:
            self.sock.send(bytes([int(message)]))
            return True
        except OSError:
            return False

    def spawned(self) -> bool:
        return self.send(ToEmperor.SPAWNED)

    def accepting(self) -> bool:
        return self.send(ToEmperor.ACCEPTING)

    def loyal(self) -> bool:
        return self.send(ToEmperor.LOYAL)

    def heartbeat(self) -> bool:
        return self.send(ToEmperor.HEARTBEAT)

    def voluntary_shutdown(self) -> bool:
        return self.send(ToEmperor.VOLUNTARY_SHUTDOWN)

    def sos(self) -> bool:
        return self.send(ToEmperor.SOS)

    def read_command(self) -> ToVassal | int | None:
        """Read one command once select() said readable.

        Returns a ``ToVassal`` member, the raw byte for a message this version does not know
        (a newer emperor may send more; callers ignore it), or None when the emperor is gone.
        """
        try:
            data = self.sock.recv(1)
        except BlockingIOError:
            return -1
        except OSError:
            return None
        if not data:
            return None
        try:
            return ToVassal(data[0])
        except ValueError:
            return data[0]

    def read_config(self, *, request: bool = False, timeout: float = 5.0) -> bytes | None:
        """Return the config the emperor handed over, or None if it gave none.

        A 2.0 emperor pushes the config at spawn, at every reload *and* when asked with byte 2;
        a 2.1 emperor only when asked. So on reload we ask (``request=True``), wait for one
        packet, then drain whatever else is queued and keep the newest: that reads the right
        config from either emperor and never leaves a stale one behind for the next reload.
        """
        if self.config_sock is None:
            return None
        if request:
            self.send(ToEmperor.CONFIG_REQUEST)
        self.config_sock.settimeout(timeout)
        try:
            config = read_config(self.config_sock)
            self.config_sock.settimeout(0.05)
            while True:
                try:
                    config = read_config(self.config_sock)
                except (TimeoutError, BlockingIOError, EOFError):
                    break
        finally:
            self.config_sock.settimeout(None)
        return config

    def close(self) -> None:
        for s in (self.sock, self.config_sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
