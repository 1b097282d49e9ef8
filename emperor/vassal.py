"""One vassal as the emperor sees it: its identity, its process and its ``Lifecycle``.

The fields mirror uWSGI's ``struct uwsgi_instance`` (they are what the stats server shows);
the state (phase, ready/accepting/loyal, the moments) lives in ``emperor.lifecycle`` and is
only changed through it. The handle talks to its process (bytes over the emperor fd, the
config over the config fd, signals); what to *do* about an event (respawn, blacklist,
remove) is decided by ``emperor.core``.

The emperor's ends of the socketpairs exist from the moment the handle asks for a process
(``open_channel``): bytes and a config written while the vassal is still ``STARTING`` wait
in the socket for it. ``attach`` is called when the process exists."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emperor.clock import Clock
from emperor.lifecycle import Kind, Lifecycle, Phase, wall
from emperor.logs import log_verbose
from emperor.protocol import ToVassal, pack_config

if TYPE_CHECKING:
    from emperor.events import Monitor


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


class Channel:
    """The emperor's ends of a vassal's socketpairs, and the vassal's ends until handed over."""

    def __init__(self, with_config: bool) -> None:
        self.sock, self.child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.config_sock: socket.socket | None = None
        self.config_child: socket.socket | None = None
        #: the write end of the pipe the emperor collects the vassal's output from
        self.output_child: int | None = None
        if with_config:
            try:
                self.config_sock, self.config_child = socket.socketpair(socket.AF_UNIX,
                                                                        socket.SOCK_STREAM)
            except OSError:
                self.close()
                raise
        self.sock.setblocking(False)
        if self.config_sock is not None:
            self.config_sock.setblocking(False)

    def child_fds(self) -> list[int]:
        """The vassal's ends: emperor fd, then config fd when there is one."""
        fds = [self.child.fileno()]
        if self.config_child is not None:
            fds.append(self.config_child.fileno())
        if self.output_child is not None:
            fds.append(self.output_child)
        return fds

    def handed_over(self) -> None:
        """The process has its own copies: close ours (EOF then means the vassal is gone)."""
        for s in (self.child, self.config_child):
            if s is not None:
                s.close()
        self._close_output()

    def _close_output(self) -> None:
        if self.output_child is not None:
            try:
                os.close(self.output_child)
            except OSError:
                pass
            self.output_child = None

    def close(self) -> None:
        for s in (self.sock, self.child, self.config_sock, self.config_child):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._close_output()


