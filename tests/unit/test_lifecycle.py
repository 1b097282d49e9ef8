"""The vassal lifecycle: the transition table, and uWSGI's stats fields derived from it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from emperor.clock import Clock
from emperor.lifecycle import (
    DYING,
    TRANSITIONS,
    IllegalTransition,
    Kind,
    Lifecycle,
    Phase,
)
from emperor.policy import Blacklist, Throttle
from emperor.settings import EmperorSettings
from emperor.stats import render
from emperor.vassal import VassalHandle
from emperor.view import Latencies, snapshot


class StepClock(Clock):
    """A clock whose readings the test sets."""

    def __init__(self, wall: float = 1_700_000_000.0, mono: float = 1000.0) -> None:
        self.w, self.m = wall, mono

    def wall(self) -> float:
        return self.w

    def mono(self) -> float:
        return self.m


def test_table_covers_every_phase_and_exited_is_final() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.EXITED] == frozenset()
    reachable = {Phase.STARTING, Phase.WAITING}
    for targets in TRANSITIONS.values():
        reachable |= targets
    assert reachable == set(Phase)
    # whatever it is doing, a vassal can end (or be removed)
    for phase in set(Phase) - {Phase.EXITED}:
        assert Phase.EXITED in TRANSITIONS[phase]


def test_illegal_transitions_raise() -> None:
    life = Lifecycle(Clock())
    life.to(Phase.RUNNING)
    life.to(Phase.STOPPING)
    with pytest.raises(IllegalTransition):
        life.to(Phase.RUNNING)  # a vassal marked to die is never wanted again
    life.to(Phase.EXITED)
    for phase in set(Phase) - {Phase.EXITED}:
        with pytest.raises(IllegalTransition):
            life.to(phase)


def test_status_integer_is_derived_from_the_phase() -> None:
    life = Lifecycle(Clock())
    assert (life.phase, life.status()) == (Phase.STARTING, 0)
    life.started()
    assert (life.phase, life.status()) == (Phase.RUNNING, 0)
    assert life.curse() and life.status() == 1 and life.dying
    assert not life.curse() and not life.stop()  # already marked to die
    od = Lifecycle(Clock(), Kind.ON_DEMAND, phase=Phase.WAITING)
    assert od.status() == 0 and od.on_demand and not od.zerg
    od.to(Phase.STARTING)
    od.started()
    assert od.back_to_waiting() and od.status() == 2
    assert od.curse() and od.status() == 2  # uWSGI keeps status 2 and moves cursed_at
    od.to(Phase.WAITING)
    assert od.status() == 0 and not od.asked_to_stop
    assert Lifecycle(Clock(), Kind.ZERG).zerg
    assert DYING == {Phase.STOPPING, Phase.CURSED, Phase.RETURNING}


def test_facts_within_running_and_reload() -> None:
    clock = StepClock()
    life = Lifecycle(clock)
    life.started()
    life.on_ready()
    life.on_accepting()
    clock.w += 1
    life.on_loyal()
    assert (life.ready, life.accepting, life.loyal) == (True, True, True)
    assert life.describe() == "loyal" and life.loyal_at.wall == clock.w
    life.reloading()
    # a reload resets readiness, loyalty stays (the blacklist asks "was it ever loyal")
    assert (life.phase, life.ready, life.accepting, life.loyal) == (Phase.RELOADING, False, False, True)
    life.on_ready()  # the new incarnation is up
    assert life.phase is Phase.RUNNING and life.ready


def test_stats_fields_come_from_the_lifecycle() -> None:
    clock = StepClock(wall=1_700_000_100.9, mono=50.0)
    monitor = SimpleNamespace(id="/etc/vassals")
    v = VassalHandle("a.ini", monitor, mtime=1_700_000_000.0, config=None, uid=1, gid=1,
                     cwd="/", config_arg="a.ini", vassals_dir=None, clock=clock)
    v.attach(4242)
    v.life.on_ready()
    v.life.on_heartbeat()
    clock.w += 10
    v.stop()
    emperor = SimpleNamespace(monitors=[monitor], settings=EmperorSettings(),
                              throttle=Throttle(), vassals={"a.ini": v}, blacklist=Blacklist(),
                              clock=clock, control=None, monitor_up={}, latencies=Latencies(),
                              settled=True)
    doc = json.loads(render(snapshot(emperor)))  # type: ignore[arg-type]
    shown = doc["vassals"][0]
    assert (shown["pid"], shown["ready"], shown["loyal"], shown["zerg"], shown["on_demand"]) == \
        (4242, 1, 0, 0, "")
    assert shown["last_ready"] == shown["last_heartbeat"] == 1_700_000_100
    assert shown["cursed"] == 1_700_000_110 and v.status == 1
    assert shown["first_run"] == 1_700_000_100


def test_a_vassal_stopped_while_starting_gets_the_byte_when_it_runs() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        v = VassalHandle("a.ini", None, mtime=1.0, config=b"[uwsgi]\n", uid=None, gid=None,
                         cwd=None, config_arg="a.ini", vassals_dir=None)
        channel = v.open_channel(loop, lambda _v: None)
        assert v.life.phase is Phase.STARTING and v.pid == -1
        v.stop()
        assert v.life.phase is Phase.STOPPING
        # what the vassal will read once it exists: the config packet, then byte 0 (stop)
        channel.config_child.setblocking(False)
        assert channel.config_child.recv(100)[4:] == b"[uwsgi]\n"
        assert channel.child.recv(10) == b"\0"
        v.close()
    finally:
        loop.close()


def test_a_touch_while_starting_is_queued_not_an_illegal_transition() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        v = VassalHandle("a.ini", None, mtime=1.0, config=None, uid=None, gid=None,
                         cwd=None, config_arg="a.ini", vassals_dir=None)
        channel = v.open_channel(loop, lambda _v: None)
        assert v.reload(2.0) and v.life.phase is Phase.STARTING and v.respawns == 1
        assert channel.child.recv(10) == b"\1"  # the vassal reloads once it runs
        v.attach(1234)
        assert v.life.phase is Phase.RUNNING
        v.close()
    finally:
        loop.close()
    waiting = Lifecycle(Clock(), Kind.ON_DEMAND, phase=Phase.WAITING)
    assert not waiting.stop() and waiting.phase is Phase.WAITING


def _reload(life: Lifecycle) -> None:
    """What VassalHandle.reload does to the lifecycle (guarded the same way)."""
    if life.status() == 0 and life.phase in (Phase.RUNNING, Phase.RELOADING):
        life.reloading()


_OPS = {
    "started": Lifecycle.started, "stop": Lifecycle.stop, "curse": Lifecycle.curse,
    "back": Lifecycle.back_to_waiting, "ready": Lifecycle.on_ready,
    "accepting": Lifecycle.on_accepting, "loyal": Lifecycle.on_loyal,
    "heartbeat": Lifecycle.on_heartbeat, "exited": Lifecycle.exited, "reload": _reload,
}


def test_any_sequence_of_events_keeps_the_lifecycle_consistent() -> None:
    """Whatever order the vassal's bytes, the monitors and the process exits come in, the
    guarded operations the emperor uses never make an illegal transition, EXITED is final,
    and the derived fields stay uWSGI's."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from([Kind.PLAIN, Kind.ZERG, Kind.ON_DEMAND]),
           st.lists(st.sampled_from(sorted(_OPS)), max_size=40))
    def run(kind: Kind, ops: list[str]) -> None:
        life = Lifecycle(Clock(), kind,
                         phase=Phase.WAITING if kind is Kind.ON_DEMAND else Phase.STARTING)
        for op in ops:
            before = life.phase
            _OPS[op](life)
            assert life.phase is before or life.phase in TRANSITIONS[before]
            assert life.status() in (0, 1, 2)
            if life.dying:
                assert life.cursed_at is not None
            if before is Phase.EXITED:
                assert life.phase is Phase.EXITED
        assert life.zerg == (kind is Kind.ZERG) and life.on_demand == (kind is Kind.ON_DEMAND)

    run()
