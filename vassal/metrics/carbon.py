"""``carbon``: uWSGI's Graphite/Carbon pusher (plugins/carbon), lines and names kept.

Every ``carbon-freq`` seconds (60) each ``carbon`` server gets a TCP connection and the
plaintext protocol, one ``NAME VALUE TIMESTAMP`` line per value, named
``ROOT.HOST.ID.requests``, ``ROOT.HOST.ID.workerN.requests`` and so on:

- ROOT is ``carbon-root`` (``uwsgi``), HOST the host name (its dots replaced by the first
  character of ``carbon-hostname-dots`` when given), ID ``carbon-id`` or the name of the
  first socket with its dots as ``_``;
- per worker (unless ``carbon-no-workers``): requests, rss_size and vsz_size (with
  ``memory-report``), avg_rt (microseconds; while idle: ``carbon-idle-avg`` last, zero or
  none), tx, busyness (percent of the period spent in requests), harakiri; then the totals:
  rss_size/vsz_size (``memory-report``), avg_rt, tx, busyness, active_workers, harakiri;
- with ``carbon-use-metrics`` the lines are the metrics subsystem's values instead, one per
  metric (``ROOT.HOST.ID.worker.1.requests``...).

The connection is non-blocking and driven by the master loop with ``carbon-timeout``
(3 s) for the whole exchange. A server that cannot be reached is logged ("Could not connect
to carbon server") and retried after ``carbon-retry-delay`` seconds up to
``carbon-max-retry`` times, as uWSGI's stats pusher loop does; meanwhile the master goes on.
The last push happens when the instance stops or reloads (uWSGI's ``master_cleanup``).
Host names are resolved once, at start-up (``carbon-name-resolve``); uWSGI resolves them at
every push in its pusher thread, which this loop must not wait for.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from vassal.log import log
from vassal.metrics.pushers import Pusher, TcpExchange, TcpPusher, parse_hostport
from vassal.metrics.table import MetricError, MetricTable
from vassal.scoreboard import STATUS_CHEAP


class CarbonSettings:
    def __init__(self, config: Any, sockets: list) -> None:
        self.freq = int(config.get("carbon-freq") or 60)
        if self.freq < 1:
            self.freq = 60
        self.timeout = int(config.get("carbon-timeout") or 3)
        if self.timeout < 1:
            self.timeout = 3
        self.max_retries = max(0, int(config.get("carbon-max-retry") or 0))
        self.retry_delay = int(config.get("carbon-retry-delay") or 7)
        if self.retry_delay <= 0:
            self.retry_delay = 7
        root = config.get("carbon-root")
        root = "uwsgi" if root is None else str(root)
        self.root = root + "." if root and not root.endswith(".") else root
        cid = config.get("carbon-id")
        if not cid:
            cid = sockets[0].name.replace(".", "_") if sockets else "uwsgi"
        self.id = cid
        host = socket.gethostname()
        dots = config.get("carbon-hostname-dots")
        if dots:
            host = host.replace(".", dots[0])
        self.hostname = host
        idle = config.get("carbon-idle-avg") or "last"
        if idle not in ("last", "zero", "none"):
            raise MetricError(f'carbon-idle-avg: invalid value "{idle}" (last, zero or none)')
        self.push_avg = idle != "none"
        self.zero_avg = idle == "zero"
        self.no_workers = bool(config.get("carbon-no-workers"))
        self.use_metrics = bool(config.get("carbon-use-metrics"))
        self.memory = bool(config.get("memory-report"))
        resolve = bool(config.get("carbon-name-resolve"))
        self.servers: list[tuple[str, int, Any]] = []
        for value, origin in config.occurrences("carbon"):
            text = str(value)
            host_part, sep, port = text.rpartition(":")
            if not sep or not host_part or not port.isdigit():
                log(f"[carbon] invalid carbon server address ({text})")
                continue
            try:
                family, addr = parse_hostport(text, f"carbon {text} ({origin})", resolve=resolve)
            except MetricError as exc:
                if not resolve:
                    raise MetricError(f"carbon {text} ({origin}): {host_part} is not an IP address "
                                      "(host names need carbon-name-resolve)") from None
                raise exc
            self.servers.append((text, family, addr))
            log(f"[carbon] added server {host_part}:{port}")


class CarbonPusher(TcpPusher):
    """The carbon servers, pushed to at ``carbon-freq`` (and from ``stats-push carbon``)."""

    def __init__(self, kind: str, arg: str, *, table: MetricTable | None, default_freq: int,
                 json_doc: Any = None, settings: CarbonSettings, board: Any,
                 memory: Any = None) -> None:
        super().__init__(kind, arg, table=table, default_freq=default_freq, json_doc=None)
        self.s = settings
        self.board = board
        self.freq = settings.freq if kind == "carbon" and not arg else 0
        self.max_retries = settings.max_retries
        self.retry_delay = settings.retry_delay
        self.healthy = {text: True for text, _, _ in settings.servers}
        self.errors = {text: 0 for text, _, _ in settings.servers}
        n = board.nworkers if board is not None else 0
        self.last_busyness = [0] * n
        self.was_busy = [0] * n
        self.last_requests = 0
        self.failed = False
        self.pushing = False
        from vassal.stats import _memory

        self.memory = memory or _memory

    # --- what is pushed --------------------------------------------------------------------

    def lines(self, now: int) -> bytes:
        s, b = self.s, self.board
        base = f"{s.root}{s.hostname}.{s.id}"
        out: list[str] = []

        def put(name: str, value: int) -> None:
            out.append(f"{base}.{name} {value & ((1 << 64) - 1)} {now}\n")

        if s.use_metrics:
            t = self.table
            if t is not None:
                for m in t.metrics:
                    put(m.name, t.values[m.slot])
                self.after_push()
            return "".join(out).encode()
        n = b.nworkers if b is not None else 0
        current = []
        for i in range(n):
            w = b.workers[i + 1]
            current.append(w.running_time - self.last_busyness[i])
            self.last_busyness[i] = w.running_time
            self.was_busy[i] += 1 if w.busy_cores > 0 else 0
        total_requests = b.total_requests() if b is not None else 0
        idle = not self.last_requests or self.last_requests == total_requests
        put("requests", total_requests)
        total_rss = total_vsz = total_tx = total_avg_rt = active = 0
        total_busyness = total_harakiri = 0
        for i in range(1, n + 1):
            w = b.workers[i]
            total_tx += w.tx
            total_harakiri += w.harakiri_count
            if w.status == STATUS_CHEAP:
                avg_rt = busyness = 0
            else:
                avg_rt = w.avg_rt
                active += 1
                total_avg_rt += w.avg_rt
                if current[i - 1] == 0 and self.was_busy[i - 1]:
                    busyness = 100
                else:
                    busyness = min(100, current[i - 1] * 100 // (s.freq * 1000000))
                total_busyness += busyness
                self.was_busy[i - 1] = 0
                if s.memory and w.pid > 0:
                    rss, vsz = self.memory(int(w.pid))
                    total_rss += rss
                    total_vsz += vsz
            if s.no_workers:
                continue
            put(f"worker{i}.requests", w.requests)
            if s.memory:
                rss, vsz = self.memory(int(w.pid)) if w.pid > 0 else (0, 0)
                put(f"worker{i}.rss_size", rss)
                put(f"worker{i}.vsz_size", vsz)
            if not idle or s.push_avg:
                put(f"worker{i}.avg_rt", 0 if idle and s.zero_avg else avg_rt)
            put(f"worker{i}.tx", w.tx)
            put(f"worker{i}.busyness", busyness)
            put(f"worker{i}.harakiri", w.harakiri_count)
        if s.memory:
            put("rss_size", total_rss)
            put("vsz_size", total_vsz)
        if not idle or s.push_avg:
            avg = total_avg_rt // active if active else 0
            put("avg_rt", 0 if idle and s.zero_avg else avg)
        put("tx", total_tx)
        put("busyness", min(100, total_busyness // active) if active else 0)
        put("active_workers", active)
        put("harakiri", total_harakiri)
        return "".join(out).encode()

    # --- pushing ---------------------------------------------------------------------------

    def push(self, now: float, retry_cycle: bool | None = None) -> None:
        retry = self.retries > 0 if retry_cycle is None else retry_cycle
        if not self.s.servers:
            return
        payload: bytes | None = None
        self.failed = False
        self.pushing = True
        try:
            for text, family, addr in self.s.servers:
                if retry and self.healthy[text]:
                    continue  # a retry cycle only tries the servers that failed
                if retry:
                    log(f"[carbon] Retrying failed server at {text.rpartition(':')[0]} "
                        f"({self.errors[text]})")
                else:
                    self.healthy[text] = True
                    self.errors[text] = 0
                if payload is None:
                    payload = self.lines(int(time.time()))
                    self.last_requests = self.board.total_requests() if self.board is not None else 0
                self.exchanges.append(TcpExchange(family, addr, payload, now + self.s.timeout,
                                                  self._done_cb(text)))
        finally:
            self.pushing = False
        self._prune()
        if not self.in_flight():
            self.finished(now, self.failed)

    def _done_cb(self, text: str) -> Any:
        def done(error: str | None, _answer: bytes) -> None:
            if error is not None:
                log(f"[carbon] Could not connect to carbon server at {text} ({error})")
                self.healthy[text] = False
                self.errors[text] += 1
                self.failed = True
            if not self.pushing and not self.in_flight():
                self.finished(time.monotonic(), self.failed)
        return done

    def stopping(self, reload: bool) -> None:
        """uWSGI's master_cleanup: one last push (the master waits for it, see ``busy``, up
        to ``carbon-timeout``), and no scheduled one after it."""
        if not self.in_flight() and self.s.servers:
            self.push(time.monotonic(), retry_cycle=False)
        super().stopping(reload)


def make_factory(config: Any, board: Any, sockets: list) -> Any:
    """The ``carbon`` pusher kind for ``stats-push``, and the pusher of the carbon option."""
    settings: list[CarbonSettings] = []

    def get_settings() -> CarbonSettings:
        if not settings:
            settings.append(CarbonSettings(config, sockets))
        return settings[0]

    def factory(kind: str, arg: str, **kw: Any) -> Pusher:
        return CarbonPusher(kind, arg, settings=get_settings(), board=board, **kw)

    return factory, get_settings


def start_log(s: CarbonSettings) -> None:
    log(f"[carbon] carbon plugin started, {s.freq}s frequency, {s.timeout}s timeout, "
        f"max retries {s.max_retries}, retry delay {s.retry_delay}s")
