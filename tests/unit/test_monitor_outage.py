"""Backoff arithmetic and the Unavailable/Available transitions shared by network monitors."""

from __future__ import annotations

import logging

from emperor.events import Available, Unavailable
from monitors.outage import Backoff, Outage


def test_backoff_grows_to_its_cap_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=3.0, factor=2.0, jitter=0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5


def test_backoff_jitter_stays_in_bounds() -> None:
    b = Backoff(initial=1.0, maximum=1.0, jitter=0.2)
    delays = [b.next() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays) and len(set(delays)) > 1


def test_outage_reports_transitions_once() -> None:
    events: list[object] = []
    o = Outage(events.append, logging.getLogger("test.outage"), "[t]")
    o.recovered()  # up from the start: nothing to say
    o.failed("refused")
    o.failed("refused")
    o.failed("timeout")
    o.recovered()
    o.recovered()
    o.failed("refused again")
    assert events == [Unavailable("refused"), Available(), Unavailable("refused again")]
