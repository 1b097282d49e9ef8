"""The metrics table: every metric of the instance, in uWSGI's order, values in shared memory.

uWSGI 2.0 (core/metrics.c) registers, when metrics are enabled, the ``core.*`` counters,
per worker (0 = the whole instance) ``worker.N.*`` and per core ``worker.N.core.M.*``, the
``core.total_*`` sums, ``socket.N.listen_queue``, the ``rss_size``/``vsz_size`` aliases,
then the custom ``metric`` options in config order. Names, oids, types and that order are
kept: they are what the stats server, the pushers and ``metrics-dir`` show.

Values are signed 64-bit integers in one anonymous shared mapping created by the master
before the fork, so ``uwsgi.metric_inc`` in any worker and the master's collection see the
same numbers. Writes take one process-shared robust mutex (the "metrics" lock of the stats
server's lock list); reads are single aligned 8-byte loads and take no lock, as uWSGI's.

``metrics-dir`` gives each metric a page-sized text file, mapped into the master: its value
in decimal, then NULs. ``metrics-dir-restore`` reads those files back at start-up into
``initial_value`` (a collected metric then counts on from there, as uWSGI does) and, for a
metric the app updates itself, into its value. uWSGI 2.0 never writes the file of such a
"manual" metric (it only rewrites a file when its collector changed the value); here every
metric's file follows its value.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from vassal.api import shm

PAGE = mmap.PAGESIZE


class MetricType(IntEnum):
    """uWSGI's metric types, as the stats server prints them (``"type":1``)."""

    COUNTER = 0
    GAUGE = 1
    ABSOLUTE = 2
    ALIAS = 3


TYPE_NAMES = {"counter": MetricType.COUNTER, "gauge": MetricType.GAUGE,
              "absolute": MetricType.ABSOLUTE, "alias": MetricType.ALIAS}

#: collectors a custom metric may name (uWSGI's ``uwsgi_metrics_collectors_setup``); "ptr"
#: reads a field of the instance, so only built-in metrics can use it
COLLECTORS = ("ptr", "file", "sum", "accumulator", "adder", "multiplier", "avg", "func")

#: keys of a ``metric`` keyval value
METRIC_KEYS = ("name", "oid", "type", "initial_value", "collector", "freq", "arg1", "arg2", "arg3",
               "arg1n", "arg2n", "arg3n", "children", "alias", "reset_after_push")
#: keys of a ``metric-threshold`` (``metric-alarm``, ``alarm-metric``) value
THRESHOLD_KEYS = ("key", "value", "alarm", "rate", "msg", "reset")


class MetricError(Exception):
    """A metric option that cannot work: one line naming the option and the fault."""


@dataclass(eq=False)
class Threshold:
    value: int
    reset: int | None = None


@dataclass(eq=False)
class Metric:
    name: str
    oid: str | None
    type: MetricType
    #: None: a "manual" metric only the app (uwsgi.metric_*) changes
    collector: str | None = None
    freq: int = 1
    initial_value: int = 0
    children: list[Metric] = field(default_factory=list)
    arg1: str | None = None
    arg2: str | None = None
    arg3: str | None = None
    arg1n: int = 0
    arg2n: int = 0
    arg3n: int = 0
    alias: Metric | None = None
    reset_after_push: bool = False
    #: the instance field a "ptr" metric reads (bound by the table's owner)
    source: Callable[[], int] | None = None
    thresholds: list[Threshold] = field(default_factory=list)
    slot: int = -1
    last_update: float | None = None  # monotonic
    map: mmap.mmap | None = None
    custom: Any = None  # a "func" collector's resolved function

    @property
    def target(self) -> Metric:
        """Where the value lives: an alias reads its metric's slot."""
        return self.alias.target if self.alias is not None else self

    @property
    def writable(self) -> bool:
        """The app may change it (uWSGI: no collector and not an alias)."""
        return self.collector is None and self.type is not MetricType.ALIAS


def valid_name(name: str) -> bool:
    return bool(name) and all(c.isascii() and (c.isalnum() or c in ".-_") for c in name)


