"""A worker process: accept connections, parse requests (HTTP or uwsgi), run the app, log.

Each thread of a worker (``threads``; uWSGI calls them cores) has its own epoll set holding
the shared listening sockets — registered with EPOLLEXCLUSIVE so one connection wakes one
thread of one worker — plus that thread's open client connections and a wake-up pipe the
worker closes/writes to stop every thread at once.

A connection is served in two phases. Until a whole request head (or uwsgi packet head) is
buffered, it is *parked*: read without blocking when epoll says so, and dropped when its head
deadline passes (``http-headers-timeout``, default ``socket-timeout``), so clients that drip
their heads (slowloris) hold a file descriptor, never the worker. Idle keep-alive connections
are parked too, until ``http-keepalive``/``http-timeout`` seconds pass. Once a head is
complete, the request is served start to end by the thread that read it, with blocking I/O
under kernel timeouts (SO_RCVTIMEO/SO_SNDTIMEO = ``socket-timeout``, set on the listening
socket and inherited by accepted ones), so the request path makes no extra poll() per recv.
A graceful stop (SIGHUP from the master, max-requests, ...) lets every thread finish its
current request before the process exits.

As in uWSGI 2.0, the heartbeat (byte 26 to the emperor, every ``heartbeat`` seconds) is sent
from this accept loop, not by the master: a vassal whose workers are all stuck in requests
stops beating, and its emperor replaces it.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from _socket import socket as _socket_t
from dataclasses import dataclass, field
from typing import Any

from vassal import log as logmod
from vassal import profiler
from vassal.accel import optional
from vassal.api import request as current_request_mod
from vassal.log import log, take_logvars
from vassal.logs.request import RequestLog
from vassal.protocols import http as H
from vassal.protocols import proxy
from vassal.protocols import uwsgi as U
from vassal.protocols.offload import Offloader, send_chunk
from vassal.scoreboard import (
    VARS_HTTP,
    VARS_SIZE,
    Scoreboard,
    request_book,
)
from vassal.sockets import ListenSocket
from vassal.wsgi import AppTable, ErrorStream, FileWrapper, print_app_exception

#: the optional C builder of the plain response head (see _headfast.c); _Response.head does it all too
_build_head = getattr(optional("vassal.protocols._headfast"), "build", None)

END_CODE = 30
EXCEPTION_CODE = 5  # uWSGI's UWSGI_EXCEPTION_CODE: reload-on-exception ended the worker

_EPOLLIN = select.EPOLLIN
_EXCL = getattr(select, "EPOLLEXCLUSIVE", 0)
_LIST_TYPES = (list, tuple)
_DONTWAIT = socket.MSG_DONTWAIT
_SOCK_STREAM = int(socket.SOCK_STREAM)
_VARS_HTTP_BITS = VARS_HTTP << 32  # the kind in a vars record's 5-byte header
_BufferedBody = H.BufferedBody
_Body = H.Body
_NO_BODY = H.NO_BODY
_VARS_MAX = VARS_SIZE - 5  # the longest vars record a core's slot takes
_VARS_WRITTEN = b"\0"  # raw_vars of _run: the record is written already (by the C head parser)
_monotonic = time.monotonic
_time = time.time
_fast_parse = H.fast_parse  # None without the C accelerator

# what to do with a connection once the bytes at hand are used up: close it, park it idle,
# park it reading a head, or leave it where it was (woken with nothing to read)
CLOSE, IDLE, HEAD, STAY = 0, 1, 2, 3


@dataclass
class WorkerSettings:
    """Everything the request path needs, read once from the config."""

    threads: int = 1
    processes: int = 1
    max_requests: int = 0
    max_worker_lifetime: int = 0
    max_worker_lifetime_delta: int = 0  # worker N lives max_worker_lifetime + (N-1) * delta
    reload_on_rss: int = 0  # bytes
    reload_on_as: int = 0  # bytes of address space
    #: master services' moments in the worker (vassal.services): accepting hooks, and
    #: reload-on-exception (True: the exception ends this worker, EXCEPTION_CODE)
    on_accepting: Any = None
    reload_on_exception: Any = None
    buffer_size: int = 4096
    max_headers: int = H.MAX_HEADERS
    keepalive: bool = True
    keepalive_timeout: float = 60.0
    head_timeout: float = 4.0  # a whole request head must arrive within this
    max_parked: int = 1000  # parked connections per thread (idle or reading their head)
    limit_post: int = 0
    post_buffering: int = 0
    post_buffering_bufsize: int = 8192
    auto_chunked: bool = False
    file_wrapper: bool = True
    disable_write_exception: bool = False
    ignore_sigpipe: bool = False
    ignore_write_errors: bool = False
    manage_script_name: bool = False
    add_headers: str = ""  # pre-rendered "Name: value\r\n" lines
    hostname: str = "localhost"
    version: bytes = b""
    catch_exceptions: bool = False
    emperor_link: Any = None  # VassalLink or None
    static: Any = None  # vassal.protocols.static.StaticFiles or None
    router: Any = None  # vassal.routing.Router (the internal routing rules) or None
    proxy_protocol: bool = False  # a PROXY v1 line may open an HTTP connection (vassal/protocols/proxy.py)
    reaper: bool = False  # reap the app's exited children after each request
    reqlog: Any = field(default_factory=RequestLog)  # vassal.logs.request.RequestLog
    offload_threads: int = 0
    reload_mercy: float = 60.0  # worker-reload-mercy: how long offloaded transfers may finish
    heartbeat: int = 0  # seconds between heartbeats to the emperor (0: none)
    gevent: int = 0  # async cores of the gevent loop (0: threads and epoll)
    gevent_monkey: bool = False  # gevent.monkey.patch_all() when the worker's loop starts
    socket_timeout: float = 4.0
    timeval: bytes = b"\x04" + b"\x00" * 15  # socket-timeout as a struct timeval (4 s)
    extra: dict = field(default_factory=dict)
    profiler: Any = None  # vassal.profiler.Profiler: the app's calls logged (profiler = pycall|pyline)

    @classmethod
    def from_config(cls, config: Any, version: str, link: Any, **more: Any) -> WorkerSettings:
        """The settings of the request path, from the options (see docs/instance.md); ``more``
        are the settings other rooms build (static files, the request log, offloading)."""
        def num(name: str, default: int = 0) -> int:
            return int(config.get(name) or default)

        threads = max(1, num("threads", 1))
        socket_timeout = num("socket-timeout", 4)
        post_buffering = num("post-buffering")
        bufsize = num("post-buffering-bufsize", 8192)
        if post_buffering and bufsize < post_buffering:
            bufsize = post_buffering
            log(f"setting request body buffering size to {bufsize} bytes")
        keepalive = num("http-keepalive")
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        fds = 100000 if soft == resource.RLIM_INFINITY else soft
        return cls(
            threads=threads,
            processes=max(1, num("processes", 1)),
            max_requests=num("max-requests"),
            max_worker_lifetime=num("max-worker-lifetime"),
            max_worker_lifetime_delta=num("max-worker-lifetime-delta"),
            reload_on_rss=num("reload-on-rss") * 1024 * 1024,
            reload_on_as=num("reload-on-as") * 1024 * 1024,
            buffer_size=max(4096, num("buffer-size", 4096)),
            keepalive=True,
            # uWSGI's router: `http-keepalive = N` (N > 1) is the idle timeout, else http-timeout
            keepalive_timeout=float(keepalive if keepalive > 1 else num("http-timeout", 60)),
            head_timeout=float(num("http-headers-timeout") or socket_timeout),
            max_parked=max(16, (fds - 64) // threads),
            limit_post=num("limit-post"),
            post_buffering=post_buffering,
            post_buffering_bufsize=bufsize,
            auto_chunked=bool(config.get("http-auto-chunked")),
            file_wrapper=not config.get("wsgi-disable-file-wrapper"),
            disable_write_exception=bool(config.get("disable-write-exception")),
            ignore_sigpipe=bool(config.get("ignore-sigpipe")),
            ignore_write_errors=bool(config.get("ignore-write-errors")),
            manage_script_name=bool(config.get("manage-script-name")),
            add_headers="".join(f"{h.strip()}\r\n" for h in config.getlist("add-header") if h.strip()),
            hostname=socket.gethostname(),
            version=version.encode(),
            catch_exceptions=bool(config.get("catch-exceptions")),
            emperor_link=link,
            heartbeat=num("heartbeat"),
            gevent=num("gevent"),
            gevent_monkey=bool(config.get("gevent-monkey-patch")),
            socket_timeout=float(socket_timeout),
            timeval=struct.pack("ll", socket_timeout, 0),
            profiler=profiler.from_config(config),
            **more,
        )


class _WriteError(Exception):
    """A write to the client failed (already logged and counted): stop sending."""


class _Listener:
    """A listening socket as one worker accepts from it: what every connection from it needs
    (the address family, SERVER_PORT, the vars prefix of each client address) worked out
    once, not per connection (``ls.family`` alone makes an enum member each time)."""

    __slots__ = ("ls", "accept", "family", "unix", "port", "prefix", "known")

    #: client addresses remembered per listening socket (clients are unbounded: past this
    #: many, the table starts again)
    KNOWN_MAX = 4096

    def __init__(self, ls: ListenSocket, hostname: str) -> None:
        self.ls = ls
        self.accept = ls.sock._accept  # (fd, address): the socket object is ours to make
        self.family = int(ls.family)
        self.unix = self.family == socket.AF_UNIX
        self.port = ls.server_port
        self.prefix = f"{hostname}\0{self.port}\0"
        #: the host part of a client address -> (its REMOTE_ADDR text, the connection's vars prefix)
        self.known: dict[Any, tuple[str, bytes]] = {}

    def learn(self, addr: Any) -> tuple[str, bytes]:
        """REMOTE_ADDR and the vars prefix of a client address not met lately."""
        text = _addr_text(addr)
        known = self.known
        if len(known) >= self.KNOWN_MAX:
            known.clear()
        got = known[addr[0] if type(addr) is tuple else ""] = (
            text, (self.prefix + text + "\0").encode("latin-1", "replace"))
        return got


class _Conn:
    """One client connection of a thread."""

    __slots__ = ("sock", "reader", "ls", "addr", "fd", "vars_prefix", "port", "proxied", "parsed")

    def __init__(self, sock: Any, ls: ListenSocket, addr: Any, hostname: str = "",
                 listener: _Listener | None = None) -> None:
        self.sock = sock
        self.reader = H.Reader(sock)
        self.ls = ls
        self.fd = sock.fileno()
        # what the stats server needs besides the head to show a request's vars:
        # "hostname\0port\0address\0"
        if listener is not None:  # the worker's accept path: looked up
            got = listener.known.get(addr[0] if type(addr) is tuple else "")
            self.addr, self.vars_prefix = got if got is not None else listener.learn(addr)
            self.port = listener.port
        else:
            self.addr = _addr_text(addr)
            self.port = ls.server_port
            self.vars_prefix = f"{hostname}\0{self.port}\0{self.addr}\0".encode("latin-1", "replace")
        self.proxied: dict | None = None  # the PROXY line's variables (enable-proxy-protocol)
        self.parsed: H.Request | None = None  # the last request, when its parser can go on


class _Response:
    """start_response/write for one request, and every byte sent to the client.

    A failed write is handled as uWSGI 2.0 does (core/writer.c, plugins/python): the error is
    logged as ``uwsgi_response_*_do(): <reason> ... during METHOD URI (ADDR)`` unless
    ``ignore-write-errors``; on a broken pipe, uWSGI's SIGPIPE warning is logged too unless
    ``ignore-sigpipe``; nothing more is written; the ``write`` callable raises
    ``OSError("write error")`` into the app and an iterable stops being iterated (with that
    exception logged) unless ``disable-write-exception``.
    """

    # per-request state starts from these class values: __init__ sets only what differs (one
    # of these is made per request, so every assignment counts)
    status: str | None = None
    headers: Any = ()
    head_sent = False
    body_bytes = 0
    head_bytes = 0
    chunks = 0
    has_length = False
    nheaders = 0
    chunked = False  # http-auto-chunked chose to chunk this body
    write_errors = 0
    via = ""  # "sendfile"/"offload": how the body went (the request log says so)
    #: an HTTP socket's answer: say when the connection closes (HTTP/1.1) or stays (HTTP/1.0)
    http = False
    #: the request's routing state (vassal.routing.Exchange) when routing rules are configured
    route: Any = None

    def __init__(self, sock: socket.socket, protocol: str, keep: bool, extra: str, head_only: bool = False,
                 auto_chunked: bool = False, env: dict | None = None,
                 settings: WorkerSettings | None = None) -> None:
        self.sock = sock
        self.protocol = protocol
        self.keep = keep
        self.extra = extra
        self.head_only = head_only  # a HEAD request: the body the app returns is not sent
        self.auto_chunked = auto_chunked
        self.env = env if env is not None else {}
        self.settings = settings or _DEFAULT_SETTINGS

    def start_response(self, status: str, headers: list, exc_info: Any = None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        if type(status) is not str:
            raise TypeError("status must be a str")
        self.status = status
        self.headers = headers
        return self.write

    def head(self, length: int | None) -> bytes:
        """The response head; adds Content-Length when we know it and the app did not."""
        if _build_head is not None and self.route is None:
            # the C twin of the code below: None when the case is not its plain one (then the
            # Python code decides, and raises what it raises)
            r = _build_head(self.protocol, self.status, self.headers, self.extra, self.keep, length,
                            self.auto_chunked, self.head_only, self.http, self.chunked)
            if r is not None:
                data, self.keep, self.has_length, self.chunked, self.nheaders, self.head_bytes = r
                return data
        if self.status is None:
            raise RuntimeError("the app did not call start_response")
        if self.route is not None and not self.route.filter_head():
            self.head_only = True  # the routing rules answered instead: the app's body goes nowhere
            if self.head_sent:
                return b""
        lines = [self.protocol, " ", self.status, "\r\n"]
        has_length = False
        said = False  # the app sent its own Connection header
        for k, v in self.headers:
            n = len(k)
            if n == 14 or n == 10 or n == 17:
                lk = k.lower()
                if lk == "content-length":
                    has_length = True
                elif lk == "connection":
                    said = True
                    if "close" in v.lower():
                        self.keep = False
                elif lk == "transfer-encoding":
                    has_length = True  # the app frames its body itself
            lines += (k, ": ", v, "\r\n")
        self.nheaders = len(self.headers)
        if self.extra:
            lines.append(self.extra)
        if not has_length and self.keep:
            code = self.status[:3]
            if code in ("204", "304") or code[0] == "1":
                has_length = True  # no body by definition, and no Content-Length allowed
            elif length is not None:
                lines += ("Content-Length: ", str(length), "\r\n")
                has_length = True
            elif self.auto_chunked and self.protocol == "HTTP/1.1":
                lines.append("Transfer-Encoding: chunked\r\n")
                has_length = True
                self.chunked = not self.head_only
        if self.http and not said:
            if self.protocol == "HTTP/1.1":
                if not (self.keep and has_length):
                    lines.append("Connection: close\r\n")
            elif self.keep and has_length:
                lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        self.has_length = has_length
        try:
            data = "".join(lines).encode("latin-1")
        except (UnicodeEncodeError, TypeError) as exc:
            raise TypeError(f"invalid response status or header: {exc}") from None
        self.head_bytes = len(data)
        return data

    # --- sending ---------------------------------------------------------------------------

    def send(self, data: bytes, what: str = "uwsgi_response_write_body_do") -> None:
        """Send bytes to the client; on failure log as uWSGI does and raise _WriteError."""
        if self.write_errors:
            raise _WriteError
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.failed(exc, what)
            raise _WriteError from None

    def failed(self, exc: OSError, what: str) -> None:
        self.write_errors += 1
        self.keep = False
        s = self.settings
        env = self.env
        if exc.errno == errno.EPIPE and not s.ignore_sigpipe:
            if s.threads < 2:
                log(f"SIGPIPE: writing to a closed pipe/socket/fd (probably the client disconnected) "
                    f"on request {env.get('REQUEST_URI', '')} (ip {env.get('REMOTE_ADDR', '')}) !!!")
            else:
                log("SIGPIPE: writing to a closed pipe/socket/fd (probably the client disconnected) !!!")
        if not s.ignore_write_errors:
            if isinstance(exc, (TimeoutError, BlockingIOError)):
                log(f"{what}() TIMEOUT !!!")
            else:
                log(f"{what}(): {exc.strerror or exc} [vassal/worker.py] during "
                    f"{env.get('REQUEST_METHOD', '')} {env.get('REQUEST_URI', '')} "
                    f"({env.get('REMOTE_ADDR', '')})")

    def send_body(self, data: bytes) -> None:
        """One piece of the body (the head already sent)."""
        if data:
            self.send(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            self.body_bytes += len(data)
        self.chunks += 1

    def send_head_and(self, data: bytes, length: int | None) -> None:
        """The head, and the first piece of the body with it when small."""
        head = self.head(length)
        self.head_sent = True
        if self.head_only:
            self.send(head, "uwsgi_response_write_headers_do")
            return
        n = len(data)
        if self.chunked and n:
            data = b"%x\r\n%s\r\n" % (n, data)
        if len(data) <= 262144:
            if self.write_errors:
                raise _WriteError
            try:  # send() inline: this is every small answer
                self.sock.sendall(head + data)
            except OSError as exc:
                self.failed(exc, "uwsgi_response_writev_headers_and_body_do")
                raise _WriteError from None
        else:
            self.send(head, "uwsgi_response_write_headers_do")
            self.send(data)
        self.body_bytes += n
        self.chunks += 1

    def finish(self) -> None:
        """End a chunked body."""
        if self.chunked:
            self.send(b"0\r\n\r\n")

    def write(self, data: bytes) -> None:
        """The WSGI ``write`` callable."""
        try:
            if not self.head_sent:
                self.send_head_and(data, None)
            elif not self.head_only:
                self.send_body(data)
        except _WriteError:
            if not self.settings.disable_write_exception:
                raise OSError("write error") from None


def _response_type(settings: WorkerSettings) -> type[_Response]:
    """The response class of one worker: what comes from its settings (the extra headers,
    http-auto-chunked, the settings) is a class value, so making one per request sets only
    what the request decides."""

    class WorkerResponse(_Response):
        extra = settings.add_headers
        auto_chunked = settings.auto_chunked

        def __init__(self, sock: socket.socket, protocol: str, keep: bool, head_only: bool, env: dict,
                     http: bool) -> None:
            self.sock = sock
            self.protocol = protocol
            self.keep = keep
            self.head_only = head_only
            self.env = env
            if http:
                self.http = True

    WorkerResponse.settings = settings
    return WorkerResponse


class Worker:
    def __init__(self, wid: int, sockets: list[ListenSocket], apps: AppTable, board: Scoreboard,
                 settings: WorkerSettings) -> None:
        self.wid = wid
        self.sockets = sockets
        self.by_fd = {ls.fileno(): ls for ls in sockets}
        self.listeners = {fd: _Listener(ls, settings.hostname) for fd, ls in self.by_fd.items()}
        self.apps = apps
        self.board = board
        self.slot = board.workers[wid]
        self.s = settings
        self.pid = os.getpid()
        self.stopping = False
        self.reason = ""
        self.wake_r, self.wake_w = os.pipe()
        self.sig_r = -1  # see run()
        self.spawned_at = time.monotonic()
        self.lifetime = (settings.max_worker_lifetime + (wid - 1) * settings.max_worker_lifetime_delta
                         if settings.max_worker_lifetime else 0)
        self.base_env = {
            "wsgi.version": (1, 0),
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": settings.threads > 1,
            "wsgi.multiprocess": settings.processes > 1,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "uwsgi.version": settings.version,
            "uwsgi.node": settings.hostname.encode(),
        }
        if not settings.file_wrapper:
            del self.base_env["wsgi.file_wrapper"]
        # what _run adds to the environ of a plain HTTP request (no body; no HTTPS or
        # UWSGI_SCHEME variable can come from its header fields), in _run's order: the C head
        # parser adds it all at once
        self.plain_env = {**self.base_env, "wsgi.url_scheme": "http", "wsgi.input": _NO_BODY}
        self.lock = threading.Lock()
        ncores = max(settings.threads, settings.gevent)
        self.cslots = [self.slot.cores[c] for c in range(ncores)]
        self.counters = request_book(board, wid, ncores)  # begin()/done() of every request
        self.instance = board.instance
        self.vars_map, self.vars_offsets = board.vars_slots(wid)
        self.wait_write: Any = None  # how to wait for a non-blocking socket (the gevent loop's)
        self.loyal = False  # this worker saw the instance loyal (byte 17 sent)
        self.log_silent = settings.reqlog.silent
        self.next_beat = 0.0
        self.offload = Offloader(settings.offload_threads, struct.unpack("ll", settings.timeval)[0]) \
            if settings.offload_threads else None
        #: other fds the loop watches (uWSGI signal pipes): fd -> what to call when readable
        self.watch: dict[int, Any] = {}
        # what the request path decides from the settings alone, decided here once (the
        # settings are final when the worker is made)
        self.resp_type = _response_type(settings)
        self.current = current_request_mod.current  # the request in progress (see run())
        self.req_lock = self.lock if settings.threads > 1 else None  # one thread: no one to wait for
        #: something to check after each request (reaper, max-requests, reload-on-rss/as, lifetime)
        self.after_checks = bool(settings.reaper or settings.max_requests or settings.reload_on_rss
                                 or settings.reload_on_as or self.lifetime)

    # --- lifecycle -------------------------------------------------------------------------

    def stop(self, reason: str = "") -> None:
        """Finish the requests in flight, then exit."""
        if not self.stopping:
            self.stopping = True
            self.reason = reason
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.stop("graceful")

    def _on_end(self, signum: int, frame: Any) -> None:
        os._exit(END_CODE)

    def run(self) -> int:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGINT, self._on_end)
        signal.signal(signal.SIGTERM, self._on_end)
        signal.signal(signal.SIGQUIT, self._on_end)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        if not self.s.gevent:
            # a signal caught just before the main thread enters epoll_wait() would only be
            # handled once something else wakes it (for ever when idle): python's C-level
            # handler writes to this pipe, which core 0 polls, so the handler always runs
            self.sig_r, sig_w = os.pipe()
            os.set_blocking(self.sig_r, False)
            os.set_blocking(sig_w, False)
            signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
        self.slot.pid = self.pid
        self.slot.accepting = 1
        if self.wid == 1 and self.s.emperor_link is not None:
            if not self.s.emperor_link.accepting():
                log("the emperor is gone: stopping")
                return 0
        if self.s.on_accepting is not None:
            self.s.on_accepting(self.wid)
        if self.s.threads <= 1 and not self.s.gevent:  # one request at a time in this process
            self.current = current_request_mod.one_at_a_time()
        if self.s.gevent:
            from vassal import gevent_loop

            gevent_loop.run(self)
        else:
            threads = [threading.Thread(target=self._loop, args=(core,), daemon=True, name=f"core {core}")
                       for core in range(1, self.s.threads)]
            for t in threads:
                t.start()
            self._loop(0)
            for t in threads:
                t.join()
        if self.offload is not None:
            self.offload.shutdown(time.monotonic() + self.s.reload_mercy)
        if self.reason == "graceful":
            # uWSGI's worker says so in its SIGHUP handler; ours only records the signal
            log(f"Gracefully killing worker {self.wid} (pid: {self.pid})...")
        elif self.reason == "max-requests":
            log(f"...The work of process {self.pid} is done. Seeya!")
        return 0

    def _beat(self, now: float) -> None:
        """Byte 26 to the emperor when due (uwsgi_heartbeat(): one per process, whichever
        thread is in its accept loop; a single byte, so workers sharing the fd never mix)."""
        if now >= self.next_beat:
            self.next_beat = now + self.s.heartbeat
            if not self.s.emperor_link.heartbeat():
                log(f"worker {self.wid}: cannot send the heartbeat: the emperor is gone")
                self.next_beat = float("inf")

    # --- the accept loop -------------------------------------------------------------------

    def _loop(self, core: int) -> None:
        ep = select.epoll()
        for fd in self.by_fd:
            ep.register(fd, _EPOLLIN | _EXCL)
        ep.register(self.wake_r, _EPOLLIN)
        sig = self.sig_r if core == 0 else -1  # python runs signal handlers in the main thread
        if sig >= 0:
            ep.register(sig, _EPOLLIN)
        watch = self.watch
        for fd in watch:
            ep.register(fd, _EPOLLIN | _EXCL)
        conns: dict[int, _Conn] = {}
        heads: dict[int, float] = {}  # fd -> deadline for its head, in deadline order
        idle: dict[int, float] = {}  # fd -> parked since, oldest first
        listeners = self.listeners
        wake = self.wake_r
        s = self.s
        head_timeout = s.head_timeout
        ka_timeout = s.keepalive_timeout
        beat = s.heartbeat if s.emperor_link is not None else 0
        readable = self._readable

        def drop(fd: int) -> None:
            heads.pop(fd, None)
            idle.pop(fd, None)
            c = conns.pop(fd, None)
            if c is not None:
                c.sock.close()

        try:
            while not self.stopping:
                now = _monotonic()
                if beat:
                    self._beat(now)
                    if self.next_beat == float("inf"):
                        beat = 0
                timeout = -1.0
                if heads:
                    timeout = max(0.0, next(iter(heads.values())) - now)
                if idle:
                    wait = max(0.0, next(iter(idle.values())) + ka_timeout - now)
                    timeout = wait if timeout < 0 else min(timeout, wait)
                if beat:
                    wait = max(0.0, self.next_beat - now)
                    timeout = wait if timeout < 0 else min(timeout, wait)
                try:
                    events = ep.poll(timeout)
                except InterruptedError:
                    continue
                for fd, _ev in events:
                    conn = conns.get(fd)
                    if conn is not None:  # the usual event: a parked connection has bytes
                        if self.stopping:
                            break
                        state = readable(conn, core)
                        if state == IDLE:
                            if heads:
                                heads.pop(fd, None)
                            idle.pop(fd, None)  # to the end: the order is by time parked
                            idle[fd] = _monotonic()
                        elif state == HEAD:
                            if fd not in heads:
                                idle.pop(fd, None)
                                heads[fd] = _monotonic() + head_timeout
                        elif state == CLOSE:
                            drop(fd)
                        continue
                    if fd == wake or self.stopping:
                        break
                    if fd == sig:
                        _drain(sig)  # the handler runs at the next bytecode: see run()
                        continue
                    listener = listeners.get(fd)
                    if listener is not None:
                        conn = self._accept(listener)
                        if conn is None:
                            hook = watch.get(fd)
                            if hook is not None:
                                hook()
                            continue
                        since = _monotonic()
                        # the first request is usually there already (TCP_DEFER_ACCEPT): serve
                        # it before paying for a place in the epoll set
                        state = readable(conn, core)
                        if state == CLOSE:
                            conn.sock.close()
                            continue
                        fd = conn.fd
                        if len(conns) >= s.max_parked:
                            # out of room: the longest-idle (else the slowest) connection goes
                            drop(next(iter(idle)) if idle else next(iter(heads)))
                        conns[fd] = conn
                        ep.register(fd, _EPOLLIN)
                        if state == IDLE:
                            idle[fd] = _monotonic()
                        else:  # the head deadline counts from the accept when nothing came yet
                            heads[fd] = (since if state == STAY else _monotonic()) + head_timeout
                        continue
                    hook = watch.get(fd)
                    if hook is not None:
                        hook()
                if heads or idle:
                    now = _monotonic()
                    while heads:
                        fd, deadline = next(iter(heads.items()))
                        if deadline > now:
                            break
                        self._head_timeout(conns[fd])
                        drop(fd)
                    limit = now - ka_timeout
                    while idle:
                        fd, since = next(iter(idle.items()))
                        if since > limit:
                            break
                        drop(fd)
        finally:
            for c in conns.values():
                c.sock.close()
            ep.close()

    def _accept(self, listener: _Listener) -> _Conn | None:
        try:
            cfd, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log(f"accept(): {os.strerror(exc.errno)}")
                time.sleep(0.1)
            return None
        # the C socket type: the connection only needs its C methods (recv, send, sendall,
        # fileno, setsockopt, shutdown, close), and socket.socket's Python __init__ and close()
        # cost more than the rest of the accept
        sock = _socket_t(listener.family, _SOCK_STREAM, 0, cfd)
        if listener.unix:
            # unlike TCP, AF_UNIX does not copy timeouts to accepted sockets
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self.s.timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self.s.timeval)
        return _Conn(sock, listener.ls, addr, "", listener)

    def _head_timeout(self, conn: _Conn) -> None:
        """A head that did not arrive in time: 408 if it had started, then the close."""
        if conn.reader.buf:
            log(f"request head from {conn.addr} not complete within {self.s.head_timeout:g} seconds: "
                "closing the connection")
            if conn.ls.proto == "http":
                try:
                    conn.sock.send(H.error_response(408), socket.MSG_DONTWAIT)
                except OSError:
                    pass

    def _readable(self, conn: _Conn, core: int) -> int:
        """Read what epoll says is there (never blocking), then serve what is complete."""
        reader = conn.reader
        try:  # at most 16 KiB (a head or a few pipelined ones; epoll says again if more is
            # there): CPython allocates the whole size before each recv
            data = conn.sock.recv(16384, _DONTWAIT)
        except BlockingIOError:
            return STAY
        except OSError:
            return CLOSE
        if not data:
            return CLOSE
        reader.buf = reader.buf + data if reader.buf else data
        # then serve every complete request buffered (here, not in a function of its own: a
        # call per request saved)
        try:
            if conn.ls.proto == "http":
                s = self.s
                limit = s.buffer_size
                while True:
                    buf = reader.buf
                    end = buf.find(b"\r\n\r\n") + 4
                    if 4 < end <= limit and buf[0] != 13:  # take_head()'s usual case, without its call
                        head = buf[:end]
                        reader.buf = buf[end:]
                    else:  # no whole head yet, one too large, CRLFs before it
                        head = reader.take_head(limit)
                    if head is None:
                        return HEAD if reader.buf else IDLE
                    fast = None
                    if _fast_parse is not None and not s.proxy_protocol:
                        # the plain case (no body, no upgrade) parsed in C, with the worker's
                        # plain_env added and the stats server's record of the request
                        # written (see _headparse.c); None: _http_request() decides
                        fast = _fast_parse(head, s.hostname, conn.port, conn.addr, s.max_headers, self.plain_env,
                                           self.vars_map, self.vars_offsets[core], conn.vars_prefix, _VARS_MAX)
                    if fast is not None:
                        env, keep_alive, written = fast
                        if self.log_silent:
                            nvars = pktsize = 0
                        else:  # the request's own variables, as a uwsgi packet would carry them
                            nvars, pktsize = H.packet_size(env, len(env) - len(self.plain_env))
                        if not self._run(conn.sock, env, _NO_BODY, s.keepalive and keep_alive, nvars, pktsize,
                                         core, _VARS_WRITTEN if written else None, True, True) or self.stopping:
                            return CLOSE
                    elif not self._http_request(conn, head, core) or self.stopping:
                        return CLOSE
                    if not reader.buf:  # the usual case: nothing pipelined behind it
                        return IDLE
            got = U.take_packet(reader, self.s.buffer_size)
            if got is None:
                return HEAD
            self._uwsgi_request(conn, got, core)
            return CLOSE
        except H.BadRequest as exc:
            if exc.status:  # 0: drop the connection without an answer
                try:
                    conn.sock.sendall(H.error_response(exc.status))
                except OSError:
                    pass
                log(f"invalid request from {conn.addr}: {exc}")
            else:
                log(str(exc))
            return CLOSE
        except OSError:
            return CLOSE
        except Exception:  # noqa: BLE001 - a bug on one connection must not take the worker down
            log(f"error serving a connection from {conn.addr}:")
            print_app_exception()
            return CLOSE

    # --- protocols -------------------------------------------------------------------------

    def _http_request(self, conn: _Conn, head: bytes, core: int) -> bool:
        """One HTTP request; True when the connection stays open for the next."""
        s = self.s
        if s.proxy_protocol and conn.proxied is None:  # the first head may start with a PROXY line
            head, conn.proxied = proxy.take_line(head) if head[:6] == proxy.PREFIX else (head, None)
            conn.proxied = conn.proxied or {}
        req = H.parse_request(head, s.hostname, conn.port, conn.addr, s.max_headers, conn.parsed)
        conn.parsed = req if req.reusable else None
        env = req.env
        nvars, pktsize = (0, 0) if self.log_silent else H.packet_size(env)
        if conn.proxied:
            env.update(conn.proxied)
        if req.length or req.chunked:
            body: Any = req.body_reader(conn.reader, s.limit_post)
            if env["SERVER_PROTOCOL"] == "HTTP/1.1":
                expect = env.get("HTTP_EXPECT")
                if expect and expect.lower() == "100-continue" and not body.complete:
                    conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if s.post_buffering:
                body = self._buffer_body(body, env)
                if body is None:
                    return False
        else:
            body = _NO_BODY
        raw = conn.vars_prefix + head
        keep = self._run(conn.sock, env, body, s.keepalive and req.keep_alive, nvars, pktsize,
                         core, raw if len(raw) < _VARS_MAX else None, True)
        if not keep:
            return False
        if body is _NO_BODY or (type(body) is _Body and body.remaining <= 0):
            return True
        return body.drain(H.DRAIN_LIMIT) and not body.overrun

    def _uwsgi_request(self, conn: _Conn, got: tuple, core: int) -> None:
        _m1, _m2, env, nvars, pktsize = got
        env.setdefault("SCRIPT_NAME", "")
        env.setdefault("PATH_INFO", "")
        env.setdefault("QUERY_STRING", "")
        env.setdefault("REQUEST_METHOD", "GET")
        body: Any = H.request_body(conn.reader, env)
        if self.s.limit_post and body.remaining > self.s.limit_post:
            raise H.BadRequest(f"request body larger than limit-post ({self.s.limit_post})", 413)
        if self.s.post_buffering and body.remaining:
            body = self._buffer_body(body, env)
            if body is None:
                return
        self._run(conn.sock, env, body, False, nvars, pktsize, core)

    def _buffer_body(self, body: H.Body, env: dict) -> H.BufferedBody | None:
        """post-buffering: the whole body before the app runs; None (request dropped, as
        uWSGI does) when the client goes away or stalls on the way, logged as uWSGI logs it."""
        cl = int(env.get("CONTENT_LENGTH") or 0)
        threshold = self.s.post_buffering
        try:
            return H.buffer_body(body, threshold, self.s.post_buffering_bufsize)
        except OSError as exc:
            left = max(0, cl - getattr(exc, "received", 0))
            # uWSGI's figures: the size of the read that failed, and the body as not consumed
            want = left if cl < threshold else min(left, threshold)
            if isinstance(exc, (TimeoutError, BlockingIOError)):
                log(f"[uwsgi-body-read] Timeout reading {want} bytes. Content-Length: {cl} consumed: 0 "
                    f"left: {cl}")
            else:
                reason = exc.strerror if exc.errno else "Client closed connection"
                log(f"[uwsgi-body-read] Error reading {want} bytes. Content-Length: {cl} consumed: 0 "
                    f"left: {cl} message: {reason}")
        return None

    # --- running the app -------------------------------------------------------------------

    def _run(self, sock: socket.socket, env: dict, body: Any, keep: bool, nvars: int, pktsize: int,
             core: int, raw_vars: bytes | None = None, http: bool = False, based: bool = False) -> bool:
        """Run the app for one request and answer it; True when the connection can go on.
        ``based``: the environ already holds plain_env (the C head parser added it)."""
        t0 = _monotonic()  # the scoreboard's clock: harakiri and idle are intervals
        slot = self.slot
        cslot = self.cslots[core]
        counters = self.counters
        lock = self.req_lock
        if lock is None:
            counters.begin(core, t0)  # in_request, busy_cores, status
        else:
            with lock:  # the threads of this worker share busy_cores
                counters.begin(core, t0)
        # what only the request log wants (the wall clock: its line shows wall time, as uWSGI's)
        silent = self.log_silent
        current = self.current
        if not silent:
            wall0 = _time()
            werr0 = cslot.write_errors
        # the vars of the request in progress, for the stats server (uWSGI shows them); the
        # caller keeps raw_vars under VARS_SIZE - 5 bytes
        if raw_vars is _VARS_WRITTEN:
            pass  # the C head parser wrote them
        elif raw_vars is not None:
            off = self.vars_offsets[core]
            n = len(raw_vars)
            self.vars_map[off:off + 5 + n] = (n | _VARS_HTTP_BITS).to_bytes(5, "little") + raw_vars
        else:
            self.board.set_vars(self.wid, core, "\0".join([k + "=" + v for k, v in env.items()]).encode(
                "latin-1", "replace"))
        if not based:  # (based: the C head parser added plain_env: see __init__)
            env.update(self.base_env)
            scheme = env.get("UWSGI_SCHEME")
            if not scheme:
                https = env.get("HTTPS")
                scheme = "https" if https and https.lower() in ("on", "1") else "http"
            env["wsgi.url_scheme"] = scheme
            env["wsgi.input"] = body
        s = self.s
        if keep and s.max_requests and self.counters.delta + 1 >= s.max_requests:
            keep = False  # the worker recycles after this one: say so in the answer
        resp = self.resp_type(sock, env.get("SERVER_PROTOCOL") or "HTTP/1.0", keep,
                              env.get("REQUEST_METHOD") == "HEAD", env, http)
        # one app at the root: an HTTP request cannot name another (its headers are HTTP_*)
        app = self.apps.only if http else None
        if app is None:
            app = self.apps.select(env, s.manage_script_name)
        failed = False
        result = None
        try:
            route = None
            if s.router is not None:
                route = s.router.request(env, resp, self)
                if route.answered or route.reselect:
                    app = None if route.answered else self.apps.select(env, False)
            if route is not None and route.answered:
                pass  # the request routing rules answered (or dropped) it
            elif s.static is not None and self._serve_static(env, sock, resp, cslot, route):
                app = None  # a static file answered: not a request of the app
            elif app is None:
                log("--- no python application found, check your startup logs for errors ---")
                resp.status = "500 Internal Server Error"
                resp.headers = [("Connection", "close"), ("Content-Type", "text/plain")]  # uwsgi_500's
                resp.keep = False
                resp.send_head_and(b"Internal Server Error", None)
            else:
                current.resp = resp  # for uwsgi.sendfile & co.
                if s.profiler is not None:
                    s.profiler.on()
                result = app.callable(env, resp.start_response)
                if type(result) in _LIST_TYPES:
                    self._send_list(resp, result)
                elif isinstance(result, FileWrapper) and result.fileno() is not None:
                    self._send_file(resp, result)
                else:
                    for chunk in result:
                        if not resp.head_sent:
                            resp.send_head_and(_as_bytes(chunk), None)
                        elif chunk and not resp.head_only:
                            resp.send_body(_as_bytes(chunk))
                    if not resp.head_sent:
                        resp.send_head_and(b"", 0)
                    resp.finish()
        except _WriteError:
            cslot.write_errors += 1
            if not s.disable_write_exception:
                failed = True
                log("OSError: write error")
        except Exception as exc:  # noqa: BLE001 - any app error becomes a 500
            failed = True
            resp.keep = False
            if resp.write_errors:
                cslot.write_errors += 1
            print_app_exception()
            if s.reload_on_exception is not None and s.reload_on_exception(exc):
                _flush_and_exit(EXCEPTION_CODE)  # as uWSGI: no response, the master respawns us
            if not resp.head_sent:
                try:
                    err = b"Internal Server Error"
                    if s.catch_exceptions:
                        import traceback

                        err = traceback.format_exc().encode("utf-8", "replace")
                    resp.status = "500 Internal Server Error"
                    resp.headers = [("Content-Type", "text/plain")]
                    resp.send_head_and(err, len(err))
                except (_WriteError, TypeError):
                    pass
            del exc
        finally:
            current.resp = None
            if result is not None:
                close = getattr(result, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:  # noqa: BLE001
                        print_app_exception()
            if s.profiler is not None:
                s.profiler.off()
            if type(body) is _BufferedBody:
                body.close()
        t1 = _monotonic()
        rt = int((t1 - t0) * 1_000_000)
        # bookkeeping: one writer per field (this worker), read by the master; the lock only
        # matters between the threads of one worker
        if lock is not None:
            lock.acquire()
        try:
            if app is not None:
                app.requests += 1
                if failed:
                    app.exceptions += 1
                    slot.app_exceptions += 1
            if failed:
                slot.exceptions += 1
            delta = counters.done(core, t1, rt, resp.head_bytes + resp.body_bytes, app is not None)
        finally:
            if lock is not None:
                lock.release()
        self.instance.last_request_end = t1
        if not self.loyal:
            # byte 17 goes once per instance, from whichever worker completes a request first
            self.loyal = True
            inst = self.instance
            if not inst.loyal_sent and s.emperor_link is not None:
                inst.loyal_sent = 1
                s.emperor_link.loyal()
        if silent:
            if logmod.logvars_used:
                take_logvars()  # what the app set for the log line goes with the request
        else:
            status = resp.status or "500"
            s.reqlog.done(env, int(status[:3]) if status[:3].isdigit() else 0, resp.body_bytes,
                          resp.head_bytes, resp.nheaders, resp.chunks or 1, resp.via, resp.protocol,
                          wall0, wall0 + (t1 - t0), app.id if app is not None else -1,
                          app.requests if app is not None else -1, self.board.total_requests(), nvars,
                          pktsize, core, self.wid, self.pid, cslot.write_errors - werr0)
        if resp.route is not None:
            resp.route.final()
        if self.after_checks:
            self._after_request(delta, t1)
        return resp.keep and resp.has_length and not failed

    def _after_request(self, delta: int, t1: float) -> None:
        """What some settings ask after each request: reap the app's children, recycle the
        worker (max-requests, reload-on-rss/as, max-worker-lifetime)."""
        s = self.s
        if s.reaper:
            _reap_children()
        if s.max_requests and delta >= s.max_requests:
            self.stop("max-requests")
        elif s.reload_on_rss and _rss() > s.reload_on_rss:
            log(f"worker {self.wid} (pid: {self.pid}) RSS above reload-on-rss: recycling it")
            self.stop("reload-on-rss")
        elif s.reload_on_as and _memory()[1] > s.reload_on_as:
            log(f"worker {self.wid} (pid: {self.pid}) address space above reload-on-as: recycling it")
            self.stop("reload-on-as")
        elif self.lifetime and t1 - self.spawned_at > self.lifetime:
            log(f"worker {self.wid} lifetime reached, it was running for {int(t1 - self.spawned_at)} second(s)")
            self.stop("lifetime")

    def _serve_static(self, env: dict, sock: socket.socket, resp: _Response, cslot: Any, route: Any = None) -> bool:
        offload = None if route is not None and route.no_offload else self.offload
        reply = self.s.static.serve(env, sock, resp.keep, self.s.add_headers, offload, route)
        if reply is None:
            return False
        resp.status, resp.head_bytes, resp.body_bytes = reply.status, reply.head_bytes, reply.body_bytes
        resp.nheaders, resp.keep, resp.via = reply.nheaders, reply.keep, reply.via
        resp.head_sent = resp.has_length = True
        cslot.static_requests += 1
        if reply.via == "offload":
            cslot.offloaded_requests += 1
        return True

    def _send_list(self, resp: _Response, result: Any) -> None:
        if len(result) == 1:
            data = result[0]
            if type(data) is not bytes:
                data = _as_bytes(data)
        else:
            data = b"".join([_as_bytes(x) for x in result])
        if resp.head_sent:  # the app used write() and also returned a body
            if not resp.head_only:
                resp.send_body(data)
                resp.finish()
            return
        resp.send_head_and(data, len(data))

    def _send_file(self, resp: _Response, wrapper: FileWrapper) -> None:
        fd = wrapper.fileno()
        assert fd is not None
        try:
            st = os.fstat(fd)
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            size = st.st_size - offset if st.st_size else None
        except OSError:
            size, offset = None, 0
        if not resp.head_sent:
            resp.send(resp.head(size), "uwsgi_response_write_headers_do")
            resp.head_sent = True
        if resp.head_only:
            return
        if size is None:
            for chunk in wrapper:
                resp.send_body(chunk)
            resp.finish()
            return
        if self.offload is not None and size:
            # the offloader gets its own handle on the file: the app closes its own
            resp.body_bytes += size
            resp.chunks += 1
            if self.offload.send(resp.sock, os.dup(fd), offset, size):
                resp.via = "sendfile"
            else:
                resp.keep = False
                resp.via = "offload"
                self.slot.cores[_core_id()].offloaded_requests += 1
            return
        sent = 0
        out = resp.sock.fileno()
        try:
            while sent < size:
                try:
                    n = send_chunk(out, fd, offset + sent, size - sent)
                except BlockingIOError:  # a non-blocking socket (the gevent loop): wait for room
                    if self.wait_write is None:
                        raise
                    self.wait_write(out, timeout=self.s.socket_timeout)
                    continue
                if n == 0:  # the file shrank under us
                    break
                sent += n
        except OSError as exc:
            resp.failed(exc, "uwsgi_response_sendfile_do")
            raise _WriteError from None
        finally:
            resp.body_bytes += sent
            resp.chunks += 1
            resp.via = "sendfile"


_DEFAULT_SETTINGS = WorkerSettings()


def _reap_children() -> None:
    """``reaper``: collect every exited child of this worker (uWSGI's waitpid(-1) loop)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _core_id() -> int:
    name = threading.current_thread().name
    return int(name[5:]) if name.startswith("core ") else 0


def _as_bytes(x: Any) -> bytes:
    if type(x) is bytes:
        return x
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"the app returned a {type(x).__name__} in its body (bytes expected)")


def _addr_text(addr: Any) -> str:
    if isinstance(addr, tuple):
        host = addr[0]
        if host.startswith("::ffff:") and "." in host:
            return host[7:]
        return host
    return ""


def _where(env: dict) -> str:
    return f"{env.get('REQUEST_METHOD', '')} {env.get('REQUEST_URI', '')} ({env.get('REMOTE_ADDR', '')})"


def _memory() -> tuple[int, int]:
    """(rss, vsz) of this process in bytes."""
    try:
        with open("/proc/self/statm", "rb") as f:
            parts = f.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        return int(parts[1]) * page, int(parts[0]) * page
    except (OSError, ValueError, IndexError):
        return 0, 0


def _rss() -> int:
    return _memory()[0]


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except OSError:
        pass


def _flush_and_exit(code: int) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    os._exit(code)


def worker_main(worker: Worker) -> None:
    """Entry point in the forked child: never returns."""
    code = 0
    try:
        code = worker.run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001
        print_app_exception()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os._exit(code)
