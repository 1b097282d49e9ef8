"""Cheaper options as uWSGI reads and refuses them (core/init.c), with one-line errors that
name the option and where it was given; the service's own decisions on a fake master."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vassal.config import ConfigError, load_config
from vassal.scoreboard import Scoreboard
from vassal.services import cheaper
from vassal.services import cheaper_algos as A


def conf(*argv: str) -> cheaper.CheaperConfig | None:
    return cheaper.from_config(load_config(list(argv), {}))


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(cheaper, "log", lines.append)
    return lines


def test_off_without_cheaper_or_with_zero() -> None:
    assert conf("-p", "4") is None
    assert conf("-p", "4", "--cheaper", "0", "--cheaper-initial", "3") is None
    assert conf("-p", "4", "--cheaper-algo", "busyness") is None


def test_defaults() -> None:
    c = conf("-p", "4", "--cheaper", "1")
    assert c is not None
    assert (c.algo, c.initial, c.rss_soft, c.rss_hard, c.mercy) == ("spare", 1, 0, 0, 60.0)
    s = c.settings
    assert (s.minimum, s.processes, s.step, s.overload, s.idle) == (1, 4, 1, 3, 10)
    assert s.busyness == A.Busyness()


@pytest.mark.parametrize("cheaper_, processes", [("2", "2"), ("3", "2"), ("1", "1")])
def test_cheaper_not_lower_than_processes_is_refused(cheaper_: str, processes: str) -> None:
    with pytest.raises(cheaper.CheaperError) as err:
        conf("-p", processes, "--cheaper", cheaper_)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("cheaper (command line): invalid cheaper value: must be lower than processes")


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\nprocesses = 2\nmemory-report = true\ncheaper = 1\n"
                   "cheaper-rss-limit-soft = 2000\ncheaper-rss-limit-hard = 1000\n")
    with pytest.raises(cheaper.CheaperError) as err:
        conf("--ini", str(ini))
    assert str(err.value).startswith(f"cheaper-rss-limit-hard ({ini}:6): cheaper-rss-limit-hard value must "
                                     "be higher than cheaper-rss-limit-soft value")


def test_rss_limits_are_checked_as_uwsgi_checks_them() -> None:
    with pytest.raises(cheaper.CheaperError, match="requires enabling also memory-report"):
        conf("-p", "4", "--cheaper", "1", "--cheaper-rss-limit-soft", "1000")
    with pytest.raises(cheaper.CheaperError, match="requires setting also cheaper-rss-limit-soft"):
        conf("-p", "4", "--cheaper", "1", "--memory-report", "--cheaper-rss-limit-hard", "1000")
    with pytest.raises(cheaper.CheaperError, match="must be higher"):
        conf("-p", "4", "--memory-report", "--cheaper-rss-limit-soft", "1000", "--cheaper-rss-limit-hard", "1000")
    # another memory option is enough (uWSGI's UWSGI_OPT_MEMORY); checked even without cheaper
    c = conf("-p", "4", "--cheaper", "1", "--reload-on-rss", "512", "--cheaper-rss-limit-soft", "1000",
             "--cheaper-rss-limit-hard", "2000")
    assert c is not None and (c.rss_soft, c.rss_hard) == (1000, 2000)
    with pytest.raises(cheaper.CheaperError):
        conf("-p", "4", "--cheaper-rss-limit-soft", "1000")


def test_overload_zero_is_refused() -> None:
    with pytest.raises(cheaper.CheaperError, match=r"^cheaper-overload \(command line\): must be at least 1"):
        conf("-p", "4", "--cheaper", "1", "--cheaper-overload", "0")


def test_negative_values_are_refused_by_the_loader() -> None:
    with pytest.raises(ConfigError, match="option cheaper: -1 is negative"):
        conf("-p", "4", "--cheaper", "-1")


def test_initial_is_clamped_with_uwsgis_warnings(logged: list[str]) -> None:
    c = conf("-p", "4", "--cheaper", "2", "--cheaper-initial", "1")
    assert c is not None and c.initial == 2
    assert logged[-1] == ("warning: invalid cheaper-initial value (1), must be equal or higher than cheaper (2), "
                          "using 2 as initial number of workers")
    c = conf("-p", "4", "--cheaper", "2", "--cheaper-initial", "9")
    assert c is not None and c.initial == 4
    assert "must be lower or equal than worker count (4), using 4" in logged[-1]


def test_unknown_algorithm_falls_back_to_spare(logged: list[str]) -> None:
    c = conf("-p", "4", "--cheaper", "1", "--cheaper-algo", "backlog2")
    assert c is not None and c.algo == "spare"
    assert logged[-1] == ("cheaper-algo (command line): unable to find requested cheaper algorithm "
                          "'backlog2', falling back to spare")


def test_busyness_options_zero_means_default() -> None:
    c = conf("-p", "4", "--cheaper", "1", "--cheaper-algo", "busyness", "--cheaper-busyness-max", "80",
             "--cheaper-busyness-min", "0", "--cheaper-busyness-backlog-step", "3", "--cheaper-busyness-verbose")
    assert c is not None
    assert c.settings.busyness == A.Busyness(max=80, min=25, backlog_step=3, verbose=True)


def test_algorithm_list(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(cheaper, "log", lines.append)
    cheaper.list_algorithms()
    assert lines[1:-2] == ["*** uWSGI loaded cheaper algorithms ***", *A.NAMES]
    assert lines[-2] == "--- end of cheaper algorithms list ---"


@settings(max_examples=150, deadline=None)
@given(p=st.integers(1, 64), c=st.integers(0, 80), i=st.integers(0, 80),
       soft=st.integers(0, 3), hard=st.integers(0, 3), mem=st.booleans())
def test_any_numbers_give_settings_in_range_or_one_line_error(p: int, c: int, i: int, soft: int, hard: int,
                                                              mem: bool) -> None:
    argv = ["-p", str(p), "--cheaper", str(c), "--cheaper-initial", str(i),
            "--cheaper-rss-limit-soft", str(soft), "--cheaper-rss-limit-hard", str(hard)]
    if mem:
        argv.append("--memory-report")
    lines: list[str] = []
    orig = cheaper.log
    cheaper.log = lines.append  # type: ignore[assignment]
    try:
        result = conf(*argv)
    except cheaper.CheaperError as exc:
        assert "\n" not in str(exc) and str(exc).split(" ")[0].startswith("cheaper")
        return
    finally:
        cheaper.log = orig  # type: ignore[assignment]
    if result is None:
        assert c == 0
    else:
        assert 1 <= result.settings.minimum < p
        assert result.settings.minimum <= result.initial <= p


# --- the service against a fake master -------------------------------------------------------


class FakeMaster:
    """The master's side of the contract: a scoreboard, pids, start/cheap."""

    def __init__(self, n: int) -> None:
        self.board = Scoreboard(n, 1)
        self.pids: dict[int, int] = {}
        self.sockets: list = []
        self.services: list = []
        self.cheaper = None
        self.scaling = True
        self.next_pid = 1000
        self.actions: list[tuple[str, int]] = []

    def can_scale(self) -> bool:
        return self.scaling

    def spawn(self, wid: int) -> None:
        self.next_pid += 1
        self.board.reset_worker(wid, 0)
        self.board.workers[wid].pid = self.next_pid
        self.pids[self.next_pid] = wid

    def start_worker(self, wid: int) -> None:
        self.actions.append(("start", wid))
        self.spawn(wid)

    def cheap_worker(self, wid: int) -> None:
        self.actions.append(("cheap", wid))
        w = self.board.workers[wid]
        w.cheaped = 1
        self.pids.pop(w.pid, None)
        w.pid = 0  # reaped at once here


