"""The master's view of its workers, against the real uWSGI 2.0: ``uwsgi.workers()`` (keys,
order, types) and the fork-bomb guard of a worker that dies at start."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import Procs, free_port, wait_until
from tests.fixtures.instance_helpers import APPS, get
from tests.interop.helpers import backend_argv, need_uwsgi, status_of


def _start(procs: Procs, kind: str, tmp_path: Path, app: str, extra: str = "") -> tuple:
    if kind == "uwsgi":
        need_uwsgi()
    shutil.copy(APPS / app, tmp_path / app)
    port = free_port()
    ini = tmp_path / f"{kind}.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = %d/{app}\n"
                   f"master = true\nprocesses = 2\n{extra}")
    return procs.start(backend_argv(kind, ini), cwd=tmp_path), port


def test_uwsgi_workers_matches_uwsgi(procs: Procs, tmp_path: Path) -> None:
    docs = {}
    for kind in ("uwsgi", "imperium"):
        (tmp_path / kind).mkdir()
        p, port = _start(procs, kind, tmp_path / kind, "workers_shape.py")
        wait_until(lambda: status_of(port) == 200 or p.poll() is not None, 20,  # noqa: B023
                   message=f"{kind} serving")
        assert p.poll() is None, procs.output(p)[-3000:]
        status, body = get(port)
        assert status == 200, body
        docs[kind] = json.loads(body)
    # keys in order, types (bytes where uWSGI gives bytes), apps per worker
    assert docs["imperium"]["shape"] == docs["uwsgi"]["shape"]
    assert docs["imperium"]["respawn_counts"] == docs["uwsgi"]["respawn_counts"] == [0, 0]
    assert docs["imperium"]["mountpoints"] == docs["uwsgi"]["mountpoints"]
    # the worker answering sees itself busy (the other may still be closing the probe
    # request, in either server)
    for doc in docs.values():
        assert "busy" in doc["statuses"] and set(doc["statuses"]) <= {"busy", "idle"}


@pytest.mark.parametrize("kind", ["imperium", "uwsgi"])
def test_a_worker_killed_at_start_is_throttled(procs: Procs, tmp_path: Path, kind: str) -> None:
    """A worker that dies by a signal while loading is respawned under the fork-bomb guard.

    On main the guard only counted non-zero exit codes (a signalled status reads as 0), so
    such a worker was respawned in a tight loop, never "too fast".
    """
    p, _ = _start(procs, kind, tmp_path, "crash_at_start.py", "lazy-apps = true\n")
    too_fast = "worker respawning too fast !!! i have to sleep a bit (2 seconds)..."
    wait_until(lambda: procs.output(p).count(too_fast) >= 2 or p.poll() is not None, 15,
               message=f"two throttled respawns; log:\n{procs.output(p)[-3000:]}")
    assert p.poll() is None, procs.output(p)[-3000:]
    log = procs.output(p)
    first = log.index(too_fast)
    between = log[first + len(too_fast): log.index(too_fast, first + 1)]
    # uWSGI sleeps once its count of quick respawns exceeds the number of workers
    assert len(re.findall(r"Respawned uWSGI worker \d+", between)) <= 2 + 1, between


SIG_APP = """
import os, time, uwsgi
GATE = {gate!r}
def slow(sig):
    while os.path.exists(GATE):
        time.sleep(0.05)
uwsgi.register_signal(17, "worker1", slow)
def application(environ, start_response):
    if environ["PATH_INFO"] == "/raise":
        uwsgi.signal(17)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@pytest.mark.parametrize("kind", ["imperium", "uwsgi"])
def test_status_while_a_signal_handler_runs(procs: Procs, tmp_path: Path, kind: str) -> None:
    """A worker running the handler of uWSGI signal 17 is "sig17" in the stats (uWSGI's
    ``sigN``), and "idle" again once the handler returns."""
    from tests.conftest import read_json

    if kind == "uwsgi":
        need_uwsgi()
    gate = tmp_path / "gate"
    gate.write_text("hold")
    (tmp_path / "sig_app.py").write_text(SIG_APP.format(gate=str(gate)))
    port, stats = free_port(), free_port()
    ini = tmp_path / f"{kind}.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = %d/sig_app.py\nmaster = true\n"
                   f"processes = 2\nstats = 127.0.0.1:{stats}\n")
    p = procs.start(backend_argv(kind, ini), cwd=tmp_path)
    wait_until(lambda: status_of(port) == 200 or p.poll() is not None, 20, message=f"{kind} serving")
    assert get(port, "/raise")[0] == 200

    def worker1() -> str:
        return read_json(stats)["workers"][0]["status"]
    wait_until(lambda: worker1() == "sig17", 10, message=f"{kind}: worker 1 in the handler")
    assert get(port)[0] == 200  # worker 2 serves meanwhile
    gate.unlink()
    wait_until(lambda: worker1() == "idle", 10, message=f"{kind}: the handler returned")

