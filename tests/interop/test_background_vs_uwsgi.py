"""Signals, the spooler and mules side by side with Debian's real uWSGI.

Each test runs the same app and options against both servers and asserts the same
observable behaviour: a timer firing every second, a cron signal, a signal to all workers or
to one, a spooled job run once and its file removed, a mule receiving a message or a signal,
a farm, the stats sections; and spool files written by one and run by the other.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import read_json, wait_until
from tests.fixtures.background import Backend
from tests.integration.emperor_harness import stays
from tests.interop.helpers import need_uwsgi

KINDS = ("imperium", "uwsgi")


@pytest.fixture(autouse=True)
def _real_uwsgi() -> None:
    need_uwsgi()


def _job(event: list[str]) -> dict:
    return json.loads(event[2])


@pytest.mark.parametrize("kind", KINDS)
def test_timer_signal_every_second(procs, tmp_path, kind) -> None:
    b = Backend(procs, kind, tmp_path, [], "timer")
    got = b.wait_events("signal", 3, timeout=20)
    assert {e[2] for e in got} == {"20"}
    assert {e[1] for e in got} <= {"w1", "w2"}


@pytest.mark.parametrize("kind", KINDS)
def test_cron_signal_every_minute_fires_in_the_current_minute(procs, tmp_path, kind) -> None:
    b = Backend(procs, kind, tmp_path, [], "cron")
    got = b.wait_events("signal", 1, timeout=10)
    assert got[0][2] == "21" and got[0][1] in ("w1", "w2")
    assert "[uwsgi-cron] routing signal 21" in b.output()


@pytest.mark.parametrize("kind", KINDS)
def test_signal_to_all_workers_and_to_one(procs, tmp_path, kind) -> None:
    b = Backend(procs, kind, tmp_path, [], "workers,target")
    assert b.get("/signal/10") == (200, "sent")
    got = b.wait_events("signal", 2)
    assert sorted(e[1] for e in got) == ["w1", "w2"]
    b.get("/signal/11")
    wait_until(lambda: any(e[2] == "11" for e in b.events("signal")), 10, message="signal 11")
    assert [e[1] for e in b.events("signal") if e[2] == "11"] == ["w2"]


@pytest.mark.parametrize("kind", KINDS)
def test_spooled_job_runs_once_and_its_file_is_removed(procs, tmp_path, kind) -> None:
    spool = tmp_path / kind / "spool"
    b = Backend(procs, kind, tmp_path, [f"spooler = {spool}", "spooler-frequency = 1"], "spooler")
    status, path = b.get("/spool?a=1&b=two")
    assert status == 200 and path.startswith(str(spool.resolve()) + "/uwsgi_spoolfile_on_")
    job = _job(b.wait_events("job")[0])
    assert job == {"a": "1", "b": "two", "spooler_task_name": os.path.basename(path)}
    assert b.events("job")[0][1] == "spooler"
    wait_until(lambda: not os.path.exists(path), 10, message="the spool file removed")
    b.get("/spool?second=1")  # once this one ran, the first had its chance to run twice
    wait_until(lambda: len(b.events("job")) == 2, 10, message="second job")
    assert [_job(e).get("a") for e in b.events("job")].count("1") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_retried_job_stays_until_it_succeeds(procs, tmp_path, kind) -> None:
    spool = tmp_path / kind / "spool"
    b = Backend(procs, kind, tmp_path, [f"spooler = {spool}", "spooler-frequency = 1"], "spooler")
    _, path = b.get("/spool?ret=retry")
    b.wait_events("job", 2, timeout=15)  # run again at each pass
    assert os.path.exists(path)


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_waits_for_its_at_time(procs, tmp_path, kind) -> None:
    spool = tmp_path / kind / "spool"
    b = Backend(procs, kind, tmp_path, [f"spooler = {spool}", "spooler-frequency = 1"], "spooler")
    at = int(time.time()) + 4
    _, path = b.get(f"/spool?a=1&at={at}")
    b.get("/spool?now=1")
    assert _job(b.wait_events("job")[0]).get("now") == "1"  # the spooler is scanning
    stays(lambda: len(b.events("job")) == 1, at - time.time() - 1, "the job not run before its time")
    job = _job(b.wait_events("job", 2)[1])
    assert time.time() >= at and job["a"] == "1" and job["at"] == str(at)
    wait_until(lambda: not os.path.exists(path), 10, message="the spool file removed")


@pytest.mark.parametrize("kind", KINDS)
def test_priority_jobs_with_spooler_ordered(procs, tmp_path, kind) -> None:
    spool = tmp_path / kind / "spool"
    b = Backend(procs, kind, tmp_path, [f"spooler = {spool}", "spooler-ordered = true",
                                        "spooler-frequency = 1"], "spooler")
    _, path = b.get("/spool?priority=5&x=y")
    assert Path(path).parent == spool.resolve() / "5"
    job = _job(b.wait_events("job")[0])
    assert job["x"] == "y" and job["priority"] == "5"
    wait_until(lambda: not os.path.exists(path), 10, message="the spool file removed")


@pytest.mark.parametrize("kind", KINDS)
def test_mule_receives_messages_and_signals(procs, tmp_path, kind) -> None:
    b = Backend(procs, kind, tmp_path, ["mule = true", "farm = pool:1"], "mule")
    assert b.get("/mule/1?hello") == (200, "True")
    assert b.wait_events("message")[0][1:] == ["m1", "hello"]
    assert b.get("/mule/0?any") == (200, "True")
    assert b.get("/farm/pool?farmed") == (200, "True")
    wait_until(lambda: len(b.events("message")) == 3, 10, message="three messages")
    assert sorted(e[2] for e in b.events("message")) == ["any", "farmed", "hello"]
    b.get("/signal/13")
    assert b.wait_events("signal")[0][1:] == ["m1", "13"]


@pytest.mark.parametrize("kind", KINDS)
def test_stats_show_spoolers_and_no_mules(procs, tmp_path, kind) -> None:
    from tests.conftest import free_port

    stats = free_port()
    spool = tmp_path / kind / "spool"
    b = Backend(procs, kind, tmp_path, [f"spooler = {spool}", "mule = true", f"stats = 127.0.0.1:{stats}"],
                "spooler,mule")
    doc = wait_until(lambda: read_json(stats), 10, message="stats")
    assert "mules" not in doc  # uWSGI 2.0 does not show mules in its stats
    (entry,) = doc["spoolers"]
    assert list(entry) == ["dir", "pid", "tasks", "respawns", "running"]
    assert entry["dir"] == str(spool.resolve()) and entry["pid"] > 0
    b.get("/spool?a=1")
    b.wait_events("job")
    wait_until(lambda: read_json(stats)["spoolers"][0]["tasks"] == 1, 10, message="tasks counted")


@pytest.mark.parametrize("writer,runner", [("uwsgi", "imperium"), ("imperium", "uwsgi")])
def test_spool_files_written_by_one_run_by_the_other(procs, tmp_path, writer, runner) -> None:
    spool = tmp_path / "spool"
    # the writer has a spooler on the directory but no spooler function: it leaves jobs there
    w = Backend(procs, writer, tmp_path, [f"spooler = {spool}", "spooler-frequency = 3600"], "")
    paths = [w.get(q)[1] for q in ("/spool?a=1&body=payload", "/spool?priority=2&b=2")]
    assert all(os.path.exists(p) for p in paths)
    w.kill()
    r = Backend(procs, runner, tmp_path, [f"spooler = {spool}", "spooler-ordered = true",
                                         "spooler-frequency = 1"], "spooler")
    got = r.wait_events("job", 2)
    jobs = sorted((_job(e) for e in got), key=lambda j: j["spooler_task_name"])
    by_key = {("a" if "a" in j else "b"): j for j in jobs}
    assert by_key["a"]["a"] == "1" and by_key["a"]["body"] == "payload"
    assert by_key["b"] == {"b": "2", "priority": "2", "spooler_task_name": os.path.basename(paths[1])}
    wait_until(lambda: not any(os.path.exists(p) for p in paths), 10, message="both files removed")
