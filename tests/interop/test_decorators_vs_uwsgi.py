"""An app written with uwsgidecorators runs the same on real uWSGI (Debian's module) and on
Imperium (ours): @postfork in every process, @timer, @spool with a dict or with pickled
arguments, @mulefunc, @signal to all workers, @lock, @harakiri."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.fixtures.background import DECORATED, Backend
from tests.interop.helpers import need_uwsgi

KINDS = ("imperium", "uwsgi")


@pytest.mark.parametrize("kind", KINDS)
def test_decorated_app(procs, tmp_path, kind) -> None:
    need_uwsgi()
    spool = tmp_path / kind / "spool"
    b = Backend(procs, kind, tmp_path, [f"spooler = {spool}", "mule = true", "spooler-frequency = 1"], "",
                app=DECORATED)
    wait_until(lambda: {e[1] for e in b.events("postfork")} == {"w1", "w2", "m1", "spooler"}, 15,
               message="@postfork in the workers, the mule and the spooler")
    b.wait_events("timer", 2)
    assert {e[1] for e in b.events("timer")} <= {"w1", "w2"}
    for path in ("/spool", "/spool2", "/mule", "/signal"):
        assert b.get(path) == (200, "ok")
    assert b.wait_events("spool")[0][1:] == ["spooler", "1 ['spooler_task_name', 'ud_spool_func', "
                                                         "'ud_spool_ret', 'x']"]
    assert b.wait_events("spool2")[0][1:] == ["spooler", "5 6"]
    assert b.wait_events("mulefunc")[0][1:] == ["m1", "hi"]
    assert sorted(e[1] for e in b.wait_events("sig40", 2)) == ["w1", "w2"]
    assert b.get("/lock") == (200, "locked")
    assert b.get("/harakiri") == (200, "guarded")
