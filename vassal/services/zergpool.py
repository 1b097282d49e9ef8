"""``zergpool = ZERGSOCKET:ADDR[,ADDR...]``: a pool of listening sockets handed to zergs.

uWSGI's zergpool plugin binds every ADDR (TCP ``host:port``, or a UNIX path) and a UNIX
socket ZERGSOCKET; each instance that connects there with ``zerg = ZERGSOCKET`` gets all the
pool's sockets (SCM_RIGHTS, the zerg-server format) and accepts on them, so instances can be
added and removed behind fixed addresses. The pool itself serves nothing: an instance whose
only sockets are pools runs its master with no worker (uWSGI's "no-workers" mode).

Here the master's loop answers the zergs (uWSGI forks a gateway process for it). The pool's
sockets survive a reload of the pool instance (the zergs hold the same sockets, so binding
them again would fail); the zerg sockets are bound again, as ``zerg-server``'s are. Workers
and other children close the pool.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from vassal.log import log
from vassal.sockets import BindError, ListenSocket, adopt_fd, bind_socket, parse_address, zerg_send

from . import Service

PROTO = "zergpool"  # the key of the pool's sockets among the ones kept across a reload


class ZergPoolError(ValueError):
    """A zergpool value that cannot work; the message names it."""


@dataclass
class Pool:
    path: str  # the zerg socket
    server: socket.socket | None = None
    sockets: list[ListenSocket] = field(default_factory=list)


def parse(value: str, origin: str) -> tuple[str, list[str]]:
    """(zerg socket, addresses) of one value; ZergPoolError when it cannot work."""
    path, colon, addrs = value.partition(":")
    items = [a for a in addrs.split(",") if a]
    if not colon or not path or not items:
        raise ZergPoolError(f"zergpool ({origin}): invalid zergpool syntax: {value!r} "
                            "(ZERGSOCKET:ADDR[,ADDR...], ZERGSOCKET a UNIX socket)")
    try:
        family, _addr = parse_address(path)
        for a in items:
            parse_address(a)
    except ValueError as exc:
        raise ZergPoolError(f"zergpool ({origin}): {exc}") from None
    if family != socket.AF_UNIX:
        raise ZergPoolError(f"zergpool ({origin}): the zerg socket {path!r} must be a UNIX socket")
    return path, items


def bind_pools(config: Any, inherited: dict[tuple[str, str], int], used: set[int]) -> list[Pool]:
    """The pools of the config: their sockets kept from the previous incarnation (marked in
    ``used``) or bound now, and their zerg sockets bound now. ZergPoolError/BindError."""
    backlog = int(config.get("listen") or 100)
    chmod = config.get("chmod-socket")
    pools = []
    for value, origin in config.occurrences("zergpool"):
        path, addrs = parse(str(value), str(origin))
        pool = Pool(path)
        pools.append(pool)
        try:
            for addr in addrs:
                fd = inherited.pop((PROTO, addr), None)
                if fd is not None:
                    used.add(fd)
                    ls = adopt_fd(fd, addr, PROTO)
                else:
                    ls = bind_socket(addr, PROTO, backlog=backlog, chmod=chmod, kind="zergpool")
                pool.sockets.append(ls)
                kind = "UNIX" if ls.family == socket.AF_UNIX else "TCP"
                log(f"zergpool {path} bound to {kind} socket {addr} (fd: {ls.fileno()})")
            pool.server = bind_socket(path, PROTO, backlog=backlog, chmod=chmod, kind="zergpool").sock
        except BindError as exc:
            for p in pools:
                for ls in p.sockets:
                    ls.sock.close()
            raise ZergPoolError(f"zergpool ({origin}): {exc}") from None
        pool.server.setblocking(False)
    return pools


class ZergPoolService(Service):
    name = "zergpool"

    def __init__(self, pools: list[Pool]) -> None:
        self.pools = pools
        self.by_fd = {p.server.fileno(): p for p in pools if p.server is not None}

    def fds(self) -> list[int]:
        return list(self.by_fd)

    def on_ready(self, fd: int) -> None:
        pool = self.by_fd.get(fd)
        if pool is None or pool.server is None:
            return
        try:
            conn, _ = pool.server.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno not in (errno.ECONNABORTED, errno.EPROTO):
                log(f"zergpool {pool.path}: accept(): {exc.strerror}")
            return
        try:
            conn.settimeout(5)
            zerg_send(conn, [ls.fileno() for ls in pool.sockets])
        except OSError as exc:
            log(f"zergpool {pool.path}: cannot send the sockets: {exc}")
        finally:
            conn.close()

    def in_worker(self, wid: int) -> None:
        for pool in self.pools:
            if pool.server is not None:
                pool.server.close()
            for ls in pool.sockets:
                ls.sock.close()

    def kept_sockets(self) -> list[ListenSocket]:
        return [ls for pool in self.pools for ls in pool.sockets]

    def finish(self) -> None:
        for pool in self.pools:
            if pool.server is not None:
                pool.server.close()
                pool.server = None
                if not pool.path.startswith("@"):
                    try:
                        os.unlink(pool.path)
                    except OSError:
                        pass


__all__ = ["BindError", "Pool", "ZergPoolError", "ZergPoolService", "bind_pools", "parse"]
