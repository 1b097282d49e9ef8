"""Broodlord: a vassal under load asks for reinforcements (byte 30), the emperor starts zerg
vassals from its [zerg] stanza, they serve, and they go away when idle."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
from pathlib import Path

from tests.conftest import Procs, free_port, wait_until
from tests.integration.emperor_harness import Emperor

APP = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "pid_sleep.py"


def get(port: int, path: str = "/", timeout: float = 30) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


def brood_ini(port: int, zsock: Path, zerg_stanza: bool = True,
              trigger: str = "vassal-sos-backlog = 2", zerg_idle: int = 2) -> str:
    text = (f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {APP}\nmaster = true\n"
            f"processes = 1\n{trigger}\nzerg-server = {zsock}\n")
    if zerg_stanza:
        text += (f"\n[zerg]\nzerg = {zsock}\nprotocol = http\nwsgi-file = {APP}\nmaster = true\n"
                 f"processes = 1\nidle = {zerg_idle}\ndie-on-idle = true\n")
    return text


def summon_zerg(e: Emperor, port: int, clients: int = 6) -> tuple[dict, dict, list[tuple[int, str]]]:
    """The vassal app.ini up, then requests that fill its listen queue until a zerg is
    accepting: (the vassal, the zerg, the answers once all came)."""
    parent = e.wait_vassal("app.ini", accepting=1, timeout=20)
    e.seen_pids.add(parent["pid"])
    answers: list[tuple[int, str]] = []
    threads = [threading.Thread(target=lambda: answers.append(get(port, "/sleep/1.5")))
               for _ in range(clients)]
    for t in threads:
        t.start()
    zerg = e.wait_vassal("app.ini:zerg", zerg=1, accepting=1, timeout=20)
    e.seen_pids.add(zerg["pid"])
    for t in threads:
        t.join(60)
    return parent, zerg, answers


def test_zergs_come_under_load_serve_and_leave_when_idle(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-broodlord", "2", own_binary=True)
    port = free_port()
    (e.dir / "app.ini").write_text(brood_ini(port, tmp_path / "brood.sock"))
    parent = e.wait_vassal("app.ini", accepting=1, timeout=20)
    e.seen_pids.add(parent["pid"])
    # one worker busy for seconds, and the listen queue filling up behind it
    answers: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            answers.append(get(port, "/sleep/1.5"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    clients = [threading.Thread(target=client) for _ in range(8)]
    for t in clients:
        t.start()
    e.wait_log("asking Emperor for reinforcements (backlog: ", 15)
    e.wait_log("[emperor] going in broodlord mode: launching zergs for app.ini", 10)
    zerg = e.wait_vassal("app.ini:zerg", zerg=1, timeout=15)
    e.seen_pids.add(zerg["pid"])
    for t in clients:
        t.join(60)
    assert not errors, errors
    assert len(answers) == 8 and all(status == 200 for status, _ in answers)
    served_by = {body for _, body in answers}
    assert len(served_by) >= 2, f"only one worker served: {served_by} (the zerg did not help)"
    zergs = [v for v in e.stats()["vassals"] if v["zerg"] == 1]
    assert 1 <= len(zergs) <= 2, zergs  # emperor-broodlord 2: never more
    # idle 2 s + die-on-idle: the zergs ask to go and are removed; the vassal stays
    for z in zergs:
        e.seen_pids.add(z["pid"])
        e.wait_gone(z["id"], 30)
    assert e.vassal("app.ini")["pid"] == parent["pid"]
    assert get(port)[0] == 200
    assert e.stop() == 0


def test_vassal_sos_asks_when_every_worker_is_busy(procs: Procs, tmp_path: Path) -> None:
    """``vassal-sos SECS`` (no backlog threshold): every worker busy -> an SOS at most every
    SECS seconds, as uWSGI's master ("overload: N")."""
    e = Emperor(procs, tmp_path, "--emperor-broodlord", "1", own_binary=True)
    port = free_port()
    (e.dir / "app.ini").write_text(brood_ini(port, tmp_path / "brood.sock", trigger="vassal-sos = 1"))
    parent = e.wait_vassal("app.ini", accepting=1, timeout=20)
    e.seen_pids.add(parent["pid"])
    busy = threading.Thread(target=lambda: get(port, "/sleep/4"))
    busy.start()
    e.wait_log("asking Emperor for reinforcements (overload: ", 15)
    zerg = e.wait_vassal("app.ini:zerg", zerg=1, accepting=1, timeout=20)
    e.seen_pids.add(zerg["pid"])
    assert "reinforcements (backlog" not in e.log()
    busy.join(60)
    e.wait_gone("app.ini:zerg", 30)  # idle: it leaves
    assert e.stop() == 0


