"""A worker process: accept connections, parse requests (HTTP or uwsgi), run the app, log.

Each thread of a worker (``threads``; uWSGI calls them cores) has its own epoll set holding
the shared listening sockets — registered with EPOLLEXCLUSIVE so one connection wakes one
thread of one worker — plus that thread's idle keep-alive connections and a wake-up pipe the
worker closes/writes to stop every thread at once. A request is served start to end by the
thread that read it; a graceful stop (SIGHUP from the master, max-requests, ...) lets every
thread finish its current request before the process exits.

Sockets are blocking with kernel timeouts (SO_RCVTIMEO/SO_SNDTIMEO = ``socket-timeout``,
set on the listening socket and inherited by accepted ones), so the request path makes no
extra poll() per recv.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from vassal.api.request import current as current_request
from vassal.log import log
from vassal.logs.request import RequestLog
from vassal.protocols import http as H
from vassal.protocols import uwsgi as U
from vassal.protocols.offload import Offloader, send_all
from vassal.scoreboard import STATUS_BUSY, STATUS_IDLE, Scoreboard
from vassal.sockets import ListenSocket
from vassal.wsgi import AppTable, ErrorStream, FileWrapper, print_app_exception

END_CODE = 30

_EPOLLIN = select.EPOLLIN
_EXCL = getattr(select, "EPOLLEXCLUSIVE", 0)
_LIST_TYPES = (list, tuple)


@dataclass
class WorkerSettings:
    """Everything the request path needs, read once from the config."""

    threads: int = 1
    processes: int = 1
    max_requests: int = 0
    max_worker_lifetime: int = 0
    reload_on_rss: int = 0  # bytes
    buffer_size: int = 4096
    keepalive: bool = True
    keepalive_timeout: float = 60.0
    limit_post: int = 0
    manage_script_name: bool = False
    add_headers: str = ""  # pre-rendered "Name: value\r\n" lines
    hostname: str = "localhost"
    version: bytes = b""
    catch_exceptions: bool = False
    emperor_link: Any = None  # VassalLink or None
    static: Any = None  # vassal.protocols.static.StaticFiles or None
    reqlog: Any = field(default_factory=RequestLog)  # vassal.logs.request.RequestLog
    offload_threads: int = 0
    reload_mercy: float = 60.0  # worker-reload-mercy: how long offloaded transfers may finish
    timeval: bytes = b"\x04" + b"\x00" * 15  # socket-timeout as a struct timeval (4 s)
    extra: dict = field(default_factory=dict)


class _Response:
    """start_response/write for one request."""

    __slots__ = ("sock", "protocol", "status", "headers", "head_sent", "body_bytes", "head_bytes",
                 "chunks", "keep", "has_length", "extra", "nheaders", "head_only", "via")

    def __init__(self, sock: socket.socket, protocol: str, keep: bool, extra: str, head_only: bool = False) -> None:
        self.sock = sock
        self.protocol = protocol
        self.status: str | None = None
        self.headers: list = []
        self.head_sent = False
        self.body_bytes = 0
        self.head_bytes = 0
        self.chunks = 0
        self.keep = keep
        self.has_length = False
        self.extra = extra
        self.nheaders = 0
        self.head_only = head_only  # a HEAD request: the body the app returns is not sent
        self.via = ""  # "sendfile"/"offload": how the body went (the request log says so)

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
        if self.status is None:
            raise RuntimeError("the app did not call start_response")
        lines = [self.protocol, " ", self.status, "\r\n"]
        has_length = False
        n = 0
        for k, v in self.headers:
            if len(k) == 14 and k.lower() == "content-length":
                has_length = True
            elif len(k) == 10 and k.lower() == "connection" and "close" in v.lower():
                self.keep = False
            lines += (k, ": ", v, "\r\n")
            n += 1
        self.nheaders = n
        if self.extra:
            lines.append(self.extra)
        if not has_length and self.keep:
            code = self.status[:3]
            if code in ("204", "304") or code[0] == "1":
                has_length = True  # no body by definition, and no Content-Length allowed
            elif length is not None:
                lines += ("Content-Length: ", str(length), "\r\n")
                has_length = True
        lines.append("\r\n")
        self.has_length = has_length
        try:
            data = "".join(lines).encode("latin-1")
        except (UnicodeEncodeError, TypeError) as exc:
            raise TypeError(f"invalid response status or header: {exc}") from None
        self.head_bytes = len(data)
        return data

    def write(self, data: bytes) -> None:
        if self.head_only:
            if not self.head_sent:
                self.sock.sendall(self.head(None))
                self.head_sent = True
            return
        if not self.head_sent:
            head = self.head(None)
            self.head_sent = True
            self.sock.sendall(head + data if len(data) < 65536 else head)
            if len(data) >= 65536:
                self.sock.sendall(data)
        elif data:
            self.sock.sendall(data)
        self.body_bytes += len(data)
        self.chunks += 1


class Worker:
    def __init__(self, wid: int, sockets: list[ListenSocket], apps: AppTable, board: Scoreboard,
                 settings: WorkerSettings) -> None:
        self.wid = wid
        self.sockets = sockets
        self.by_fd = {ls.fileno(): ls for ls in sockets}
        self.apps = apps
        self.board = board
        self.slot = board.workers[wid]
        self.s = settings
        self.pid = os.getpid()
        self.stopping = False
        self.reason = ""
        self.wake_r, self.wake_w = os.pipe()
        self.spawned_at = time.monotonic()
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
        self.lock = threading.Lock()
        self.offload = Offloader(settings.offload_threads, struct.unpack("ll", settings.timeval)[0]) \
            if settings.offload_threads else None
        #: other fds the loop watches (uWSGI signal pipes): fd -> what to call when readable
        self.watch: dict[int, Any] = {}

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
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
        self.slot.pid = self.pid
        self.slot.accepting = 1
        if self.wid == 1 and self.s.emperor_link is not None:
            if not self.s.emperor_link.accepting():
                log("the emperor is gone: stopping")
                return 0
        threads = [threading.Thread(target=self._loop, args=(core,), daemon=True, name=f"core {core}")
                   for core in range(1, self.s.threads)]
        for t in threads:
            t.start()
        self._loop(0)
        for t in threads:
            t.join()
        if self.offload is not None:
            self.offload.shutdown(time.monotonic() + self.s.reload_mercy)
        if self.reason == "max-requests":
            log(f"...The work of process {self.pid} is done. Seeya!")
        return 0

    # --- the accept loop -------------------------------------------------------------------

    def _loop(self, core: int) -> None:
        ep = select.epoll()
        for fd in self.by_fd:
            ep.register(fd, _EPOLLIN | _EXCL)
        ep.register(self.wake_r, _EPOLLIN)
        watch = self.watch
        for fd in watch:
            ep.register(fd, _EPOLLIN | _EXCL)
        idle: dict[int, list] = {}  # fd -> [sock, reader, listen socket, addr, since]
        by_fd = self.by_fd
        wake = self.wake_r
        timeout = self.s.keepalive_timeout
        try:
            while not self.stopping:
                try:
                    events = ep.poll(1.0 if idle else -1)
                except InterruptedError:
                    continue
                for fd, _ev in events:
                    if fd == wake or self.stopping:
                        break
                    ls = by_fd.get(fd)
                    if ls is not None:
                        try:
                            cfd, addr = ls.sock._accept()
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError as exc:
                            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                                log(f"accept(): {os.strerror(exc.errno)}")
                                time.sleep(0.1)
                            continue
                        sock = socket.socket(ls.family, socket.SOCK_STREAM, 0, cfd)
                        if ls.family == socket.AF_UNIX:
                            # unlike TCP, AF_UNIX does not copy timeouts to accepted sockets
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self.s.timeval)
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self.s.timeval)
                        conn = [sock, H.Reader(sock), ls, addr, 0.0]
                    else:
                        conn = idle.pop(fd, None)
                        if conn is None:
                            hook = watch.get(fd)
                            if hook is not None:
                                hook()
                            continue
                        ep.unregister(fd)
                    if self._serve(conn, core):
                        conn[4] = time.monotonic()
                        idle[conn[0].fileno()] = conn
                        ep.register(conn[0], _EPOLLIN)
                    else:
                        conn[0].close()
                if idle:
                    limit = time.monotonic() - timeout
                    for fd in [fd for fd, c in idle.items() if c[4] < limit]:
                        ep.unregister(fd)
                        idle.pop(fd)[0].close()
        finally:
            for c in idle.values():
                c[0].close()
            ep.close()

    def _serve(self, conn: list, core: int) -> bool:
        """Serve requests on a connection while it has some buffered; True to keep it open."""
        sock, reader, ls = conn[0], conn[1], conn[2]
        http = ls.proto == "http"
        try:
            while True:
                keep = self._http_request(sock, reader, ls, conn[3], core) if http else \
                    self._uwsgi_request(sock, reader, ls, core)
                if not keep or self.stopping:
                    return False
                if not reader.buf:
                    return True
        except (BlockingIOError, TimeoutError, ConnectionError, H.BadRequest) as exc:
            if isinstance(exc, H.BadRequest):
                if exc.status:  # 0: drop the connection without an answer
                    try:
                        sock.sendall(H.error_response(exc.status))
                    except OSError:
                        pass
                    log(f"invalid request from {_addr_text(conn[3])}: {exc}")
                else:
                    log(str(exc))
            return False
        except OSError:
            return False

    # --- protocols -------------------------------------------------------------------------

    def _http_request(self, sock: socket.socket, reader: H.Reader, ls: ListenSocket, addr: Any,
                      core: int) -> bool:
        head = reader.read_until(b"\r\n\r\n", self.s.buffer_size)
        if head is None:
            return False
        while head.startswith(b"\r\n"):  # tolerate stray CRLFs between requests
            head = head[2:]
        if not head:
            return bool(reader.buf) or reader.fill()
        env, nvars, pktsize = H.parse_head(head, self.s.hostname, ls.server_port, _addr_text(addr))
        keep = self.s.keepalive and H.wants_keepalive(env)
        body = H.request_body(reader, env)
        if self.s.limit_post and body.remaining > self.s.limit_post:
            raise H.BadRequest(f"request body larger than limit-post ({self.s.limit_post})", 413)
        expect = env.get("HTTP_EXPECT")
        if expect and expect.lower() == "100-continue" and env["SERVER_PROTOCOL"] == "HTTP/1.1":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        keep = self._run(sock, env, body, keep, nvars, pktsize, core)
        return keep and body.drain(1 << 20)

    def _uwsgi_request(self, sock: socket.socket, reader: H.Reader, ls: ListenSocket, core: int) -> bool:
        got = U.read_request(reader, self.s.buffer_size)
        if got is None:
            return False
        _m1, _m2, env, nvars, pktsize = got
        env.setdefault("SCRIPT_NAME", "")
        env.setdefault("PATH_INFO", "")
        env.setdefault("QUERY_STRING", "")
        env.setdefault("REQUEST_METHOD", "GET")
        body = H.request_body(reader, env, chunked_ok=False)
        self._run(sock, env, body, False, nvars, pktsize, core)
        return False

    # --- running the app -------------------------------------------------------------------

    def _run(self, sock: socket.socket, env: dict, body: H.Body, keep: bool, nvars: int, pktsize: int,
             core: int) -> bool:
        t0 = time.monotonic()  # the scoreboard's clock: harakiri and idle are intervals
        wall0 = time.time()  # the request log shows wall time, as uWSGI's
        slot = self.slot
        cslot = slot.cores[core]
        cslot.in_request = t0
        werr0 = cslot.write_errors
        slot.busy_cores += 1
        slot.status = STATUS_BUSY
        # the vars of the request in progress, for the stats server (uWSGI shows them)
        self.board.set_vars(self.wid, core, "\0".join([k + "=" + v for k, v in env.items()]).encode(
            "latin-1", "replace"))
        env.update(self.base_env)
        https = env.get("HTTPS")
        env["wsgi.url_scheme"] = env.get("UWSGI_SCHEME") or ("https" if https and https.lower() in ("on", "1")
                                                              else "http")
        env["wsgi.input"] = body
        protocol = env.get("SERVER_PROTOCOL") or "HTTP/1.0"
        resp = _Response(sock, protocol, keep, self.s.add_headers, env.get("REQUEST_METHOD") == "HEAD")
        app = self.apps.select(env, self.s.manage_script_name)
        failed = False
        result = None
        try:
            if self.s.static is not None and self._serve_static(env, sock, resp, cslot):
                app = None  # a static file answered: not a request of the app
            elif app is None:
                log("--- no python application found, check your startup logs for errors ---")
                resp.status = "500 Internal Server Error"
                resp.headers = [("Content-Type", "text/plain")]
                resp.keep = False
                data = b"Internal Server Error"
                sock.sendall(resp.head(None) + data)
                resp.head_sent = True
                resp.body_bytes = len(data)
                resp.chunks = 1
            else:
                current_request.resp = resp  # for uwsgi.sendfile & co.
                result = app.callable(env, resp.start_response)
                if type(result) in _LIST_TYPES:
                    self._send_list(resp, result)
                elif isinstance(result, FileWrapper) and result.fileno() is not None:
                    self._send_file(resp, result)
                else:
                    for chunk in result:
                        if chunk:
                            resp.write(chunk)
                    if not resp.head_sent:
                        resp.write(b"")
        except (BrokenPipeError, ConnectionResetError, BlockingIOError, TimeoutError) as exc:
            resp.keep = False
            cslot.write_errors += 1
            log(f"uwsgi_response_write_body_do(): {exc.strerror or exc} [{_where(env)}]")
        except Exception as exc:  # noqa: BLE001 - any app error becomes a 500
            failed = True
            resp.keep = False
            print_app_exception()
            if not resp.head_sent:
                try:
                    err = b"Internal Server Error"
                    if self.s.catch_exceptions:
                        import traceback

                        err = traceback.format_exc().encode("utf-8", "replace")
                    resp.status = "500 Internal Server Error"
                    resp.headers = [("Content-Type", "text/plain")]
                    sock.sendall(resp.head(len(err)) + err)
                    resp.head_sent = True
                    resp.body_bytes = len(err)
                except OSError:
                    pass
            del exc
        finally:
            current_request.resp = None
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    print_app_exception()
        t1 = time.monotonic()
        rt = int((t1 - t0) * 1_000_000)
        # bookkeeping: one writer per field (this worker), read by the master
        with self.lock:
            slot.requests += 1
            slot.delta_requests += 1
            cslot.requests += 1
            slot.running_time += rt
            slot.avg_rt = slot.running_time // slot.requests
            slot.tx += resp.head_bytes + resp.body_bytes
            slot.last_request_end = t1
            if app is not None:
                app.requests += 1
                slot.app_requests += 1
                if failed:
                    app.exceptions += 1
                    slot.app_exceptions += 1
            if failed:
                slot.exceptions += 1
            slot.busy_cores -= 1
            if slot.busy_cores <= 0:
                slot.status = STATUS_IDLE
        cslot.in_request = 0.0
        inst = self.board.instance
        inst.last_request_end = t1
        if not inst.loyal_sent and self.s.emperor_link is not None:
            inst.loyal_sent = 1
            self.s.emperor_link.loyal()
        status = resp.status or "500"
        self.s.reqlog.done(env, int(status[:3]) if status[:3].isdigit() else 0, resp.body_bytes,
                           resp.head_bytes, resp.nheaders, resp.chunks or 1, resp.via, resp.protocol, wall0, wall0 + (t1 - t0),
                           app.id if app is not None else -1, app.requests if app is not None else -1,
                           self.board.total_requests(), nvars, pktsize,
                           0 if self.s.threads == 1 else _core_id(), self.wid, self.pid,
                           cslot.write_errors - werr0)
        if self.s.max_requests and slot.delta_requests >= self.s.max_requests:
            self.stop("max-requests")
        elif self.s.reload_on_rss and _rss() > self.s.reload_on_rss:
            log(f"worker {self.wid} (pid: {self.pid}) RSS above reload-on-rss: recycling it")
            self.stop("reload-on-rss")
        elif self.s.max_worker_lifetime and t1 - self.spawned_at > self.s.max_worker_lifetime:
            log(f"worker {self.wid} lifetime reached, it was running for {int(t1 - self.spawned_at)} second(s)")
            self.stop("lifetime")
        return resp.keep and resp.has_length and not failed

    def _serve_static(self, env: dict, sock: socket.socket, resp: _Response, cslot: Any) -> bool:
        reply = self.s.static.serve(env, sock, resp.keep, self.s.add_headers, self.offload)
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
            if data:
                resp.sock.sendall(data)
            resp.body_bytes += len(data)
            resp.chunks += 1
            return
        head = resp.head(len(data))
        resp.head_sent = True
        if resp.head_only:
            resp.sock.sendall(head)
            return
        if len(data) <= 262144:
            resp.sock.sendall(head + data)
        else:
            resp.sock.sendall(head)
            resp.sock.sendall(data)
        resp.body_bytes = len(data)
        resp.chunks = 1

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
            resp.sock.sendall(resp.head(size))
            resp.head_sent = True
        if resp.head_only:
            return
        if size is None:
            for chunk in wrapper:
                resp.write(chunk)
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
        sent = send_all(resp.sock.fileno(), fd, offset, size)
        resp.body_bytes += sent
        resp.chunks += 1
        resp.via = "sendfile"


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
