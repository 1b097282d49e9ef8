"""A real uWSGI emperor with its PostgreSQL monitor (emperor_pg plugin) drives our vassal.

The config lives in a table row, not a file: the emperor spawns `imperium --ini
emperor://NAME` and pushes the ini over the second socketpair (`UWSGI_EMPEROR_FD_CONFIG`),
again on every reload. So this proves our vassal reads its config from the config fd, and
re-reads the new one when the row changes.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import (
    UWSGI_CORE,
    Procs,
    descendants,
    free_port,
    need_service,
    pid_alive,
    port_open,
    service_lock,
    wait_until,
)
from tests.interop.helpers import VASSAL_BINARY, children, copy_app, status_of

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_PLUGIN = "/usr/lib/uwsgi/plugins/emperor_pg_plugin.so"


@pytest.fixture
def table():
    need_service("uwsgi emperor_pg", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(PG_PLUGIN),
                 f"{UWSGI_CORE} with {PG_PLUGIN} (Debian uwsgi-plugin-emperor-pg)")
    # held shared: an outage test on the other xdist worker must not stop PostgreSQL under us
    with service_lock("postgres"):
        try:
            import psycopg

            conn = psycopg.connect(DSN, autocommit=True, connect_timeout=3)
        except Exception as exc:  # psycopg missing or server down: both mean "no postgres"
            need_service("postgres", False, f"{DSN}: {exc}")
        name = f"interop_vassals_{uuid.uuid4().hex[:10]}"
        conn.execute(f"CREATE TABLE {name} (name text PRIMARY KEY, config text, ts timestamptz)")
        try:
            yield conn, name
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            conn.close()


def ini(app: Path, port: int, processes: int) -> str:
    return (f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {app}\nmaster = true\n"
            f"processes = {processes}\n")


def test_config_pushed_over_the_config_fd(procs: Procs, tmp_path: Path, table) -> None:
    conn, tname = table
    app = copy_app("hello.py", tmp_path / "apps")
    port = free_port()
    conn.execute(f"INSERT INTO {tname} VALUES ('pgapp.ini', %s, now())", (ini(app, port, 2),))
    query = f"SELECT name,config,EXTRACT(epoch FROM ts) FROM {tname}"
    emperor = procs.start([UWSGI_CORE, "--plugin", "emperor_pg", "--emperor",
                           f"pg://{DSN};{query}", "--binary-path", VASSAL_BINARY,
                           "--emperor-freq", "1"], cwd=tmp_path)

    def log() -> str:
        return procs.output(emperor)

    wait_until(lambda: status_of(port) == 200, 30,
               message=f"the pg vassal serving; emperor log:\n{log()[-3000:]}")
    wait_until(lambda: "vassal pgapp.ini is now loyal" in log(), 10, message="loyalty")
    vassal = next(pid for pid in children(emperor.pid) if pid_alive(pid))
    with open(f"/proc/{vassal}/cmdline", "rb") as f:
        assert b"emperor://pgapp.ini" in f.read().split(b"\0")
    old = wait_until(lambda: len(children(vassal)) == 2 and children(vassal), 10,
                     message="2 workers")

    # a newer row: the emperor reloads the vassal and pushes the new config to it
    mark = len(log())
    conn.execute(f"UPDATE {tname} SET config = %s, ts = now() + interval '2 seconds'",
                 (ini(app, port, 3),))
    wait_until(lambda: "reload the uwsgi instance pgapp.ini" in log()[mark:], 15,
               message=f"the emperor reloading; log:\n{log()[-3000:]}")
    wait_until(lambda: (w := children(vassal)) and len(w) == 3 and not (w & old), 30,
               message=f"3 new workers from the pushed config; log:\n{log()[-3000:]}")
    wait_until(lambda: status_of(port) == 200, 15, message="serving after the reload")

    # the row goes: the vassal goes
    everyone = {vassal, *descendants(vassal)}
    conn.execute(f"DELETE FROM {tname}")
    wait_until(lambda: not any(pid_alive(p) for p in everyone), 20,
               message=f"vassal gone after its row; log:\n{log()[-3000:]}")
    assert not port_open(port)
    assert emperor.poll() is None
