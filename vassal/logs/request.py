"""The request log line: uWSGI's default line, or ``log-format`` with uWSGI's variables.

When a line is written follows uWSGI's log_request(): always, unless ``disable-logging``;
then still for ``log-4xx``, ``log-5xx``, ``log-slow`` (milliseconds, >=), ``log-big``
(bytes, >=), ``log-zero`` (empty body), ``log-sendfile`` and ``log-ioerror``.

``log-format`` is cut into text and ``%(name)`` chunks exactly as uWSGI's parser does
(core/logging.c), a newline is added, and each variable is, in this order of lookup: one of
the built-in names (``uri``, ``method``, ``user``, ``addr``, ``host``, ``proto``, ``uagent``,
``referer``, ``status``, ``rsize``, ``hsize``, ``size``, ``cl``, ``micros``, ``msecs``,
``secs``, ``tmsecs``, ``tmicros``, ``time``, ``ltime``, ``ftime``, ``ctime``, ``epoch``,
``pid``, ``wid``, ``switches``, ``vars``, ``core``, ``vsz``, ``rss``, ``vszM``, ``rssM``,
``pktsize``, ``modifier1``, ``modifier2``, ``headers``, ``werr``, ``rerr``, ``ioerr``),
``var.NAME`` (the request variable NAME), ``metric.NAME`` (the metric's value, 0 when there is
no such metric or metrics are off), else a log
variable set by the app with ``uwsgi.set_logvar``. An empty value is written as ``-``.

Request lines are not prefixed by ``log-date`` (uWSGI writes them apart from its other
lines). They go to fd 2, or to the log master's request pipe with ``req-logger``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vassal import log as logmod

#: set by the log master in each worker when request lines have their own pipe
req_fd: int | None = None


@dataclass(slots=True)
class Done:
    """One finished request, as the worker saw it."""

    env: dict
    status: int
    body_bytes: int
    head_bytes: int
    nheaders: int
    switches: int
    via: str  # "", "sendfile", "offload"
    protocol: str
    t0: float  # wall clock at the start (time.time()); t1 = t0 + the monotonic duration
    t1: float
    app_id: int  # -1: no app ran (a static file, or none loaded)
    app_requests: int  # the app's requests in this worker, -1 when no app
    total_requests: int  # the instance's
    nvars: int
    pktsize: int
    core: int
    wid: int
    write_errors: int = 0
    read_errors: int = 0
    pid: int = 0  # the worker's (passed in: getpid() per request costs a syscall)
    logvars: dict[bytes, bytes] = field(default_factory=dict)  # uwsgi.set_logvar


Chunk = Callable[[Done], bytes]


def _env(key: str) -> Chunk:
    return lambda d: d.env.get(key, "").encode("latin-1", "replace")


def _num(fn: Callable[[Done], int]) -> Chunk:
    return lambda d: str(fn(d)).encode()


def _memory() -> tuple[int, int]:
    """(vsz, rss) of this process in bytes."""
    try:
        with open("/proc/self/statm", "rb") as f:
            parts = f.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        return int(parts[0]) * page, int(parts[1]) * page
    except (OSError, ValueError, IndexError):
        return 0, 0


def _ltime(d: Done) -> bytes:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(int(d.t0))).encode()


def _ftime(d: Done) -> bytes:
    fmt = logmod.date_format()
    if not (_state["strftime"] and fmt):
        return _ltime(d)
    return time.strftime(fmt, time.localtime(int(d.t0))).encode()


def _micros(d: Done) -> int:
    return max(0, int((d.t1 - d.t0) * 1_000_000))


_state: dict[str, Any] = {"strftime": False, "xff": False}
_ctime_cache: list = [0, ""]


def _ctime(sec: int) -> str:
    """ctime() once per second, not once per request."""
    if _ctime_cache[0] != sec:
        _ctime_cache[:] = [sec, time.ctime(sec)]
    return _ctime_cache[1]


def _addr(d: Done) -> bytes:
    env = d.env
    value = env.get("HTTP_X_FORWARDED_FOR") if _state["xff"] else None
    return (value if value is not None else env.get("REMOTE_ADDR", "")).encode("latin-1", "replace")


VARIABLES: dict[str, Chunk] = {
    "uri": _env("REQUEST_URI"),
    "method": _env("REQUEST_METHOD"),
    "user": _env("REMOTE_USER"),
    "addr": _addr,
    "host": _env("HTTP_HOST"),
    "proto": _env("SERVER_PROTOCOL"),
    "uagent": _env("HTTP_USER_AGENT"),
    "referer": _env("HTTP_REFERER"),
    "status": _num(lambda d: d.status),
    "rsize": _num(lambda d: d.body_bytes),
    "hsize": _num(lambda d: d.head_bytes),
    "size": _num(lambda d: d.head_bytes + d.body_bytes),
    "cl": _num(lambda d: int(d.env.get("CONTENT_LENGTH") or 0) if (d.env.get("CONTENT_LENGTH") or "0").isdigit()
               else 0),
    "micros": _num(_micros),
    "msecs": _num(lambda d: _micros(d) // 1000),
    "secs": lambda d: f"{_micros(d) / 1_000_000:f}".encode(),
    "tmsecs": _num(lambda d: int(d.t0 * 1000)),
    "tmicros": _num(lambda d: int(d.t0 * 1_000_000)),
    "time": _num(lambda d: int(d.t0)),
    "ltime": _ltime,
    "ftime": _ftime,
    "ctime": lambda d: time.ctime(int(d.t0)).encode(),
    "epoch": _num(lambda d: int(time.time())),
    "pid": _num(lambda d: d.pid or os.getpid()),
    "wid": _num(lambda d: d.wid),
    "switches": _num(lambda d: d.switches),
    "vars": _num(lambda d: d.nvars),
    "core": _num(lambda d: d.core),
    "vsz": _num(lambda d: _memory()[0]),
    "rss": _num(lambda d: _memory()[1]),
    "vszM": _num(lambda d: _memory()[0] // 1048576),
    "rssM": _num(lambda d: _memory()[1] // 1048576),
    "pktsize": _num(lambda d: d.pktsize),
    # the uwsgi modifiers of the request packet: nginx (and the HTTP parser) send 0
    "modifier1": _num(lambda d: 0),
    "modifier2": _num(lambda d: 0),
    "headers": _num(lambda d: d.nheaders),
    "werr": _num(lambda d: d.write_errors),
    "rerr": _num(lambda d: d.read_errors),
    "ioerr": _num(lambda d: d.write_errors + d.read_errors),
}


def compile_format(fmt: str) -> list[bytes | Chunk]:
    """``log-format`` as text pieces and variable getters, cut as uWSGI's parser cuts it.

    The quirks are kept: ``%(`` starts a variable only when a character follows; an
    unterminated ``%(name`` leaves the text since the last variable once more at the end.
    """
    out: list[bytes | Chunk] = []
    state = 0
    current = 0
    var_start = -1
    for i, c in enumerate(fmt):
        if c == "%":
            if state == 0:
                state = 1
        elif c == "(":
            if state == 1:
                state = 2
        elif c == ")":
            if var_start >= 0:
                out.append(_variable(fmt[var_start:i]))
                state = 0
                var_start = -1
                current = i + 1
        else:
            if state == 2:
                out.append(fmt[current:i - 2].encode())
                var_start = i
            state = 0
    if len(fmt) - current > 0:
        out.append(fmt[current:].encode())
    out.append(b"\n")
    return [p for p in out if p != b""]


def _variable(name: str) -> Chunk:
    if name in VARIABLES:
        return VARIABLES[name]
    if name.startswith("var."):
        return _env(name[4:])
    if name.startswith("metric."):
        from vassal.api.metrics import metric_get

        metric = name[7:]
        return lambda d: b"%d" % metric_get(metric)
    key = name.encode("utf-8", "replace")[:logmod.LOGVAR_MAX]
    return lambda d: d.logvars.get(key, b"")


@dataclass
class RequestLog:
    """Which requests are logged and how; built once from the config, used by every worker."""

    enabled: bool = True
    log_4xx: bool = False
    log_5xx: bool = False
    slow: int = 0  # milliseconds
    big: int = 0  # bytes
    zero: bool = False
    sendfile: bool = False
    ioerror: bool = False
    micros: bool = False
    memory_report: bool = False
    xff: bool = False
    vhost: bool = False  # vhost: uWSGI's line starts with the request's host
    chunks: list[bytes | Chunk] | None = None  # log-format, compiled

    @classmethod
    def from_config(cls, config: Any) -> RequestLog:
        fmt = config.get("log-format")
        _state["strftime"] = bool(config.get("logformat-strftime"))
        _state["xff"] = bool(config.get("log-x-forwarded-for"))
        return cls(enabled=not config.get("disable-logging"), log_4xx=bool(config.get("log-4xx")),
                   log_5xx=bool(config.get("log-5xx")), slow=int(config.get("log-slow") or 0),
                   big=int(config.get("log-big") or 0), zero=bool(config.get("log-zero")),
                   sendfile=bool(config.get("log-sendfile")), ioerror=bool(config.get("log-ioerror")),
                   micros=bool(config.get("log-micros")), memory_report=bool(config.get("memory-report")),
                   xff=_state["xff"], vhost=bool(config.get("vhost") or config.get("vhost-host")),
                   chunks=compile_format(fmt) if fmt else None)

    @property
    def silent(self) -> bool:
        """No request is ever logged (disable-logging without any exception to it): the worker
        then skips building what ``done`` would get."""
        return not (self.enabled or self.log_4xx or self.log_5xx or self.slow or self.big or self.zero
                    or self.sendfile or self.ioerror)

    def wanted(self, d: Done) -> bool:
        if self.enabled:
            return True
        status = d.status
        return ((self.zero and d.body_bytes == 0) or (self.slow and _micros(d) // 1000 >= self.slow)
                or (self.log_4xx and 400 <= status <= 499) or (self.log_5xx and 500 <= status <= 599)
                or (self.big and d.body_bytes >= self.big) or (self.sendfile and d.via == "sendfile")
                or (self.ioerror and d.read_errors > 0 and d.write_errors > 0))

    def done(self, env: dict, status: int, body_bytes: int, head_bytes: int, nheaders: int, switches: int,
             via: str, protocol: str, t0: float, t1: float, app_id: int, app_requests: int, total: int,
             nvars: int, pktsize: int, core: int, wid: int, pid: int, write_errors: int = 0) -> None:
        """The request is over: write its line if it is to be logged (the worker's one call)."""
        if logmod.take_skip():  # the routing action donotlog
            logmod.take_logvars()
            return
        logvars = logmod.take_logvars()
        if self.enabled and self.chunks is None:  # the common case: no Done to build
            line = self.line(env, status, body_bytes, head_bytes, nheaders, switches, via, protocol, t0, t1,
                             app_id, app_requests, total, nvars, pktsize, core, pid)
        else:
            d = Done(env, status, body_bytes, head_bytes, nheaders, switches, via, protocol, t0, t1, app_id,
                     app_requests, total, nvars, pktsize, core, wid, write_errors, 0, pid, logvars)
            if not self.wanted(d):
                return
            if self.chunks is not None:
                line = b"".join([p if type(p) is bytes else (p(d) or b"-") for p in self.chunks])  # type: ignore[operator]
            else:
                line = self.line(env, status, body_bytes, head_bytes, nheaders, switches, via, protocol, t0, t1,
                                 app_id, app_requests, total, nvars, pktsize, core, pid)
        if req_fd is None:
            logmod.write(line)
        else:
            try:
                os.write(req_fd, line)
            except OSError:
                pass

    def line(self, env: dict, status: int, body_bytes: int, head_bytes: int, nheaders: int, switches: int,
             via: str, protocol: str, t0: float, t1: float, app_id: int, app_requests: int, total: int,
             nvars: int, pktsize: int, core: int, pid: int) -> bytes:
        """uWSGI's line (core/logging.c: uwsgi_logit_simple), in one f-string."""
        rt = int((t1 - t0) * 1_000_000)
        if rt < 0:
            rt = 0
        get = env.get
        addr = get("HTTP_X_FORWARDED_FOR") if self.xff else None
        if addr is None:
            addr = get("REMOTE_ADDR", "")
        sec = int(t0)
        cached = _ctime_cache
        mem = ""
        if self.memory_report:
            vsz, rss = _memory()
            mem = (f"{{address space usage: {vsz} bytes/{vsz // 1048576}MB}} "
                   f"{{rss usage: {rss} bytes/{rss // 1048576}MB}} ")
        if self.vhost:
            mem = f"{get('HTTP_HOST') or get('SERVER_NAME') or ''} {mem}"
        return (f"{mem}[pid: {pid}|app: {app_id}|req: {app_requests}/{total}] {addr} ({get('REMOTE_USER', '')}) "
                f"{{{nvars} vars in {pktsize} bytes}} [{cached[1] if cached[0] == sec else _ctime(sec)}] "
                f"{get('REQUEST_METHOD', '')} {get('REQUEST_URI', '')} => generated {body_bytes} bytes in "
                f"{rt if self.micros else rt // 1000} {'micros' if self.micros else 'msecs'}"
                f"{f' via {via}() ' if via else ' '}({protocol} {status}) {nheaders} headers in "
                f"{head_bytes} bytes ({switches} switches on core {core})\n").encode("latin-1", "replace")
