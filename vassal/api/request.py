"""The request a thread of a worker is serving, for the few ``uwsgi`` functions that act on it
(``sendfile``, ``disconnect``, ``connection_fd``).

The worker sets ``current.resp`` (its response object: the socket, what was sent) around the
app call and clears it after; the functions read it in the same thread.
"""

from __future__ import annotations

import threading
from typing import Any


class _Holder:
    """``current`` of a process that serves one request at a time (no threads, no greenlets):
    a plain attribute costs less than a thread-local one on every request."""

    __slots__ = ("resp",)

    def __init__(self) -> None:
        self.resp: Any = None


current: Any = threading.local()


def one_at_a_time() -> Any:
    """Make ``current`` a plain holder (a worker with one thread and no gevent); returns it."""
    global current
    current = _Holder()
    return current


def response(fn: str) -> Any:
    """The response in progress in this thread; ValueError naming ``fn`` outside a request."""
    resp = getattr(current, "resp", None)
    if resp is None:
        raise ValueError(f"uwsgi.{fn}: no request in progress in this thread")
    return resp
