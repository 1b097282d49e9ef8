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

It also holds the two other conversations a supervised process has with what watches it,
shared by the emperor and the instance: systemd's notify protocol (``SystemdNotify``) and
the answer to a Prometheus scrape (``scrape_answer``).
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


# --- systemd's notify protocol (sd_notify(3)) ---------------------------------------------------

ENV_NOTIFY_SOCKET = "NOTIFY_SOCKET"


class SystemdNotify:
    """The other supervisor a process may have: systemd, told through ``$NOTIFY_SOCKET``.

    One datagram per message (``READY=1``, ``STATUS=...``, ``RELOADING=1``, ``STOPPING=1``,
    ``WATCHDOG=1``: newline-separated ``KEY=VALUE`` lines), sent without ever waiting: a
    systemd that does not read its socket loses a status line, never the sender's time. An
    address starting with ``@`` is in the abstract namespace. Used by the emperor and by an
    instance run as a service of its own (``Type=notify``), as uWSGI's core/notify.c does.
    """

    def __init__(self, address: str) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)

    @classmethod
    def from_environ(cls, env: dict[str, str] | None = None, pop: bool = True) -> SystemdNotify | None:
        """From ``$NOTIFY_SOCKET`` (removed from the environment with ``pop``: children must
        not talk to systemd in our name)."""
        environ = os.environ if env is None else env
        address = environ.pop(ENV_NOTIFY_SOCKET, None) if pop else environ.get(ENV_NOTIFY_SOCKET)
        if not address or not (address.startswith("/") or address.startswith("@")):
            return None
        try:
            return cls(address)
        except OSError:
            return None

    def send(self, *lines: str) -> bool:
        """``send("READY=1", "STATUS=...")``; False when systemd did not take it."""
        try:
            self.sock.sendto(("\n".join(lines) + "\n").encode("utf-8", "replace"), self.address)
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


# --- a Prometheus scrape ---------------------------------------------------------------------

HTTP_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request"}


def scrape_answer(request: bytes, registry: object, path: str = "/metrics") -> bytes:
    """The whole HTTP/1.0 answer to one request read from a scrape connection: the text
    exposition of ``registry`` (prometheus_client) on GET/HEAD ``path``, in the format the
    ``Accept`` header asks for (OpenMetrics or the classic text format); 404 elsewhere."""
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = head[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return _http(400, b"bad request\n", "text/plain")
    method, target = parts[0], parts[1].split("?", 1)[0]
    if target != path:
        return _http(404, b"not found: the metrics are at " + path.encode() + b"\n", "text/plain")
    if method not in ("GET", "HEAD"):
        return _http(405, b"GET or HEAD\n", "text/plain")
    accept = ""
    for line in head[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "accept":
            accept = value.strip()
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    body = encoder(registry)
    return _http(200, b"" if method == "HEAD" else body, content_type, len(body))


def _http(status: int, body: bytes, content_type: str, length: int | None = None) -> bytes:
    return (f"HTTP/1.0 {status} {HTTP_REASONS[status]}\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body) if length is None else length}"
            f"\r\n\r\n").encode() + body


def request_complete(data: bytes) -> bool:
    """The head of an HTTP request has arrived (or enough to give up reading: 8 KiB)."""
    return b"\r\n\r\n" in data or len(data) >= 8192
