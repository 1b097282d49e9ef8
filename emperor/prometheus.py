"""``emperor-prometheus ADDR``: the emperor's ``/metrics``, rendered by prometheus_client.

Every scrape renders one snapshot of the read model (emperor.view): nothing is kept here.
Names follow Prometheus' conventions (base units, ``_total`` for counters, one ``vassal``
label for per-vassal series):

==========================================  =========  ==========================================
``imperium_emperor_info{version}``          gauge      always 1
``imperium_emperor_ready``                  gauge      1 once every monitor did its first scan
``imperium_emperor_throttle_seconds``       gauge      the emperor's throttle level
``imperium_emperor_vassals{state}``         gauge      vassals per lifecycle state
``imperium_monitor_up{monitor}``            gauge      0 while a monitor's source is unreachable
``imperium_vassal_state{vassal,state}``     gauge      1, for the vassal's current state only
``imperium_vassal_pid{vassal}``             gauge      -1 before its process exists
``imperium_vassal_respawns_total{vassal}``  counter    reloads (uWSGI's ``respawns``)
``imperium_vassal_loyal{vassal}``           gauge      0 or 1, and so ``_ready``, ``_accepting``
``imperium_vassal_heartbeat_age_seconds``   gauge      since its last heartbeat (vassals that beat)
``imperium_blacklist_retry_seconds``        gauge      until a blacklisted vassal is tried again
``imperium_blacklist_throttle_seconds``     gauge      its current back-off
``imperium_blacklist_attempts``             gauge      its failed starts (uWSGI's ``attempt``)
``imperium_vassal_spawn_seconds``           histogram  spawn asked -> first "ready" (byte 1)
``imperium_vassal_reload_seconds``          histogram  reload sent -> the new incarnation ready
==========================================  =========  ==========================================

The state of a vassal is one series with the current value only (not one per possible
state): with a thousand vassals that is a thousand series, not eight thousand. The
latencies are emperor-wide histograms (a histogram per vassal would be thirteen buckets
times the vassals). A vassal name that is not UTF-8 is shown with backslash escapes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from emperor.view import EmperorView, Histogram


def label(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class EmperorCollector:
    """A prometheus_client collector over snapshots of the emperor."""

    def __init__(self, view: Callable[[], EmperorView]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view = self.view()
        info = GaugeMetricFamily("imperium_emperor_info", "The emperor's version", labels=["version"])
        info.add_metric([view.version], 1)
        yield info
        yield GaugeMetricFamily("imperium_emperor_ready", "1 once every imperial monitor did its "
                                "first scan", value=1 if view.ready else 0)
        yield GaugeMetricFamily("imperium_emperor_throttle_seconds", "The emperor's throttle level",
                                value=view.throttle_level / 1000)
        states = Counter(v.hold or v.state for v in view.vassals)
        counts = GaugeMetricFamily("imperium_emperor_vassals", "Vassals by state", labels=["state"])
        for state, n in sorted(states.items()):
            counts.add_metric([state], n)
        yield counts
        up = GaugeMetricFamily("imperium_monitor_up", "0 while an imperial monitor's source is "
                               "unreachable", labels=["monitor"])
        for m in view.monitors:
            up.add_metric([label(m.id)], 1 if m.available else 0)
        yield up

        state = GaugeMetricFamily("imperium_vassal_state", "The vassal's current state (1)",
                                  labels=["vassal", "state"])
        pid = GaugeMetricFamily("imperium_vassal_pid", "The vassal's pid", labels=["vassal"])
        respawns = CounterMetricFamily("imperium_vassal_respawns", "Reloads of the vassal",
                                       labels=["vassal"])
        loyal = GaugeMetricFamily("imperium_vassal_loyal", "1 once the vassal said it is loyal",
                                  labels=["vassal"])
        ready = GaugeMetricFamily("imperium_vassal_ready", "1 while the vassal is ready",
                                  labels=["vassal"])
        accepting = GaugeMetricFamily("imperium_vassal_accepting", "1 once the vassal accepts "
                                      "requests", labels=["vassal"])
        beat = GaugeMetricFamily("imperium_vassal_heartbeat_age_seconds", "Seconds since the "
                                 "vassal's last heartbeat", labels=["vassal"])
        for v in view.vassals:
            name = [label(v.id)]
            state.add_metric([name[0], v.hold or v.state], 1)
            pid.add_metric(name, v.pid)
            respawns.add_metric(name, v.respawns)
            loyal.add_metric(name, v.loyal)
            ready.add_metric(name, v.ready)
            accepting.add_metric(name, v.accepting)
            if v.heartbeat_age is not None:
                beat.add_metric(name, round(v.heartbeat_age, 3))
        yield from (state, pid, respawns, loyal, ready, accepting, beat)

        retry = GaugeMetricFamily("imperium_blacklist_retry_seconds", "Seconds until a blacklisted "
                                  "vassal is tried again", labels=["vassal"])
        throttle = GaugeMetricFamily("imperium_blacklist_throttle_seconds", "Back-off of a "
                                     "blacklisted vassal", labels=["vassal"])
        attempts = GaugeMetricFamily("imperium_blacklist_attempts", "Failed starts of a "
                                     "blacklisted vassal", labels=["vassal"])
        for b in view.blacklist:
            name = [label(b.id)]
            retry.add_metric(name, round(b.retry_in, 3))
            throttle.add_metric(name, b.throttle_level / 1000)
            attempts.add_metric(name, b.attempt)
        yield from (retry, throttle, attempts)
        yield _histogram("imperium_vassal_spawn_seconds", "From asking for a vassal's process to "
                         "its first ready", view.latencies.spawn)
        yield _histogram("imperium_vassal_reload_seconds", "From sending reload to the new "
                         "incarnation's ready", view.latencies.reload)


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=h.cumulative(), sum_value=h.total)


def registry(view: Callable[[], EmperorView]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(EmperorCollector(view))
    return reg