def service(*argv: str) -> tuple[cheaper.Cheaper, FakeMaster]:
    c = conf(*argv)
    assert c is not None
    m = FakeMaster(c.settings.processes)
    svc = cheaper.Cheaper(c)
    svc.start(m)
    for wid in range(1, m.board.nworkers + 1):
        if not m.board.workers[wid].cheaped:
            m.spawn(wid)
    return svc, m


def test_start_marks_the_workers_beyond_initial_cheaped(logged: list[str]) -> None:
    svc, m = service("-p", "5", "--cheaper", "1", "--cheaper-initial", "3")
    assert [m.board.workers[w].cheaped for w in range(1, 6)] == [0, 0, 0, 1, 1]
    assert m.cheaper is svc
    assert [m.board.status_name(w) for w in range(1, 6)] == ["idle", "idle", "idle", "cheap", "cheap"]


def test_fifo_delta_replaces_the_algorithm_and_waits_for_an_idle_worker(logged: list[str]) -> None:
    svc, m = service("-p", "4", "--cheaper", "1", "--cheaper-algo", "manual")
    svc.nudge(+1)
    svc.nudge(+1)
    svc.cycle(1.0)
    assert m.actions == [("start", 2), ("start", 3)]
    for wid in (1, 2, 3):
        m.board.workers[wid].busy_cores = 1
    svc.nudge(-1)
    svc.cycle(2.0)
    assert m.actions[2:] == [] and svc.fifo_delta == -1  # carried: everybody is busy
    m.board.workers[2].busy_cores = 0
    svc.cycle(3.0)
    assert m.actions[2:] == [("cheap", 2)] and svc.fifo_delta == 0


