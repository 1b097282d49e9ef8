"""The master duty that collects metrics once a second (uWSGI's metrics collector thread).

uWSGI runs this in a thread of the master; ours is a ``Service`` of the master's select
loop (the master runs no thread: it forks workers at any time). Each second every metric
whose ``freq`` has elapsed is collected (``value = initial_value + collector()``), its
``metrics-dir`` file follows its value, and its thresholds are checked: at or above the
threshold's value the metric is reset to ``reset`` when one is given (uWSGI's alarms are
not implemented: a threshold naming one is refused when the config is read). A metric the app
updates (no collector) is not collected, but its file and thresholds are kept up to date.
"""

from __future__ import annotations

import math
from typing import Any

from vassal.log import log
from vassal.metrics.collectors import collect
from vassal.metrics.table import MetricTable, MetricType, write_map
from vassal.services import Service

PERIOD = 1.0  # seconds between two scans of the table, as uWSGI's collector


class MetricsService(Service):
    name = "metrics"

    def __init__(self, table: MetricTable) -> None:
        self.table = table
        self.next_scan = 0.0
        self.written: dict[int, int] = {}  # slot -> value last written to its metrics-dir file

    def start(self, master: Any) -> None:
        log("metrics collector started in the master loop")

    def timeout(self, now: float) -> float | None:
        return max(0.0, self.next_scan - now)

    def tick(self, now: float) -> None:
        if now < self.next_scan:
            return
        self.next_scan = now + PERIOD
        self.scan(now)

    def scan(self, now: float) -> None:
        table = self.table
        values = table.values
        for m in table.metrics:
            if m.type is MetricType.ALIAS:
                continue
            if m.collector is not None:
                if m.last_update is not None and now - m.last_update < m.freq - 1e-6:
                    continue
                m.last_update = now
                new = collect(m, table)
                if values[m.slot] != new:
                    table.store(m, new)
            value = values[m.slot]
            for t in m.thresholds:
                if value >= t.value and t.reset is not None:
                    table.store(m, t.reset)
                    value = t.reset
            if m.map is not None and self.written.get(m.slot) != value:
                write_map(m, value)
                self.written[m.slot] = value

    def in_worker(self, wid: int) -> None:
        # the maps stay (a worker may read them); only the master writes them
        self.next_scan = math.inf

    def finish(self) -> None:
        self.table.close_maps()
