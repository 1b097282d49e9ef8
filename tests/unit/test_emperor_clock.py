"""A step of the wall clock changes nothing the emperor times: every interval is monotonic.

The emperor runs in this process with a spawner that answers with the pid of a real
``sleep`` (so SIGKILLs would be real); the wall clock is stepped by patching ``time.time``,
as NTP or ``date -s`` would step it, while ``time.monotonic`` goes on.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator

import pytest

from emperor.core import Emperor
from emperor.events import Destroy, Touch
from emperor.protocol import ToEmperor
from emperor.settings import EmperorSettings

HOUR = 3600.0


class FakeSpawner:
    """Answers every request at once with the pid of a real sleeping process."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def spawn(self, req, fds, done) -> None:
        p = subprocess.Popen(["sleep", "60"], process_group=0)
        self.procs.append(p)
        done(p.pid, None)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def emperor(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Emperor, dict]]:
    step = {"wall": 0.0}
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + step["wall"])
    settings = EmperorSettings(monitors=["x"], throttle_ms=1000, max_throttle_ms=10000,
                               required_heartbeat=5, curse_tolerance=5, reload_mercy=5)
    e = Emperor(settings)
    e.loop = asyncio.new_event_loop()
    e.spawner = FakeSpawner()  # type: ignore[assignment]
    try:
        yield e, step
    finally:
        e.spawner.close()  # type: ignore[union-attr]
        for v in list(e.vassals.values()):
            v.close()
        for timer in e.retry.values():
            timer.cancel()
        e.loop.close()


class _Monitor:
    id = "test://"


MONITOR = _Monitor()


def touch(e: Emperor, name: str = "a.ini") -> None:
    e.on_event(MONITOR, Touch(name, mtime=1.0, path=f"/tmp/{name}"))  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("jump", [HOUR, -HOUR])
def test_heartbeat_deadline_ignores_a_wall_clock_step(emperor, jump: float) -> None:
    e, step = emperor
    touch(e)
    v = e.vassals["a.ini"]
    e.on_byte(v, ToEmperor.HEARTBEAT)
    step["wall"] = jump
    e.tick()
    assert alive(v.pid), "a wall clock step made a beating vassal miss its heartbeat"
    # the deadline itself still works, on the monotonic clock
    v.life.heartbeat_at = type(v.life.heartbeat_at)(v.life.heartbeat_at.wall,
                                                    v.life.heartbeat_at.mono - 6)
    e.tick()
    assert v.life.heartbeat_at is None  # missed: SIGKILLed and forgotten until the next beat


def test_curse_tolerance_and_mercy_ignore_a_wall_clock_step(emperor) -> None:
    e, step = emperor
    touch(e)
    v = e.vassals["a.ini"]
    v.stop()
    step["wall"] = HOUR
    e.tick()
    assert alive(v.pid), "SIGKILLed an hour early by a wall clock step"
    e.royal_death()
    step["wall"] = 2 * HOUR
    e.tick()
    assert not v.no_mercy, "NO MERCY fired at once after a wall clock step"


def test_blacklist_back_off_ignores_a_wall_clock_step(emperor) -> None:
    e, step = emperor
    for _ in range(3):  # three unloyal deaths: a back-off of about 2 s
        e.blacklist.add("a.ini", e.clock.mono(), e.clock.wall())
    item = e.blacklist.check("a.ini")
    retry_at = item.retry_at()
    step["wall"] = -HOUR  # back an hour: a wall-clock back-off would last an hour more
    touch(e)
    assert "a.ini" not in e.vassals and "a.ini" in e.retry
    assert abs(e.retry["a.ini"].when() - e.loop.time() - (retry_at - time.monotonic())) < 0.5
    step["wall"] = HOUR  # forward an hour: a wall-clock back-off would be over
    assert e.blacklist.refused_until("a.ini", e.clock.mono()) == retry_at
    # what the stats show is wall time, taken when the death happened
    assert abs(item.last_wall - (time.time() - HOUR)) < 5


def test_blacklist_entry_is_pruned_when_the_source_drops_the_name(emperor) -> None:
    e, step = emperor
    touch(e)
    v = e.vassals["a.ini"]
    e.on_exit(v, 1 << 8)  # died unloyal: blacklisted, respawn scheduled or started
    assert e.blacklist.check("a.ini") is not None
    e.on_event(MONITOR, Destroy("a.ini"))  # type: ignore[arg-type]
    for w in list(e.vassals.values()):
        e.on_exit(w, 0)
    assert e.blacklist.check("a.ini") is None and "a.ini" not in e.retry
