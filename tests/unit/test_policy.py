"""Throttle and blacklist arithmetic, with uWSGI 2.0's mixed units (ms, µs, whole seconds)."""

from __future__ import annotations

from emperor.policy import Blacklist, Throttle, next_throttle_level, to_micros

T0 = 1_700_000_000.0


def test_global_throttle_doubles_within_a_second_and_halves_back() -> None:
    # a spawn in the same whole second as the previous one doubles the level
    assert next_throttle_level(1000, 100, 100, 1000) == 2000
    assert next_throttle_level(2000, 100, 100, 1000) == 4000
    # later spawns halve it, never below the base
    assert next_throttle_level(4000, 100, 101, 1000) == 2000
    assert next_throttle_level(1000, 100, 105, 1000) == 1000
    assert next_throttle_level(1500, 100, 105, 1000) == 1000  # 750 is raised to the base
    # whole seconds: 100.9 and 101.1 are one second apart for time()
    t = Throttle(1000, 180000)
    assert t.level_ms == 1000
    t.spawned(100.9)
    assert t.level_ms == 1000  # first spawn: previous at second 0
    assert t.spawned(101.1) == 1000  # 101 - 100 = 1: not "less than one second"
    assert t.spawned(101.8) == 2000
    assert t.spawned(101.9) == 4000


def test_global_throttle_is_capped_where_c_would_overflow() -> None:
    t = Throttle(1000, 180000)
    for _ in range(40):
        t.spawned(200.5)
    assert t.level_ms == 180000


def test_first_unloyal_death_backs_off_microseconds() -> None:
    bl = Blacklist(throttle_ms=1000, max_throttle_ms=180000)
    assert bl.add("a.ini", T0) == []
    item = bl.check("a.ini")
    assert item is not None
    # the raw emperor-throttle number (1000) used as microseconds: 1 ms
    assert item.throttle_level_us == 1000 and item.attempt == 0
    assert bl.refused_until("a.ini", T0 + 0.0005) == T0 + 0.001
    assert bl.refused_until("a.ini", T0 + 0.0011) is None
    assert item.throttle_level_ms() == 1  # what the stats server shows


def test_each_further_death_adds_emperor_throttle_milliseconds() -> None:
    bl = Blacklist(throttle_ms=1000, max_throttle_ms=180000)
    bl.add("a.ini", T0)
    assert bl.add("a.ini", T0 + 1) == []
    item = bl.check("a.ini")
    assert item.throttle_level_us == 1000 + 1_000_000 and item.attempt == 1
    assert item.last_attempt_us == to_micros(T0 + 1) and item.first_attempt_us == to_micros(T0)
    assert bl.refused_until("a.ini", T0 + 1.5) == (to_micros(T0 + 1) + 1_001_000) / 1e6
    lines = bl.add("a.ini", T0 + 2)
    assert lines == ["[emperor] unloyal bad behaving vassal found: a.ini throttling it..."]
    assert item.throttle_level_us == 2_001_000 and item.attempt == 2
    assert bl.add("a.ini", T0 + 3) == []  # logged at attempt 2 only


def test_level_is_halved_once_it_reaches_the_max() -> None:
    bl = Blacklist(throttle_ms=100, max_throttle_ms=400)
    levels = []
    logs = []
    for i in range(9):
        logs += bl.add("a.ini", T0 + i)
        levels.append(bl.check("a.ini").throttle_level_us)
    # 100 µs, then +100 ms while below 400 ms, halved at or above it
    assert levels == [100, 100_100, 200_100, 300_100, 400_100, 200_050, 300_050, 400_050, 200_025]
    assert logs.count("[emperor] maximum throttle level for vassal a.ini reached !!!") == 2
    assert [lvl // 1000 for lvl in levels] == [0, 100, 200, 300, 400, 200, 300, 400, 200]


def test_loyalty_clears_and_order_is_kept() -> None:
    bl = Blacklist()
    bl.add("b.ini", T0)
    bl.add("a.ini", T0)
    bl.add("c.ini", T0)
    assert [i.id for i in bl] == ["b.ini", "a.ini", "c.ini"]
    bl.remove("a.ini")
    bl.remove("missing.ini")
    assert [i.id for i in bl] == ["b.ini", "c.ini"]
    assert bl.refused_until("a.ini", T0) is None
    bl.clear()
    assert len(bl) == 0


def test_microseconds_like_gettimeofday() -> None:
    assert to_micros(1.000001) == 1_000_001
    assert to_micros(T0 + 0.25) == int(T0) * 1_000_000 + 250_000