def valid_oid(oid: str) -> bool:
    return all(c.isdigit() or c == "." for c in oid)


def parse_kv(value: str, keys: tuple[str, ...], what: str) -> dict[str, str]:
    """uWSGI's ``uwsgi_kvlist_parse`` with ',' and '=': unknown keys are refused here."""
    out: dict[str, str] = {}
    for part in value.split(","):
        if not part:
            continue
        key, sep, val = part.partition("=")
        if not sep:
            raise MetricError(f"{what}: {part!r} is not key=value")
        if key not in keys:
            raise MetricError(f"{what}: unknown key {key!r} (one of {', '.join(keys)})")
        out[key] = val
    return out


def _int(what: str, key: str, text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise MetricError(f"{what}: {key}={text!r} is not a number") from None


class MetricTable:
    """The metrics in order, their shared values and the lock that guards writes."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics
        self.by_name: dict[str, Metric] = {}
        for m in metrics:
            self.by_name[m.name] = m
        owners = [m for m in metrics if m.type is not MetricType.ALIAS]
        for i, m in enumerate(owners):
            m.slot = i
        self._mem = shm.anonymous(shm.MUTEX_SIZE + 8 * max(1, len(owners)))
        self.lock = shm.RobustMutex(self._mem, 0, "metrics")
        self.values = (ctypes.c_int64 * max(1, len(owners))).from_buffer(self._mem, shm.MUTEX_SIZE)
        for m in metrics:
            if m.type is MetricType.ALIAS:
                if m.alias is None:
                    raise MetricError(f'metric alias "{m.name}" requires a mapping (alias=METRIC)')
                m.slot = m.target.slot
                m.oid = m.target.oid
        for m in owners:
            if m.initial_value:
                self.values[m.slot] = m.initial_value

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def get(self, name: str) -> Metric | None:
        return self.by_name.get(name)

    def value(self, m: Metric) -> int:
        return self.values[m.slot]

    def read(self, name: str) -> int:
        """uwsgi.metric_get: 0 for an unknown name, as uWSGI."""
        m = self.by_name.get(name)
        return self.values[m.slot] if m is not None else 0

    def store(self, m: Metric, value: int) -> None:
        with self.lock:
            self.values[m.slot] = value

    def update(self, name: str, fn: Callable[[int], int]) -> bool:
        """Apply ``fn`` to a metric the app may change, under the lock; False when there is
        no such metric or it is collected (or an alias), as uWSGI's ``um_op`` refuses."""
        m = self.by_name.get(name)
        if m is None or not m.writable:
            return False
        with self.lock:
            self.values[m.slot] = fn(self.values[m.slot])
        return True

    # --- metrics-dir ---------------------------------------------------------------------

    def map_dir(self, directory: str, restore: bool) -> None:
        """One mapped page-sized file per metric (created if missing); with ``restore`` the
        values they hold come back (see the module docstring)."""
        for m in self.metrics:
            path = os.path.join(directory, m.name)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
            except OSError as exc:
                raise MetricError(f"metrics-dir: cannot open {path}: {exc.strerror}") from None
            try:
                if os.fstat(fd).st_size < PAGE:
                    os.ftruncate(fd, PAGE)
                m.map = mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as exc:
                raise MetricError(f"metrics-dir: cannot map {path}: {exc.strerror}") from None
            finally:
                os.close(fd)
            if restore:
                saved = _leading_int(bytes(m.map[:64]))
                if saved is not None:
                    m.initial_value = saved
                    if m.writable:
                        self.values[m.slot] = saved
            if m.type is not MetricType.ALIAS:
                write_map(m, self.values[m.slot])

    def close_maps(self) -> None:
        for m in self.metrics:
            if m.map is not None:
                m.map.close()
                m.map = None


def write_map(m: Metric, value: int) -> None:
    """The file's text: the value, a newline, NULs to the end of the page (as uWSGI)."""
    if m.map is None:
        return
    text = b"%d\n" % value
    m.map[: len(text)] = text
    m.map[len(text): 64] = b"\0" * (64 - len(text))


def _leading_int(data: bytes) -> int | None:
    """strtoll of a metrics-dir file (None when it holds no number)."""
    text = data.split(b"\0", 1)[0].strip()
    sign = 1
    if text[:1] in (b"-", b"+"):
        sign = -1 if text[:1] == b"-" else 1
        text = text[1:]
    digits = b""
    for c in text:
        if 48 <= c <= 57:
            digits += bytes([c])
        else:
            break
    return sign * int(digits) if digits else None


# --- building the table from the config ----------------------------------------------------


def builtin_metrics(nworkers: int, ncores: int, nsockets: int, no_cores: bool) -> list[Metric]:
    """uWSGI 2.0's built-in metrics (``uwsgi_setup_metrics``), names, oids and order kept
    (its duplicated oid 3.N.13 of ``failed_requests`` and ``running_time`` included).
    Each "ptr" metric's ``arg1`` names the field it reads (bound by the service)."""
    C, G, A = MetricType.COUNTER, MetricType.GAUGE, MetricType.ABSOLUTE

    def ptr(name: str, oid: str, type_: MetricType, field_: str) -> Metric:
        return Metric(name, oid, type_, "ptr", arg1=field_)

    out = [ptr("core.routed_signals", "5.1", C, "routed_signals"),
           ptr("core.unrouted_signals", "5.2", C, "unrouted_signals"),
           ptr("core.busy_workers", "5.3", G, "busy_workers"),
           ptr("core.idle_workers", "5.4", G, "idle_workers"),
           ptr("core.overloaded", "5.5", C, "overloaded")]
    total_tx = Metric("core.total_tx", "5.100", C, "sum")
    total_rss = Metric("core.total_rss", "5.101", G, "sum")
    total_vsz = Metric("core.total_vsz", "5.102", G, "sum")
    total_avg = Metric("core.avg_response_time", "5.103", G, "avg")
    total_time = Metric("core.total_running_time", "5.104", C, "sum")
    for i in range(nworkers + 1):
        w = f"worker.{i}"
        out.append(ptr(f"{w}.requests", f"3.{i}.1", C, f"w{i}.requests"))
        out.append(ptr(f"{w}.delta_requests", f"3.{i}.2", A, f"w{i}.delta_requests"))
        out.append(ptr(f"{w}.failed_requests", f"3.{i}.13", C, f"w{i}.failed_requests"))
        out.append(ptr(f"{w}.respawns", f"3.{i}.14", C, f"w{i}.respawns"))
        for name, oid, type_, parent in (("avg_response_time", "8", G, total_avg),
                                         ("total_tx", "9", C, total_tx),
                                         ("rss_size", "11", G, total_rss),
                                         ("vsz_size", "12", G, total_vsz),
                                         ("running_time", "13", C, total_time)):
            m = ptr(f"{w}.{name}", f"3.{i}.{oid}", type_, f"w{i}.{name}")
            out.append(m)
            if i > 0:
                parent.children.append(m)
        if i == 0 or no_cores:
            continue
        for j in range(ncores):
            c = f"{w}.core.{j}"
            for name, oid in (("requests", "1"), ("write_errors", "3"), ("routed_requests", "4"),
                              ("static_requests", "5"), ("offloaded_requests", "6"),
                              ("exceptions", "7"), ("read_errors", "8")):
                out.append(ptr(f"{c}.{name}", f"3.{i}.2.{j}.{oid}", C, f"w{i}.c{j}.{name}"))
    out += [total_tx, total_rss, total_vsz, total_avg, total_time]
    for n in range(nsockets):
        out.append(ptr(f"socket.{n}.listen_queue", f"7.{n}.1", G, f"s{n}.listen_queue"))
    out.append(Metric("rss_size", None, MetricType.ALIAS, alias=total_rss))
    out.append(Metric("vsz_size", None, MetricType.ALIAS, alias=total_vsz))
    return out


def add_custom(metrics: list[Metric], value: str, where: str = "") -> Metric:
    """One ``metric`` option (a bare name or keyval), added or replacing a metric of the same
    name, as ``uwsgi_register_keyval_metric`` does."""
    what = f"metric {value}" + (f" ({where})" if where else "")
    kv = {"name": value} if "=" not in value else parse_kv(value, METRIC_KEYS, what)
    name = kv.get("name")
    if not name:
        raise MetricError(f"{what}: you need to specify a metric name (name=...)")
    if not valid_name(name):
        raise MetricError(f"{what}: invalid metric name {name!r} (letters, digits, '.', '-', '_')")
    oid = kv.get("oid") or None
    if oid is not None and not valid_oid(oid):
        raise MetricError(f"{what}: invalid metric oid {oid!r} (digits and dots)")
    type_ = MetricType.COUNTER
    if "type" in kv:
        if kv["type"] not in TYPE_NAMES:
            raise MetricError(f"{what}: type {kv['type']!r} is not one of {', '.join(TYPE_NAMES)}")
        type_ = TYPE_NAMES[kv["type"]]
    collector = kv.get("collector") or None
    if collector is not None:
        if collector == "ptr":
            raise MetricError(f"{what}: the ptr collector reads a C pointer: only built-in "
                              "metrics use it")
        if collector not in COLLECTORS:
            raise MetricError(f"{what}: unable to find metric collector {collector!r} "
                              f"(one of {', '.join(COLLECTORS[1:])})")
    by_name = {m.name: m for m in metrics}
    m = by_name.get(name)
    if m is None:
        m = Metric(name, oid, type_)
        metrics.append(m)
    else:  # uWSGI re-registers the existing one in place (a plugin may override a default)
        m.oid, m.type, m.children, m.alias = oid, type_, [], None
    m.collector = collector
    m.freq = max(1, _int(what, "freq", kv["freq"])) if kv.get("freq") else 1
    m.initial_value = _int(what, "initial_value", kv["initial_value"]) if "initial_value" in kv else 0
    m.reset_after_push = "reset_after_push" in kv
    for key in ("arg1", "arg2", "arg3"):
        setattr(m, key, kv.get(key))
    for key in ("arg1n", "arg2n", "arg3n"):
        setattr(m, key, _int(what, key, kv[key]) if key in kv else 0)
    for child in filter(None, kv.get("children", "").split(";")):
        if child not in by_name:
            raise MetricError(f'{what}: unable to find metric "{child}" (children must be '
                              "defined before)")
        m.children.append(by_name[child])
    if "alias" in kv:
        if kv["alias"] not in by_name:
            raise MetricError(f'{what}: unable to find metric "{kv["alias"]}"')
        m.alias = by_name[kv["alias"]]
    if type_ is MetricType.ALIAS and m.alias is None:
        raise MetricError(f'{what}: metric alias "{name}" requires a mapping (alias=METRIC)')
    if collector == "file" and not m.arg1:
        raise MetricError(f"{what}: the file collector needs arg1=FILENAME")
    if collector == "func" and not m.arg1:
        raise MetricError(f"{what}: the func collector needs arg1=FUNCTION")
    return m


def add_threshold(table: MetricTable, value: str, where: str = "") -> tuple[Metric, Threshold]:
    """One ``metric-threshold`` (``metric-alarm``, ``alarm-metric``) value. Its alarm keys
    (``alarm``, ``rate``, ``msg``) are refused: Imperium has no alarm subsystem."""
    what = f"metric-threshold {value}" + (f" ({where})" if where else "")
    kv = parse_kv(value, THRESHOLD_KEYS, what)
    if "key" not in kv or "value" not in kv:
        raise MetricError(f"{what}: a metric's threshold requires a key and a value")
    m = table.get(kv["key"])
    if m is None:
        raise MetricError(f"{what}: unable to find metric {kv['key']}")
    for key in ("alarm", "rate", "msg"):
        if key in kv:
            raise MetricError(f"{what}: {key}=: Imperium has no alarm subsystem (the alarm "
                              "option is not implemented); a threshold may only reset= its metric")
    if "reset" not in kv:
        raise MetricError(f"{what}: without an alarm (not implemented) a threshold needs reset=VALUE")
    t = Threshold(_int(what, "value", kv["value"]),
                  reset=_int(what, "reset", kv["reset"]) if "reset" in kv else None)
    m.thresholds.append(t)
    return m, t
