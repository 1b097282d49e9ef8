"""The heartbeat comes from the workers' accept loops, as in uWSGI 2.0.

uWSGI sends byte 26 from ``wsgi_req_accept`` (core/utils.c, ``uwsgi_heartbeat()``), so a
vassal whose only worker is stuck in a request stops beating and its emperor SIGKILLs and
respawns it (about 3.6 s with ``heartbeat = 1`` and ``emperor-required-heartbeat = 3``).
Both vassals, ours and Debian's real uWSGI, run under our emperor here.
"""

from __future__ import annotations

import os
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import UWSGI_CORE, Procs, free_port, need_service, pid_alive, wait_until
from tests.integration.emperor_harness import Emperor

HELLO = Path(__file__).resolve().parent.parent / "interop" / "apps" / "hello.py"
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"


def get(port: int, path: str = "/", timeout: float = 5) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status


@pytest.mark.parametrize("kind", ["imperium", "uwsgi"])
def test_vassal_with_its_only_worker_stuck_is_replaced(procs: Procs, tmp_path: Path, kind: str) -> None:
    if kind == "uwsgi":
        need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(PLUGIN),
                     f"{UWSGI_CORE} with its python3 plugin")
        e = Emperor(procs, tmp_path, "--emperor-required-heartbeat", "3", binary=UWSGI_CORE)
    else:
        e = Emperor(procs, tmp_path, "--emperor-required-heartbeat", "3", own_binary=True)
    port = free_port()
    (e.dir / "beat.ini").write_text(
        f"[uwsgi]\n{'plugins = python3' if kind == 'uwsgi' else ''}\n"
        f"http-socket = 127.0.0.1:{port}\nwsgi-file = {HELLO}\nmaster = true\nprocesses = 1\n"
        "heartbeat = 1\nworker-reload-mercy = 2\n")
    first = e.wait_vassal("beat.ini", 20, accepting=1)["pid"]
    assert wait_until(lambda: get(port) == 200, 10, message="a first answer")
    # heartbeats flow while the worker waits for connections: no replacement
    wait_until(lambda: e.vassal("beat.ini")["last_heartbeat"] > 0, 10, message="a heartbeat")
    mark = e.mark()

    def stuck() -> None:
        try:
            get(port, "/sleep/60", timeout=60)
        except OSError:
            pass  # the vassal is killed under it

    threading.Thread(target=stuck, daemon=True).start()
    e.wait_log("[emperor] vassal beat.ini sent no heartbeat in last 3 seconds", 20, after=mark)
    wait_until(lambda: not pid_alive(first), 10, message="the stuck vassal killed")
    # uWSGI's emperor stats keep the dead vassal's pid until the new one is spawned
    second = wait_until(lambda: (v := e.vassal("beat.ini")) and v.get("pid") not in (first, 0, None)
                        and v.get("accepting") == 1 and v["pid"], 20,
                        message=f"a new vassal accepting; log:\n{e.log()[-3000:]}")
    assert second != first
    assert wait_until(lambda: get(port) == 200, 15, message="the new vassal answering")
    e.stop()
