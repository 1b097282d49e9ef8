"""The emperor's control socket (``emperor-control-socket PATH``) and the operator's holds.

A local UNIX stream socket, created mode 0600 (access is by file permissions: put it in a
directory whose permissions say who may drive the emperor). A client sends one line,
``COMMAND [NAME]``, and gets one JSON document back (``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``), then the connection is closed. ``imperium ctl`` is
that client. Commands:

- ``list``: every vassal (the rows of emperor.view, as the stats server shows them, plus
  its state and hold); ``status NAME``: one vassal, with its blacklist entry;
- ``reload NAME``: what a touch of its config does (byte 1, the config again);
- ``stop NAME``: stop it and keep it stopped (its monitor still names it) until ``resume``;
- ``pause NAME``: leave it as it is: config changes, additions and removals of that name
  wait (a crash is still respawned) until ``resume``;
- ``resume NAME``: lift a stop or a pause; what its monitors say now is applied at once;
- ``blacklist``: the blacklisted names; ``clear-blacklist``: forget them (SIGURG) and start
  the ones waiting for their back-off now;
- ``reopen-logs``: reopen the emperor's log file and the vassals' log files (SIGUSR2).

A name that is not known is an error naming it; nothing a client sends can stop the
emperor (one line of at most 64 KiB, a deadline for the whole exchange, at most
``MAX_CLIENTS`` at a time, the oldest dropped beyond that).

The path is taken safely: a socket some live process listens on is refused (another
emperor?), a stale one left by a dead emperor is replaced, anything else that exists there
is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from dataclasses import fields
from enum import Enum
from typing import TYPE_CHECKING, Any

from emperor.logs import log, log_verbose
from emperor.stats import drop_oldest
from emperor.view import snapshot

if TYPE_CHECKING:
    from emperor.core import Emperor

MAX_LINE = 65536
MAX_CLIENTS = 16
TIMEOUT = 5.0


class Hold(Enum):
    PAUSED = "paused"
    STOPPED = "stopped"


class ControlError(Exception):
    """The control socket cannot be set up: one line naming the path."""


def as_dict(row: Any) -> dict[str, Any]:
    """A row of emperor.view as a dict (dataclasses.asdict deep-copies: too slow for 1000)."""
    return {name: getattr(row, name) for name in _field_names(type(row))}


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    return names


def bind_unix(path: str, mode: int = 0o600) -> socket.socket:
    """Listen on ``path``: refuse a live socket or a non-socket, replace a stale socket."""
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{path} exists and is not a socket: refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # stale: nobody listens there any more
        except OSError as exc:
            raise ControlError(f"{path}: cannot check the existing socket: {exc.strerror or exc}") from None
        else:
            raise ControlError(f"{path}: a live process listens on it (another emperor?): "
                               "refusing to take it over")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot bind {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    sock.listen(16)
    sock.setblocking(False)
    return sock


class Control:
    """The socket, its clients, and the holds (name -> Hold) that emperor.core obeys."""

    def __init__(self, emperor: Emperor, path: str | None) -> None:
        self.emperor = emperor
        self.path = path
        self.holds: dict[str, Hold] = {}
        self.sock: socket.socket | None = None
        self.ino: tuple[int, int] | None = None
        self.clients: dict[asyncio.Task, socket.socket] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind (ControlError when the path cannot be taken) and serve from ``loop``."""
        self.loop = loop
        if not self.path:
            return
        self.sock = bind_unix(self.path)
        st = os.stat(self.path)
        self.ino = (st.st_dev, st.st_ino)
        loop.add_reader(self.sock.fileno(), self._accept)
        log(f"*** Emperor control socket enabled on {self.path} fd: {self.sock.fileno()} ***")

    def _accept(self) -> None:
        assert self.sock is not None and self.loop is not None
        for _ in range(16):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            while len(self.clients) >= MAX_CLIENTS:
                drop_oldest(self.clients)
            self.clients[self.loop.create_task(self._serve(conn))] = conn

    async def _serve(self, conn: socket.socket) -> None:
        assert self.loop is not None
        try:
            async with asyncio.timeout(TIMEOUT):
                data = b""
                while b"\n" not in data and len(data) < MAX_LINE:
                    chunk = await self.loop.sock_recv(conn, 4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.split(b"\n", 1)[0].decode("utf-8", "surrogateescape").strip()
                answer = self.execute(line)
                await self.loop.sock_sendall(conn, json.dumps(answer).encode("utf-8", "surrogateescape")
                                             + b"\n")
        except (OSError, TimeoutError):
            pass
        finally:
            self.clients.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            conn.close()

    # --- commands --------------------------------------------------------------------------

    def execute(self, line: str) -> dict[str, Any]:
        command, _, name = line.partition(" ")
        handler = COMMANDS.get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r} (one of {', '.join(COMMANDS)})"}
        takes_name = command in NAMED
        if takes_name and not name:
            return {"ok": False, "error": f"{command} needs a vassal name"}
        if not takes_name and name:
            return {"ok": False, "error": f"{command} takes no argument"}
        try:
            return handler(self, name) if takes_name else handler(self)
        except Exception as exc:  # a command must never take the emperor down
            log(f"[emperor] control command {line!r}: {type(exc).__name__}: {exc}")
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def known(self, name: str) -> bool:
        e = self.emperor
        return (name in e.vassals or name in e.claims or name in self.holds
                or e.blacklist.check(name) is not None)

    def _unknown(self, name: str) -> dict[str, Any]:
        return {"ok": False, "error": f"no vassal named {name}"}

    def cmd_list(self) -> dict[str, Any]:
        view = snapshot(self.emperor)
        rows = [as_dict(r) for r in view.vassals]
        for name, hold in view.held:  # stopped ones have no process, still listed
            rows.append({"id": name, "state": hold, "hold": hold, "pid": -1})
        return {"ok": True, "vassals": rows}

    def cmd_status(self, name: str) -> dict[str, Any]:
        if not self.known(name):
            return self._unknown(name)
        view = snapshot(self.emperor)
        row = view.vassal(name)
        hold = self.holds.get(name)
        vassal = as_dict(row) if row is not None else {
            "id": name, "pid": -1, "hold": hold.value if hold else None,
            "state": hold.value if hold else ("blacklisted" if self.emperor.blacklist.check(name)
                                              else "waiting")}
        entry = next((as_dict(b) for b in view.blacklist if b.id == name), None)
        return {"ok": True, "vassal": vassal, "blacklist": entry}

    def cmd_reload(self, name: str) -> dict[str, Any]:
        e = self.emperor
        v = e.vassals.get(name)
        if v is None:
            return self._unknown(name) if not self.known(name) else \
                {"ok": False, "error": f"vassal {name} has no process to reload"}
        if v.status != 0:
            return {"ok": False, "error": f"vassal {name} is going down"}
        log_verbose(f"[emperor] reload of vassal {name} asked on the control socket")
        if not v.reload(e.clock.wall()):
            v.curse()
        return {"ok": True}

    def cmd_stop(self, name: str) -> dict[str, Any]:
        if not self.known(name):
            return self._unknown(name)
        self.holds[name] = Hold.STOPPED
        log_verbose(f"[emperor] vassal {name} stopped on the control socket (held until resumed)")
        self.emperor.reconcile(name)
        return {"ok": True}

    def cmd_pause(self, name: str) -> dict[str, Any]:
        if not self.known(name):
            return self._unknown(name)
        if self.holds.get(name) is Hold.STOPPED:
            return {"ok": False, "error": f"vassal {name} is stopped (resume it first)"}
        self.holds[name] = Hold.PAUSED
        log_verbose(f"[emperor] vassal {name} paused on the control socket")
        return {"ok": True}

    def cmd_resume(self, name: str) -> dict[str, Any]:
        if name not in self.holds:
            return self._unknown(name) if not self.known(name) else \
                {"ok": False, "error": f"vassal {name} is neither paused nor stopped"}
        del self.holds[name]
        log_verbose(f"[emperor] vassal {name} resumed on the control socket")
        self.emperor.reconcile(name)
        return {"ok": True}

    def cmd_blacklist(self) -> dict[str, Any]:
        return {"ok": True, "blacklist": [as_dict(b) for b in snapshot(self.emperor).blacklist]}

    def cmd_clear_blacklist(self) -> dict[str, Any]:
        e = self.emperor
        n = len(e.blacklist)
        e.cleanup_blacklist()
        for name in list(e.retry):
            e.cancel_retry(name)
            e.reconcile(name)
        return {"ok": True, "cleared": n}

    def cmd_reopen_logs(self) -> dict[str, Any]:
        self.emperor.reopen_logs()
        return {"ok": True}

    # --- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        for task in list(self.clients):
            task.cancel()
        self.clients.clear()
        if self.sock is None:
            return
        if self.loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.sock = None
        assert self.path is not None
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self.ino:  # still ours: do not remove a successor's
                os.unlink(self.path)


COMMANDS = {
    "list": Control.cmd_list, "status": Control.cmd_status, "reload": Control.cmd_reload,
    "stop": Control.cmd_stop, "pause": Control.cmd_pause, "resume": Control.cmd_resume,
    "blacklist": Control.cmd_blacklist, "clear-blacklist": Control.cmd_clear_blacklist,
    "reopen-logs": Control.cmd_reopen_logs,
}
NAMED = frozenset({"status", "reload", "stop", "pause", "resume"})
