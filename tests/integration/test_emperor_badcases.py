"""Vassals that misbehave, and the emperor's signals: all contained, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from tests.conftest import Procs, pid_alive, read_to_close, wait_until
from tests.integration.emperor_harness import Emperor, processes_in_groups


def test_blacklist_entry_goes_with_its_config(procs: Procs, tmp_path: Path) -> None:
    """A blacklisted vassal whose config is deleted leaves the blacklist (uWSGI keeps it)."""
    e = Emperor(procs, tmp_path)
    crash = e.ini("crash.ini", exit_at_once=1, loyal=0)
    wait_until(lambda: [b for b in e.stats()["blacklist"] if b["id"] == "crash.ini"], 10,
               message="crash.ini blacklisted")
    crash.unlink()
    wait_until(lambda: e.stats()["blacklist"] == [] and e.vassal("crash.ini") is None, 10,
               message=f"crash.ini out of the blacklist; log:\n{e.log()[-2000:]}")
    assert e.stop() == 0


def test_broken_config_is_contained(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)
    e.ini("good.ini")
    good = e.wait_records("good.ini", "start")[0]
    e.wait_vassal("good.ini", loyal=1)
    broken = e.ini("broken.ini", broken=1, loyal=0)
    e.wait_log("fake vassal broken.ini: broken config")
    e.wait_log("[emperor] vassal broken.ini (pid: ")
    e.wait_log("[emperor] removed uwsgi instance broken.ini")
    e.wait_log("[emperor] unloyal bad behaving vassal found: broken.ini throttling it...")
    bl = wait_until(lambda: [b for b in e.stats()["blacklist"] if b["id"] == "broken.ini"
                             and b["attempt"] >= 2], 10, message="broken.ini blacklisted")
    assert bl[0]["throttle_level"] >= 100
    # the good vassal never noticed
    v = e.vassal("good.ini")
    assert v and v["pid"] == good["pid"] and v["respawns"] == 0
    assert e.records("good.ini", "reload") == [] and len(e.records("good.ini", "start")) == 1
    # fixed: it starts again once its back-off is over, turns loyal and leaves the blacklist
    e.ini("broken.ini")
    assert broken.exists()
    e.wait_vassal("broken.ini", loyal=1, timeout=10)
    wait_until(lambda: not [b for b in e.stats()["blacklist"] if b["id"] == "broken.ini"], 5,
               message="broken.ini out of the blacklist")
    assert e.proc.poll() is None
    assert e.stop() == 0


def test_vassal_exiting_at_once_is_throttled_like_uwsgi(procs: Procs, tmp_path: Path) -> None:
    # emperor-throttle 100 ms, max 400 ms: the blacklist level grows by 100 ms per unloyal
    # death (starting from 100 *micro*seconds), is halved at the max, as uWSGI computes it
    e = Emperor(procs, tmp_path, "--emperor-throttle", "100", "--emperor-max-throttle", "400")
    e.ini("crash.ini", exit_at_once=3, loyal=0)
    e.wait_log("[emperor] unloyal bad behaving vassal found: crash.ini throttling it...", 10)
    e.wait_log("[emperor] maximum throttle level for vassal crash.ini reached !!!", 15)
    # levels after each death: 100.1, 200.1, 300.1, 400.1 ms, then 400.1/2 = 200.05 ms
    expected = [100, 200, 300, 400, 200]

    def back_offs() -> list[int]:
        found = re.findall(r"vassal crash\.ini is blacklisted, next start in (\d+) ms", e.log())
        return [int(n) for n in found if int(n) >= 20]  # a start within the first 100 µs may be refused too

    wait_until(lambda: len(back_offs()) >= len(expected), 10, message="the back-off after the max")
    log = e.log()
    waits = back_offs()
    for got, want in zip(waits, expected, strict=False):
        assert want - 60 <= got <= want + 1, (waits, log)
    starts = [r["t"] for r in e.records("crash.ini", "start")]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # after the first two quick attempts every start waits at least the level of its back-off
    for gap, want in zip(gaps[1:], expected, strict=False):
        assert gap >= want / 1000 - 0.01, (gaps, log)
    assert max(gaps) < 0.4 + 0.5, gaps  # capped by emperor-max-throttle (plus process start)
    bl = [b for b in e.stats()["blacklist"] if b["id"] == "crash.ini"][0]
    assert bl["attempt"] >= 5 and 100 <= bl["throttle_level"] <= 400
    assert e.stop() == 0


def test_vassal_ignoring_stop_is_killed_after_the_curse_tolerance(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)  # emperor-curse-tolerance 1
    ini = e.ini("stubborn.ini", ignore_stop=1)
    pid = e.wait_records("stubborn.ini", "start")[0]["pid"]
    e.wait_vassal("stubborn.ini", loyal=1)
    ini.unlink()
    stop = e.wait_records("stubborn.ini", "stop")[0]
    e.wait_log(f"[emperor] vassal stubborn.ini (pid: {pid}) is still alive 1s after its curse: SIGKILL")
    e.wait_log(f"[emperor] vassal stubborn.ini (pid: {pid}) killed by signal 9")
    e.wait_gone("stubborn.ini")
    assert not pid_alive(pid)
    v_cursed = [line for line in e.log().splitlines() if "still alive" in line]
    assert v_cursed and stop["t"] > 0
    assert e.stop() == 0


def test_hung_vassal_is_killed_and_respawned_by_heartbeat(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-required-heartbeat", "1")
    e.ini("hung.ini", heartbeat=0.2, hang_after=0.8)
    first = e.wait_records("hung.ini", "start")[0]
    e.wait_vassal("hung.ini", loyal=1)
    wait_until(lambda: e.vassal("hung.ini")["last_heartbeat"] > 0, 5, message="a heartbeat")
    e.wait_records("hung.ini", "hang")
    e.wait_log("[emperor] vassal hung.ini sent no heartbeat in last 1 seconds, brutally respawning it...")
    e.wait_log(f"[emperor] vassal hung.ini (pid: {first['pid']}) killed by signal 9")
    second = e.wait_records("hung.ini", "start", 2)[1]
    assert second["pid"] != first["pid"]
    assert e.stop() == 0


def test_sighup_sigusr1_and_sigterm(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)
    e.ini("a.ini", children=2)
    e.ini("b.ini")
    a = e.wait_records("a.ini", "start")[0]
    e.wait_records("b.ini", "start")
    e.wait_vassal("a.ini", loyal=1)
    e.wait_vassal("b.ini", loyal=1)
    assert len(processes_in_groups({a["pid"]})) == 3  # the vassal and its two children
    e.send_signal(signal.SIGUSR1)
    e.wait_log("vassal instance a.ini (last modified ")
    e.wait_log("vassal instance b.ini (last modified ")
    assert re.search(r"vassal instance a\.ini \(last modified \d+\) status 0 loyal 1 zerg 0", e.log())
    mark = e.mark()
    e.send_signal(signal.SIGHUP)
    e.wait_records("a.ini", "reload")
    e.wait_records("b.ini", "reload")
    e.wait_log("[emperor] reload the uwsgi instance a.ini", after=mark)
    e.wait_log("[emperor] reload the uwsgi instance b.ini", after=mark)
    e.seen_pids.add(a["pid"])
    assert e.stop(signal.SIGTERM) == 0
    log = e.log()
    assert "[emperor] *** RAGNAROK EVOKED ***" in log
    assert "[emperor] stop the uwsgi instance a.ini" in log
    assert log.rstrip().endswith("The Emperor is buried.")
    assert not processes_in_groups({a["pid"]})


def test_royal_death_shows_no_mercy(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)  # reload-mercy 2
    e.ini("stubborn.ini", ignore_stop=1)
    e.ini("nice.ini")
    pid = e.wait_records("stubborn.ini", "start")[0]["pid"]
    e.wait_records("nice.ini", "start")
    e.wait_vassal("stubborn.ini", loyal=1)
    e.seen_pids.add(pid)
    e.send_signal(signal.SIGINT)
    e.wait_log("[emperor] *** RAGNAROK EVOKED ***")
    e.send_signal(signal.SIGQUIT)
    e.wait_log("[emperor] *** RAGNAROK ALREADY EVOKED (mercyless in ")
    e.wait_log("[emperor] NO MERCY for vassal stubborn.ini !!!", 10)
    assert e.proc.wait(timeout=10) == 0
    e.assert_nothing_left()
    assert "NO MERCY for vassal nice.ini" not in e.log()
    assert "The Emperor is buried." in e.log()


def test_vassals_die_with_a_killed_emperor(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)
    e.ini("a.ini", ignore_stop=1)
    pid = e.wait_records("a.ini", "start")[0]["pid"]
    e.send_signal(signal.SIGKILL)
    e.proc.wait(timeout=5)
    wait_until(lambda: not pid_alive(pid), 5, message="the vassal to die with its emperor (pdeathsig)")


STATS_KEYS = ["version", "pid", "uid", "gid", "cwd", "emperor", "emperor_tyrant", "throttle_level",
              "vassals", "blacklist"]
VASSAL_KEYS = ["id", "pid", "born", "last_mod", "last_heartbeat", "loyal", "ready", "accepting",
               "last_loyal", "last_ready", "last_accepting", "first_run", "last_run", "cursed", "zerg",
               "on_demand", "uid", "gid", "monitor", "respawns"]
BLACKLIST_KEYS = ["id", "throttle_level", "attempt", "first_attempt", "last_attempt"]


def test_stats_server_speaks_uwsgis_json(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)
    e.ini("a.ini")
    e.ini("bad.ini", exit_at_once=1, loyal=0)
    e.wait_vassal("a.ini", loyal=1)
    wait_until(lambda: e.stats()["blacklist"], 10, message="a blacklist entry")
    text = read_to_close(e.stats_port).decode()
    assert text.startswith('{\n\t"version":"') and text.endswith("\n}")
    doc = json.loads(text)
    assert list(doc) == STATS_KEYS
    assert doc["pid"] == e.proc.pid and doc["cwd"] == str(e.dir)
    assert doc["emperor"] == [str(e.dir)] and doc["emperor_tyrant"] == 0
    assert isinstance(doc["throttle_level"], int)
    v = [x for x in doc["vassals"] if x["id"] == "a.ini"][0]
    assert list(v) == VASSAL_KEYS
    for k in VASSAL_KEYS:
        assert isinstance(v[k], str if k in ("id", "on_demand", "monitor") else int), k
    assert v["uid"] == os.getuid() and v["monitor"] == str(e.dir)
    b = doc["blacklist"][0]
    assert list(b) == BLACKLIST_KEYS and b["id"] == "bad.ini"
    assert all(isinstance(b[k], int) for k in BLACKLIST_KEYS[1:])
    assert e.stop() == 0
