"""The gevent loop engine: ``gevent = N`` async cores in each worker (uWSGI's gevent plugin).

A worker with ``gevent = N`` runs, instead of its threads' epoll loops (vassal/worker.py),
one greenlet per listening socket accepting connections and one greenlet per connection.
Each connection greenlet goes through the same request path as the threaded loop: its head
is read without holding a core and cut at the head deadline, kept-alive connections wait
parked until ``http-timeout``, requests are parsed by llhttp and answered by the same code.
A request holds one of the N cores (the ``cores`` of the stats) from its head to its answer;
when all N are busy, ready connections wait for one, as in uWSGI.

The app runs in its connection's greenlet, so it must yield for others to run: through
monkey patching, as uWSGI 2.0 does it, ``gevent-monkey-patch`` calls
``gevent.monkey.patch_all()`` in each worker when its loop starts (after the app is loaded,
unless ``lazy-apps``), ``gevent-early-monkey-patch`` calls it in the master before the app
is loaded; without either, only code that uses gevent itself yields (uWSGI's behaviour too).

The heartbeat to the emperor is sent by a greenlet of the loop: a worker whose hub is
blocked (an app that never yields) stops beating, like a threaded worker stuck in requests.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import termios
import time
from typing import TYPE_CHECKING, Any

from vassal.log import log

if TYPE_CHECKING:
    from vassal.sockets import ListenSocket
    from vassal.worker import Worker

_monotonic = time.monotonic


def missing() -> str | None:
    """Why ``gevent`` cannot be used here, or None."""
    try:
        import gevent  # noqa: F401
    except ImportError:
        return "gevent needs the gevent package (pip install 'imperium[gevent]')"
    return None


def early_monkey_patch() -> None:
    """``gevent-early-monkey-patch``: before the app is loaded (uWSGI's gevent_preinit_apps)."""
    from gevent import monkey

    monkey.patch_all()


def _pending(fd: int) -> bool:
    """Bytes are waiting on the socket (FIONREAD: not a read, and nothing gevent patches)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0] > 0
    except OSError:
        return False


def run(worker: Worker) -> None:
    """The worker's loop until it is told to stop (then requests in flight finish)."""
    import gevent
    from gevent import socket as gsocket
    from gevent.lock import Semaphore
    from gevent.pool import Pool

    from vassal.worker import CLOSE, HEAD, IDLE, STAY, _Conn

    s = worker.s
    if s.gevent_monkey:
        from gevent import monkey

        monkey.patch_all()
    worker.wait_write = gsocket.wait_write
    cores = Semaphore(s.gevent)
    free = list(range(s.gevent - 1, -1, -1))
    connections = Pool(s.max_parked)
    parked: set[Any] = set()  # connection greenlets waiting for bytes, not in a request

    def serve(ls: ListenSocket, sock: Any, addr: Any) -> None:
        conn = _Conn(sock, ls, addr, s.hostname, worker.listeners.get(ls.fileno()))
        me = gevent.getcurrent()
        state, deadline = STAY, _monotonic() + s.head_timeout
        # the first request is usually there with the connection (TCP_DEFER_ACCEPT): served
        # without a round through the hub (a tenth more one-connection requests per second)
        first = _pending(conn.fd)
        try:
            while state != CLOSE and not worker.stopping:
                if not first:
                    waiting = state != IDLE
                    wait = deadline - _monotonic() if waiting else s.keepalive_timeout
                    parked.add(me)
                    try:
                        gsocket.wait_read(conn.fd, timeout=max(0.0, wait))
                    except TimeoutError:
                        if waiting:
                            worker._head_timeout(conn)
                        return
                    finally:
                        parked.discard(me)
                first = False
                cores.acquire()
                core = free.pop()
                try:
                    new = worker._readable(conn, core)
                finally:
                    free.append(core)
                    cores.release()
                if new == HEAD and state != HEAD:
                    deadline = _monotonic() + s.head_timeout
                if new != STAY:
                    state = new
        finally:
            sock.close()

    def accept(ls: ListenSocket) -> None:
        lsock = gsocket.socket(ls.family, socket.SOCK_STREAM, 0, os.dup(ls.fileno()))
        try:
            while not worker.stopping:
                connections.wait_available()
                try:
                    sock, addr = lsock.accept()
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log(f"accept(): {os.strerror(exc.errno)}")
                        gevent.sleep(0.1)
                    continue
                sock.settimeout(s.socket_timeout)  # each read and write, as SO_RCVTIMEO does
                connections.spawn(serve, ls, sock, addr)
        finally:
            lsock.close()

    def beat() -> None:
        while True:
            worker._beat(_monotonic())
            if worker.next_beat == float("inf"):
                return
            gevent.sleep(max(0.05, worker.next_beat - _monotonic()))

    def watch(fd: int, hook: Any) -> None:
        while True:  # the other fds of the worker (uWSGI signal pipes)
            gsocket.wait_read(fd)
            hook()

    acceptors = [gevent.spawn(accept, ls) for ls in worker.sockets]
    acceptors += [gevent.spawn(watch, fd, hook) for fd, hook in worker.watch.items()]
    beater = gevent.spawn(beat) if s.heartbeat and s.emperor_link is not None else None
    gsocket.wait_read(worker.wake_r)  # stop(): SIGHUP, max-requests, ...
    gevent.killall(acceptors)
    if beater is not None:
        beater.kill()
    gevent.killall(list(parked))  # idle connections go now; requests in flight finish
    connections.join()
