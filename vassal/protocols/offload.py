"""Offload threads (``offload-threads``): file bodies sent by threads so the worker moves on.

As in uWSGI (core/offload.c), a worker that would send a file with sendfile(2) — a static
file, or a ``wsgi.file_wrapper`` response — writes the response head itself, then hands the
connection and the open file to one of its offload threads (round robin) and goes back to
accept the next request. The thread drives every transfer it holds with non-blocking
sendfile(2) from one epoll set, and closes the connection when the body is out: an offloaded
response ends its connection, as uWSGI's does.

Unlike uWSGI the worker first offers the body to the socket itself, without blocking: what
the kernel takes at once (often all of it) needs no thread, and a body sent whole keeps its
connection alive. Only the rest of a body the client does not take fast enough is offloaded.

A transfer that makes no progress for ``socket-timeout`` seconds is dropped, so a client that
stops reading cannot hold a file and a socket forever. A stopping worker waits for the
transfers in flight (up to its reload mercy) before it exits.

The threads are started on first use, in the worker (never in the master, which forks).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

#: bytes per sendfile(2) call: large enough to keep syscalls few, small enough to share a
#: thread fairly between clients
CHUNK = 1 << 20
#: bytes per read/write round with ``disable-sendfile``
COPY_CHUNK = 1 << 16
#: ``disable-sendfile``: copy with pread(2)/write(2) (file systems where sendfile misbehaves),
#: set in the master before the workers fork
use_sendfile = True


def send_chunk(out_fd: int, in_fd: int, offset: int, count: int) -> int:
    """One sendfile(2) (or, with ``disable-sendfile``, one pread/write round); bytes sent."""
    if use_sendfile:
        return os.sendfile(out_fd, in_fd, offset, count)
    data = os.pread(in_fd, min(count, COPY_CHUNK), offset)
    return os.write(out_fd, data) if data else 0


def send_all(out_fd: int, in_fd: int, offset: int, count: int) -> int:
    """Send until ``count`` bytes went out on a blocking socket (with its kernel timeout)."""
    sent = 0
    while sent < count:
        n = send_chunk(out_fd, in_fd, offset + sent, count - sent)
        if n == 0:  # the file shrank under us
            break
        sent += n
    return sent


@dataclass
class _Transfer:
    out_fd: int  # our own dup of the client socket
    in_fd: int  # the file (owned: closed at the end)
    offset: int
    remaining: int
    last_progress: float


class _Thread:
    """One offload thread: an epoll set of sockets waiting to be writable."""

    def __init__(self, name: str, timeout: float) -> None:
        self.timeout = timeout
        self.ep = select.epoll()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ep.register(self.wake_r, select.EPOLLIN)
        self.incoming: deque[_Transfer] = deque()
        self.active: dict[int, _Transfer] = {}
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def submit(self, t: _Transfer) -> None:
        self.incoming.append(t)  # deque appends are atomic: no lock needed
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def busy(self) -> bool:
        return bool(self.incoming or self.active)

    def stop(self) -> None:
        self.stopping = True
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def _loop(self) -> None:
        while True:
            wait = 1.0 if self.active else -1
            if self.stopping and not self.busy():
                return
            try:
                events = self.ep.poll(wait)
            except InterruptedError:
                continue
            for fd, _ev in events:
                if fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    while self.incoming:
                        t = self.incoming.popleft()
                        self.active[t.out_fd] = t
                        self.ep.register(t.out_fd, select.EPOLLOUT)
                        self._push(t)
                    continue
                t = self.active.get(fd)
                if t is not None:
                    self._push(t)
            if self.active:
                limit = time.monotonic() - self.timeout
                for t in [t for t in self.active.values() if t.last_progress < limit]:
                    self._finish(t)

    def _push(self, t: _Transfer) -> None:
        """Send what the socket takes now; finish the transfer when done or broken."""
        try:
            while t.remaining > 0:
                n = send_chunk(t.out_fd, t.in_fd, t.offset, min(t.remaining, CHUNK))
                if n == 0:  # the file shrank: nothing more to send
                    break
                t.offset += n
                t.remaining -= n
                t.last_progress = time.monotonic()
        except BlockingIOError:
            return  # epoll tells us when the socket takes more
        except OSError:
            pass  # the client went away
        self._finish(t)

    def _finish(self, t: _Transfer) -> None:
        if self.active.pop(t.out_fd, None) is not None:
            try:
                self.ep.unregister(t.out_fd)
            except (OSError, ValueError):
                pass
        os.close(t.in_fd)
        os.close(t.out_fd)


class Offloader:
    """The offload threads of one worker process."""

    def __init__(self, threads: int, timeout: float = 4.0) -> None:
        self.n = threads
        self.timeout = timeout
        self.threads: list[_Thread] = []
        self.next = 0
        self.lock = threading.Lock()

    def send(self, sock: socket.socket, file_fd: int, offset: int, length: int) -> bool:
        """Send ``length`` bytes of ``file_fd`` from ``offset`` on ``sock`` without blocking.

        What the socket takes at once goes out right here (often all of it); the rest is handed
        to an offload thread. True: all sent, ``file_fd`` closed, the connection is still the
        caller's. False: handed over; the thread owns ``file_fd`` and will end the connection,
        and the caller must neither read from nor write to ``sock`` (closing its own handle is
        fine: the thread holds a dup).
        """
        fd = sock.fileno()
        os.set_blocking(fd, False)
        sent = 0
        try:
            while sent < length:
                n = send_chunk(fd, file_fd, offset + sent, length - sent)
                if n == 0:
                    break
                sent += n
        except BlockingIOError:
            pass
        except OSError:
            os.set_blocking(fd, True)
            os.close(file_fd)
            raise
        if sent >= length or sent and not self._more(file_fd, offset + sent):
            os.set_blocking(fd, True)
            os.close(file_fd)
            return True
        self.submit(sock, file_fd, offset + sent, length - sent)
        return False

    @staticmethod
    def _more(file_fd: int, pos: int) -> bool:
        try:
            return os.fstat(file_fd).st_size > pos
        except OSError:
            return False

    def submit(self, sock: socket.socket, file_fd: int, offset: int, length: int) -> None:
        """Hand the whole transfer to a thread (see ``send``); the socket ends up non-blocking."""
        out_fd = os.dup(sock.fileno())
        os.set_blocking(out_fd, False)
        t = _Transfer(out_fd, file_fd, offset, length, time.monotonic())
        with self.lock:
            if not self.threads:
                self.threads = [_Thread(f"offload {i}", self.timeout) for i in range(self.n)]
            thread = self.threads[self.next % self.n]
            self.next += 1
        thread.submit(t)

    def shutdown(self, deadline: float) -> None:
        """Let the transfers in flight finish (until ``deadline``, monotonic), then stop."""
        for th in self.threads:
            th.stop()
        for th in self.threads:
            th.thread.join(max(0.0, deadline - time.monotonic()))
