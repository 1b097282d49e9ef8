"""``prometheus = ADDR``: the instance's ``/metrics``, rendered by prometheus_client.

Served by the master loop (an HTTP/1.0 ``StatsService``), read at each scrape from the
same shared scoreboard the stats server reads, so the two always agree. Names follow
Prometheus' conventions (base units, ``_total`` counters, a ``worker`` label):

=============================================  =========  =====================================
``uwsgi_workers``                              gauge      workers of the instance
``uwsgi_listen_queue{socket}``                 gauge      connections waiting to be accepted
``uwsgi_worker_requests_total{worker}``        counter    requests served
``uwsgi_worker_exceptions_total{worker}``      counter    requests that raised
``uwsgi_worker_harakiri_total{worker}``        counter    requests killed by harakiri
``uwsgi_worker_respawns_total{worker}``        counter    times the worker was (re)spawned
``uwsgi_worker_status{worker,status}``         gauge      1 for its stats status (idle, busy, cheap, ...)
``uwsgi_worker_rss_bytes{worker}``             gauge      resident memory (``vsz`` too)
``uwsgi_worker_avg_response_time_seconds``     gauge      the scoreboard's running average
``uwsgi_worker_busy_seconds_total{worker}``    counter    time spent in requests
``uwsgi_worker_transmitted_bytes_total``       counter    response bytes sent
``uwsgi_metric{metric,type}``                  gauge      each metric of the metrics subsystem
=============================================  =========  =====================================

The metric families carry the values the stats JSON shows (``requests``, ``exceptions``,
``harakiri_count``, ``status``, ``rss``, ``avg_rt`` in microseconds, ``listen_queue``...).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from vassal.metrics.table import MetricTable, MetricType
from vassal.sockets import listen_queue

TYPE_LABELS = {t: t.name.lower() for t in MetricType}


class InstanceCollector:
    def __init__(self, board: Any, sockets: list, table: MetricTable | None = None,
                 memory: Any = None) -> None:
        from vassal.stats import _memory

        self.board = board
        self.sockets = sockets
        self.table = table
        self.memory = memory or _memory

    def collect(self) -> Iterator[Metric]:
        b = self.board
        yield GaugeMetricFamily("uwsgi_workers", "Workers of the instance", value=b.nworkers)
        queue = GaugeMetricFamily("uwsgi_listen_queue", "Connections waiting to be accepted",
                                  labels=["socket"])
        for ls in self.sockets:
            queue.add_metric([ls.name], listen_queue(ls))
        yield queue
        fams = {
            "requests": CounterMetricFamily("uwsgi_worker_requests", "Requests served",
                                            labels=["worker"]),
            "exceptions": CounterMetricFamily("uwsgi_worker_exceptions", "Requests that raised",
                                              labels=["worker"]),
            "harakiri_count": CounterMetricFamily("uwsgi_worker_harakiri", "Requests killed by "
                                                  "harakiri", labels=["worker"]),
            "respawn_count": CounterMetricFamily("uwsgi_worker_respawns", "Times the worker was "
                                                 "spawned", labels=["worker"]),
            "tx": CounterMetricFamily("uwsgi_worker_transmitted_bytes", "Response bytes sent",
                                      labels=["worker"]),
        }
        status = GaugeMetricFamily("uwsgi_worker_status", "The worker's status (1)",
                                   labels=["worker", "status"])
        rss = GaugeMetricFamily("uwsgi_worker_rss_bytes", "Resident memory of the worker",
                                labels=["worker"])
        vsz = GaugeMetricFamily("uwsgi_worker_vsz_bytes", "Virtual memory of the worker",
                                labels=["worker"])
        avg = GaugeMetricFamily("uwsgi_worker_avg_response_time_seconds", "Average response time",
                                labels=["worker"])
        busy = CounterMetricFamily("uwsgi_worker_busy_seconds", "Time spent in requests",
                                   labels=["worker"])
        for i in range(1, b.nworkers + 1):
            w = b.workers[i]
            wid = [str(i)]
            for attr, fam in fams.items():
                fam.add_metric(wid, getattr(w, attr))
            status.add_metric([wid[0], b.status_name(i)], 1)  # the stats' status, "cheap" too
            r, v = self.memory(int(w.pid)) if w.pid > 0 else (0, 0)
            rss.add_metric(wid, r)
            vsz.add_metric(wid, v)
            avg.add_metric(wid, w.avg_rt / 1e6)
            busy.add_metric(wid, w.running_time / 1e6)
        yield from fams.values()
        yield from (status, rss, vsz, avg, busy)
        if self.table is not None:
            metric = GaugeMetricFamily("uwsgi_metric", "A metric of the metrics subsystem",
                                       labels=["metric", "type"])
            values = self.table.values
            for m in self.table.metrics:
                metric.add_metric([m.name, TYPE_LABELS[m.type]], values[m.slot])
            yield metric


def registry(board: Any, sockets: list, table: MetricTable | None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(InstanceCollector(board, sockets, table))
    return reg


def service(address: str, board: Any, sockets: list, table: MetricTable | None,
            timeout: float) -> Any:
    """The master service answering scrapes on ``address`` (OSError when it cannot bind)."""
    from emperor.protocol import scrape_answer
    from vassal.services.stats_server import StatsService

    reg = registry(board, sockets, table)
    return StatsService(address, True, False, lambda _minified: "", timeout=timeout,
                        respond=lambda request: scrape_answer(request, reg), what="Prometheus")
