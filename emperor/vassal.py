"""One vassal as the emperor sees it: a small state machine around one process.

The fields mirror uWSGI's ``struct uwsgi_instance`` (they are what the stats server shows).
``status`` is uWSGI's: 0 alive and wanted, 1 marked to die (stopped or cursed). The handle
talks to its process (bytes over the emperor fd, the config over the config fd, signals);
what to *do* about an event (respawn, blacklist, remove) is decided by ``emperor.core``,
which the handle calls back.

    (new) --start--> running --byte 1--> ready --byte 5--> accepting --byte 17--> loyal
       running --touch/SIGHUP--> reload (byte 1; ready/accepting reset; respawns+1)
       running --stop/destroy/byte 22--> status 1 (byte 0 or 2 sent, cursed_at set)
       running --EOF on the emperor fd--> cursed (status 1)
       status 1 for emperor-curse-tolerance --> SIGKILL (repeated every tolerance)
       process exit --> core: respawn (status 0), exile (exit 26) or removal (status 1)
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emperor.logs import log_verbose
from emperor.protocol import pack_config

if TYPE_CHECKING:
    from emperor.events import Monitor
    from emperor.spawn import Spawned


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by signal {sig} ({signal.Signals(sig).name})"
        except ValueError:
            return f"killed by signal {sig}"
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended with status {status}"


class VassalHandle:
    def __init__(self, name: str, monitor: Monitor | None, *, mtime: float, config: bytes | None,
                 uid: int | None, gid: int | None, cwd: str | None, config_arg: str,
                 vassals_dir: str | None, attention: set[VassalHandle] | None = None) -> None:
        self.name = name
        # the emperor's set of vassals its periodic check must look at (dying ones and
        # those sending heartbeats): the others cost it nothing
        self.attention = attention
        self.monitor = monitor
        self.config = config
        self.use_config = config is not None
        self.uid = uid
        self.gid = gid
        self.cwd = cwd
        self.config_arg = config_arg
        self.vassals_dir = vassals_dir
        now = time.time()
        self.born = mtime
        self.last_mod = mtime
        self.first_run = now
        self.last_run = now
        self.pid = -1
        self.status = 0
        self.cursed_at = 0.0
        self.last_heartbeat = 0.0
        self.loyal = 0
        self.last_loyal = 0.0
        self.ready = 0
        self.last_ready = 0.0
        self.accepting = 0
        self.last_accepting = 0.0
        self.respawns = 0
        self.zerg = 0
        self.socket_name: str | None = None
        self.voluntary = False  # stopped by its own byte 22
        self.asked_to_stop = False  # sent 0/2 by the emperor (a curse is not asking)
        self.exited = False
        self.proc: Spawned | None = None
        self._pending_config = b""
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- identity ------------------------------------------------------------------------------

    def launch_key(self) -> tuple[Any, ...]:
        """What makes two sources of the same name the same process (cwd and argument)."""
        return (self.cwd, self.config_arg, self.use_config)

    def alive(self) -> bool:
        return self.pid > 0 and not self.exited

    # --- the process ---------------------------------------------------------------------------

    def attach(self, proc: Spawned, loop: asyncio.AbstractEventLoop,
               on_readable: Callable[[VassalHandle], None]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._loop = loop
        loop.add_reader(proc.sock.fileno(), on_readable, self)
        if self.use_config:
            self.push_config()

    def detach_reader(self) -> None:
        if self.proc is not None and self._loop is not None:
            try:
                self._loop.remove_reader(self.proc.sock.fileno())
            except (ValueError, OSError):
                pass

    def read_bytes(self) -> bytes | None:
        """Whatever the vassal sent; None at EOF or on error (the vassal is gone)."""
        if self.proc is None:
            return None
        try:
            data = self.proc.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            return None
        return data or None

    def send(self, byte: int) -> bool:
        if self.proc is None:
            return False
        try:
            return self.proc.sock.send(bytes([byte])) == 1
        except OSError:
            return False

    def push_config(self) -> None:
        """Frame and send the config (uWSGI 2.0: at spawn, at reload, and on byte 2)."""
        if not self.use_config or self.proc is None or self.proc.config_sock is None:
            return
        try:
            packet = pack_config(self.config or b"")
        except ValueError as exc:
            log_verbose(f"[emperor] cannot push the config of vassal {self.name}: {exc}")
            return
        self._pending_config += packet
        self._flush_config()

    def _flush_config(self) -> None:
        assert self.proc is not None and self.proc.config_sock is not None
        sock = self.proc.config_sock
        try:
            while self._pending_config:
                n = sock.send(self._pending_config)
                self._pending_config = self._pending_config[n:]
        except (BlockingIOError, InterruptedError):
            if self._loop is not None:
                self._loop.add_writer(sock.fileno(), self._writable)
            return
        except OSError as exc:
            log_verbose(f"[uwsgi-emperor] write() config of vassal {self.name}: {exc}")
            self._pending_config = b""
        if self._loop is not None:
            try:
                self._loop.remove_writer(sock.fileno())
            except (ValueError, OSError):
                pass

    def _writable(self) -> None:
        if self.proc is not None and self.proc.config_sock is not None:
            self._flush_config()

    def signal(self, sig: int, *, group: bool = True) -> None:
        """Signal the vassal (and, with ``group``, every process of its group)."""
        if self.pid <= 0 or self.exited:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        if group:
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        self.detach_reader()
        if self.proc is not None:
            for s in (self.proc.sock, self.proc.config_sock):
                if s is None:
                    continue
                if self._loop is not None:
                    try:
                        self._loop.remove_writer(s.fileno())
                    except (ValueError, OSError):
                        pass
                try:
                    s.close()
                except OSError:
                    pass

    # --- uWSGI's operations ----------------------------------------------------------------------

    def reload(self, mtime: float) -> bool:
        """emperor_respawn: byte 1, config again, counters. False when the write failed."""
        if self.status > 0:
            return True
        if not self.send(1):
            return False
        self.push_config()
        self.respawns += 1
        self.last_mod = mtime
        self.last_run = time.time()
        self.ready = 0
        self.accepting = 0
        log_verbose(f"[emperor] reload the uwsgi instance {self.name}")
        return True

    def stop(self, graceful: bool = False) -> None:
        """emperor_stop: byte 0 (or 2), marked to die."""
        if self.status == 1:
            return
        if self.pid != -1 and not self.exited:
            self.send(2 if graceful else 0)
        self.asked_to_stop = True
        self.status = 1
        self.cursed_at = time.time()
        if self.attention is not None:
            self.attention.add(self)
        log_verbose(f"[emperor] stop the uwsgi instance {self.name}")

    def curse(self) -> None:
        """emperor_curse: the vassal's fd failed; it is marked to die."""
        if self.status == 1:
            return
        self.status = 1
        self.cursed_at = time.time()
        if self.attention is not None:
            self.attention.add(self)
        log_verbose(f"[emperor] curse the uwsgi instance {self.name} (pid: {self.pid})")

    def state(self) -> str:
        if self.status:
            return "dying"
        if self.loyal:
            return "loyal"
        if self.accepting:
            return "accepting"
        if self.ready:
            return "ready"
        return "starting"
