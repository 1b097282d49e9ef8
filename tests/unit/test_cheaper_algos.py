"""The cheaper algorithms cycle by cycle, with uWSGI 2.0's numbers (core/master_utils.c and
plugins/cheaper_busyness), plus properties that must hold for any sequence of load."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vassal.services import cheaper_algos as A


def snap(running: int, busy: int, processes: int, backlog: int = 0, now: float = 0.0,
         running_time: tuple[int, ...] = ()) -> A.Snapshot:
    """``running`` workers 1..running (the first ``busy`` of them busy), the rest cheaped."""
    workers = []
    for wid in range(1, processes + 1):
        on = wid <= running
        workers.append(A.WorkerView(wid=wid, running=on, cheaped=not on, busy=on and wid <= busy,
                                    running_time=running_time[wid - 1] if running_time else 0,
                                    last_spawn=wid))
    return A.Snapshot(tuple(workers), backlog, now)


def settings_(minimum: int = 1, processes: int = 4, **kw) -> A.Settings:
    return A.Settings(minimum=minimum, processes=processes, **kw)


def quiet(line: str) -> None:
    pass


# --- spare -----------------------------------------------------------------------------------


def test_spare_spawns_after_more_than_overload_busy_cycles() -> None:
    algo = A.Spare(settings_(overload=3), quiet)
    decisions = [algo.decide(snap(1, 1, 4), True) for _ in range(5)]
    # uWSGI 2.0: overload_count > cheaper_overload, so the 4th all-busy cycle spawns
    assert decisions == [0, 0, 0, 1, 0]


def test_spare_spawns_step_workers_bounded_by_the_cheaped_ones() -> None:
    algo = A.Spare(settings_(overload=1, step=3), quiet)
    assert [algo.decide(snap(3, 3, 4), True) for _ in range(2)] == [0, 1]  # only one left
    algo = A.Spare(settings_(overload=1, step=3), quiet)
    assert [algo.decide(snap(1, 1, 8), True) for _ in range(2)] == [0, 3]
    algo = A.Spare(settings_(overload=1, step=0), quiet)  # uWSGI's loop takes one anyway
    assert [algo.decide(snap(1, 1, 8), True) for _ in range(2)] == [0, 1]


def test_spare_an_idle_cycle_takes_one_overload_back() -> None:
    algo = A.Spare(settings_(overload=2), quiet)
    assert algo.decide(snap(2, 2, 4), True) == 0  # 1
    assert algo.decide(snap(2, 2, 4), True) == 0  # 2
    assert algo.decide(snap(2, 1, 4), True) == 0  # back to 1
    assert algo.decide(snap(2, 2, 4), True) == 0  # 2
    assert algo.decide(snap(2, 2, 4), True) == 1  # 3 > 2


def test_spare_cannot_spawn_under_the_soft_limit_but_keeps_counting() -> None:
    algo = A.Spare(settings_(overload=1), quiet)
    assert [algo.decide(snap(1, 1, 4), False) for _ in range(4)] == [0, 0, 0, 0]
    assert algo.decide(snap(1, 1, 4), True) == 1


def test_spare_cheaps_one_every_overload_cycles_down_to_the_minimum() -> None:
    algo = A.Spare(settings_(minimum=1, overload=2), quiet)
    out = []
    running = 4
    for _ in range(10):
        d = algo.decide(snap(running, 0, 4), True)
        out.append(d)
        running += d
    # idle_count 1, 2 (cheap), 3, 4 (cheap), ...; never below the minimum
    assert out == [0, -1, 0, -1, 0, -1, 0, 0, 0, 0]
    assert running == 1


def test_spare_keeps_one_spare_worker() -> None:
    algo = A.Spare(settings_(minimum=1, overload=1), quiet)
    assert [algo.decide(snap(3, 2, 4), True) for _ in range(5)] == [0] * 5


def test_spare_an_overload_interrupts_the_cheaping() -> None:
    algo = A.Spare(settings_(minimum=1, overload=2), quiet)
    assert algo.decide(snap(4, 0, 4), True) == 0
    assert algo.decide(snap(4, 4, 4), True) == 0  # overload 1, idle_count reset
    assert algo.decide(snap(4, 0, 4), True) == 0  # overload back to 0, idle_count 1
    assert algo.decide(snap(4, 0, 4), True) == -1


# --- spare2 ----------------------------------------------------------------------------------


def test_spare2_keeps_minimum_idle_workers_ready() -> None:
    algo = A.Spare2(settings_(minimum=2, processes=8, step=1), quiet)
    assert algo.decide(snap(2, 1, 8), True) == 1  # one idle, two wanted
    algo = A.Spare2(settings_(minimum=3, processes=8, step=5), quiet)
    assert algo.decide(snap(3, 3, 8), True) == 3
    assert algo.decide(snap(7, 7, 8), True) == 1  # only one cheaped left
    assert algo.decide(snap(3, 3, 8), False) == 0


def test_spare2_cheaps_after_cheaper_idle_cycles_of_too_many_idle() -> None:
    algo = A.Spare2(settings_(minimum=1, processes=4, idle=3), quiet)
    out = [algo.decide(snap(3, 0, 4), True) for _ in range(7)]
    assert out == [0, 0, -1, 0, 0, -1, 0]
    assert algo.decide(snap(2, 1, 4), True) == 0  # exactly one idle: counter reset
    assert [algo.decide(snap(3, 0, 4), True) for _ in range(3)] == [0, 0, -1]


# --- backlog ---------------------------------------------------------------------------------


def test_backlog_follows_the_listen_queue() -> None:
    algo = A.Backlog(settings_(minimum=1, overload=2, step=2), quiet)
    assert algo.decide(snap(1, 1, 4, backlog=3), True) == 2
    assert algo.decide(snap(1, 1, 4, backlog=3), False) == 0
    assert algo.decide(snap(3, 3, 4, backlog=2), True) == 0  # equal: nothing
    assert algo.decide(snap(3, 3, 4, backlog=1), True) == -1  # even when all are busy
    assert algo.decide(snap(1, 1, 4, backlog=0), True) == 0  # at the minimum


# --- busyness --------------------------------------------------------------------------------


def busyness(log: list[str] | None = None, **kw) -> A.BusynessAlgo:
    b = A.Busyness(**{k: v for k, v in kw.items() if k in A.Busyness.__dataclass_fields__})
    s = settings_(**{k: v for k, v in kw.items() if k in ("minimum", "processes", "step", "overload")},
                  busyness=b)
    return A.BusynessAlgo(s, (log.append if log is not None else quiet), now=0.0)


def test_busyness_logs_its_settings() -> None:
    log: list[str] = []
    busyness(log, overload=5, min=10, max=60, multiplier=4, penalty=1)
    assert log[0] == "[busyness] settings: min=10%, max=60%, overload=5, multiplier=4, respawn penalty=1"
    assert "backlog alert is set to 33 request(s), step is 1" in log[1]


def test_busyness_spawns_when_the_window_is_busier_than_max() -> None:
    algo = busyness(overload=2, processes=4)
    # worker 1 spent 1.5 s of a 2 s window in requests: 75% > 50%
    assert algo.decide(snap(1, 0, 4, now=1.0, running_time=(0, 0, 0, 0)), True) == 0
    assert algo.decide(snap(1, 0, 4, now=2.0, running_time=(1_500_000, 0, 0, 0)), True) == 1


def test_busyness_a_request_longer_than_the_window_counts_as_fully_busy() -> None:
    algo = busyness(overload=1, processes=4)
    assert algo.decide(snap(1, 1, 4, now=1.0), True) == 1  # no request ended, but busy


def test_busyness_cheaps_after_multiplier_idle_windows() -> None:
    log: list[str] = []
    algo = busyness(log, overload=1, multiplier=3, minimum=1, processes=4)
    out = [algo.decide(snap(3, 0, 4, now=float(t)), True) for t in range(1, 6)]
    assert out == [0, 0, -1, 0, 0]  # next cheap at 0 + 1*3, then 3 + 3
    assert any("cheap one of 3 running workers" in line for line in log)


def test_busyness_in_between_windows_delay_then_reset_the_cheap() -> None:
    algo = busyness(overload=1, multiplier=2, minimum=1, processes=4)
    # 30% busy (between min 25 and max 50): the first two push the timer by a window each
    rt = [0, 0, 0]
    out = []
    for t in range(1, 4):
        rt = [v + 300_000 for v in rt]
        out.append(algo.decide(snap(3, 0, 4, now=float(t), running_time=(*rt, 0)), True))
    assert out == [0, 0, 0]
    assert algo.tolerance == 3 and algo.next_cheap == 3 + 2  # reset at the third
    assert algo.decide(snap(3, 0, 4, now=4.0, running_time=(*rt, 0)), True) == 0  # idle, 4 < 5
    assert algo.decide(snap(3, 0, 4, now=5.0, running_time=(*rt, 0)), True) == -1


def test_busyness_respawn_too_soon_adds_the_penalty() -> None:
    log: list[str] = []
    algo = busyness(log, overload=1, multiplier=1, penalty=2, minimum=1, processes=4)
    assert algo.decide(snap(2, 0, 4, now=1.0), True) == -1  # cheaped at 1
    assert algo.decide(snap(1, 1, 4, now=2.0), True) == 1  # needed again one window later
    assert algo.multi == 3
    assert any("respawned to fast, increasing cheaper multiplier to 3 (+2)" in line for line in log)


def test_busyness_backlog_alert_spawns_emergency_workers_every_cycle() -> None:
    log: list[str] = []
    algo = busyness(log, overload=30, backlog_alert=5, backlog_step=2, processes=6)
    assert algo.decide(snap(1, 1, 6, backlog=6, now=1.0), True) == 2
    assert algo.decide(snap(3, 3, 6, backlog=6, now=2.0), True) == 2
    assert algo.emergency == 4
    assert algo.decide(snap(6, 6, 6, backlog=6, now=3.0), True) == 0  # all running
    assert log[-2] == "[busyness] 6 requests in listen queue, spawning 2 emergency worker(s) (2)!"
    assert log[-1] == "[busyness] 6 requests in listen queue, spawning 2 emergency worker(s) (4)!"


def test_busyness_backlog_nonzero_for_long_spawns() -> None:
    algo = busyness(overload=100, backlog_nonzero=3, processes=4)
    out = [algo.decide(snap(1, 1, 4, backlog=1, now=float(t)), True) for t in range(1, 6)]
    assert out == [0, 0, 0, 1, 0]  # since 1, spawned at 4, timer restarted
    assert algo.decide(snap(2, 2, 4, backlog=0, now=6.0), True) == 0
    assert algo.backlog_nonzero_since is None


def test_busyness_emergency_workers_go_after_the_backlog_multiplier() -> None:
    algo = busyness(overload=1, multiplier=10, backlog_multiplier=2, backlog_alert=1, minimum=1, processes=4)
    # as the plugin: the timer is set before the new emergency workers are counted
    assert algo.decide(snap(1, 1, 4, backlog=5, now=0.5), True) == 1
    assert algo.next_cheap == 0.5 + 10
    assert algo.decide(snap(2, 2, 4, backlog=5, now=0.7), True) == 1
    assert algo.next_cheap == 0.7 + 2  # one emergency worker was running: the short timer
    done = (10_000, 10_000, 0, 0)  # the held requests ended: the window is 1% busy
    assert algo.decide(snap(3, 0, 4, now=1.5, running_time=done), True) == 0
    assert algo.decide(snap(3, 0, 4, now=2.7, running_time=done), True) == -1
    assert algo.emergency == 1


# --- properties ------------------------------------------------------------------------------

_load = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 40), st.booleans()), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["spare", "spare2", "backlog", "busyness"]), load=_load,
       minimum=st.integers(1, 3), step=st.integers(0, 4), overload=st.integers(1, 4))
def test_no_algorithm_leaves_the_range(name: str, load: list, minimum: int, step: int, overload: int) -> None:
    """Whatever the load: never spawn more than the cheaped slots, never when spawning is
    forbidden, never ask for more than one cheap per cycle; applied as the service applies
    them, the count stays within [minimum, processes] (spare2 and busyness may go lower only
    to keep their own floor, which is still the minimum)."""
    processes = 5
    s = settings_(minimum=minimum, processes=processes, step=step, overload=overload, idle=2)
    algo = A.make(name, s, quiet, 0.0)
    running = minimum
    rt = [0] * processes
    for t, (busy, backlog, can_spawn) in enumerate(load, start=1):
        busy = min(busy, running)
        rt = [v + (700_000 if i < busy else 0) for i, v in enumerate(rt)]
        d = algo.decide(snap(running, busy, processes, backlog, float(t), tuple(rt)), can_spawn)
        assert d >= -1
        assert d <= processes - running
        if not can_spawn:
            assert d <= 0
        if d < 0 and busy < running:
            running -= 1
        else:
            running += max(d, 0)
        assert minimum <= running <= processes or (name == "spare2" and running >= 1)


def test_names_and_default() -> None:
    assert A.DEFAULT in A.NAMES
    s = settings_()
    for name in A.NAMES:
        assert hasattr(A.make(name, s, quiet, 0.0), "decide")
