"""The spooler in a real instance: bad calls, a job that kills its spooler, restarts,
max-tasks, harakiri, several processes, spooler-import/chdir, the rest of the API."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import free_port, read_json, wait_until
from tests.fixtures.background import Backend


def ev(b: Backend, expr: str) -> tuple[int, str]:
    return b.get("/eval?" + quote(expr))


def spooler(tmp_path: Path, *extra: str) -> list[str]:
    return [f"spooler = {tmp_path / 'spool'}", "spooler-frequency = 1", *extra]


def test_spool_without_a_spooler_is_a_clear_error(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, [], "")
    status, body = ev(b, "uwsgi.spool({b'a': b'1'})")
    assert status == 500
    assert body == ("AttributeError: module 'uwsgi' has no attribute 'spool': this instance has no "
                    "spooler (add spooler = DIRECTORY)")
    assert ev(b, "hasattr(uwsgi, 'send_to_spooler'), uwsgi.i_am_the_spooler()") == (200, "(False, None)")


@pytest.mark.parametrize("expr,message", [
    ("uwsgi.spool({b'priority': b'../../etc'})", "priority must be a number (it names a subdirectory)"),
    ("uwsgi.spool({b'at': b'soon'})", "uwsgi.spool: at must be a Unix time, not b'soon'"),
    ("uwsgi.spool({b'spooler': b'/nowhere'})", 'uwsgi.spool: unable to find spooler "/nowhere"'),
    ("uwsgi.spool([1, 2])", "The argument of spooler callable must be a dictionary"),
    ("uwsgi.spool({b'a': object()})", "the value of 'a' must be bytes or str, not object"),
    ("uwsgi.spool({b'a': b'x' * 70000})", "args buffer is limited to 64k, use the 'body' for bigger values"),
    ("uwsgi.set_spooler_frequency(-1)", "seconds must be an integer >= 0"),
])
def test_bad_spool_calls(procs, tmp_path, expr, message) -> None:
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path), "spooler")
    status, body = ev(b, expr)
    assert status == 500 and message in body, body
    assert not list((tmp_path / "spool").rglob("uwsgi_spoolfile_on_*"))
    assert not (tmp_path.parent / "etc").exists()


def test_api_jobs_pids_get_task_frequency(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path, "spooler-processes = 2",
                                                     "spooler-frequency = 3600"), "")
    # due in an hour: a spooler whose first scan comes late (a loaded machine) leaves it alone
    at = str(int(time.time()) + 3600).encode()
    path = ev(b, f"uwsgi.spool({{b'a': b'1', b'at': {at!r}, b'body': b'BODY'}}).decode()")[1].strip("'")
    assert ev(b, "[p.decode() for p in uwsgi.spooler_jobs()]")[1] == repr([path])
    task = ev(b, f"uwsgi.spooler_get_task({path!r})")[1]
    assert task == repr({"spooler_task_name": path.encode(), b"a": b"1", b"at": at, "body": b"BODY"})
    pids = json.loads(ev(b, "uwsgi.spooler_pids()")[1])
    assert len(pids) == 2 and all(p > 0 for p in pids)
    # the first spoolers live: forked before the master's control service started, they
    # once died at birth (a traceback swallowed) and only their replacements served
    assert "OOOPS" not in b.output() and "Traceback" not in b.output()
    assert ev(b, "uwsgi.spooler_pid()")[1] == str(pids[0])
    assert ev(b, "uwsgi.set_spooler_frequency(1)") == (200, "True")
    assert ev(b, "uwsgi.spooler_get_task('/no/such/task')") == (200, "None")
    assert ev(b, "uwsgi.spoolers")[1] == repr((str((tmp_path / "spool").resolve()).encode(),))


def test_a_job_that_kills_its_spooler_does_not_block_the_others(procs, tmp_path) -> None:
    # one worker: the job files are named by its pid and a counter, so in name order
    # (spooler-ordered) the crashing job, spooled first, always comes first
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path, "spooler-ordered = true"), "spooler",
                processes=1)
    bad = b.get("/spool?crash=1")[1]
    b.get("/spool?good=1")
    b.get("/spool?good=2")
    wait_until(lambda: sorted(json.loads(e[2]).get("good", "") for e in b.events("job")
                              if "good" in e[2]) == ["1", "2"], 20, message="the good jobs")
    wait_until(lambda: f"job {os.path.basename(bad)} killed the previous spooler process" in b.output(),
               10, message="the respawned spooler naming the job that killed the last one")
    out = b.output()
    assert "OOOPS the spooler is no more...trying respawn..." in out
    assert json.loads(b.events("job")[0][2]).get("crash") == "1"  # it did come first
    assert os.path.exists(bad)  # the poisonous job stays: a fixed program can still run it
    assert b.get("/info")[0] == 200


def test_a_job_survives_a_restart_of_the_instance(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path), "spooler")
    at = int(time.time()) + 2
    path = b.get(f"/spool?later=1&at={at}")[1]
    assert int(os.stat(path).st_mtime) == at  # `at` is the file's mtime, as uWSGI writes it
    b.stop()
    assert os.path.exists(path) and not b.events("job")
    b.start()
    job = json.loads(b.wait_events("job")[0][2])
    assert job["later"] == "1" and job["at"] == str(at)
    assert time.time() >= at
    wait_until(lambda: not os.path.exists(path), 10, message="file removed")


def test_max_tasks_recycles_the_spooler(procs, tmp_path) -> None:
    stats = free_port()
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path, "spooler-max-tasks = 2",
                                                     f"stats = 127.0.0.1:{stats}"), "spooler")
    for i in range(3):
        b.get(f"/spool?n={i}")
    b.wait_events("job", 3)
    assert "maximum number of tasks reached (2) recycling ..." in b.output()
    wait_until(lambda: read_json(stats)["spoolers"][0]["respawns"] >= 1, 10, message="respawn counted")


def test_spooler_harakiri_kills_a_stuck_job(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path, "spooler-harakiri = 1"), "spooler")
    path = b.get("/spool?sleep=30")[1]
    wait_until(lambda: "*** HARAKIRI ON THE SPOOLER (pid: " in b.output(), 15, message="harakiri")
    wait_until(lambda: "OOOPS the spooler is no more" in b.output(), 10, message="respawn")
    assert os.path.exists(path)


def test_ignored_job_stays_and_unknown_files_are_left_alone(procs, tmp_path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "notes.txt").write_text("not a job")
    (spool / "uwsgi_spoolfile_on_broken").write_bytes(b"\x11\x50\x00\x00abc")  # truncated vars
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path), "spooler")
    path = b.get("/spool?ret=ignore")[1]
    wait_until(lambda: "unable to find the spooler function" in b.output(), 10, message="ignore logged")
    assert os.path.exists(path) and (spool / "notes.txt").exists()
    wait_until(lambda: not (spool / "uwsgi_spoolfile_on_broken").exists(), 10, message="broken job removed")
    assert "uwsgi_spoolfile_on_broken is not a spooler job" in b.output()


def test_spooler_import_and_chdir(procs, tmp_path) -> None:
    (tmp_path / "jobs.py").write_text(
        "import os, uwsgi\n"
        "def run(job):\n"
        "    open(os.environ['EVENTS'], 'a').write('imported spooler ' + os.getcwd() + '\\n')\n"
        "    return uwsgi.SPOOL_OK\n"
        "uwsgi.spooler = run\n")
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path, f"spooler-import = {tmp_path / 'jobs.py'}",
                                                     f"spooler-chdir = {tmp_path}"), "")
    b.get("/spool?x=1")
    assert b.wait_events("imported")[0][2] == str(tmp_path)
    # only the spooler imported it: the workers have no spooler function
    assert ev(b, "getattr(uwsgi, 'spooler', None)") == (200, "None")


def test_several_spooler_processes_run_each_job_once(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path, "spooler-processes = 3"), "spooler")
    n = 60
    for i in range(n):
        b.get(f"/spool?n={i}&sleep=0.01")
    b.wait_events("job", n, timeout=60)
    wait_until(lambda: not list((tmp_path / "spool").glob("uwsgi_spoolfile_on_*")), 20, message="all done")
    runs = sorted(int(json.loads(e[2])["n"]) for e in b.events("job"))
    assert runs == list(range(n))  # each exactly once, whichever process ran it


def test_a_job_spooled_while_another_runs_is_not_left_for_the_next_pass(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, [f"spooler = {tmp_path / 'spool'}", "spooler-frequency = 3600"],
                "spooler")
    b.get("/spool?first=1&sleep=1")
    b.wait_events("job")  # the first one is running now
    b.get("/spool?second=1")
    # uWSGI would leave it until the next pass, an hour away
    wait_until(lambda: len(b.events("job")) == 2, 15, message="the second job right after the first")


def test_a_symlinked_priority_directory_is_not_followed(procs, tmp_path) -> None:
    from vassal.api.spooler import pack_job

    outside = tmp_path / "outside"
    outside.mkdir()
    job = outside / "uwsgi_spoolfile_on_x_1_1_1_1_1"
    job.write_bytes(pack_job([(b"planted", b"1")]))
    (tmp_path / "spool").mkdir()
    os.symlink(outside, tmp_path / "spool" / "8")  # looks like priority 8
    b = Backend(procs, "imperium", tmp_path, spooler(tmp_path), "spooler")
    b.get("/spool?after=1")
    b.wait_events("job")
    b.get("/spool?again=1")  # a second scan
    wait_until(lambda: len(b.events("job")) == 2, 10, message="second job")
    assert job.exists() and not any("planted" in e[2] for e in b.events("job"))
