"""Workers follow a master that was SIGKILLed, as uWSGI's do.

uWSGI's workers notice at once when their master disappears ("my master disconnected: i
will kill myself"), so an OOM-killed or SIGKILLed master (or one killed by an emperor's
PDEATHSIG) leaves no orphan holding the listening socket. Ours must do the same; the real
uWSGI runs as the reference case.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import Procs, free_port, pid_alive, port_open, wait_until
from tests.interop.helpers import backend_argv, children, copy_app, need_uwsgi, status_of


@pytest.mark.parametrize("kind", ["imperium", "uwsgi"])
def test_workers_die_with_a_killed_master(procs: Procs, tmp_path: Path, kind: str) -> None:
    if kind == "uwsgi":
        need_uwsgi()
    copy_app("hello.py", tmp_path)
    port = free_port()
    ini = tmp_path / "m.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = %d/hello.py\n"
                   "master = true\nprocesses = 2\n")
    p = procs.start(backend_argv(kind, ini), cwd=tmp_path)
    wait_until(lambda: status_of(port) == 200 or p.poll() is not None, 20, message="serving")
    assert p.poll() is None, procs.output(p)[-3000:]
    workers = wait_until(lambda: len(children(p.pid)) == 2 and children(p.pid), 10,
                         message="2 workers")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=5)
    wait_until(lambda: not any(pid_alive(w) for w in workers), 10,
               message=f"workers {workers} gone after their master was SIGKILLed; log:\n"
                       f"{procs.output(p)[-2000:]}")
    assert not port_open(port)
