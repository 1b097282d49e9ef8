"""An app written with uwsgidecorators runs the same on real uWSGI (Debian's module) and on
Imperium (ours): @postfork in every process, @timer, @spool with a dict or with pickled
arguments, @mulefunc, @signal to all workers, @lock, @harakiri; then @rbtimer, @cron,
@filemon, @spoolraw, @spoolforever, @thread, @rpc, @mulemsg, @muleloop and @farm."""

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


@pytest.mark.parametrize("kind", KINDS)
def test_the_other_decorators(procs, tmp_path, kind) -> None:
    """@rbtimer, @cron, @filemon, @spoolraw, @spoolforever, @thread, @rpc, @mulemsg,
    @muleloop and @farm, the same on both."""
    need_uwsgi()
    spool = tmp_path / kind / "spool"
    (tmp_path / kind).mkdir(parents=True)
    watched = tmp_path / kind / "events.watched"
    watched.write_text("a")
    b = Backend(procs, kind, tmp_path, [f"spooler = {spool}", "spooler-frequency = 1", "mule = true",
                                        "mule = true", "mule = true", "farm = pool:3"], "more",
                app=DECORATED)
    b.wait_events("rbtimer", 2)
    assert b.wait_events("cron")[0][1] in ("w1", "w2")  # fires in the current minute
    watched.write_text("b")
    assert b.wait_events("filemon")[0][1] in ("w1", "w2")
    assert b.get("/spoolraw") == (200, "ok")
    assert b.wait_events("spoolraw")[0][1:] == ["spooler", "1"]
    assert b.get("/spoolforever") == (200, "ok")
    assert all(e[1:] == ["spooler", "2"] for e in b.wait_events("spoolforever", 2)), \
        "a @spoolforever job runs again at each pass"
    assert b.get("/thread") == (200, "ok")
    assert b.wait_events("thread")[0][2:] == ["t True"]
    assert b.get("/rpc") == (200, "b'HEY'")
    for path in ("/mulemsg", "/muleloop", "/farm"):
        assert b.get(path) == (200, "ok")
    assert b.wait_events("mulemsg")[0][1:] == ["m1", "to-one"]
    assert b.wait_events("muleloop")[0][1:] == ["m2", "to-two"]
    assert b.wait_events("farm")[0][1:] == ["m3", "to-farm"]
    assert len(b.events("spoolraw")) == 1, "the @spoolraw job ran once"
    assert len(list(spool.glob("uwsgi_spoolfile_*"))) == 1, "the @spoolforever job stays"