def test_a_fifo_flood_is_bounded_by_the_workers(logged: list[str]) -> None:
    svc, m = service("-p", "4", "--cheaper", "1", "--cheaper-algo", "manual")
    for _ in range(100_000):
        svc.nudge(-1)
    assert svc.fifo_delta == -4
    svc.cycle(1.0)  # cheaps worker 1 (the only one running), carries the rest
    assert m.actions == [("cheap", 1)] and svc.fifo_delta == -3
    for _ in range(100_000):
        svc.nudge(+1)
    assert svc.fifo_delta == 4
    svc.cycle(2.0)
    assert m.actions[1:] == [("start", 1), ("start", 2), ("start", 3), ("start", 4)]


def test_the_oldest_idle_worker_is_cheaped(logged: list[str]) -> None:
    svc, m = service("-p", "4", "--cheaper", "1", "--cheaper-initial", "4", "--cheaper-algo", "manual")
    for wid, spawned in ((1, 50), (2, 10), (3, 10), (4, 5)):
        m.board.workers[wid].last_spawn = spawned
    m.board.workers[4].busy_cores = 1
    svc.nudge(-2)
    svc.cycle(1.0)
    assert m.actions == [("cheap", 2), ("cheap", 3)]  # 4 is busy; 2 and 3 tie: lowest id first


def test_nothing_happens_while_the_master_cannot_scale(logged: list[str]) -> None:
    svc, m = service("-p", "4", "--cheaper", "1", "--cheaper-algo", "manual")
    m.scaling = False
    svc.nudge(+1)
    svc.next_check = 0.0
    svc.tick(5.0)
    assert m.actions == [] and svc.fifo_delta == 1
    m.scaling = True
    svc.tick(10.0)
    assert m.actions == [("start", 2)]


def test_nothing_happens_while_the_workers_are_paused(logged: list[str]) -> None:
    class Control:
        name = "control"
        paused = True

    c = conf("-p", "4", "--cheaper", "1", "--cheaper-algo", "manual")
    assert c is not None
    m = FakeMaster(4)
    m.services = [Control()]
    svc = cheaper.Cheaper(c)
    svc.start(m)
    m.spawn(1)
    svc.nudge(+1)
    svc.next_check = 0.0
    svc.tick(10.0)
    assert m.actions == []
    Control.paused = False
    svc.tick(20.0)
    assert m.actions == [("start", 2)]


def test_hard_rss_limit_cheaps_and_soft_limit_stops_spawning(logged: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    svc, m = service("-p", "4", "--cheaper", "1", "--cheaper-initial", "3", "--memory-report",
                     "--cheaper-rss-limit-soft", "300", "--cheaper-rss-limit-hard", "500")
    rss = {"value": 200}  # per worker
    monkeypatch.setattr(cheaper.statsmod, "_memory", lambda pid: (rss["value"], 0))
    svc.cycle(1.0)  # 600 >= 500
    assert m.actions == [("cheap", 1)]
    assert logged[-1] == "cheaper hard rss memory limit exceeded, cheap one of 3 workers"
    svc.cycle(2.0)  # 400: under the hard limit, over the soft one; the FIFO is dropped too
    svc.nudge(+1)
    svc.cycle(3.0)
    assert m.actions == [("cheap", 1)] and svc.fifo_delta == 0
    for wid in (2, 3):
        m.board.workers[wid].busy_cores = 1
    for t in range(4, 10):  # spare would spawn after 4 busy cycles: not while over the soft limit
        svc.cycle(float(t))
    assert m.actions == [("cheap", 1)]
    rss["value"] = 100
    for t in range(10, 15):
        svc.cycle(float(t))
    assert ("start", 1) in m.actions


def test_a_cheaped_worker_that_does_not_exit_is_killed_after_the_mercy(logged: list[str]) -> None:
    svc, m = service("-p", "2", "--cheaper", "1", "--cheaper-initial", "2", "--cheaper-algo", "manual",
                     "--worker-reload-mercy", "5")
    stubborn = subprocess.Popen(["sleep", "60"])
    try:
        m.pids[stubborn.pid] = 2
        m.board.workers[2].pid = stubborn.pid
        m.board.workers[1].busy_cores = 1  # so worker 2 is the one cheaped
        m.cheap_worker = lambda wid: None  # type: ignore[method-assign]  # the signal "is lost"
        svc.nudge(-1)
        svc.cycle(time.monotonic())
        assert svc.dying == {stubborn.pid: pytest.approx(time.monotonic() + 5, abs=1)}
        assert svc.timeout(time.monotonic()) <= 5
        svc.tick(time.monotonic() + 2)
        assert stubborn.poll() is None  # still within the mercy
        svc.tick(time.monotonic() + 6)
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
        assert logged[-1] == f"worker 2 (pid: {stubborn.pid}) is taking too much time to die...NO MERCY !!!"
        assert svc.dying == {}
    finally:
        stubborn.kill()
        stubborn.wait()
