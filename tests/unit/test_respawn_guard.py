"""The master's fork-bomb guard (uWSGI's rule, on a monotonic clock)."""

from __future__ import annotations

from vassal.respawn_guard import RespawnGuard


def test_quick_respawns_beyond_the_worker_count_pause() -> None:
    g = RespawnGuard(workers=2, interval=1.0, delay=2.0)
    assert g.respawn_at(10.0) == 10.0  # the first: nothing to compare with
    assert g.respawn_at(10.1) == 10.1  # 1
    assert g.respawn_at(10.2) == 10.2  # 2
    assert g.respawn_at(10.3) == 12.3  # 3 > 2 workers: sleep 2 s
    # a death during the pause waits for its end, and counts then
    assert g.respawn_at(11.0) == 12.3
    assert g.rate == 1


def test_slow_respawns_never_pause() -> None:
    g = RespawnGuard(workers=1, interval=1.0, delay=2.0)
    for i in range(10):
        assert g.respawn_at(10.0 + 1.5 * i) == 10.0 + 1.5 * i


def test_delay_zero_disables_the_pause() -> None:
    g = RespawnGuard(workers=1, interval=1.0, delay=0.0)
    assert [g.respawn_at(1.0 + i / 100) for i in range(5)] == [1.0 + i / 100 for i in range(5)]