class VassalHandle:
    def __init__(self, name: str, monitor: Monitor | None, *, mtime: float, config: bytes | None,
                 uid: int | None, gid: int | None, cwd: str | None, config_arg: str,
                 vassals_dir: str | None, attention: set[VassalHandle] | None = None,
                 clock: Clock | None = None, kind: Kind = Kind.PLAIN,
                 socket_name: str | None = None, tyrant_file: bool = False) -> None:
        self.name = name
        # the emperor's set of vassals its periodic check must look at (dying ones and
        # those sending heartbeats): the others cost it nothing
        self.attention = attention
        self.monitor = monitor
        self.config = config
        self.use_config = config is not None
        #: tyrant mode: ``config`` holds the bytes of the file the emperor checked, handed
        #: over the config fd while argv still names the file (emperor.tyrant)
        self.tyrant_file = tyrant_file
        self.uid = uid
        self.gid = gid
        self.cwd = cwd
        self.config_arg = config_arg
        self.vassals_dir = vassals_dir
        self.clock = clock or Clock()
        self.life = Lifecycle(self.clock, kind,
                              phase=Phase.WAITING if kind is Kind.ON_DEMAND else Phase.STARTING)
        now = self.clock.now()
        self.born = mtime
        self.last_mod = mtime
        self.first_run = now
        self.last_run = now
        self.pid = -1
        self.respawns = 0
        self.socket_name = socket_name
        self.spawn_method = ""  # "fork" or "exec", once asked for
        self.parent: str | None = None  # a zerg's vassal
        self.broodlord_num: int | None = None  # UWSGI_BROODLORD_NUM of a zerg
        #: on demand: the listening socket the emperor bound and keeps (the vassal's fd 0)
        self.listener: socket.socket | None = None
        self.channel: Channel | None = None
        self.no_mercy = False
        self._pending_config = b""  # a config packet being sent
        self._next_config = b""  # the one to send after it (the newest asked for)
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- derived from the lifecycle (what uWSGI's stats show) ----------------------------------

    @property
    def status(self) -> int:
        return self.life.status()

    @property
    def loyal(self) -> int:
        return int(self.life.loyal)

    @property
    def ready(self) -> int:
        return int(self.life.ready)

    @property
    def accepting(self) -> int:
        return int(self.life.accepting)

    @property
    def zerg(self) -> int:
        return int(self.life.zerg)

    @property
    def exited(self) -> bool:
        return self.life.phase is Phase.EXITED

    def shown(self) -> dict[str, float]:
        """The moments uWSGI's stats print, as wall-clock seconds (0: never)."""
        life = self.life
        return {"last_heartbeat": wall(life.heartbeat_at), "last_loyal": wall(life.loyal_at),
                "last_ready": wall(life.ready_at), "last_accepting": wall(life.accepting_at),
                "first_run": self.first_run.wall, "last_run": self.last_run.wall,
                "cursed": wall(life.cursed_at)}

    # --- identity ------------------------------------------------------------------------------

    def launch_key(self) -> tuple[Any, ...]:
        """What makes two sources of the same name the same process (cwd and argument)."""
        return (self.cwd, self.config_arg, self.use_config and not self.tyrant_file)

    def alive(self) -> bool:
        return self.pid > 0 and not self.exited

    # --- the process ---------------------------------------------------------------------------

    def open_channel(self, loop: asyncio.AbstractEventLoop,
                     on_readable: Callable[[VassalHandle], None]) -> Channel:
        """Make the socketpairs and listen on ours; the config is queued for the vassal."""
        self.channel = Channel(self.use_config)
        self._loop = loop
        loop.add_reader(self.channel.sock.fileno(), on_readable, self)
        if self.use_config:
            self.push_config()
        return self.channel

    def attach(self, pid: int) -> None:
        """The process exists."""
        self.pid = pid
        if self.channel is not None:
            self.channel.handed_over()
        self.life.started()

    def detach_reader(self) -> None:
        if self.channel is not None and self._loop is not None:
            try:
                self._loop.remove_reader(self.channel.sock.fileno())
            except (ValueError, OSError):
                pass

    def read_bytes(self) -> bytes | None:
        """Whatever the vassal sent; None at EOF or on error (the vassal is gone)."""
        if self.channel is None:
            return None
        try:
            data = self.channel.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            return None
        return data or None

    def send(self, byte: int) -> bool:
        if self.channel is None:
            return False
        try:
            return self.channel.sock.send(bytes([byte])) == 1
        except OSError:
            return False

    def push_config(self) -> None:
        """Frame and send the config (uWSGI 2.0: at spawn, at reload, and on byte 2)."""
        if not self.use_config or self.channel is None or self.channel.config_sock is None:
            return
        try:
            packet = pack_config(self.config or b"")
        except ValueError as exc:
            log_verbose(f"[emperor] cannot push the config of vassal {self.name}: {exc}")
            return
        if self._pending_config:
            # the last copy is not read yet: this one replaces whatever of the queue was not
            # begun (one copy in flight and one waiting, however often the vassal asks)
            self._next_config = packet
            return
        self._pending_config = packet
        self._flush_config()

    def _flush_config(self) -> None:
        assert self.channel is not None and self.channel.config_sock is not None
        sock = self.channel.config_sock
        try:
            while self._pending_config:
                n = sock.send(self._pending_config)
                self._pending_config = self._pending_config[n:]
                if not self._pending_config:
                    self._pending_config, self._next_config = self._next_config, b""
        except (BlockingIOError, InterruptedError):
            if self._loop is not None:
                self._loop.add_writer(sock.fileno(), self._writable)
            return
        except OSError as exc:
            log_verbose(f"[uwsgi-emperor] write() config of vassal {self.name}: {exc}")
            self._pending_config = self._next_config = b""
        if self._loop is not None:
            try:
                self._loop.remove_writer(sock.fileno())
            except (ValueError, OSError):
                pass

    def _writable(self) -> None:
        if self.channel is not None and self.channel.config_sock is not None:
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
        if self.channel is not None:
            for s in (self.channel.sock, self.channel.config_sock):
                if s is not None and self._loop is not None:
                    try:
                        self._loop.remove_writer(s.fileno())
                    except (ValueError, OSError):
                        pass
            self.channel.close()
            self.channel = None
        self._pending_config = self._next_config = b""

    # --- uWSGI's operations ----------------------------------------------------------------------

    def reload(self, mtime: float) -> bool:
        """emperor_respawn: byte 1, config again, counters. False when the write failed."""
        if self.status > 0:
            return True
        if self.life.phase is Phase.WAITING:
            # an on-demand vassal without a process: only its config changes
            self.last_mod = mtime
            log_verbose(f'[emperor] updated configuration for "on demand" instance {self.name}')
            return True
        if not self.send(ToVassal.RELOAD):
            return False
        self.push_config()
        self.respawns += 1
        self.last_mod = mtime
        self.last_run = self.clock.now()
        if self.life.phase is not Phase.STARTING:
            # still starting, it reads byte 1 (queued in its socket) once it runs, as a vassal
            # uWSGI has just forked would: it stays STARTING until its process exists
            self.life.reloading()
        log_verbose(f"[emperor] reload the uwsgi instance {self.name}")
        return True

    def stop(self, graceful: bool = False, *, voluntary: bool = False) -> None:
        """emperor_stop: byte 0 (or 2), marked to die."""
        if not self.life.stop(voluntary=voluntary):
            return
        self.send(ToVassal.GRACEFUL_STOP if graceful else ToVassal.STOP)
        if self.attention is not None:
            self.attention.add(self)
        log_verbose(f"[emperor] stop the uwsgi instance {self.name}")

    def curse(self) -> None:
        """emperor_curse: the vassal's fd failed; it is marked to die."""
        if not self.life.curse():
            return
        if self.attention is not None:
            self.attention.add(self)
        log_verbose(f"[emperor] curse the uwsgi instance {self.name} (pid: {self.pid})")

    def back_to_waiting(self) -> None:
        """emperor_back_to_ondemand: an on-demand vassal asked to go idle (byte 22)."""
        if not self.life.back_to_waiting():
            return
        # always graceful (uWSGI sends 0 unless emperor-graceful-shutdown): a worker that
        # accepted a connection in the last moment answers it instead of dropping it
        self.send(ToVassal.GRACEFUL_STOP)
        if self.attention is not None:
            self.attention.add(self)
        log_verbose(f"[emperor] bringing back instance {self.name} to on-demand mode")

    def waiting_again(self) -> None:
        """Its process is gone: no fds, no pid, wait for the next connection."""
        self.close()
        self.pid = -1
        self.no_mercy = False
        self.life.to(Phase.WAITING)
        if self.attention is not None:
            self.attention.discard(self)

    def close_listener(self) -> None:
        if self.listener is not None:
            if self._loop is not None:
                try:
                    self._loop.remove_reader(self.listener.fileno())
                except (ValueError, OSError):
                    pass
            self.listener.close()
            self.listener = None

    def state(self) -> str:
        return self.life.describe()
