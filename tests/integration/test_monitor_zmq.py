"""zmq:// with real pyzmq sockets: a PUSH client talks to the monitor's bound PULL socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from emperor.events import Destroy, MonitorContext, Touch, Unavailable
from monitors.zmq import ZmqMonitor
from tests.conftest import free_port, need_module, wait_until
from tests.integration.monitor_harness import monitors_fixture  # noqa: F401  (fixture)

zmq = need_module("zmq")


@contextmanager
def pushers() -> Iterator[Callable[[str], Any]]:
    """``connect(endpoint)`` gives a connected PUSH socket; all are closed on exit."""
    ctx = zmq.Context()
    socks = []

    def connect(endpoint: str):
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        socks.append(s)
        return s

    try:
        yield connect
    finally:
        for s in socks:
            s.close()
        ctx.term()


@pytest.fixture
def push() -> Iterator[Callable[[str], Any]]:
    """``push(endpoint)`` gives a connected PUSH socket; all closed at teardown."""
    with pushers() as connect:
        yield connect


def test_touch_reload_destroy(monitors, push) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    run = monitors(ZmqMonitor, f"zmq://{endpoint}", MonitorContext())
    wait_until(run.monitor.bound.is_set, message="PULL socket bound")
    s = push(endpoint)
    s.send_multipart([b"touch", b"foo.ini", b"[uwsgi]\nsocket=:4142"])
    run.wait(lambda ev: ev and isinstance(ev[-1], Touch), message="touch")
    t1 = run.touches(name="foo.ini")[0]
    assert t1.config == b"[uwsgi]\nsocket=:4142" and t1.uid is None and t1.socket is None

    # a second touch is a reload: a newer mtime, even with the same body
    s.send_multipart([b"touch", b"foo.ini", b"[uwsgi]\nsocket=:4142"])
    run.wait(lambda ev: len([e for e in ev if isinstance(e, Touch)]) == 2, message="second touch")
    t2 = run.touches(name="foo.ini")[1]
    assert t2.mtime > t1.mtime

    # all six parts; an empty config means the file of that name
    s.send_multipart([b"touch", b"bar.ini", b"", b"1001", b"1002", b"/tmp/bar.sock"])
    s.send_multipart([b"touch", b"baz.xml"])
    run.wait(lambda ev: len([e for e in ev if isinstance(e, Touch)]) == 4, message="more touches")
    bar = run.touches(name="bar.ini")[0]
    assert (bar.config, bar.uid, bar.gid, bar.socket) == (None, 1001, 1002, "/tmp/bar.sock")
    assert run.touches(name="baz.xml")[0].config is None

    s.send_multipart([b"destroy", b"foo.ini"])
    run.wait(lambda ev: ev and ev[-1] == Destroy("foo.ini"), message="destroy")
    assert not run.all(Unavailable)


def test_bad_messages_are_logged_and_dropped(monitors, push) -> None:
    endpoint = f"ipc:///tmp/imperium-zmq-test-{free_port()}.sock"
    run = monitors(ZmqMonitor, f"zmq://{endpoint}", MonitorContext())
    wait_until(run.monitor.bound.is_set, message="PULL socket bound")
    s = push(endpoint)
    s.send_multipart([b"touch"])  # no name
    s.send_multipart([b"explode", b"x.ini"])
    s.send_multipart([b"touch", b"noextension", b"[uwsgi]"])
    s.send_multipart([b"\xfftouch", b"x.ini"])
    s.send_multipart([b"touch", b"u.ini", b"[uwsgi]", b"root"])
    s.send_multipart([b"touch", b"\xff\xfe.ini"])  # a name is bytes to uWSGI: obeyed
    s.send_multipart([b"touch", b"ok.ini", b"[uwsgi]"])  # still obeyed after all that
    run.wait(lambda ev: len(ev) >= 2, message="the good messages")
    assert [(type(e), e.name) for e in run.all()] == [(Touch, "\udcff\udcfe.ini"), (Touch, "ok.ini")]
    text = run.logs.text()
    for needle in ("command and instance name required", "unknown command 'explode'",
                   "'noextension'", "not UTF-8", "uid 'root' of vassal u.ini is not a number"):
        assert needle in text


def test_endpoint_in_use_is_retried_until_free(monitors) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    squatter = ctx.socket(zmq.PULL)
    squatter.setsockopt(zmq.LINGER, 0)
    squatter.bind(endpoint)
    try:
        run = monitors(ZmqMonitor, f"zmq://{endpoint}", MonitorContext())
        run.wait(lambda ev: any(isinstance(e, Unavailable) for e in ev), message="Unavailable")
        assert "cannot bind" in run.all(Unavailable)[0].reason
    finally:
        squatter.close()
    wait_until(run.monitor.bound.is_set, timeout=15, message="bound once the address is free")
    ctx.term()
