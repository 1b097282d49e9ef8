"""The emperor stats server (``emperor-stats`` / ``emperor-stats-server``).

The document is rendered from the emperor's read model (``emperor.view.snapshot``), the
one the Prometheus endpoint and the control socket answer from too. Each connection gets one JSON document and is closed, as uWSGI's ``emperor_send_stats``
does. Keys, order and types are uWSGI 2.0's; the text layout too (tab indentation and one
item per line, or compact with ``stats-minified``). Strings are escaped properly where
uWSGI would print them raw. Differences: ``version`` is ours, and ``throttle_level`` is
the computed global level (uWSGI 2.0 always prints 0 there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from emperor.logs import log
from emperor.protocol import request_complete

if TYPE_CHECKING:
    from emperor.view import EmperorView


class _Writer:
    """uWSGI's stats text layout: tabs for depth, one item per line, no outer indent."""

    def __init__(self, minified: bool) -> None:
        self.minified = minified
        self.out: list[str] = ["{" if minified else "{\n"]
        self.tabs = 1

    def _sym_nl(self, sym: str) -> None:
        self.out.append(sym if self.minified else sym + "\n")

    def _indent(self) -> None:
        if not self.minified:
            self.out.append("\t" * self.tabs)

    def comma(self) -> None:
        self._sym_nl(",")

    def key(self, key: str) -> None:
        self._indent()
        self.out.append(f"{json.dumps(key)}:")

    def keyval(self, key: str, value: str, comma: bool = True) -> None:
        self._indent()
        self.out.append(f"{json.dumps(key)}:{json.dumps(value)}")
        if comma:
            self.comma()

    def keylong(self, key: str, value: int, comma: bool = True) -> None:
        self._indent()
        self.out.append(f"{json.dumps(key)}:{int(value)}")
        if comma:
            self.comma()

    def string(self, value: str) -> None:
        self.out.append(json.dumps(value))

    def list_open(self) -> None:
        self.tabs += 1
        self._sym_nl("[")

    def list_close(self) -> None:
        if not self.minified:
            self.out.append("\n")
            self.tabs -= 1
            self._indent()
        self.out.append("]")

    def object_open(self) -> None:
        self._indent()
        if not self.minified:
            self.tabs += 1
        self._sym_nl("{")

    def object_close(self) -> None:
        if not self.minified:
            self.out.append("\n")
            self.tabs -= 1
            self._indent()
        self.out.append("}")

    def text(self) -> str:
        return "".join(self.out)

    def flat_object(self, pairs: list[tuple[str, str]]) -> None:
        """An object of scalar values, written at once (the same text as object_open, one
        keyval/keylong per pair and object_close): the vassal list is made of these."""
        if self.minified:
            self.out.append("{" + ",".join(f"{_KEYS[k]}:{v}" for k, v in pairs) + "}")
            return
        inner = "\t" * (self.tabs + 1)
        self.out.append("\t" * self.tabs + "{\n" + ",\n".join(f"{inner}{_KEYS[k]}:{v}" for k, v in pairs)
                        + "\n" + "\t" * self.tabs + "}")


class _KeyCache(dict):
    """JSON text of the keys, computed once each."""

    def __missing__(self, key: str) -> str:
        text = self[key] = json.dumps(key)
        return text


_KEYS = _KeyCache()


def _u(value: float) -> int:
    """uWSGI prints these as unsigned integers (time_t seconds)."""
    return max(0, int(value))


def render(view: EmperorView, minified: bool = False) -> bytes:
    """uWSGI's emperor stats document from a snapshot (emperor.view)."""
    w = _Writer(minified)
    w.keyval("version", view.version)
    w.keylong("pid", view.pid)
    w.keylong("uid", view.uid)
    w.keylong("gid", view.gid)
    w.keyval("cwd", view.cwd)
    w.key("emperor")
    w.list_open()
    for i, m in enumerate(view.monitors):
        w.string(m.id)
        if i < len(view.monitors) - 1:
            w.comma()
    w.list_close()
    w.comma()
    w.keylong("emperor_tyrant", view.tyrant)
    w.keylong("throttle_level", view.throttle_level)
    w.key("vassals")
    w.list_open()
    vassals = view.vassals
    dumps = json.dumps
    for i, v in enumerate(vassals):
        # uWSGI's order and types; pid is signed there (-1 before the first spawn)
        w.flat_object([
            ("id", dumps(v.id)), ("pid", str(int(v.pid))), ("born", str(_u(v.born))),
            ("last_mod", str(_u(v.last_mod))), ("last_heartbeat", str(_u(v.last_heartbeat))),
            ("loyal", str(v.loyal)), ("ready", str(v.ready)), ("accepting", str(v.accepting)),
            ("last_loyal", str(_u(v.last_loyal))), ("last_ready", str(_u(v.last_ready))),
            ("last_accepting", str(_u(v.last_accepting))), ("first_run", str(_u(v.first_run))),
            ("last_run", str(_u(v.last_run))), ("cursed", str(_u(v.cursed))), ("zerg", str(v.zerg)),
            ("on_demand", dumps(v.on_demand)), ("uid", str(int(v.uid))), ("gid", str(int(v.gid))),
            ("monitor", dumps(v.monitor)), ("respawns", str(int(v.respawns)))])
        if i < len(vassals) - 1:
            w.comma()
    w.list_close()
    w.comma()
    w.key("blacklist")
    w.list_open()
    items = view.blacklist
    for i, item in enumerate(items):
        w.flat_object([("id", dumps(item.id)), ("throttle_level", str(int(item.throttle_level))),
                       ("attempt", str(int(item.attempt))),
                       ("first_attempt", str(_u(item.first_attempt))),
                       ("last_attempt", str(_u(item.last_attempt)))])
        if i < len(items) - 1:
            w.comma()
    w.list_close()
    w.object_close()
    return w.text().encode()


