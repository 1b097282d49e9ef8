"""``enable-metrics`` and ``uwsgi.metric_*``: the metrics subsystem as the uwsgi module offers it.

Metrics are on with ``enable-metrics`` or with any option that needs them (``metric``,
``metric-threshold``, ``metrics-dir``, ``metrics-dir-restore``, ``metrics-no-cores``,
``stats-push``), as uWSGI's ``UWSGI_OPT_METRICS`` flag does. The table (vassal.metrics.table)
is created here, in the master before the fork; its collector is a master service.

The functions are uWSGI's: ``metric_get(name)`` (0 for an unknown name or without metrics),
``metric_set/inc/dec/mul/div/set_max/set_min(name[, value])`` returning True, or None when
the metric does not exist, is collected by the master or is an alias (or on a division by
zero). They exist whether metrics are on or not, as in uWSGI's Python plugin.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from vassal.api.context import ApiContext, ApiError
from vassal.log import log
from vassal.metrics import carbon
from vassal.metrics import pushers as push
from vassal.metrics.collectors import bind_sources
from vassal.metrics.service import MetricsService
from vassal.metrics.table import (
    MetricError,
    MetricTable,
    add_custom,
    add_threshold,
    builtin_metrics,
)

#: options that turn metrics on (uWSGI's UWSGI_OPT_METRICS)
ENABLING = ("enable-metrics", "metric", "metric-threshold", "metrics-dir", "metrics-dir-restore",
            "metrics-no-cores", "stats-push")

_table: MetricTable | None = None
#: the stats JSON, for the pushers that send it (set by the instance once its stats exist)
_stats_document: Callable[[], bytes] | None = None


def table() -> MetricTable | None:
    """The instance's metrics, None when they are off."""
    return _table


def enabled(config: Any) -> bool:
    return config is not None and any(config.has(name) and config.get(name) not in (None, False, [])
                                      for name in ENABLING)


def set_stats_document(fn: Callable[[], bytes]) -> None:
    """The instance's stats JSON (what the file and mongodb pushers send)."""
    global _stats_document
    _stats_document = fn


def stats_document() -> bytes:
    return _stats_document() if _stats_document is not None else b"{}"


def needs_stats_document(config: Any) -> bool:
    """A pusher that sends the stats JSON is configured."""
    return any(str(v).split(":", 1)[0] in ("file", "mongodb") for v in config.getlist("stats-push"))


def setup(ctx: ApiContext) -> None:
    global _table
    _table = None
    config = ctx.config
    if config is None:
        return
    try:
        if enabled(config):
            _table = build(config, ctx)
            ctx.services.append(MetricsService(_table))
        ctx.services.extend(pushers(config, ctx))
    except MetricError as exc:
        raise ApiError(str(exc)) from None


def pushers(config: Any, ctx: ApiContext) -> list:
    """``stats-push`` destinations and the carbon servers, as master services."""
    carbon_kind, carbon_settings = carbon.make_factory(config, ctx.board, ctx.sockets)
    out = push.from_config(config, _table, stats_document, extra={"carbon": carbon_kind})
    if config.getlist("carbon") and ctx.sockets:
        settings = carbon_settings()
        if settings.servers:
            carbon.start_log(settings)
            default = int(config.get("stats-pusher-default-freq") or 3)
            out.append(carbon_kind("carbon", "", table=_table, default_freq=default))
    return out


def build(config: Any, ctx: ApiContext) -> MetricTable:
    board = ctx.board
    nworkers = board.nworkers if board is not None else ctx.numproc
    ncores = board.ncores if board is not None else 1
    metrics = builtin_metrics(nworkers, ncores, len(ctx.sockets), bool(config.get("metrics-no-cores")))
    for value, origin in config.occurrences("metric"):
        m = add_custom(metrics, str(value), str(origin))
        log(f"added custom metric: {m.name}")
    t = MetricTable(metrics)
    for value, origin in config.occurrences("metric-threshold"):
        m, th = add_threshold(t, str(value), str(origin))
        log(f"added threshold for metric {m.name} (value: {th.value})")
    log(f"initialized {len(t)} metrics")
    directory = config.get("metrics-dir")
    if directory:
        real = os.path.realpath(directory)
        if not os.path.isdir(real):
            raise MetricError(f"metrics-dir {directory}: no such directory")
        t.map_dir(real, bool(config.get("metrics-dir-restore")))
        size = len(t) * os.sysconf("SC_PAGE_SIZE")
        log(f"memory allocated for metrics storage: {size} bytes ({size // 1024 // 1024} MB)")
    elif config.get("metrics-dir-restore"):
        raise MetricError("metrics-dir-restore: needs metrics-dir (the values are read back from it)")
    from vassal.api import background

    try:
        signals = background.current().signals
    except AssertionError:
        signals = None
    bind_sources(t, board, ctx.sockets, signals)
    return t


