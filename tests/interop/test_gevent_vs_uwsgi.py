"""``gevent = N`` side by side with Debian's uWSGI gevent plugin (uwsgi-plugin-gevent-python3):
one worker, 100 connections at once to an endpoint that sleeps 50 ms. With monkey patching
(``gevent-monkey-patch`` in the worker, ``gevent-early-monkey-patch`` before the app loads)
the sleeps overlap and everything is answered in well under the 5 s a serial worker needs;
without it ``time.sleep`` blocks the hub and the answers come one after the other, in both.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import UWSGI_CORE, Procs, free_port, need_service, port_open, wait_until
from tests.interop.helpers import VASSAL_BINARY, copy_app

GEVENT_PLUGIN = "/usr/lib/uwsgi/plugins/gevent_python3_plugin.so"
KINDS = ("imperium", "uwsgi")


@pytest.fixture(autouse=True)
def _need_plugin() -> None:
    need_service("uwsgi-gevent", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(GEVENT_PLUGIN),
                 f"{UWSGI_CORE} with {GEVENT_PLUGIN} (Debian uwsgi-plugin-gevent-python3)")


def serve(procs: Procs, tmp: Path, kind: str, extra: str) -> int:
    d = tmp / kind
    copy_app("sleepy.py", d)
    port = free_port()
    (d / "g.ini").write_text(f"[uwsgi]\nplugins = python3,gevent_python3\nhttp-socket = 127.0.0.1:{port}\n"
                             f"wsgi-file = %d/sleepy.py\nmaster = true\nprocesses = 1\ngevent = 100\n"
                             f"socket-timeout = 30\n{extra}\n")
    argv = [VASSAL_BINARY] if kind == "imperium" else [UWSGI_CORE]
    p = procs.start([*argv, "--ini", str(d / "g.ini")], cwd=d)
    wait_until(lambda: p.poll() is not None or port_open(port), 20, message=f"{kind} on {port}")
    assert p.poll() is None, procs.output(p)[-3000:]
    return port


def burst(port: int, n: int) -> tuple[float, set[bytes]]:
    """n connections at once, each asking for /sleep; (seconds, the distinct statuses)."""
    def one(_i: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /sleep HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.split(b" ")[1]

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        statuses = set(pool.map(one, range(n)))
    return time.monotonic() - t0, statuses


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("patch", ["gevent-monkey-patch", "gevent-early-monkey-patch"])
def test_one_worker_serves_100_sleepers_at_once(procs: Procs, tmp_path: Path, kind: str, patch: str) -> None:
    port = serve(procs, tmp_path, kind, f"{patch} = true")
    elapsed, statuses = burst(port, 100)
    assert statuses == {b"200"}
    assert elapsed < 2.5, f"100 x 50 ms took {elapsed:.2f} s on one worker: not concurrent"


@pytest.mark.parametrize("kind", KINDS)
def test_without_monkey_patching_sleep_blocks_the_hub(procs: Procs, tmp_path: Path, kind: str) -> None:
    port = serve(procs, tmp_path, kind, "")
    elapsed, statuses = burst(port, 30)
    assert statuses == {b"200"}
    assert elapsed >= 1.4, f"30 x 50 ms took {elapsed:.2f} s: something yielded without patching"