HTTP_HEADERS = (b"HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n"
                b"Content-Type: application/json\r\n\r\n")


#: stats clients held at once; a newcomer beyond that ends the oldest
MAX_CLIENTS = 64
#: connections accepted per readiness of the listening socket (others wait in the backlog)
ACCEPT_BATCH = 16


def drop_oldest(clients: dict[asyncio.Task, socket.socket]) -> None:
    """End the oldest of ``clients`` (task -> its connection, oldest first) to make room for
    a newcomer. The socket is closed once the task is done: after asyncio unregistered it
    (a task that started closes it in its own ``finally`` first), and also when the task is
    cancelled before it ever ran, which skips its ``finally``."""
    task = next(iter(clients))
    conn = clients.pop(task)
    task.add_done_callback(lambda _task: conn.close())
    task.cancel()


class StatsServer:
    """The emperor's stats socket, served from its loop without ever blocking it.

    Non-blocking accept, one task per client with a deadline for the whole exchange (the
    request read in ``stats-http`` mode, then the write), at most ``MAX_CLIENTS`` at a time:
    a newcomer beyond that ends the oldest, so a flood of idle connections costs neither
    descriptors nor a real client's answer. Clients accepted in the same loop turn share
    one rendered document.
    """

    def __init__(self, address: str, render_fn: Callable[[], bytes], http: bool = False,
                 timeout: float = 4.0, max_clients: int = MAX_CLIENTS,
                 respond: Callable[[bytes], bytes] | None = None, what: str = "stats") -> None:
        self.address = address
        self.render_fn = render_fn
        self.http = http
        #: an HTTP server instead (the Prometheus endpoint): the request's head is read and
        #: the whole answer is ``respond(request)``
        self.respond = respond
        self.what = what
        self.timeout = timeout
        self.max_clients = max_clients
        self.sock: socket.socket | None = None
        self.clients: dict[asyncio.Task, socket.socket] = {}  # being served, oldest first
        self._doc: bytes | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if ":" in self.address:
            host, _, port = self.address.rpartition(":")
            infos = socket.getaddrinfo(host or "0.0.0.0", int(port), type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
            family, _, _, _, addr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
            sock, addr = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), self.address
        try:
            sock.bind(addr)
            sock.listen(100)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self._loop.add_reader(sock.fileno(), self._accept)
        log(f"*** Emperor {self.what} server enabled on {self.address} fd: {sock.fileno()} ***")

    def _accept(self) -> None:
        assert self.sock is not None and self._loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and friends: it stays queued, tried at the next readiness
            conn.setblocking(False)
            while len(self.clients) >= self.max_clients:
                drop_oldest(self.clients)
            self.clients[self._loop.create_task(self._serve(conn))] = conn

    def document(self) -> bytes:
        """The rendered document, shared by every client served in this loop turn."""
        if self._doc is None:
            self._doc = self.render_fn()
            assert self._loop is not None
            self._loop.call_soon(self._expire)
        return self._doc

    def _expire(self) -> None:
        self._doc = None

    async def _serve(self, conn: socket.socket) -> None:
        assert self._loop is not None
        try:
            async with asyncio.timeout(self.timeout):
                if self.respond is not None:
                    request = b""
                    while not request_complete(request):
                        chunk = await self._loop.sock_recv(conn, 4096)
                        if not chunk:
                            return
                        request += chunk
                    await self._loop.sock_sendall(conn, self.respond(request))
                elif self.http:
                    # one read of the request, ignored, as uwsgi_send_http_stats does
                    if not await self._loop.sock_recv(conn, 4096):
                        return
                    await self._loop.sock_sendall(conn, HTTP_HEADERS + self.document())
                else:
                    await self._loop.sock_sendall(conn, self.document())
        except (OSError, TimeoutError):
            pass
        finally:
            self.clients.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            conn.close()

    async def close(self) -> None:
        if self.sock is not None and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for task in list(self.clients):
            task.cancel()
        self.clients.clear()
        if ":" not in self.address:
            with contextlib.suppress(OSError):
                os.unlink(self.address)
