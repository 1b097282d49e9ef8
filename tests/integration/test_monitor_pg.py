"""pg:// against the real PostgreSQL on 127.0.0.1:5432: the monitor in-process, its events checked.

Each test works on its own table ``vassals_<random>`` in database ``test`` and drops it.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from emperor.events import Available, MonitorContext, Sync, Touch, Unavailable
from monitors.pg import PgMonitor
from tests.conftest import held_service, need_module, need_service, wait_until
from tests.integration.monitor_harness import monitors_fixture  # noqa: F401  (fixture)

psycopg = need_module("psycopg")

# the outage test stops the server: see service_lock for how tests keep out of its way
pytestmark = pytest.mark.service("postgres")

CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def pg_cluster() -> tuple[str, str]:
    """(version, name) of the local cluster on port 5432, as pg_lsclusters lists it."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "5432":
            return fields[0], fields[1]
    return "15", "main"


def pg_ready() -> bool:
    try:
        with psycopg.connect(CONNINFO, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


class Table:
    """A vassals table of our own, with a NOTIFY trigger on channel ``<table>_changed``."""

    def __init__(self) -> None:
        self.name = f"vassals_{uuid.uuid4().hex[:10]}"
        self.channel = f"{self.name}_changed"
        self.conn = psycopg.connect(CONNINFO, autocommit=True)
        self.conn.execute(f"CREATE TABLE {self.name} (name text PRIMARY KEY, config text, "
                          "ts timestamptz NOT NULL DEFAULT now(), uid int, gid int, socket text)")
        self.conn.execute(f"""
            CREATE FUNCTION {self.name}_notify() RETURNS trigger AS $$
            BEGIN PERFORM pg_notify('{self.channel}', ''); RETURN NULL; END $$ LANGUAGE plpgsql;
            CREATE TRIGGER {self.name}_t AFTER INSERT OR UPDATE OR DELETE ON {self.name}
            FOR EACH STATEMENT EXECUTE FUNCTION {self.name}_notify();""")

    def query(self) -> str:
        return f"SELECT name,config,EXTRACT(epoch FROM ts) FROM {self.name}"

    def arg(self, notify: bool = False, query: str | None = None) -> str:
        extra = f" imperium_notify={self.channel}" if notify else ""
        return f"pg://{CONNINFO}{extra};{query or self.query()}"

    def put(self, name: str, config: str, ts: float | None = None, **cols: object) -> None:
        ts_sql = "now()" if ts is None else f"to_timestamp({ts})"
        keys = ["name", "config", *cols]
        values = [name, config, *cols.values()]
        marks = ", ".join(["%s"] * len(values))
        updates = ", ".join(f"{k}=EXCLUDED.{k}" for k in keys[1:])
        self.conn.execute(f"INSERT INTO {self.name} ({', '.join(keys)}, ts) VALUES ({marks}, {ts_sql}) "
                          f"ON CONFLICT (name) DO UPDATE SET {updates}, ts=EXCLUDED.ts", values)

    def delete(self, name: str) -> None:
        self.conn.execute(f"DELETE FROM {self.name} WHERE name = %s", [name])

    def drop(self) -> None:
        try:
            if self.conn.closed:
                self.conn = psycopg.connect(CONNINFO, autocommit=True)
            self.conn.execute(f"DROP TABLE IF EXISTS {self.name}")
            self.conn.execute(f"DROP FUNCTION IF EXISTS {self.name}_notify()")
        finally:
            self.conn.close()


@contextmanager
def pg_table(exclusive: bool = False) -> Iterator[Table]:
    """A fresh table, with the server held shared (or exclusive, to stop it)."""
    with held_service("postgres", 5432, pg_ready, "PostgreSQL on 127.0.0.1:5432", exclusive, 30):
        t = Table()
        try:
            yield t
        finally:
            t.drop()


@pytest.fixture
def table() -> Iterator[Table]:
    with pg_table() as t:
        yield t


@pytest.fixture
def outage_table() -> Iterator[Table]:
    """For a test that stops the server: no other test uses it meanwhile."""
    with pg_table(exclusive=True) as t:
        yield t


def ctx(freq: float = 0.5, **kw: object) -> MonitorContext:
    return MonitorContext(freq=freq, **kw)  # type: ignore[arg-type]


def test_rows_added_changed_removed(table: Table, monitors) -> None:
    table.put("app1.ini", "[uwsgi]\nprocesses = 1\n", ts=1_700_000_000.75)
    run = monitors(PgMonitor, table.arg(), ctx())
    run.wait_sync({"app1.ini"})
    first = run.touches(name="app1.ini")[0]
    assert first.config == b"[uwsgi]\nprocesses = 1\n"
    assert first.mtime == 1_700_000_000  # the fraction is cut at the dot, as uWSGI does
    assert first.uid is None and first.gid is None

    mark = run.mark()
    table.put("app2.yml", "uwsgi:\n  processes: 2\n")
    run.wait_sync({"app1.ini", "app2.yml"}, mark)
    assert run.touches(mark, "app2.yml")[0].config == b"uwsgi:\n  processes: 2\n"

    mark = run.mark()
    table.put("app1.ini", "[uwsgi]\nprocesses = 3\n", ts=1_700_000_100)
    run.wait(lambda ev: any(isinstance(e, Touch) and e.name == "app1.ini" and e.mtime == 1_700_000_100
                            for e in ev), mark, message="changed row")
    assert run.touches(mark, "app1.ini")[-1].config == b"[uwsgi]\nprocesses = 3\n"

    mark = run.mark()
    table.delete("app1.ini")
    run.wait_sync({"app2.yml"}, mark)
    assert not run.all(Unavailable)


def test_notify_sees_a_change_long_before_the_safety_net(table: Table, monitors) -> None:
    # freq 60: without the notification nothing would be read again within the deadline
    run = monitors(PgMonitor, table.arg(notify=True), ctx(freq=60))
    run.wait_sync(set())
    for i in range(3):
        mark = run.mark()
        t0 = time.monotonic()
        table.put(f"n{i}.ini", f"[uwsgi]\n# {i}\n")
        run.wait_sync({f"n{j}.ini" for j in range(i + 1)}, mark, timeout=5)
        assert time.monotonic() - t0 < 5
    mark = run.mark()
    table.delete("n0.ini")
    run.wait_sync({"n1.ini", "n2.ini"}, mark, timeout=5)


def test_notify_parameter_in_a_uri_conninfo(table: Table, monitors) -> None:
    arg = (f"pg://postgresql://postgres@127.0.0.1:5432/test?imperium_notify={table.channel}"
           f"&connect_timeout=3;{table.query()}")
    run = monitors(PgMonitor, arg, ctx(freq=60))
    run.wait_sync(set())
    mark = run.mark()
    table.put("uri.ini", "[uwsgi]\n")
    run.wait_sync({"uri.ini"}, mark, timeout=5)


def test_tyrant_mode_reads_uid_gid_and_socket(table: Table, monitors) -> None:
    table.put("t1.ini", "[uwsgi]\n", uid=1001, gid=1002, socket="/tmp/t1.sock")
    table.put("t2.ini", "[uwsgi]\n")  # no uid/gid: skipped in tyrant mode, but kept
    query = f"SELECT name, config, EXTRACT(epoch FROM ts), uid, gid, socket FROM {table.name}"
    run = monitors(PgMonitor, table.arg(query=query), ctx(tyrant=True))
    run.wait_sync({"t1.ini", "t2.ini"})
    t1 = run.touches(name="t1.ini")[0]
    assert (t1.uid, t1.gid, t1.socket) == (1001, 1002, "/tmp/t1.sock")
    assert not run.touches(name="t2.ini")
    assert "missing uid and gid for vassal t2.ini" in run.logs.text()

    # three columns in tyrant mode: every row lacks uid and gid
    run3 = monitors(PgMonitor, table.arg(), ctx(tyrant=True))
    run3.wait_sync({"t1.ini", "t2.ini"})
    assert not run3.touches()


def test_bad_rows_are_logged_and_skipped(table: Table, monitors) -> None:
    table.put("good.ini", "[uwsgi]\n")
    table.put("noextension", "[uwsgi]\n")
    table.put("badts.ini", "[uwsgi]\n")
    # a text mtime column lets us feed garbage where a number belongs
    query = (f"SELECT name, config, CASE WHEN name = 'badts.ini' THEN 'yesterday' "
             f"ELSE EXTRACT(epoch FROM ts)::text END FROM {table.name} "
             f"UNION ALL SELECT NULL, 'x', '1'")
    run = monitors(PgMonitor, table.arg(query=query), ctx())
    sync = run.wait_sync({"good.ini", "noextension", "badts.ini"})
    assert [t.name for t in run.touches()] == ["good.ini"]
    text = run.logs.text()
    assert "noextension" in text and "not a valid vassal name" in text
    assert "badts.ini" in text and "'yesterday' is not a number" in text
    assert "None" in text
    # warnings are not repeated on every pass
    mark = run.mark()
    run.wait(lambda ev: sum(isinstance(e, Sync) for e in ev) >= 2, mark, message="two more passes")
    assert run.logs.text().count("'yesterday' is not a number") == 1
    assert sync


def test_failing_query_is_unavailable_never_an_empty_sync(table: Table, monitors) -> None:
    missing = f"{table.name}_later"
    query = f"SELECT name, config, EXTRACT(epoch FROM ts) FROM {missing}"
    run = monitors(PgMonitor, table.arg(query=query), ctx(freq=0.3))
    run.wait(lambda ev: any(isinstance(e, Unavailable) for e in ev), message="Unavailable")
    assert "does not exist" in run.all(Unavailable)[0].reason
    assert not run.all(Sync)
    try:
        table.conn.execute(f"CREATE TABLE {missing} (LIKE {table.name} INCLUDING DEFAULTS)")
        table.conn.execute(f"INSERT INTO {missing} (name, config) VALUES ('late.ini', '[uwsgi]')")
        run.wait_sync({"late.ini"}, timeout=15)
        kinds = [type(e) for e in run.all()]
        assert kinds.index(Available) < kinds.index(Sync)
        assert kinds.count(Unavailable) == 1  # one report per outage, however many retries
    finally:
        table.conn.execute(f"DROP TABLE IF EXISTS {missing}")


def test_too_few_columns_is_a_bad_query(table: Table, monitors) -> None:
    run = monitors(PgMonitor, table.arg(query=f"SELECT name, config FROM {table.name}"), ctx())
    run.wait(lambda ev: any(isinstance(e, Unavailable) for e in ev), message="Unavailable")
    assert "3 are needed" in run.all(Unavailable)[0].reason
    assert not run.all(Sync)


def test_unreachable_server_is_unavailable(monitors) -> None:
    from tests.conftest import free_port

    arg = f"pg://host=127.0.0.1 port={free_port()} user=postgres dbname=test connect_timeout=1"
    run = monitors(PgMonitor, arg, ctx())
    run.wait(lambda ev: any(isinstance(e, Unavailable) for e in ev), message="Unavailable")
    assert not run.all(Sync)


# --- outage: the real server stopped and started again -----------------------------------------

def pg_ctl(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *pg_cluster(), action],
                   check=True, capture_output=True, timeout=60)


