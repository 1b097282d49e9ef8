"""Per-worker counters in shared memory, written by workers and read by the master.

The memory is an anonymous shared mmap created by the master before it forks, so every
worker (and every respawned worker) writes into the same pages the master reads for the
stats server, harakiri and the request log's instance-wide request count. Each field has a
single writer (a worker writes its own slot; the master writes spawn bookkeeping), so no
lock is needed; readers may see a value one request old, which is fine for statistics.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from typing import Any

from vassal.accel import optional

#: the optional C twin of RequestCounters' two request-path methods (see _scorefast.c)
_scorefast = optional("vassal._scorefast")

#: bytes kept per core for the vars of the request in progress (shown by the stats server)
VARS_SIZE = 4096
#: how a core's vars are kept: "K=V" joined by NUL, or the raw HTTP head they are parsed
#: from when read ("server name\0port\0remote addr\0head": the worker copies bytes it has,
#: the rare reader pays for the parsing)
VARS_TEXT, VARS_HTTP = 0, 1

STATUS_IDLE = 0
STATUS_BUSY = 1
STATUS_CHEAP = 2
STATUS_PAUSE = 3
STATUS_NAMES = {STATUS_IDLE: "idle", STATUS_BUSY: "busy", STATUS_CHEAP: "cheap", STATUS_PAUSE: "pause"}


class Core(ctypes.Structure):
    """One thread of a worker (uWSGI calls them cores)."""

    _fields_ = [
        # in_request and requests side by side: the end of a request writes both at once
        ("in_request", ctypes.c_double),  # monotonic start of the current request, 0 when idle
        ("requests", ctypes.c_uint64),
        ("write_errors", ctypes.c_uint64),
        ("read_errors", ctypes.c_uint64),
        ("static_requests", ctypes.c_uint64),
        ("offloaded_requests", ctypes.c_uint64),
        ("routed_requests", ctypes.c_uint64),  # ended by a routing rule (vassal/routing)
    ]


def _worker_type(ncores: int) -> type[ctypes.Structure]:
    class Worker(ctypes.Structure):
        _fields_ = [
            ("pid", ctypes.c_int64),
            ("accepting", ctypes.c_int32),
            ("status", ctypes.c_int32),
            # what the end of every request changes, side by side in DONE's order: the worker
            # writes them with one pack_into (RequestCounters) instead of seven ctypes stores
            ("requests", ctypes.c_uint64),
            ("delta_requests", ctypes.c_uint64),
            ("running_time", ctypes.c_uint64),  # microseconds spent in requests
            ("tx", ctypes.c_uint64),
            ("avg_rt", ctypes.c_uint64),  # microseconds
            ("app_requests", ctypes.c_uint64),
            ("last_request_end", ctypes.c_double),  # monotonic
            ("exceptions", ctypes.c_uint64),
            ("harakiri_count", ctypes.c_uint64),
            ("signals", ctypes.c_uint64),
            ("rss", ctypes.c_uint64),
            ("vsz", ctypes.c_uint64),
            ("last_spawn", ctypes.c_int64),
            ("respawn_count", ctypes.c_uint64),
            ("busy_cores", ctypes.c_int32),
            ("app_loaded", ctypes.c_int32),
            ("app_exceptions", ctypes.c_uint64),
            ("app_startup", ctypes.c_int64),
            ("cheaped", ctypes.c_int32),  # stopped by the cheaper subsystem or idle mode (master writes)
            ("sig", ctypes.c_int32),  # 1 while the worker runs a uWSGI signal handler
            ("signum", ctypes.c_int32),  # ... that signal's number
            ("cores", Core * ncores),
        ]

    return Worker


class Instance(ctypes.Structure):
    """Instance-wide flags shared by all processes."""

    _fields_ = [
        ("loyal_sent", ctypes.c_int32),
        ("accepting_sent", ctypes.c_int32),
        ("last_request_end", ctypes.c_double),  # monotonic
    ]


class Scoreboard:
    """``workers[i]`` for worker ids 1..n (index 0 is unused, as in uWSGI)."""

    def __init__(self, nworkers: int, ncores: int) -> None:
        self.nworkers = nworkers
        self.ncores = ncores
        worker_t = _worker_type(ncores)
        array_t = worker_t * (nworkers + 1)
        size = ctypes.sizeof(Instance) + ctypes.sizeof(array_t)
        self._mm = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.instance = Instance.from_buffer(self._mm, 0)
        self.workers = array_t.from_buffer(self._mm, ctypes.sizeof(Instance))
        self._slots = [self.workers[i] for i in range(1, nworkers + 1)]
        self._vars = mmap.mmap(-1, (nworkers + 1) * ncores * VARS_SIZE,
                               flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)

    def set_vars(self, wid: int, core: int, data: bytes, kind: int = VARS_TEXT) -> None:
        """Record the vars of the request a core starts (``kind``: how ``data`` holds them)."""
        off = (wid * self.ncores + core) * VARS_SIZE
        data = data[: VARS_SIZE - 5]
        n = len(data)
        self._vars[off: off + 5 + n] = (n | kind << 32).to_bytes(5, "little") + data

    def vars_slots(self, wid: int) -> tuple[mmap.mmap, list[int]]:
        """Where a worker's cores keep their vars: the map and each core's offset in it (the
        request path writes there itself, as ``set_vars`` does, without a call per request)."""
        return self._vars, [(wid * self.ncores + core) * VARS_SIZE for core in range(self.ncores)]

    def get_vars(self, wid: int, core: int) -> list[str]:
        off = (wid * self.ncores + core) * VARS_SIZE
        head = int.from_bytes(self._vars[off: off + 5], "little")
        n, kind = head & 0xFFFFFFFF, head >> 32
        if not 0 < n <= VARS_SIZE - 5:
            return []
        data = self._vars[off + 5: off + 5 + n]
        if kind == VARS_HTTP:
            from vassal.protocols.http import BadRequest, parse_request

            name, port, addr, raw = data.split(b"\0", 3)
            try:
                env = parse_request(raw, name.decode(), port.decode(), addr.decode()).env
            except (BadRequest, UnicodeDecodeError):
                return []
            return [f"{k}={v}" for k, v in env.items()]
        return data.decode("latin-1").split("\0")

    def total_requests(self) -> int:
        total = 0
        for w in self._slots:
            total += w.requests
        return total

    def reset_worker(self, wid: int, now: float) -> None:
        """Bookkeeping for a worker about to be forked (done by the master before the fork, so
        that nothing here overwrites what the new worker writes, such as ``accepting``)."""
        w = self.workers[wid]
        w.pid = 0
        w.accepting = 0
        w.status = STATUS_IDLE
        w.cheaped = 0
        w.sig = 0  # a worker killed in a signal handler leaves it set
        w.delta_requests = 0
        w.busy_cores = 0
        w.last_spawn = int(now)
        w.respawn_count += 1
        for c in range(self.ncores):
            w.cores[c].in_request = 0.0

    def status_name(self, wid: int) -> str:
        """The worker's ``status`` as uWSGI's stats and ``uwsgi.workers()`` show it: a cheaped
        worker is "cheap" even while it finishes its last request; "pause" unless busy;
        "sigN" while it runs the handler of uWSGI signal N; then "busy" or "idle"."""
        w = self.workers[wid]
        if w.cheaped or w.status == STATUS_CHEAP:
            return "cheap"
        busy = w.busy_cores > 0
        if w.status == STATUS_PAUSE and not busy:
            return "pause"
        if w.sig:
            return f"sig{w.signum}"  # uWSGI's "sigN" while a signal handler runs
        if busy:
            return "busy"
        return STATUS_NAMES.get(w.status, "idle")

    def request_start(self, wid: int, since: float) -> float:
        """The earliest start time of a request running in this worker, 0 when idle."""
        w = self.workers[wid]
        earliest = 0.0
        for c in range(self.ncores):
            t = w.cores[c].in_request
            if t and (not earliest or t < earliest):
                earliest = t
        return earliest


#: the request-end block of a worker slot (requests .. last_request_end) and of a core slot
#: (in_request, requests), in field order; native layout as ctypes lays the structures out
DONE = struct.Struct("@6Qd")
CORE_DONE = struct.Struct("@dQ")
_pack_done = DONE.pack_into
_pack_core_done = CORE_DONE.pack_into


class RequestCounters:
    """One worker's request counters, kept in Python and written to its slot in one go; and
    the start of a request (``begin``), and its end (``done``).

    The worker is the only writer of these fields, so its own copies are the truth: the end of
    a request adds to them and stores the whole block with one ``pack_into`` (seven ctypes
    read-modify-writes cost ten times as much on the request path). Readers see each 8-byte
    field whole, at most one request old, as before.
    """

    __slots__ = ("mm", "offset", "core_offsets", "requests", "delta", "running_time", "tx",
                 "app_requests", "core_requests_", "slot", "cores", "busy")

    def __init__(self, board: Scoreboard, wid: int, ncores: int) -> None:
        slot = board.workers[wid]
        base = ctypes.addressof(board.instance)
        self.mm = board._mm
        self.offset = ctypes.addressof(slot) - base + type(slot).requests.offset
        # the block must be what DONE packs, in its order (a field moved in _worker_type breaks it)
        names = [f[0] for f in type(slot)._fields_]
        i = names.index("requests")
        assert names[i:i + 7] == ["requests", "delta_requests", "running_time", "tx", "avg_rt",
                                  "app_requests", "last_request_end"]
        assert [f[0] for f in Core._fields_[:2]] == ["in_request", "requests"]
        self.core_offsets = [ctypes.addressof(slot.cores[c]) - base for c in range(ncores)]
        self.requests = slot.requests
        self.delta = slot.delta_requests
        self.running_time = slot.running_time
        self.tx = slot.tx
        self.app_requests = slot.app_requests
        self.core_requests_ = [slot.cores[c].requests for c in range(ncores)]
        self.slot = slot
        self.cores = [slot.cores[c] for c in range(ncores)]
        self.busy = 0  # cores of this worker in a request (the slot's busy_cores, mirrored)

    def begin(self, core: int, t0: float) -> None:
        """A core starts a request at ``t0`` (monotonic): in_request, busy_cores, status."""
        self.cores[core].in_request = t0
        self.busy += 1
        self.slot.busy_cores = self.busy
        self.slot.status = STATUS_BUSY

    def done(self, core: int, t1: float, rt: int, tx: int, app: bool) -> int:
        """A request of ``rt`` microseconds that sent ``tx`` bytes ended at ``t1``; ``app``: it
        was an app's (app_requests counts it). Returns the requests since the worker started."""
        n = self.requests = self.requests + 1
        delta = self.delta = self.delta + 1
        total = self.running_time = self.running_time + rt
        tx = self.tx = self.tx + tx
        if app:
            self.app_requests += 1
        _pack_done(self.mm, self.offset, n, delta, total, tx, total // n, self.app_requests, t1)
        done = self.core_requests_[core] = self.core_requests_[core] + 1
        _pack_core_done(self.mm, self.core_offsets[core], 0.0, done)  # in_request = 0
        self.busy -= 1
        self.slot.busy_cores = self.busy
        if self.busy <= 0:
            self.slot.status = STATUS_IDLE
        return delta

    def core_requests(self) -> list[int]:
        return list(self.core_requests_)


def request_book(board: Scoreboard, wid: int, ncores: int) -> Any:
    """What a worker writes its requests' start and end with: the C ``Book`` of
    ``_scorefast.c`` when it was built (same fields, same protocol), else RequestCounters."""
    counters = RequestCounters(board, wid, ncores)
    if _scorefast is None:
        return counters
    slot = counters.slot
    base = ctypes.addressof(board.instance)
    kind = type(slot)
    return _scorefast.Book(board._mm, counters.offset, counters.core_offsets,
                           ctypes.addressof(slot) - base + kind.status.offset,
                           ctypes.addressof(slot) - base + kind.busy_cores.offset,
                           counters.requests, counters.delta, counters.running_time, counters.tx,
                           counters.app_requests, counters.core_requests(), STATUS_BUSY, STATUS_IDLE)
