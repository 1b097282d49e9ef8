"""The emperor stats server (``emperor-stats`` / ``emperor-stats-server``).

Each connection gets one JSON document and is closed, as uWSGI's ``emperor_send_stats``
does. Keys, order and types are uWSGI 2.0's; the text layout too (tab indentation and one
item per line, or compact with ``stats-minified``). Strings are escaped properly where
uWSGI would print them raw. Differences: ``version`` is ours, and ``throttle_level`` is
the computed global level (uWSGI 2.0 always prints 0 there).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from emperor.logs import log

if TYPE_CHECKING:
    from emperor.core import Emperor

try:
    from vassal.options import VERSION
except Exception:  # the option table is another package's; never let stats depend on it
    VERSION = "2.0.21-imperium"


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


def _u(value: float) -> int:
    """uWSGI prints these as unsigned integers (time_t seconds)."""
    return max(0, int(value))


def render(emperor: Emperor, minified: bool = False) -> bytes:
    w = _Writer(minified)
    w.keyval("version", VERSION)
    w.keylong("pid", os.getpid())
    w.keylong("uid", os.getuid())
    w.keylong("gid", os.getgid())
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    w.keyval("cwd", cwd)
    w.key("emperor")
    w.list_open()
    ids = [m.id for m in emperor.monitors]
    for i, arg in enumerate(ids):
        w.string(arg)
        if i < len(ids) - 1:
            w.comma()
    w.list_close()
    w.comma()
    w.keylong("emperor_tyrant", int(emperor.settings.tyrant))
    w.keylong("throttle_level", emperor.throttle.level_ms)
    w.key("vassals")
    w.list_open()
    vassals = list(emperor.vassals.values())
    for i, v in enumerate(vassals):
        w.object_open()
        w.keyval("id", v.name)
        w.keylong("pid", v.pid)  # signed in uWSGI (-1 before the first spawn)
        shown = v.shown()  # wall-clock moments, derived from the vassal's lifecycle
        w.keylong("born", _u(v.born))
        w.keylong("last_mod", _u(v.last_mod))
        w.keylong("last_heartbeat", _u(shown["last_heartbeat"]))
        w.keylong("loyal", v.loyal)
        w.keylong("ready", v.ready)
        w.keylong("accepting", v.accepting)
        w.keylong("last_loyal", _u(shown["last_loyal"]))
        w.keylong("last_ready", _u(shown["last_ready"]))
        w.keylong("last_accepting", _u(shown["last_accepting"]))
        w.keylong("first_run", _u(shown["first_run"]))
        w.keylong("last_run", _u(shown["last_run"]))
        w.keylong("cursed", _u(shown["cursed"]))
        w.keylong("zerg", v.zerg)
        w.keyval("on_demand", v.socket_name or "")
        w.keylong("uid", v.uid if v.uid is not None else os.getuid())
        w.keylong("gid", v.gid if v.gid is not None else os.getgid())
        w.keyval("monitor", v.monitor.id if v.monitor is not None else "")
        w.keylong("respawns", v.respawns, comma=False)
        w.object_close()
        if i < len(vassals) - 1:
            w.comma()
    w.list_close()
    w.comma()
    w.key("blacklist")
    w.list_open()
    items = list(emperor.blacklist)
    for i, item in enumerate(items):
        w.object_open()
        w.keyval("id", item.id)
        w.keylong("throttle_level", item.throttle_level_ms())
        w.keylong("attempt", item.attempt)
        w.keylong("first_attempt", _u(item.first_wall))
        w.keylong("last_attempt", _u(item.last_wall), comma=False)
        w.object_close()
        if i < len(items) - 1:
            w.comma()
    w.list_close()
    w.object_close()
    return w.text().encode()


HTTP_HEADERS = (b"HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n"
                b"Content-Type: application/json\r\n\r\n")


class StatsServer:
    def __init__(self, address: str, render_fn: Callable[[], bytes], http: bool = False) -> None:
        self.address = address
        self.render_fn = render_fn
        self.http = http
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if ":" in self.address:
            host, _, port = self.address.rpartition(":")
            self.server = await asyncio.start_server(self._client, host or "0.0.0.0", int(port),
                                                     reuse_address=True)
        else:
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass
            self.server = await asyncio.start_unix_server(self._client, self.address)
        sock = self.server.sockets[0]
        log(f"*** Emperor stats server enabled on {self.address} fd: {sock.fileno()} ***")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.http:
                # read (and ignore) the request head, as uwsgi_send_http_stats does
                try:
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 4)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                    pass
                writer.write(HTTP_HEADERS)
            writer.write(self.render_fn())
            await asyncio.wait_for(writer.drain(), 4)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            if ":" not in self.address:
                try:
                    os.unlink(self.address)
                except OSError:
                    pass