def test_a_vassal_that_dies_takes_its_zergs_along(procs: Procs, tmp_path: Path) -> None:
    """The zergs hold the vassal's listening sockets (from its zerg server): alive, they would
    keep its next process from binding them until they went idle. They are stopped with it,
    and the vassal is back at once."""
    e = Emperor(procs, tmp_path, "--emperor-broodlord", "1", own_binary=True)
    port = free_port()
    (e.dir / "app.ini").write_text(brood_ini(port, tmp_path / "brood.sock", zerg_idle=300))
    parent, _zerg, _ = summon_zerg(e, port)
    os.kill(parent["pid"], signal.SIGKILL)
    e.wait_gone("app.ini:zerg", 15)  # not 300 s of idle
    again = e.wait_vassal("app.ini", accepting=1, timeout=20)
    assert again["pid"] != parent["pid"]
    e.seen_pids.add(again["pid"])
    assert get(port)[0] == 200
    assert e.stop() == 0


SOS_FLOOD = """#!/bin/bash
# a vassal that floods its emperor with SOS (byte 30); its zergs (NAME:zerg) just serve
fd=$UWSGI_EMPEROR_FD
for last; do :; done
echo "$$ $last" >> "{record}"
printf '\\001\\005\\021' >&"$fd"
case "$last" in
  *:zerg) ;;
  *) for i in $(seq 20); do printf '\\036' >&"$fd"; done ;;
esac
exec dd bs=1 count=1 <&"$fd" >/dev/null 2>&1
"""


def test_an_sos_flood_gets_at_most_the_budget(procs: Procs, tmp_path: Path) -> None:
    record = tmp_path / "started.txt"
    script = tmp_path / "flood.sh"
    script.write_text(SOS_FLOOD.format(record=record))
    script.chmod(0o755)
    e = Emperor(procs, tmp_path, "--emperor-broodlord", "3", binary=str(script))
    (e.dir / "a.ini").write_text("[uwsgi]\n")
    (e.dir / "b.ini").write_text("[uwsgi]\n")
    wait_until(lambda: len([v for v in e.stats()["vassals"] if v["zerg"]]) == 3, 15,
               message=f"3 zergs; log:\n{e.log()[-2000:]}")
    # the budget is for all vassals together, and holds while the flood goes on
    from tests.integration.emperor_harness import stays

    stays(lambda: len([v for v in e.stats()["vassals"] if v["zerg"]]) == 3, 1.5,
          "more zergs than emperor-broodlord allows")
    started = record.read_text().split()
    zerg_args = [a for a in started[1::2] if a.endswith(":zerg")]
    assert len(zerg_args) == 3 and set(zerg_args) <= {"a.ini:zerg", "b.ini:zerg"}
    ids = sorted(v["id"] for v in e.stats()["vassals"] if v["zerg"])
    assert len(set(ids)) == 3 and all(":zerg" in i for i in ids)
    for v in e.stats()["vassals"]:
        e.seen_pids.add(v["pid"])
    # the vassal goes: its zergs go with it
    (e.dir / "a.ini").unlink()
    wait_until(lambda: not [v for v in e.stats()["vassals"] if v["id"].startswith("a.ini")], 15,
               message="a.ini and its zergs gone")
    assert e.stop() == 0


def test_a_zerg_stanza_that_does_not_start_is_contained(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, "--emperor-broodlord", "2", own_binary=True)
    port = free_port()
    (e.dir / "app.ini").write_text(brood_ini(port, tmp_path / "brood.sock", zerg_stanza=False))
    e.wait_vassal("app.ini", accepting=1, timeout=20)
    clients = [threading.Thread(target=lambda: get(port, "/sleep/2")) for _ in range(6)]
    for t in clients:
        t.start()
    e.wait_log("[emperor] going in broodlord mode: launching zergs for app.ini", 15)
    # no [zerg] section: the zerg has no socket and exits; the vassal and the emperor go on
    e.wait_log("[emperor] removed uwsgi instance app.ini:zerg", 15)
    for t in clients:
        t.join(60)
    v = e.vassal("app.ini")
    e.seen_pids.add(v["pid"])
    assert v["zerg"] == 0 and get(port)[0] == 200 and e.proc.poll() is None
    assert e.stop() == 0


def test_zergs_for_a_vassal_from_pg(procs: Procs, tmp_path: Path) -> None:
    """Unlike uWSGI (its issue 2166), a vassal whose config is a database row gets zergs:
    the zerg reads the [zerg] section of the same config from its config fd."""
    from tests.integration.test_monitor_pg import pg_table

    with pg_table() as table:  # a missing PostgreSQL fails under CI=true
        port = free_port()
        table.put("app.ini", brood_ini(port, tmp_path / "brood.sock"))
        e = Emperor(procs, tmp_path, "--emperor-broodlord", "1",
                    monitors=[table.arg(notify=True)], own_binary=True)
        _parent, _zerg, answers = summon_zerg(e, port)
        assert len(answers) == 6 and len({body for _, body in answers}) >= 2, answers
        table.delete("app.ini")
        e.wait_gone("app.ini", 15)
        e.wait_gone("app.ini:zerg", 15)
        assert e.stop() == 0
