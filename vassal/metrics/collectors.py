"""How the master computes a collected metric's value (uWSGI's metric collectors).

Each collector takes the metric and the table and returns the number the master stores as
``initial_value + collector(metric)`` (uWSGI's formula, quirks kept: an ``accumulator`` adds
its own current value and its children's, so its initial value is added at every round).

``ptr`` metrics read a field of the instance: ``bind_sources`` gives each built-in metric a
function reading the scoreboard (the workers' shared counters), the listen queue of a
socket, the signal counters or, for memory, ``/proc``. Worker 0 is the whole instance, as
in uWSGI: only its ``requests`` is counted there.

``func`` calls ``arg1``: ``package.module:function`` (a Python callable, given the metric's
name) or, as uWSGI's ``dlsym``, a C function of the process (``int64_t f(void *)``).
"""

from __future__ import annotations

import ctypes
import importlib
import os
from collections.abc import Callable
from typing import Any

from vassal.log import log
from vassal.metrics.table import Metric, MetricTable

SEPARATORS = b" \t\r\n\0"


def _c_int64(value: int) -> int:
    """Wrap to a signed 64-bit integer, as C arithmetic on int64_t does."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def read_file_field(path: str, pos: int) -> int:
    """The ``file`` collector: the ``pos``-th whitespace-separated field of the first 4 KiB
    of ``path``, read as strtoll does (``3.97`` is 3); 0 when unreadable or missing."""
    try:
        # non-blocking: a FIFO (no writer, or no data) must not hold the master's loop
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        log(f"open(\"{path}\"): {exc.strerror}")
        return 0
    try:
        buf = os.read(fd, 4096)
    except OSError as exc:
        log(f"read(\"{path}\"): {exc.strerror}")
        return 0
    finally:
        os.close(fd)
    fields = [t for t in _split(buf) if t]
    if pos < 0 or pos >= len(fields):
        return 0
    return _strtoll(fields[pos])


def _split(buf: bytes) -> list[bytes]:
    out, cur = [], bytearray()
    for c in buf:
        if c in SEPARATORS:
            if cur:
                out.append(bytes(cur))
                cur = bytearray()
        else:
            cur.append(c)
    if cur:
        out.append(bytes(cur))
    return out


def _strtoll(token: bytes) -> int:
    sign, i = 1, 0
    if token[:1] in (b"-", b"+"):
        sign, i = (-1 if token[:1] == b"-" else 1), 1
    digits = bytearray()
    for c in token[i:]:
        if 48 <= c <= 57:
            digits.append(c)
        else:
            break
    return _c_int64(sign * int(digits)) if digits else 0


def _children_sum(m: Metric, table: MetricTable) -> int:
    return sum(table.values[c.slot] for c in m.children)


def _avg(m: Metric, table: MetricTable) -> int:
    if not m.children:
        return 0
    total = _children_sum(m, table)
    count = len(m.children)
    # C division truncates toward zero
    return total // count if total >= 0 else -((-total) // count)


def _func(m: Metric, table: MetricTable) -> int:
    if m.custom is None:
        m.custom = resolve_function(m.arg1 or "")
        if m.custom is None:
            log(f"metric {m.name}: cannot find function {m.arg1}: its value stays 0")
            m.custom = False
    if not m.custom:
        return 0
    try:
        return int(m.custom(m.name))
    except Exception as exc:  # an app's collector must not take the master down
        log(f"metric {m.name}: {m.arg1} raised {type(exc).__name__}: {exc}")
        return 0


def resolve_function(symbol: str) -> Callable[[str], Any] | None:
    """``module:function`` (Python) or a C symbol of this process (called with NULL)."""
    if ":" in symbol:
        module, _, name = symbol.partition(":")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            return None
        return fn if callable(fn) else None
    try:
        cfn = getattr(ctypes.CDLL(None), symbol)
    except (AttributeError, OSError):
        return None
    cfn.restype = ctypes.c_int64
    cfn.argtypes = [ctypes.c_void_p]
    return lambda _name: cfn(None)


#: collector name -> function(metric, table) -> value before initial_value is added
COLLECT: dict[str, Callable[[Metric, MetricTable], int]] = {
    "ptr": lambda m, t: m.source() if m.source is not None else 0,
    "file": lambda m, t: read_file_field(m.arg1 or "", m.arg1n),
    "sum": _children_sum,
    "accumulator": lambda m, t: t.values[m.slot] + _children_sum(m, t),
    "adder": lambda m, t: _children_sum(m, t) + m.arg1n,
    "multiplier": lambda m, t: _children_sum(m, t) * m.arg1n,
    "avg": _avg,
    "func": _func,
}


def collect(m: Metric, table: MetricTable) -> int:
    return _c_int64(m.initial_value + COLLECT[m.collector](m, table))  # type: ignore[index]


# --- the instance fields behind "ptr" metrics ---------------------------------------------------


def bind_sources(table: MetricTable, board: Any, sockets: list, signals: Any = None,
                 memory: Callable[[int], tuple[int, int]] | None = None) -> None:
    """Give every built-in "ptr" metric the function reading its field (see its ``arg1``)."""
    from vassal.sockets import listen_queue
    from vassal.stats import _memory

    mem = memory or _memory
    n = board.nworkers if board is not None else 0

    def busy() -> int:
        return sum(1 for i in range(1, n + 1) if board.workers[i].busy_cores > 0)

    fixed: dict[str, Callable[[], int]] = {
        "routed_signals": lambda: signals.routed if signals is not None else 0,
        "unrouted_signals": lambda: signals.unrouted if signals is not None else 0,
        "busy_workers": busy,
        "idle_workers": lambda: n - busy(),
        "overloaded": lambda: 0,
        "w0.requests": lambda: board.total_requests() if board is not None else 0,
    }
    for m in table:
        if m.collector != "ptr" or m.source is not None:
            continue
        key = m.arg1 or ""
        if key in fixed:
            m.source = fixed[key]
        elif key.startswith("w0."):
            m.source = _zero
        elif key.startswith("w"):
            m.source = _worker_source(board, key, mem)
        elif key.startswith("s"):
            index = int(key[1:].split(".", 1)[0])
            ls = sockets[index] if index < len(sockets) else None
            m.source = (lambda ls=ls: listen_queue(ls)) if ls is not None else _zero
        else:
            m.source = _zero


def _zero() -> int:
    return 0


#: metric field -> scoreboard field of a worker (None: not counted here, always 0)
_WORKER_FIELDS = {"requests": "requests", "delta_requests": "delta_requests", "failed_requests": None,
                  "respawns": "respawn_count", "avg_response_time": "avg_rt", "total_tx": "tx",
                  "running_time": "running_time"}
_CORE_FIELDS = {"requests": "requests", "write_errors": "write_errors", "routed_requests": None,
                "static_requests": "static_requests", "offloaded_requests": "offloaded_requests",
                "exceptions": None, "read_errors": "read_errors"}


def _worker_source(board: Any, key: str, mem: Callable[[int], tuple[int, int]]) -> Callable[[], int]:
    head, _, name = key.partition(".")
    wid = int(head[1:])
    if board is None or wid > board.nworkers:
        return _zero
    w = board.workers[wid]
    if name.startswith("c"):
        core_s, _, cname = name.partition(".")
        attr = _CORE_FIELDS.get(cname)
        if attr is None:
            return _zero
        core = w.cores[int(core_s[1:])]
        return lambda: getattr(core, attr)
    if name in ("rss_size", "vsz_size"):
        index = 0 if name == "rss_size" else 1
        return lambda: mem(int(w.pid))[index] if w.pid > 0 else 0
    attr = _WORKER_FIELDS.get(name)
    if attr is None:
        return _zero
    return lambda: getattr(w, attr)
