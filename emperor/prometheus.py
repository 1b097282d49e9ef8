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
from prometheus_client.samples import Sample

from emperor.view import EmperorView, Histogram


def label(name: str) -> str:
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:  # a name that is not UTF-8 (surrogate escapes): shown escaped
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
        states.update(hold for _name, hold in view.held)
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
        # samples made here rather than through add_metric: a thousand vassals make seven
        # thousand of them at every scrape
        n_state, n_pid, n_resp, n_loyal, n_ready, n_acc, n_beat = (
            state.name, pid.name, respawns.name + "_total", loyal.name, ready.name, accepting.name,
            beat.name)
        a_state, a_pid, a_resp, a_loyal, a_ready, a_acc, a_beat = (
            state.samples.append, pid.samples.append, respawns.samples.append, loyal.samples.append,
            ready.samples.append, accepting.samples.append, beat.samples.append)
        for v in view.vassals:
            name = label(v.id)
            vl = {"vassal": name}
            a_state(Sample(n_state, {"vassal": name, "state": v.hold or v.state}, 1))
            a_pid(Sample(n_pid, vl, v.pid))
            a_resp(Sample(n_resp, vl, v.respawns))
            a_loyal(Sample(n_loyal, vl, v.loyal))
            a_ready(Sample(n_ready, vl, v.ready))
            a_acc(Sample(n_acc, vl, v.accepting))
            if v.heartbeat_age is not None:
                a_beat(Sample(n_beat, vl, round(v.heartbeat_age, 3)))
        for held, hold in view.held:  # stopped by an operator: no process, still watched
            name = label(held)
            vl = {"vassal": name}
            a_state(Sample(n_state, {"vassal": name, "state": hold}, 1))
            a_pid(Sample(n_pid, vl, -1))
            a_loyal(Sample(n_loyal, vl, 0))
            a_ready(Sample(n_ready, vl, 0))
            a_acc(Sample(n_acc, vl, 0))
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
