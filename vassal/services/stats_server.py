"""The vassal's stats server (``stats``, ``stats-http``) as a master duty.

The master's select loop also respawns workers, runs harakiri and obeys signals, so a
stats client must never hold it: the listening socket and every client connection are
non-blocking and watched by that loop. A client gets the document (plain: at once; with
``stats-http``: after one read of its request, as ``uwsgi_send_http_stats``) and is closed
when all of it is written or when its deadline passes (``socket-timeout``, 4 s by
default, as uWSGI's wait for the request). At most ``MAX_CLIENTS`` are held at a time:
a newcomer beyond that closes the oldest one, so idle connections can neither exhaust the
master's descriptors nor lock out a real client for longer than it takes to connect.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from emperor.protocol import request_complete
from vassal.log import log
from vassal.services import Service
from vassal.sockets import parse_address
from vassal.stats import http_wrap

#: stats clients held at once; beyond that the oldest is dropped
MAX_CLIENTS = 64
#: how much of a stats-http request is read (uWSGI reads once, into 4096 bytes)
REQUEST_READ = 4096
#: connections accepted per readiness of the listening socket (others wait in the backlog)
ACCEPT_BATCH = 16


class _Client:
    __slots__ = ("sock", "fd", "out", "deadline", "reading", "request")

    def __init__(self, sock: socket.socket, deadline: float, reading: bool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.out = b""
        self.deadline = deadline
        self.reading = reading
        self.request = b""


class StatsService(Service):
    """The listening stats socket and the connections being answered."""

    name = "stats"

    def __init__(self, address: str, http: bool, minified: bool,
                 make_doc: Callable[[bool], str], timeout: float = 4.0,
                 max_clients: int = MAX_CLIENTS,
                 respond: Callable[[bytes], bytes] | None = None, what: str = "Stats") -> None:
        self.address = address
        #: an HTTP server instead (the Prometheus endpoint): the request's head is read, the
        #: whole answer is ``respond(request)``
        self.respond = respond
        self.what = what
        self.http = http or respond is not None
        self.minified = minified
        self.make_doc = make_doc
        self.timeout_s = timeout
        self.max_clients = max_clients
        self.clients: dict[int, _Client] = {}  # fd -> client, oldest first
        self.sock: socket.socket | None = _bind(address, what.lower())

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    # --- the Service interface ----------------------------------------------------------------

    def start(self, master: Any) -> None:
        log(f"*** {self.what} server enabled on {self.address} fd: {self.fileno()} ***")

    def fds(self) -> list[int]:
        listening = [self.sock.fileno()] if self.sock is not None else []
        return listening + [fd for fd, c in self.clients.items() if c.reading]

    def wfds(self) -> list[int]:
        return [fd for fd, c in self.clients.items() if not c.reading]

    def on_ready(self, fd: int) -> None:
        if self.sock is not None and fd == self.sock.fileno():
            self._accept()
            return
        client = self.clients.get(fd)
        if client is None or not client.reading:
            return
        try:
            data = client.sock.recv(REQUEST_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        if self.respond is not None:
            client.request += data
            if not request_complete(client.request):
                return
            client.out = self.respond(client.request)
        else:
            client.out = http_wrap(self._doc())
        client.reading = False
        self.on_writable(fd)

    def on_writable(self, fd: int) -> None:
        client = self.clients.get(fd)
        if client is None or client.reading:
            return
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        client.out = client.out[sent:]
        if not client.out:
            self._drop(client)

    def timeout(self, now: float) -> float | None:
        if not self.clients:
            return None
        return max(0.0, min(c.deadline for c in self.clients.values()) - now)

    def tick(self, now: float) -> None:
        for client in [c for c in self.clients.values() if c.deadline <= now]:
            self._drop(client)

    def in_worker(self, wid: int) -> None:
        # a worker holds none of it (it must not answer, nor keep a client's socket open)
        for client in self.clients.values():
            client.sock.close()
        self.clients.clear()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def finish(self) -> None:
        self.close()

    # --- inside -------------------------------------------------------------------------------

    def _doc(self) -> bytes:
        return self.make_doc(self.minified).encode("utf-8", "surrogateescape")

    def _accept(self) -> None:
        assert self.sock is not None
        doc: bytes | None = None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and friends: the connection stays queued, tried next turn
            conn.setblocking(False)
            while len(self.clients) >= self.max_clients:
                self._drop(next(iter(self.clients.values())))
            client = _Client(conn, time.monotonic() + self.timeout_s, reading=self.http)
            self.clients[client.fd] = client
            if not self.http:
                if doc is None:  # one document for the whole batch
                    doc = self._doc()
                client.out = doc
                self.on_writable(client.fd)

    def _drop(self, client: _Client) -> None:
        self.clients.pop(client.fd, None)
        try:
            client.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client)
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        family, addr = parse_address(self.address)
        if family == socket.AF_UNIX and isinstance(addr, str) and not addr.startswith("\0"):
            try:
                os.unlink(addr)
            except OSError:
                pass


def _bind(address: str, what: str = "stats") -> socket.socket:
    family, addr = parse_address(address)
    if family == socket.AF_INET and addr[0] in ("", "0.0.0.0") and address.startswith(":"):  # type: ignore[index]
        addr = ("0.0.0.0", addr[1])  # type: ignore[index]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        elif isinstance(addr, str) and not addr.startswith("\0") and os.path.exists(addr):
            os.unlink(addr)
        sock.bind(addr)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind {what} server {address}: "
                      f"{os.strerror(exc.errno).lower() if exc.errno else exc}") from None
    sock.setblocking(False)
    return sock
