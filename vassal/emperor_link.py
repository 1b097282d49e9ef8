"""The vassal's side of the emperor protocol, as the master uses it.

The fd pair comes from ``UWSGI_EMPEROR_FD``/``UWSGI_EMPEROR_FD_CONFIG`` (or the
``emperor-fd``/``emperor-fd-config`` options). What is sent when:

- 1 (spawned) when the master is up, just before it forks the workers;
- 5 (accepting) by worker 1 when it enters its accept loop (``Worker.run``);
- 17 (loyal) by the first worker that completes a request (``Worker._run``);
- 26 (heartbeat) by each worker's accept loop every ``heartbeat`` seconds (uWSGI 2.0's
  ``uwsgi_heartbeat()`` from ``wsgi_req_accept``), never by the master;
- 22 (voluntary shutdown) by the master when ``idle`` + ``die-on-idle`` fire;
- 2 (config request) on reload when a config fd exists (see ``prepare_reexec``).

Commands read by the master: 0 stop, 1 reload, 2 graceful stop; EOF means the emperor is gone.
Across a reload (re-exec) the fds stay open and are named again in the environment.
"""

from __future__ import annotations

import os
import socket

from emperor.protocol import ENV_CONFIG_FD, ENV_FD, ToVassal, VassalLink, pack_config

__all__ = ["EmperorLink", "ToVassal"]

#: the real config fd while ``UWSGI_EMPEROR_FD_CONFIG`` names the reload hand-over socket
ENV_REAL_CONFIG_FD = "IMPERIUM_EMPEROR_FD_CONFIG"


class EmperorLink(VassalLink):
    """VassalLink plus what the instance needs around reloads."""

    raw_fd: int
    raw_config_fd: int | None

    @classmethod
    def from_config(cls, config) -> EmperorLink | None:
        """The link named by the options or the environment (the variables are consumed)."""
        fd = config.get("emperor-fd") if config is not None else None
        cfd = config.get("emperor-fd-config") if config is not None else None
        env_fd = os.environ.pop(ENV_FD, None)
        env_cfd = os.environ.pop(ENV_CONFIG_FD, None)
        real_cfd = os.environ.pop(ENV_REAL_CONFIG_FD, None)
        if real_cfd and env_cfd:
            try:  # the hand-over socket of a reload has been read by the config loader
                os.close(int(env_cfd))
            except (ValueError, OSError):
                pass
            env_cfd = real_cfd
        if fd is None and env_fd:
            try:
                fd = int(env_fd)
            except ValueError:
                fd = None
        if cfd is None and env_cfd:
            try:
                cfd = int(env_cfd)
            except ValueError:
                cfd = None
        if fd is None:
            return None
        try:
            os.fstat(fd)
        except OSError:
            return None
        link = cls(fd, cfd)
        link.raw_fd = fd
        link.raw_config_fd = cfd
        return link

    def prepare_reexec(self) -> None:
        """Keep the fds across exec and name them again for the next incarnation.

        With a config fd the master fetches the current config now: it asks with byte 2 and
        keeps the newest packet that arrives (a 2.0 emperor pushes at reload *and* on request,
        a 2.1 emperor only on request), so no stale duplicate is left queued for the next
        reload. That config is handed to the new process on a fresh socketpair named by
        ``UWSGI_EMPEROR_FD_CONFIG`` (where the config loader reads ``emperor://``), and the
        real config fd travels in ``IMPERIUM_EMPEROR_FD_CONFIG`` to be taken back after.
        """
        os.set_inheritable(self.sock.fileno(), True)
        os.environ[ENV_FD] = str(self.sock.fileno())
        if self.config_sock is None:
            return
        os.set_inheritable(self.config_sock.fileno(), True)
        try:
            config = self.read_config(request=True, timeout=5.0)
        except (OSError, EOFError, ValueError):
            config = None
        if config is None:
            os.environ[ENV_CONFIG_FD] = str(self.config_sock.fileno())
            return
        handover, keep = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handover.sendall(pack_config(config))
        handover.close()
        os.set_inheritable(keep.fileno(), True)
        os.environ[ENV_CONFIG_FD] = str(keep.detach())
        os.environ[ENV_REAL_CONFIG_FD] = str(self.config_sock.fileno())

    def set_nonblocking(self) -> None:
        self.sock.setblocking(False)

    def set_blocking(self) -> None:
        self.sock.setblocking(True)


def pair_for_test() -> tuple[socket.socket, socket.socket]:
    """(emperor end, vassal end): convenience for tests that play the emperor."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