def test_outage_leaves_vassals_alone_and_catches_up(outage_table: Table, monitors) -> None:
    table = outage_table
    if subprocess.run(["which", "pg_ctlcluster"], capture_output=True).returncode:
        need_service("postgres", False, "pg_ctlcluster is needed to stop and start the server")
    table.put("a.ini", "[uwsgi]\n# a1\n", ts=1_700_000_000)
    table.put("b.ini", "[uwsgi]\n# b1\n", ts=1_700_000_000)
    # notify on, safety net far away: the monitor reads only on notifications and reconnects
    run = monitors(PgMonitor, table.arg(notify=True), ctx(freq=120))
    run.wait_sync({"a.ini", "b.ini"})
    # change the source behind the monitor's back (no notification), then take PostgreSQL down
    table.conn.execute(f"ALTER TABLE {table.name} DISABLE TRIGGER {table.name}_t")
    table.put("a.ini", "[uwsgi]\n# a2\n", ts=1_700_000_500)
    table.delete("b.ini")
    table.put("c.ini", "[uwsgi]\n# c1\n")
    table.conn.close()
    mark = run.mark()
    try:
        pg_ctl("stop")
        run.wait(lambda ev: any(isinstance(e, Unavailable) for e in ev), mark, timeout=15,
                 message="Unavailable after the server stopped")
        # nothing in the outage may look like "no vassals"
        assert not run.since(mark, Sync)
    finally:
        pg_ctl("start")
        wait_until(pg_ready, timeout=30, message="PostgreSQL accepting connections again")
    sync = run.wait_sync({"a.ini", "c.ini"}, mark, timeout=20)
    after = run.since(mark)
    kinds = [type(e) for e in after]
    assert kinds.index(Unavailable) < kinds.index(Available) < after.index(sync)
    a = [t for t in run.touches(mark, "a.ini")]
    assert a and a[-1].mtime == 1_700_000_500 and a[-1].config == b"[uwsgi]\n# a2\n"
    assert run.touches(mark, "c.ini")
    # and it listens again: a notified change is seen at once
    table.conn = psycopg.connect(CONNINFO, autocommit=True)
    table.conn.execute(f"ALTER TABLE {table.name} ENABLE TRIGGER {table.name}_t")
    mark = run.mark()
    table.put("d.ini", "[uwsgi]\n")
    run.wait_sync({"a.ini", "c.ini", "d.ini"}, mark, timeout=5)


def test_several_statements_the_last_result_counts(table: Table, monitors) -> None:
    table.put("multi.ini", "[uwsgi]\n")
    query = f"SET statement_timeout TO 5000; {table.query()}"
    run = monitors(PgMonitor, table.arg(query=query), ctx())
    run.wait_sync({"multi.ini"})
