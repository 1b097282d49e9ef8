"""The same ``pg://`` line drives Debian's real uWSGI emperor_pg and ours to the same vassals."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import UWSGI_CORE, need_service
from tests.integration.monitor_e2e import Emperor, need_emperor
from tests.integration.test_monitor_pg import Table, pg_table

PLUGIN = "/usr/lib/uwsgi/plugins/emperor_pg_plugin.so"

pytestmark = pytest.mark.service("postgres")


@pytest.fixture
def table() -> Iterator[Table]:
    need_emperor()
    need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(PLUGIN),
                 "uwsgi-core with uwsgi-plugin-emperor-pg")
    with pg_table() as t:
        yield t


def test_same_line_same_vassals(table: Table, procs, tmp_path: Path) -> None:
    table.put("shop.ini", "[uwsgi]\n# v1\n", ts=1_700_000_000)
    table.put("blog.yml", "uwsgi:\n  v: 1\n", ts=1_700_000_000)
    arg = table.arg()  # uWSGI's own syntax: no imperium_notify
    ours = Emperor(procs, tmp_path / "imperium", arg)
    theirs = Emperor(procs, tmp_path / "uwsgi", arg, command=(UWSGI_CORE, "--plugin", "emperor_pg"))
    for emp in (ours, theirs):
        emp.wait_line("shop.ini", "start", "[uwsgi]\n# v1\n")
        emp.wait_line("blog.yml", "start", "uwsgi:\n  v: 1\n")
    table.put("shop.ini", "[uwsgi]\n# v2\n", ts=1_700_000_100)
    table.delete("blog.yml")
    table.put("new.json", '{"uwsgi": {}}')
    for emp in (ours, theirs):
        emp.wait_line("shop.ini", "reload", "[uwsgi]\n# v2\n")
        emp.wait_line("blog.yml", "stop")
        emp.wait_line("new.json", "start", '{"uwsgi": {}}')
    for name in ("shop.ini", "blog.yml", "new.json"):
        assert [x.what for x in ours.lines(name)] == [x.what for x in theirs.lines(name)], name
