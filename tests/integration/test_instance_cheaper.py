"""The cheaper subsystem on real processes, where there is no uWSGI 2.0 twin: spare2 (uWSGI
2.1), the RSS limits, waking from ``idle``, a crash in cheaper mode, the algorithm list.
(The twin tests against Debian's uWSGI are in tests/interop/test_cheaper_vs_uwsgi.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import IMPERIUM, Procs, free_port, read_json, wait_until
from tests.fixtures.instance_helpers import get, start
from tests.fixtures.load import HOLD_APP, HeldLoad, fifo_write, running


def cheaper_instance(procs: Procs, *args: str, processes: int = 4) -> dict:
    port, stats = free_port(), free_port()
    p = start(procs, "--wsgi-file", str(HOLD_APP), "-M", "-p", str(processes), "--stats", f"127.0.0.1:{stats}",
              *args, port=port)
    wait_until(lambda: read_json(stats), 10, message="stats server")
    return {"proc": p, "http": port, "stats": stats}


def test_spare2_keeps_idle_workers_ready(procs: Procs, tmp_path: Path) -> None:
    srv = cheaper_instance(procs, "--cheaper", "1", "--cheaper-algo", "spare2", "--cheaper-idle", "1",
                           "--cheaper-step", "2", processes=5)
    wait_until(lambda: running(srv["stats"]) == 1, 20, message="one worker")
    held = HeldLoad(srv["http"], tmp_path / "gate").hold(3)
    # three busy: one more idle than that is kept ready, two spawned at a time
    wait_until(lambda: running(srv["stats"]) == 4, 30, message="3 busy + 1 idle")
    answers = held.release()
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
    wait_until(lambda: running(srv["stats"]) == 1, 30, message="back to one idle worker")


def test_hard_rss_limit_cheaps_down_to_one_worker(procs: Procs) -> None:
    srv = cheaper_instance(procs, "--cheaper", "1", "--cheaper-initial", "3", "--cheaper-overload", "30",
                           "--memory-report", "--cheaper-rss-limit-soft", "1", "--cheaper-rss-limit-hard", "2")
    wait_until(lambda: running(srv["stats"]) == 1, 30, message="cheaped down to one")
    out = procs.output(srv["proc"])
    assert "cheaper hard rss memory limit exceeded, cheap one of 3 workers" in out
    assert "cheaper hard rss memory limit exceeded, cheap one of 2 workers" in out
    # never the last one: it still answers
    assert get(srv["http"], "/")[0] == 200
    assert running(srv["stats"]) == 1


def test_soft_rss_limit_stops_the_algorithm_from_adding_workers(procs: Procs, tmp_path: Path) -> None:
    srv = cheaper_instance(procs, "--cheaper", "1", "--cheaper-algo", "busyness", "--cheaper-overload", "1",
                           "--memory-report", "--cheaper-rss-limit-soft", "1")
    held = HeldLoad(srv["http"], tmp_path / "gate").hold(1)
    # the busy window wants a worker; the limit leaves none to spawn: the plugin says so
    wait_until(lambda: "average busyness is at 100% but we already started maximum number of workers "
               "available with current limits (1)" in procs.output(srv["proc"]), 30, message="refusal")
    assert running(srv["stats"]) == 1
    held.release()


def test_waking_from_idle_spawns_only_the_minimum(procs: Procs) -> None:
    srv = cheaper_instance(procs, "--cheaper", "1", "--cheaper-initial", "3", "--cheaper-overload", "30",
                           "--idle", "1")
    wait_until(lambda: "cheap mode: stopping the workers" in procs.output(srv["proc"]), 20, message="idle")
    wait_until(lambda: running(srv["stats"]) == 0, 20, message="every worker stopped")
    assert [w["status"] for w in read_json(srv["stats"])["workers"]] == ["cheap"] * 4
    assert get(srv["http"], "/")[0] == 200
    assert running(srv["stats"]) == 1  # cheaper, not processes (nor cheaper-initial)


def test_a_crashed_worker_is_respawned_and_cheaped_slots_stay_cheap(procs: Procs) -> None:
    srv = cheaper_instance(procs, "--cheaper", "1", "--cheaper-initial", "2", "--cheaper-overload", "30")
    wait_until(lambda: running(srv["stats"]) == 2, 20, message="two workers")
    before = read_json(srv["stats"])["workers"]
    os.kill(before[0]["pid"], signal.SIGKILL)
    wait_until(lambda: read_json(srv["stats"])["workers"][0]["pid"] not in (0, before[0]["pid"]), 20,
               message="worker 1 respawned")
    after = read_json(srv["stats"])["workers"]
    assert [w["status"] for w in after[2:]] == ["cheap", "cheap"]
    assert running(srv["stats"]) == 2
    assert "DAMN ! worker 1" in procs.output(srv["proc"])


def test_algorithm_list_is_printed_and_the_instance_carries_on(tmp_path: Path) -> None:
    port = free_port()
    out = subprocess.run([IMPERIUM, "--cheaper-algos-list", "--http-socket", f"127.0.0.1:{port}", "--cheaper",
                          "5", "-p", "2"], capture_output=True, timeout=30, cwd=tmp_path)
    text = (out.stdout + out.stderr).decode()
    listed = text.split("*** uWSGI loaded cheaper algorithms ***\n", 1)[1].split("--- end")[0].split()
    assert listed == ["busyness", "spare", "spare2", "backlog", "manual"]
    # it carried on to the next check: here a refusal, so the test needs no server
    assert out.returncode == 1 and "invalid cheaper value: must be lower than processes" in text


def test_fifo_cheap_mode_then_plus_finds_the_slots_spawnable(procs: Procs, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    srv = cheaper_instance(procs, "--cheaper", "1", "--cheaper-initial", "3", "--cheaper-algo", "manual",
                           "--master-fifo", str(fifo))
    wait_until(lambda: running(srv["stats"]) == 3, 20, message="three workers")
    fifo_write(fifo, b"C")
    wait_until(lambda: running(srv["stats"]) == 0, 20, message="cheap mode")
    assert get(srv["http"], "/")[0] == 200  # wakes it: cheaper = 1 worker
    assert running(srv["stats"]) == 1
    fifo_write(fifo, b"++")
    wait_until(lambda: running(srv["stats"]) == 3, 20, message="two more from the FIFO")


def test_fifo_plus_without_cheaper_mode_says_so(procs: Procs, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    srv = cheaper_instance(procs, "--master-fifo", str(fifo), processes=2)
    fifo_write(fifo, b"+")
    wait_until(lambda: "uwsgi_cheaper_increase: cheaper mode is off" in procs.output(srv["proc"]), 20,
               message="the notice")
    assert running(srv["stats"]) == 2
