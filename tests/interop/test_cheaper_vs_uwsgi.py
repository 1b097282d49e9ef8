"""The cheaper subsystem, twin tests: the same ini run by Debian's uWSGI and by Imperium.

What is deterministic is compared: the workers started (``cheaper-initial``, clamped with a
warning), workers added while requests are held in flight (spare: one more than the busy
ones; backlog: until the listen queue is no longer than ``cheaper-overload``; busyness with
its plugin: while the window is busier than ``cheaper-busyness-max``), the return to
``cheaper`` once the load is released, the stats of cheaped workers, and the values both
refuse at start. Overload periods are one or two seconds so the tests stay short.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.request import urlopen

import pytest

from tests.conftest import IMPERIUM, Procs, free_port, port_open, read_json, wait_until
from tests.fixtures.load import HOLD_APP, HeldLoad, fifo_write, running
from tests.interop.helpers import VASSAL_BINARY, backend_argv, need_uwsgi

KINDS = ("imperium", "uwsgi")


def write_ini(d: Path, body: str, processes: int) -> tuple[Path, int, int]:
    d.mkdir(parents=True, exist_ok=True)
    http, stats = free_port(), free_port()
    ini = d / "c.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{http}\nwsgi-file = {HOLD_APP}\nmaster = true\n"
                   f"processes = {processes}\nstats = 127.0.0.1:{stats}\n{body}")
    return ini, http, stats


def start(procs: Procs, tmp: Path, kind: str, body: str, processes: int = 4) -> dict:
    need_uwsgi()
    ini, http, stats = write_ini(tmp / kind, body, processes)
    p = procs.start(backend_argv(kind, ini), cwd=tmp / kind)
    wait_until(lambda: p.poll() is not None or (port_open(stats) and port_open(http)), 20,
               message=f"{kind} up")
    assert p.poll() is None, procs.output(p)[-3000:]
    return {"proc": p, "http": http, "stats": stats, "gate": tmp / kind / "gate"}


def load(srv: dict, name: str) -> HeldLoad:
    return HeldLoad(srv["http"], srv["gate"].with_name(name))


@pytest.mark.parametrize("kind", KINDS)
def test_initial_workers_and_the_cheap_ones_in_the_stats(procs: Procs, tmp_path: Path, kind: str) -> None:
    srv = start(procs, tmp_path, kind, "cheaper = 1\ncheaper-initial = 3\ncheaper-overload = 30\n", 5)
    wait_until(lambda: running(srv["stats"]) == 3, 20, message="3 initial workers")
    workers = read_json(srv["stats"])["workers"]
    assert [w["status"] for w in workers[3:]] == ["cheap", "cheap"]
    # slots never spawned: pid 0, and (uWSGI's quirk) id 0
    assert [(w["id"], w["pid"], w["respawn_count"]) for w in workers[3:]] == [(0, 0, 0), (0, 0, 0)]
    assert [w["id"] for w in workers[:3]] == [1, 2, 3]
    # the same in the uwsgi module
    with urlopen(f"http://127.0.0.1:{srv['http']}/workers", timeout=10) as resp:
        seen = json.loads(resp.read())
    assert seen[3:] == [[0, "cheap"], [0, "cheap"]] and [w[0] for w in seen[:3]] == [1, 2, 3]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("initial, expected, warning", [
    (9, 3, "must be lower or equal than worker count (3), using 3 as initial number of workers"),
    (1, 2, "must be equal or higher than cheaper (2), using 2 as initial number of workers"),
])
def test_initial_out_of_range_is_clamped_with_a_warning(procs: Procs, tmp_path: Path, kind: str, initial: int,
                                                        expected: int, warning: str) -> None:
    srv = start(procs, tmp_path, kind, f"cheaper = 2\ncheaper-initial = {initial}\ncheaper-overload = 30\n", 3)
    wait_until(lambda: running(srv["stats"]) == expected, 20, message=f"{expected} workers")
    out = procs.output(srv["proc"])
    assert f"warning: invalid cheaper-initial value ({initial}), {warning}" in out


@pytest.mark.parametrize("kind", KINDS)
def test_spare_adds_a_worker_per_busy_spell_and_returns_to_the_minimum(procs: Procs, tmp_path: Path,
                                                                       kind: str) -> None:
    srv = start(procs, tmp_path, kind, "cheaper = 1\ncheaper-overload = 1\n", 4)
    wait_until(lambda: running(srv["stats"]) == 1, 20, message="one worker")
    first = load(srv, "gate1").hold(2)
    # every busy spell adds one worker, until one stays idle: two held, three running
    wait_until(lambda: running(srv["stats"]) == 3, 30, message="3 workers for 2 held requests")
    second = load(srv, "gate2").hold(2)
    wait_until(lambda: running(srv["stats"]) == 4, 30, message="processes reached")
    answers = first.release() + second.release()
    assert len(answers) == 4 and all(a.startswith(b"HTTP/1.1 200") for a in answers), answers
    wait_until(lambda: running(srv["stats"]) == 1, 30, message="back to cheaper = 1")
    statuses = [w["status"] for w in read_json(srv["stats"])["workers"]]
    assert statuses.count("cheap") == 3
    out = procs.output(srv["proc"])
    assert "uWSGI worker" in out and "cheaped." in out


@pytest.mark.parametrize("kind", KINDS)
def test_backlog_adds_workers_while_the_queue_is_long(procs: Procs, tmp_path: Path, kind: str) -> None:
    srv = start(procs, tmp_path, kind, "cheaper = 1\ncheaper-algo = backlog\ncheaper-overload = 2\n", 6)
    wait_until(lambda: running(srv["stats"]) == 1, 20, message="one worker")
    held = load(srv, "gate").hold(6)
    # 1 busy and 5 queued; each new worker takes one from the queue until 2 (not > 2) wait
    wait_until(lambda: running(srv["stats"]) == 4, 30, message="4 workers, 2 requests queued")
    wait_until(lambda: read_json(srv["stats"])["sockets"][0]["queue"] == 2, 10, message="queue of 2")
    answers = held.release()
    assert len(answers) == 6 and all(a.startswith(b"HTTP/1.1 200") for a in answers)
    wait_until(lambda: running(srv["stats"]) == 1, 30, message="back to cheaper = 1")


@pytest.mark.parametrize("kind", KINDS)
def test_busyness_adds_workers_for_a_busy_window_and_cheaps_idle_ones(procs: Procs, tmp_path: Path,
                                                                      kind: str) -> None:
    srv = start(procs, tmp_path, kind,
                "plugin = cheaper_busyness\ncheaper = 1\ncheaper-algo = busyness\ncheaper-overload = 1\n"
                "cheaper-busyness-multiplier = 1\n", 4)
    wait_until(lambda: running(srv["stats"]) == 1, 20, message="one worker")
    held = load(srv, "gate").hold(2)
    # 100% busy windows add workers while the average stays above 50%: 2 held of 3 is 66%
    wait_until(lambda: running(srv["stats"]) == 4, 30, message="4 workers")
    held.release()
    wait_until(lambda: running(srv["stats"]) == 1, 30, message="back to cheaper = 1")
    out = procs.output(srv["proc"])
    assert "[busyness] settings: min=25%, max=50%, overload=1, multiplier=1, respawn penalty=2" in out
    assert "average busyness is at 100%, will spawn 1 new worker(s)" in out
    assert "cheap one of" in out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("body, processes, message", [
    ("cheaper = 2\n", 2, "invalid cheaper value: must be lower than processes"),
    ("cheaper = 5\n", 2, "invalid cheaper value: must be lower than processes"),
    ("cheaper = 1\ncheaper-rss-limit-soft = 1000000\n", 2,
     "enabling cheaper-rss-limit-soft requires enabling also memory-report"),
    ("cheaper = 1\nmemory-report = true\ncheaper-rss-limit-hard = 1000000\n", 2,
     "enabling cheaper-rss-limit-hard requires setting also cheaper-rss-limit-soft"),
    ("cheaper = 1\nmemory-report = true\ncheaper-rss-limit-soft = 2000000\ncheaper-rss-limit-hard = 1000000\n", 2,
     "cheaper-rss-limit-hard value must be higher than cheaper-rss-limit-soft value"),
])
def test_bad_values_are_refused_at_start(tmp_path: Path, kind: str, body: str, processes: int, message: str) -> None:
    need_uwsgi()
    ini, _http, _stats = write_ini(tmp_path / kind, body, processes)
    out = subprocess.run(backend_argv(kind, ini), cwd=tmp_path / kind, capture_output=True, timeout=30,
                         start_new_session=True)
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert out.returncode == 1, text[-2000:]
    assert message in text
    if kind == "imperium" and VASSAL_BINARY == IMPERIUM:
        line = next(ln for ln in text.splitlines() if message in ln)
        assert line.startswith("imperium: cheaper") and f"{ini}:" in line  # the option and where


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_algorithm_falls_back_to_spare(procs: Procs, tmp_path: Path, kind: str) -> None:
    srv = start(procs, tmp_path, kind, "cheaper = 1\ncheaper-algo = nosuch\ncheaper-overload = 1\n", 3)
    wait_until(lambda: "falling back to spare" in procs.output(srv["proc"]), 20, message="the fallback line")
    assert "unable to find requested cheaper algorithm" in procs.output(srv["proc"])
    held = load(srv, "gate").hold(1)
    wait_until(lambda: running(srv["stats"]) == 2, 30, message="spare at work")
    held.release()



@pytest.mark.parametrize("kind", KINDS)
def test_master_fifo_plus_and_minus_with_the_manual_algorithm(procs: Procs, tmp_path: Path, kind: str) -> None:
    fifo = tmp_path / kind / "fifo"
    srv = start(procs, tmp_path, kind, f"cheaper = 1\ncheaper-algo = manual\nmaster-fifo = {fifo}\n", 4)
    wait_until(lambda: running(srv["stats"]) == 1, 20, message="one worker")
    fifo_write(fifo, b"+++")
    wait_until(lambda: running(srv["stats"]) == 4, 20, message="three more workers")
    fifo_write(fifo, b"--")
    wait_until(lambda: running(srv["stats"]) == 2, 20, message="two cheaped")
    # manual means the FIFO only: even below cheaper
    fifo_write(fifo, b"--")
    wait_until(lambda: running(srv["stats"]) == 0, 20, message="every worker cheaped")
    fifo_write(fifo, b"+")
    wait_until(lambda: running(srv["stats"]) == 1, 20, message="one back")
