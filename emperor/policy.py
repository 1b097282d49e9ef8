"""The emperor's throttle and blacklist arithmetic, as pure functions of explicit times.

Reproduced from uWSGI 2.0 (``emperor_add``, ``uwsgi_emperor_blacklist_add``,
``uwsgi_emperor_blacklist_remove`` in core/emperor.c), including its units, which are mixed:

* ``emperor-throttle`` and ``emperor-max-throttle`` are given in **milliseconds**.
* The global throttle level is kept in milliseconds and compared with whole **seconds**:
  a spawn less than one second (by ``time()``) after the previous one doubles it, any later
  spawn halves it down to ``emperor-throttle``. uWSGI 2.0 only computes it (the sleep that
  used it is commented out); so do we. Where C's ``int`` would overflow after ~21 doublings
  we stop at ``emperor-max-throttle`` instead.
* A blacklist entry's level is kept in **microseconds** and compared with microsecond
  timestamps, but it *starts* at the raw ``emperor-throttle`` number: the first back-off of
  a vassal that died unloyal is 1000 µs = 1 ms with the default, not 1 s. Every further
  unloyal death adds ``emperor-throttle * 1000`` µs (= emperor-throttle ms) while the level
  is below ``emperor-max-throttle * 1000`` µs; at or above it the level is halved instead
  (and "maximum throttle level ... reached" is logged). At the second further death
  (attempt == 2) "unloyal bad behaving vassal found" is logged.
* The stats server shows a blacklist level divided by 1000, i.e. in milliseconds.

A name is refused while ``last_attempt + level > now`` (µs). uWSGI uses ``gettimeofday``;
here every time given for arithmetic is a **monotonic** reading in seconds (the emperor's
``Clock.mono``), so a step of the wall clock neither lifts nor extends a back-off. The
wall-clock moments the stats server shows (``first_attempt``, ``last_attempt``) are passed
beside it and only displayed.

Entries live as long as their source names the vassal: the emperor calls ``remove`` when
no monitor names it any more (uWSGI never prunes them; SIGURG clears them all).
"""

from __future__ import annotations

from dataclasses import dataclass, field


def to_micros(t: float) -> int:
    """Seconds → integer microseconds, like tv_sec * 1e6 + tv_usec."""
    return int(round(t * 1_000_000))


# --- global throttle -------------------------------------------------------------------------

def next_throttle_level(level_ms: int, last_spawn_s: int, now_s: int, base_ms: int,
                        max_ms: int | None = None) -> int:
    """The global throttle level after a spawn at ``now_s`` (whole seconds, like time()).

    ``last_spawn_s`` is the whole second of the previous spawn (0 before the first).
    """
    if now_s - last_spawn_s < 1:
        level_ms = level_ms * 2
        if max_ms is not None and level_ms > max_ms:
            level_ms = max(max_ms, base_ms)
    else:
        if level_ms > base_ms:
            level_ms = level_ms // 2
        if level_ms < base_ms:
            level_ms = base_ms
    return level_ms


@dataclass
class Throttle:
    """The emperor's one global throttle level (reported by the stats server)."""

    base_ms: int = 1000
    max_ms: int = 180000
    level_ms: int = 0
    last_spawn_s: int = 0

    def __post_init__(self) -> None:
        if not self.level_ms:
            self.level_ms = self.base_ms

    def spawned(self, now: float) -> int:
        """A spawn at ``now`` (monotonic seconds): whole seconds are compared, as uWSGI's."""
        now_s = int(now)
        self.level_ms = next_throttle_level(self.level_ms, self.last_spawn_s, now_s,
                                            self.base_ms, self.max_ms)
        self.last_spawn_s = now_s
        return self.level_ms


# --- blacklist -------------------------------------------------------------------------------

@dataclass
class BlacklistItem:
    id: str
    first_attempt_us: int
    last_attempt_us: int
    throttle_level_us: int
    attempt: int = 0
    first_wall: float = 0.0  # shown by the stats server, never compared
    last_wall: float = 0.0

    def retry_at(self) -> float:
        """Earliest time (monotonic seconds) a new start of this name is allowed."""
        return (self.last_attempt_us + self.throttle_level_us) / 1_000_000

    def throttle_level_ms(self) -> int:
        """What the stats server shows: the level divided by 1000 (C integer division)."""
        return self.throttle_level_us // 1000


@dataclass
class Blacklist:
    """Vassals that died before becoming loyal, in insertion order (as uWSGI's list)."""

    throttle_ms: int = 1000
    max_throttle_ms: int = 180000
    items: dict[str, BlacklistItem] = field(default_factory=dict)

    def check(self, name: str) -> BlacklistItem | None:
        return self.items.get(name)

    def refused_until(self, name: str, now: float) -> float | None:
        """None when ``name`` may start at ``now``; otherwise when it may (monotonic s)."""
        item = self.items.get(name)
        if item is None:
            return None
        if item.last_attempt_us + item.throttle_level_us > to_micros(now):
            return item.retry_at()
        return None

    def add(self, name: str, now: float, wall: float | None = None) -> list[str]:
        """Record an unloyal death of ``name`` at ``now`` (monotonic s; ``wall`` is what the
        stats show, ``now`` when not given); returns the log lines uWSGI prints for it."""
        now_us = to_micros(now)
        shown = now if wall is None else wall
        item = self.items.get(name)
        if item is None:
            # the first level is the raw millisecond number used as microseconds (see above)
            self.items[name] = BlacklistItem(name, now_us, now_us, self.throttle_ms,
                                             first_wall=shown, last_wall=shown)
            return []
        lines = []
        item.last_attempt_us = now_us
        item.last_wall = shown
        if item.throttle_level_us < self.max_throttle_ms * 1000:
            item.throttle_level_us += self.throttle_ms * 1000
        else:
            lines.append(f"[emperor] maximum throttle level for vassal {name} reached !!!")
            item.throttle_level_us = item.throttle_level_us // 2
        item.attempt += 1
        if item.attempt == 2:
            lines.append(f"[emperor] unloyal bad behaving vassal found: {name} throttling it...")
        return lines

    def remove(self, name: str) -> None:
        self.items.pop(name, None)

    def clear(self) -> None:
        self.items.clear()

    def __iter__(self):
        return iter(list(self.items.values()))

    def __len__(self) -> int:
        return len(self.items)
