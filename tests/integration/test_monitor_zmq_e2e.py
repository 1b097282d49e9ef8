"""zmq:// end to end: a real emperor process bound to a PULL socket, fake vassals with journals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, need_module, pid_alive, wait_until
from tests.integration.monitor_e2e import Emperor, need_emperor
from tests.integration.test_monitor_zmq import pushers

zmq = need_module("zmq")


@pytest.fixture
def push() -> Iterator[Callable[[str], Any]]:
    need_emperor()
    with pushers() as connect:
        yield connect


def test_touch_reload_destroy_and_bad_messages(push, procs, tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    emp = Emperor(procs, tmp_path, f"zmq://{endpoint}")
    s = push(endpoint)  # PUSH queues until the emperor has bound
    s.send_multipart([b"touch", b"foo.ini", b"[uwsgi]\n# 1\n"])
    foo = emp.wait_line("foo.ini", "start", "[uwsgi]\n# 1\n")
    s.send_multipart([b"touch", b"foo.ini", b"[uwsgi]\n# 2\n"])
    assert emp.wait_line("foo.ini", "reload", "[uwsgi]\n# 2\n").pid == foo.pid
    s.send_multipart([b"touch"])
    s.send_multipart([b"explode", b"foo.ini"])
    s.send_multipart([b"touch", b"noextension", b"[uwsgi]\n"])
    s.send_multipart([b"touch", b"bar.ini", b"[uwsgi]\n"])
    emp.wait_line("bar.ini", "start")
    assert emp.running("foo.ini") == foo.pid and not emp.lines("noextension")
    s.send_multipart([b"destroy", b"foo.ini"])
    emp.wait_line("foo.ini", "stop")
    wait_until(lambda: not pid_alive(foo.pid), message="destroyed vassal gone")
    log = emp.log()
    assert "command and instance name required" in log and "unknown command 'explode'" in log


def test_a_failing_monitor_does_not_stop_another(push, procs, tmp_path: Path) -> None:
    """A pg:// source that is down and a zmq:// one side by side: zmq deploys go on."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    dead_pg = f"pg://host=127.0.0.1 port={free_port()} user=postgres dbname=test connect_timeout=1"
    emp = Emperor(procs, tmp_path, dead_pg, "--emperor", f"zmq://{endpoint}")
    s = push(endpoint)
    s.send_multipart([b"touch", b"alive.ini", b"[uwsgi]\n"])
    emp.wait_line("alive.ini", "start")
    wait_until(lambda: "unavailable" in emp.log(), message="the pg monitor reported down")
    s.send_multipart([b"touch", b"alive.ini", b"[uwsgi]\n# 2\n"])
    emp.wait_line("alive.ini", "reload", "[uwsgi]\n# 2\n")
    emp.check_alive()