def _check(fn: str, name: Any, value: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{fn}() argument 1 must be str, not {type(name).__name__}")
    if not isinstance(value, int):
        raise TypeError(f"{fn}() argument 2 must be int, not {type(value).__name__}")


def _op(fn: str, apply: Callable[[int, int], int]) -> Callable[..., bool | None]:
    def op(name: Any, value: Any = 1) -> bool | None:
        _check(fn, name, value)
        t = _table
        if t is None:
            return None
        return True if t.update(name, lambda old: _wrap(apply(old, value))) else None
    op.__name__ = fn
    return op


def _wrap(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _cdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def metric_get(name: Any) -> int:
    if not isinstance(name, str):
        raise TypeError(f"metric_get() argument 1 must be str, not {type(name).__name__}")
    return _table.read(name) if _table is not None else 0


def metric_div(name: Any, value: Any = 1) -> bool | None:
    _check("metric_div", name, value)
    if value == 0 or _table is None:
        return None
    return True if _table.update(name, lambda old: _wrap(_cdiv(old, value))) else None


def metric_set_min(name: Any, value: Any = 1) -> bool | None:
    """uWSGI's condition, kept: only a value above the initial value and below the current."""
    _check("metric_set_min", name, value)
    t = _table
    if t is None:
        return None
    m = t.get(name)
    initial = m.initial_value if m is not None else 0
    return True if t.update(name, lambda old: value if initial < value < old else old) else None


def exports(ctx: ApiContext) -> dict[str, Any]:
    return {
        "metric_get": metric_get,
        "metric_set": _op("metric_set", lambda old, v: v),
        "metric_inc": _op("metric_inc", lambda old, v: old + v),
        "metric_dec": _op("metric_dec", lambda old, v: old - v),
        "metric_mul": _op("metric_mul", lambda old, v: old * v),
        "metric_div": metric_div,
        "metric_set_max": _op("metric_set_max", lambda old, v: v if v > old else old),
        "metric_set_min": metric_set_min,
    }


def stats(ctx: ApiContext) -> dict[str, list]:
    t = _table
    if t is None:
        return {}
    out: dict[str, list] = {"locks": [("metrics", t.lock.holder())]}
    if not (ctx.config is not None and ctx.config.get("stats-no-metrics")):
        values = t.values
        out["metrics"] = [(m.name, int(m.type), m.oid or "", values[m.slot]) for m in t.metrics]
    return out


# --- router_metrics: route and hook actions ------------------------------------------------------

#: uWSGI's router_metrics action -> the uwsgi.metric_* function it applies
ACTIONS = {"metricinc": "metric_inc", "metricdec": "metric_dec", "metricmul": "metric_mul",
           "metricdiv": "metric_div", "metricset": "metric_set"}


def split_action(arg: str) -> tuple[str, str]:
    """``NAME[,VALUE]`` as router_metrics splits it: VALUE is "1" when there is no comma."""
    name, comma, value = arg.partition(",")
    return name, value if comma else "1"


def apply_action(action: str, name: str, value: str) -> bool:
    """Apply router_metrics' ``action`` (``metricinc``, ...) to metric ``name`` with the
    text ``value`` (read as C's strtol reads it). False when nothing changed: the metric is
    unknown, collected or an alias, metrics are off, or a division by zero (uWSGI's -1)."""
    op = exports(None)[ACTIONS[action]]  # type: ignore[arg-type]
    return bool(op(name, strtol(value)))


def hook_action(action: str) -> Callable[[str, Any], int]:
    """``metricinc:NAME[,VALUE]`` (and metricdec, metricmul, metricdiv, metricset) as a hook
    action, with router_metrics' syntax. uWSGI has them only as route actions; offered to
    ``hook-*`` too. 0 when the metric changed, -1 (logged) when it could not."""
    if action not in ACTIONS:
        raise KeyError(action)

    def run(arg: str, ctx: Any) -> int:
        name, value = split_action(arg)
        if apply_action(action, name, value):
            return 0
        log(f"{action}: cannot change metric {name!r} (unknown, collected, or metrics off)")
        return -1
    return run


_INT64_MAX = (1 << 63) - 1


def strtol(text: str) -> int:
    """C's ``strtol(text, NULL, 10)`` on a 64-bit long: leading blanks, a sign, digits; 0
    without digits; out of range saturates at LONG_MIN/LONG_MAX."""
    text = text.lstrip(" \t\n\v\f\r")
    sign = -1 if text[:1] == "-" else 1
    if text[:1] in ("+", "-"):
        text = text[1:]
    n = 0
    for c in text:
        if not "0" <= c <= "9":
            break
        n = n * 10 + ord(c) - 48
    return max(-_INT64_MAX - 1, min(_INT64_MAX, sign * n))
