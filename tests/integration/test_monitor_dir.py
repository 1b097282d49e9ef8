"""dir:// and glob:// under a real emperor: inotify, the safety-net rescan, and the odd cases."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import Procs, wait_until
from tests.integration.emperor_harness import SH_VASSAL, Emperor, bump_mtime, stays


def test_drop_detected_fast_and_chdir(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-freq", "30")  # no rescan: only inotify can see it
    t0 = time.time()
    e.ini("app.ini")
    start = e.wait_records("app.ini", "start")[0]
    # inotify, not the rescan 30 s away (no speed is asserted: make bench measures it;
    # a loaded CI box once took 3.5 s)
    assert start["t"] - t0 < 15.0
    assert e.stats()["cwd"] == str(e.dir)  # the emperor chdir()s into the vassal dir
    assert e.stop() == 0


def test_file_replaced_by_rename(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-freq", "30")
    ini = e.ini("app.ini", version=1)
    first = e.wait_records("app.ini", "start")[0]
    e.wait_vassal("app.ini", loyal=1)
    # an atomic deploy: write elsewhere, rename over the config
    tmp = e.dir / ".app.ini.tmp"
    tmp.write_text(ini.read_text().replace("fake-version = 1", "fake-version = 2"))
    st = ini.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    os.replace(tmp, ini)
    reload = e.wait_records("app.ini", "reload")[0]
    assert reload["pid"] == first["pid"] and "fake-version = 2" in reload["config"]
    assert e.vassal("app.ini")["pid"] == first["pid"]
    assert e.records("app.ini", "stop") == []
    # renaming a config away is a deletion; renaming it back a new vassal
    away = tmp_path / "app.ini.away"
    os.rename(ini, away)
    e.wait_records("app.ini", "stop")
    e.wait_gone("app.ini")
    os.rename(away, ini)
    e.wait_records("app.ini", "start", 2)
    assert e.stop() == 0


def test_safety_net_rescan_finds_changes_outside_the_dir(procs: Procs, tmp_path: Path) -> None:
    """A symlinked config changes where inotify does not look: the rescan catches it."""
    templates = tmp_path / "templates"
    templates.mkdir()
    e = Emperor(procs, tmp_path)  # emperor-freq 1
    skel = e.ini("app.skel", directory=templates, record=tmp_path / "app.jsonl")
    (e.dir / "app.ini").symlink_to(skel)
    first = e.wait_records("app.ini", "start", record=tmp_path / "app.jsonl")[0]
    assert first["argv"][-1] == "app.ini"
    bump_mtime(skel)  # the target's mtime is what counts (stat() follows the link)
    e.wait_records("app.ini", "reload", record=tmp_path / "app.jsonl", timeout=5)
    assert e.stop() == 0


def test_nofollow_uses_the_symlinks_own_mtime(procs: Procs, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    e = Emperor(procs, tmp_path, "--emperor-nofollow")
    skel = e.ini("app.skel", directory=templates, record=tmp_path / "app.jsonl")
    (e.dir / "app.ini").symlink_to(skel)
    e.wait_records("app.ini", "start", record=tmp_path / "app.jsonl")
    bump_mtime(skel)
    stays(lambda: not e.records("app.ini", "reload", record=tmp_path / "app.jsonl"), 2.5,
          "no reload: with emperor-nofollow the link's own mtime did not change")
    os.utime(e.dir / "app.ini", ns=(time.time_ns(), time.time_ns() + 5 * 10**9), follow_symlinks=False)
    e.wait_records("app.ini", "reload", record=tmp_path / "app.jsonl", timeout=5)
    assert e.stop() == 0


def test_unreadable_file(procs: Procs, tmp_path: Path) -> None:
    """An unreadable config is neither started nor reloaded, and logged once by name."""
    work = Path(tempfile.mkdtemp(prefix="imperium-unreadable-", dir="/tmp"))
    try:
        work.chmod(0o777)
        wrap = []
        if os.geteuid() == 0:  # root reads everything: run the emperor as nobody
            wrap = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        (work / "vassals").mkdir()
        (work / "vassals").chmod(0o777)
        # the bash vassal: runnable by nobody wherever the test's python lives
        e = Emperor(procs, work, wrap=wrap, cwd=work, binary=str(SH_VASSAL))
        secret = e.dir / "secret.ini"
        staged = work / "secret.ini"
        staged.write_text("[uwsgi]\n")
        staged.chmod(0o000)
        os.rename(staged, secret)  # unreadable from the moment it appears
        (e.dir / "open.ini").write_text("[uwsgi]\n")
        e.wait_vassal("open.ini", loyal=1)
        e.wait_log(f"[emperor] vassal config {secret} is not readable: not starting or reloading "
                   "secret.ini until it is")
        stays(lambda: e.vassal("secret.ini") is None, 1.5, "an unreadable config is not started")
        assert e.log().count(f"{secret} is not readable") == 1  # logged once, not every rescan
        secret.chmod(0o644)  # an attrib event: started at once
        first = e.wait_vassal("secret.ini", loyal=1, timeout=5)
        # a running vassal whose config turns unreadable is left alone (not stopped)
        secret.chmod(0o000)
        bump_mtime(secret)
        stays(lambda: (v := e.vassal("secret.ini")) is not None and v["pid"] == first["pid"]
              and v["respawns"] == 0, 2.5, "the running vassal is neither stopped nor reloaded")
        assert e.stop() == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_directory_moved_away_and_back(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-freq", "30")  # only inotify: no rescan to help
    e.ini("app.ini")
    first = e.wait_records("app.ini", "start")[0]
    e.wait_vassal("app.ini", loyal=1)
    # moved away: the directory is unavailable, not empty: the vassal stays
    moved = tmp_path / "vassals.old"
    os.rename(e.dir, moved)
    e.wait_log(f"[emperor] monitor {e.dir} unavailable")
    # the watch follows the directory: a change in it there reaches us under the old path,
    # which no longer exists; it must not read as a deletion
    bump_mtime(moved / "app.ini")
    stays(lambda: (v := e.vassal("app.ini")) is not None and v["pid"] == first["pid"], 1.0,
          "a vassal outlives its directory being moved away")
    os.rename(moved, e.dir)
    e.wait_log(f"[emperor] monitor {e.dir} available again")
    assert e.vassal("app.ini")["pid"] == first["pid"]
    # and the directory is governed again, by inotify
    (e.dir / "app.ini").unlink()
    e.wait_records("app.ini", "stop")
    e.wait_gone("app.ini")
    assert e.stop() == 0


def test_directory_removed_and_recreated(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-freq", "30")  # only inotify: no rescan to help
    e.ini("app.ini")
    e.wait_records("app.ini", "start")
    e.wait_vassal("app.ini", loyal=1)
    # removed: its configs are deleted, so their vassals stop
    shutil.rmtree(e.dir)
    e.wait_records("app.ini", "stop")
    e.wait_gone("app.ini")
    # recreated: picked up again at once
    e.dir.mkdir()
    e.ini("new.ini")
    e.wait_records("new.ini", "start", timeout=5)
    e.ini("app.ini")
    e.wait_records("app.ini", "start", 2, timeout=5)
    assert e.stop() == 0


def test_two_monitors_naming_the_same_vassal(procs: Procs, tmp_path: Path) -> None:
    d1, d2 = tmp_path / "one", tmp_path / "two"
    d1.mkdir()
    d2.mkdir()
    e = Emperor(procs, tmp_path, dirs=[d1, d2])
    r1, r2 = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    e.ini("same.ini", directory=d1, record=r1)
    first = e.wait_records("same.ini", "start", record=r1)[0]
    assert first["cwd"] == str(d1)
    e.ini("same.ini", directory=d2, record=r2)
    e.wait_log(f"[emperor] vassal same.ini is also named by {d2}; {d1} keeps it")
    stays(lambda: not e.records("same.ini", record=r2) and len(e.stats()["vassals"]) == 1, 1.5,
          "one vassal per name: the second monitor waits")
    assert e.vassal("same.ini")["monitor"] == str(d1)
    # the owner drops it: the other monitor's file takes over (another file: restarted)
    (d1 / "same.ini").unlink()
    e.wait_log(f"[emperor] vassal same.ini now comes from {d2}: restarting it")
    second = e.wait_records("same.ini", "start", record=r2)[0]
    assert second["cwd"] == str(d2)
    e.wait_vassal("same.ini", monitor=str(d2))
    (d2 / "same.ini").unlink()
    e.wait_records("same.ini", "stop", record=r2)
    e.wait_gone("same.ini")
    assert e.stop() == 0


def test_glob_monitor_mixed_with_dir(procs: Procs, tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    (apps / "one").mkdir(parents=True)
    e = Emperor(procs, tmp_path, monitors=["glob://apps/*/app.ini", str(tmp_path / "vassals")],
                cwd=tmp_path)
    rec1 = tmp_path / "one.jsonl"
    e.ini("app.ini", directory=apps / "one", record=rec1)
    start = e.wait_records("app.ini", "start", record=rec1)[0]
    # named by the matched path, relative as the pattern; run from the emperor's start dir
    assert start["argv"][1:] == ["--ini", "apps/one/app.ini"]
    assert start["cwd"] == str(tmp_path)
    e.wait_vassal("apps/one/app.ini", monitor="apps/*/app.ini")
    # a new matching directory is watched as soon as it appears
    (apps / "two").mkdir()
    rec2 = tmp_path / "two.jsonl"
    e.ini("app.ini", directory=apps / "two", record=rec2)
    e.wait_records("app.ini", "start", record=rec2, timeout=5)
    (apps / "two" / "other.ini").write_text("[uwsgi]\n")  # does not match the pattern
    e.ini("d.ini")  # and the dir monitor runs alongside
    e.wait_records("d.ini", "start")
    assert sorted(v["id"] for v in e.stats()["vassals"]) == ["apps/one/app.ini", "apps/two/app.ini",
                                                            "d.ini"]
    assert e.stats()["emperor"] == ["apps/*/app.ini", str(e.dir)]
    bump_mtime(apps / "one" / "app.ini")
    e.wait_records("app.ini", "reload", record=rec1)
    shutil.rmtree(apps / "two")
    e.wait_records("app.ini", "stop", record=rec2)
    e.wait_gone("apps/two/app.ini")
    assert e.stop() == 0


def test_bare_glob_pattern_and_missing_dir_at_start(procs: Procs, tmp_path: Path) -> None:
    (tmp_path / "vassals").mkdir()
    e = Emperor(procs, tmp_path, monitors=[str(tmp_path / "vassals" / "*.ini")])
    e.ini("a.ini")
    e.wait_records("a.ini", "start")
    e.wait_vassal(str(tmp_path / "vassals" / "a.ini"))
    assert e.stop() == 0
    # a vassal directory that does not exist at start is an error, as in uWSGI
    out = subprocess.run([sys.executable, "-m", "emperor.cli", "--emperor", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 1 and str(tmp_path / "nope") in out.stdout + out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_many_files_at_once(procs: Procs, tmp_path: Path, sig: int) -> None:
    e = Emperor(procs, tmp_path)
    record = tmp_path / "all.jsonl"
    for i in range(20):
        e.ini(f"v{i:02d}.ini", record=record)
    wait_until(lambda: len([r for r in e.records("x", record=record) if r["event"] == "start"]) == 20,
               20, message="20 vassals started")
    assert len(e.stats()["vassals"]) == 20
    assert e.stop(sig) == 0
