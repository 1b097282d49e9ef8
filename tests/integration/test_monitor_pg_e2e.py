"""pg:// end to end: a real emperor process, the real PostgreSQL, fake vassals with journals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_module, pid_alive, wait_until
from tests.integration.monitor_e2e import Emperor, digest, need_emperor
from tests.integration.test_monitor_pg import CONNINFO, Table, pg_ctl, pg_ready, pg_table

psycopg = need_module("psycopg")

pytestmark = pytest.mark.service("postgres")


@pytest.fixture
def table() -> Iterator[Table]:
    need_emperor()
    with pg_table() as t:
        yield t


@pytest.fixture
def outage_table() -> Iterator[Table]:
    need_emperor()
    with pg_table(exclusive=True) as t:
        yield t


def test_rows_spawn_reload_and_stop_vassals(table: Table, procs, tmp_path: Path) -> None:
    table.put("a.ini", "[uwsgi]\n# a1\n", ts=1_700_000_000)
    table.put("b.yml", "uwsgi:\n  b: 1\n", ts=1_700_000_000)
    emp = Emperor(procs, tmp_path, table.arg(notify=True), freq=1)
    a = emp.wait_line("a.ini", "start", "[uwsgi]\n# a1\n")
    b = emp.wait_line("b.yml", "start", "uwsgi:\n  b: 1\n")

    # changed row (newer mtime) → reload with the new config, same process
    table.put("a.ini", "[uwsgi]\n# a2\n", ts=1_700_000_100)
    reload = emp.wait_line("a.ini", "reload", "[uwsgi]\n# a2\n")
    assert reload.pid == a.pid
    # the same mtime again changes nothing, whatever the config says
    table.put("b.yml", "uwsgi:\n  b: 2\n", ts=1_700_000_000)

    # added row → a new vassal
    table.put("c.json", '{"uwsgi": {"c": 1}}')
    emp.wait_line("c.json", "start", '{"uwsgi": {"c": 1}}')

    # removed row → stopped
    table.delete("a.ini")
    emp.wait_line("a.ini", "stop")
    wait_until(lambda: not pid_alive(a.pid), message="the removed vassal's process gone")
    assert [line.what for line in emp.lines("b.yml")] == ["start"] and pid_alive(b.pid)


def test_bad_rows_do_not_disturb_the_others(table: Table, procs, tmp_path: Path) -> None:
    table.put("good.ini", "[uwsgi]\n")
    table.put("noextension", "[uwsgi]\n")
    query = (f"SELECT name, config, CASE WHEN name = 'noextension' THEN 'soon' "
             f"ELSE EXTRACT(epoch FROM ts)::text END FROM {table.name}")
    emp = Emperor(procs, tmp_path, table.arg(notify=True, query=query))
    emp.wait_line("good.ini", "start", "[uwsgi]\n")
    table.put("later.ini", "[uwsgi]\n")  # a good row added after the bad one still goes through
    emp.wait_line("later.ini", "start")
    wait_until(lambda: "skipping row noextension" in emp.log(), message="the bad row logged")
    assert not emp.lines("noextension")
    emp.check_alive()


def test_outage_leaves_vassals_running_then_catches_up(outage_table: Table, procs, tmp_path: Path) -> None:
    table = outage_table
    table.put("a.ini", "[uwsgi]\n# a1\n", ts=1_700_000_000)
    table.put("c.ini", "[uwsgi]\n# c1\n", ts=1_700_000_000)
    # NOTIFY on and the safety net far away: the emperor only reads on notifications and on
    # reconnection, so a change made with the trigger off is one it has not seen
    emp = Emperor(procs, tmp_path, table.arg(notify=True), freq=60)
    a = emp.wait_line("a.ini", "start")
    c = emp.wait_line("c.ini", "start")
    table.conn.execute(f"ALTER TABLE {table.name} DISABLE TRIGGER {table.name}_t")
    table.put("a.ini", "[uwsgi]\n# a2\n", ts=1_700_000_500)
    table.delete("c.ini")
    table.put("d.ini", "[uwsgi]\n# d1\n")
    table.conn.close()
    try:
        pg_ctl("stop")
        wait_until(lambda: "unavailable" in emp.log(), timeout=20,
                   message=f"the emperor noticed the outage: {emp.log()[-1500:]}")
        # every vassal still runs, untouched
        for name, line in (("a.ini", a), ("c.ini", c)):
            assert emp.running(name) == line.pid, f"{name} disturbed during the outage"
            assert [x.what for x in emp.lines(name)] == ["start"]
        assert not emp.lines("d.ini")
    finally:
        pg_ctl("start")
        wait_until(pg_ready, timeout=30, message="PostgreSQL accepting connections again")
    # back: everything that changed meanwhile is applied
    emp.wait_line("a.ini", "reload", "[uwsgi]\n# a2\n", timeout=30)
    emp.wait_line("c.ini", "stop", timeout=30)
    emp.wait_line("d.ini", "start", "[uwsgi]\n# d1\n", timeout=30)
    assert emp.running("a.ini") == a.pid
    table.conn = psycopg.connect(CONNINFO, autocommit=True)
    assert digest("[uwsgi]\n# a2\n") == emp.lines("a.ini")[-1].digest
