"""``stats-push``: the statsd, socket, file and mongodb stats pushers, driven by the master loop.

uWSGI runs its pushers in a thread of the master; here each ``stats-push`` value is a
``Service`` of the master's select loop, so nothing a pusher does may wait: UDP datagrams
are sent with non-blocking ``sendto`` (a full buffer or an unreachable host loses that
datagram, as UDP does), TCP exchanges (mongodb, carbon) are non-blocking connections the
loop writes and reads as they become ready, each with a deadline. An address that cannot
be reached therefore costs a log line, never the master's time.

Scheduling is uWSGI's ``uwsgi_stats_pusher_loop``: a pusher runs when its ``freq`` (else
``stats-pusher-default-freq``, 3 s) has passed since its last run, the first time at once;
a pusher whose push failed and that allows retries (carbon) runs again after its retry
delay, up to its maximum, with uWSGI's log lines.

Formats, from uWSGI's plugins:

- ``statsd:HOST:PORT[,PREFIX]``: one datagram per metric, ``PREFIX.NAME:VALUE|g`` for a
  gauge, ``|c`` for any other type (uWSGI sends a counter's running total with ``|c``);
- ``socket:HOST:PORT[,PREFIX]``: one datagram per metric, ``PREFIX.NAME TYPE VALUE``;
- ``file:path=FILE,separator=SEP,freq=N``: the stats JSON appended to FILE (default
  ``uwsgi.stats``), then SEP (default two newlines);
- ``mongodb:addr=HOST:PORT,collection=DB.COLL,freq=N``: the stats JSON inserted as one
  document (default ``127.0.0.1:27017``, ``uwsgi.statistics``), over MongoDB's wire
  protocol (OP_MSG, documents encoded by pymongo's ``bson``);
- ``carbon``: see ``vassal.metrics.carbon``.

PREFIX defaults to ``uwsgi``. A metric with ``reset_after_push`` goes back to its initial
value once pushed.

A host name that does not resolve at start-up (a DNS outage at boot) does not stop the
instance, as it does not stop uWSGI's: the pusher says so once, skips its pushes and asks
again every ``RESOLVE_RETRY`` seconds from a short-lived thread, so the loop never waits for
DNS.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from vassal.log import log
from vassal.metrics.table import MetricError, MetricTable, MetricType, parse_kv
from vassal.services import Service

#: name -> pusher class, filled below (carbon's is added by vassal.metrics.carbon)
PUSHERS: dict[str, type[Pusher]] = {}
MONGO_TIMEOUT = 4.0  # seconds for a whole insert (uWSGI: socket-timeout)


RESOLVE_RETRY = 30.0  # seconds between attempts to resolve a pusher's host name


def split_hostport(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT`` too) -> (host, port), or a MetricError naming ``what``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise MetricError(f"{what}: invalid address {text!r} (HOST:PORT)")
    return (host[1:-1] if host.startswith("[") and host.endswith("]") else host), int(port)


class Destination:
    """A pusher's ``HOST:PORT``: resolved at start-up when it can be; else looked up again
    off the master loop every ``RESOLVE_RETRY`` seconds, pushes skipped meanwhile."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.host, self.port = split_hostport(text, what)
        self.found: tuple[int, Any] | None = None
        self.error = ""
        self.failed_at = 0.0
        self.thread: threading.Thread | None = None
        self._lookup()
        if self.found is None:
            log(f"[stats-push] {what}: cannot resolve {self.host}: {self.error}; "
                f"pushes skipped until it resolves (asked again every {RESOLVE_RETRY:.0f} s)")

    def _lookup(self) -> None:
        try:
            family, _, _, _, addr = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as exc:
            self.error = getattr(exc, "strerror", None) or str(exc)
            self.failed_at = time.monotonic()
        else:
            self.found = (family, addr)

    def address(self, now: float) -> tuple[int, Any] | None:
        """(family, sockaddr), or None while the name does not resolve."""
        if self.found is not None:
            return self.found
        if (self.thread is None or not self.thread.is_alive()) and now - self.failed_at >= RESOLVE_RETRY:
            self.failed_at = now  # one lookup at a time, whatever it takes
            self.thread = threading.Thread(target=self._lookup, name=f"resolve {self.host}", daemon=True)
            self.thread.start()
        return None


def parse_hostport(text: str, what: str, *, resolve: bool = True) -> tuple[Any, ...]:
    """``HOST:PORT`` (``[V6]:PORT`` too) -> a socket address; resolved once, here, at start-up
    (the master loop never waits for DNS)."""
    host, port = split_hostport(text, what)
    flags = 0 if resolve else socket.AI_NUMERICHOST
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=flags)
    except socket.gaierror as exc:
        raise MetricError(f"{what}: cannot resolve {host}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    return (family, addr)


class Pusher(Service):
    """One destination. ``raw`` pushers send the metrics; the others the stats JSON."""

    name = "stats-push"
    raw = True

    def __init__(self, kind: str, arg: str, *, table: MetricTable | None, default_freq: int,
                 json_doc: Callable[[], bytes] | None) -> None:
        self.kind = kind
        self.arg = arg
        self.table = table
        self.default_freq = max(1, default_freq)
        self.json_doc = json_doc
        self.freq = 0
        self.last_run: float | None = None
        self.needs_retry = False
        self.retries = 0
        self.max_retries = 0
        self.retry_delay = 0
        self.next_retry = 0.0
        #: the instance stops or reloads: no scheduled push any more (the master waits for
        #: the ones in flight, and a push started then would keep it waiting for ever)
        self.stopped = False

    # --- scheduling (uWSGI's uwsgi_stats_pusher_loop) ---------------------------------------

    def next_due(self) -> float:
        if self.last_run is None:
            return 0.0
        due = self.last_run + (self.freq or self.default_freq)
        if self.needs_retry:
            due = min(due, self.next_retry)
        return due

    def tick(self, now: float) -> None:
        if self.stopped or now < self.next_due() or self.in_flight():
            return
        if self.needs_retry:
            self.retries += 1
        self.last_run = now
        self.push(now)

    def finished(self, now: float, failed: bool) -> None:
        """The outcome of a push (at once for UDP and files, later for TCP): retry logic."""
        self.needs_retry = failed and self.max_retries >= 0 and self.retry_delay > 0
        if self.needs_retry and self.max_retries > 0 and self.retries < self.max_retries:
            log(f"[uwsgi-stats-pusher] {self.kind} failed ({self.retries}), retry in {self.retry_delay}s")
            self.next_retry = now + self.retry_delay
        elif self.needs_retry and self.retries >= self.max_retries:
            log(f"[uwsgi-stats-pusher] {self.kind} failed and maximum number of retries was reached "
                f"({self.retries})")
            self.needs_retry = False
            self.retries = 0
        elif self.retries:
            log(f"[uwsgi-stats-pusher] retry succeeded for {self.kind}")
            self.retries = 0

    def in_flight(self) -> bool:
        return False

    def stopping(self, reload: bool) -> None:
        self.stopped = True

    def timeout(self, now: float) -> float | None:
        return None if self.stopped else max(0.0, self.next_due() - now)

    def push(self, now: float) -> None:
        raise NotImplementedError

    def after_push(self) -> None:
        """Metrics with ``reset_after_push`` go back to their initial value."""
        if self.table is None:
            return
        for m in self.table.metrics:
            if m.reset_after_push and m.type is not MetricType.ALIAS:
                self.table.store(m, m.initial_value)

    def in_worker(self, wid: int) -> None:
        self.close()

    def finish(self) -> None:
        self.close()

    def close(self) -> None:
        pass


class _Datagrams(Pusher):
    """statsd and socket: ``HOST:PORT[,PREFIX]``, one datagram per metric."""

    def __init__(self, kind: str, arg: str, **kw: Any) -> None:
        super().__init__(kind, arg, **kw)
        what = f"stats-push {kind}:{arg}"
        addr, _, prefix = arg.partition(",")
        self.prefix = prefix if _ else "uwsgi"
        self.dest = Destination(addr, what)
        self.sock: socket.socket | None = None  # made once the address is known
        self.closed = False
        self.errors_logged = 0.0

    def line(self, name: str, type_: MetricType, value: int) -> bytes:
        raise NotImplementedError

    def push(self, now: float) -> None:
        found = self.dest.address(now)
        if self.table is None or self.closed or found is None:
            return
        family, addr = found
        if self.sock is None:
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
        values = self.table.values
        error: OSError | None = None
        for m in self.table.metrics:
            try:
                self.sock.sendto(self.line(m.name, m.type, values[m.slot]), addr)
            except OSError as exc:  # EAGAIN (buffer full), ECONNREFUSED, ENETUNREACH...
                error = exc
        self.after_push()
        if error is not None and now - self.errors_logged >= 60:
            self.errors_logged = now  # once a minute at most: a dead server must not flood the log
            log(f"[stats-push] {self.kind} {self.arg}: sendto(): {error.strerror or error}")
        self.finished(now, False)

    def close(self) -> None:
        self.closed = True
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class StatsdPusher(_Datagrams):
    def line(self, name: str, type_: MetricType, value: int) -> bytes:
        kind = b"|g" if type_ is MetricType.GAUGE else b"|c"
        return b"%s.%s:%d%s" % (self.prefix.encode(), name.encode(), value, kind)


class SocketPusher(_Datagrams):
    def line(self, name: str, type_: MetricType, value: int) -> bytes:
        return b"%s.%s %d %d" % (self.prefix.encode(), name.encode(), int(type_), value)


class FilePusher(Pusher):
    """``file:path=,separator=,freq=``: the stats JSON appended to a local file."""

    raw = False

    def __init__(self, kind: str, arg: str, **kw: Any) -> None:
        super().__init__(kind, arg, **kw)
        kv = parse_kv(arg, ("path", "separator", "freq"), f"stats-push file:{arg}")
        self.path = kv.get("path") or "uwsgi.stats"
        self.separator = (kv.get("separator") or "\n\n").encode()
        if kv.get("freq"):
            self.freq = _freq(kv["freq"], f"stats-push file:{arg}")

    def push(self, now: float) -> None:
        if self.json_doc is None:
            return
        try:
            # non-blocking: a FIFO nobody drains must cost a log line, not the master loop
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o640)
        except OSError as exc:
            log(f"open(\"{self.path}\"): {exc.strerror}")
            self.finished(now, True)
            return
        try:
            os.write(fd, self.json_doc() + self.separator)
        except OSError as exc:
            log(f"uwsgi_stats_pusher_file() -> write(): {exc.strerror}")
        finally:
            os.close(fd)
        self.finished(now, False)


def _freq(text: str, what: str) -> int:
    if not text.strip().isdigit():
        raise MetricError(f"{what}: freq={text!r} is not a number of seconds")
    return int(text)


# --- TCP exchanges without waiting ------------------------------------------------------------


class TcpExchange:
    """One non-blocking TCP conversation of a pusher: connect, write ``payload``, then (if
    ``reply``) read one answer framed by ``reply`` (bytes so far -> total length or None).
    ``done(error, answer)`` is called once: error None on success."""

    def __init__(self, family: int, addr: Any, payload: bytes, deadline: float,
                 done: Callable[[str | None, bytes], None],
                 reply: Callable[[bytes], int | None] | None = None) -> None:
        self.out = payload
        self.deadline = deadline
        self.done_cb = done
        self.reply = reply
        self.answer = b""
        self.connected = False
        self.sock: socket.socket | None = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        err = self.sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._end(f"connect(): {os.strerror(err)}")

    @property
    def fd(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    @property
    def reading(self) -> bool:
        return self.sock is not None and self.connected and not self.out and self.reply is not None

    def on_writable(self) -> None:
        if self.sock is None:
            return
        if not self.connected:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._end(f"connect(): {os.strerror(err)}")
                return
            self.connected = True
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(f"write(): {exc.strerror or exc}")
            return
        self.out = self.out[n:]
        if not self.out and self.reply is None:
            self._end(None)

    def on_readable(self) -> None:
        if self.sock is None or self.reply is None:
            return
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(f"read(): {exc.strerror or exc}")
            return
        if not data:
            self._end("the server closed the connection")
            return
        self.answer += data
        need = self.reply(self.answer)
        if need is not None and len(self.answer) >= need:
            self._end(None)

    def check_deadline(self, now: float) -> None:
        if self.sock is not None and now >= self.deadline:
            self._end("timed out" if self.connected else "connect(): timed out")

    def _end(self, error: str | None) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self.done_cb(error, self.answer)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class TcpPusher(Pusher):
    """A pusher whose pushes are TCP exchanges driven by the master loop."""

    def __init__(self, kind: str, arg: str, **kw: Any) -> None:
        super().__init__(kind, arg, **kw)
        self.exchanges: list[TcpExchange] = []

    def in_flight(self) -> bool:
        return any(x.sock is not None for x in self.exchanges)

    def fds(self) -> list[int]:
        return [x.fd for x in self.exchanges if x.reading]

    def wfds(self) -> list[int]:
        return [x.fd for x in self.exchanges if x.sock is not None and not x.reading]

    def on_ready(self, fd: int) -> None:
        for x in list(self.exchanges):
            if x.fd == fd:
                x.on_readable()
        self._prune()

    def on_writable(self, fd: int) -> None:
        for x in list(self.exchanges):
            if x.fd == fd:
                x.on_writable()
        self._prune()

    def timeout(self, now: float) -> float | None:
        wish = super().timeout(now)
        live = [x.deadline for x in self.exchanges if x.sock is not None]
        if live:
            wish = min(wish if wish is not None else 1.0, max(0.0, min(live) - now))
        return wish

    def tick(self, now: float) -> None:
        for x in list(self.exchanges):
            x.check_deadline(now)
        self._prune()
        super().tick(now)

    def busy(self) -> bool:
        return self.in_flight()

    def _prune(self) -> None:
        self.exchanges = [x for x in self.exchanges if x.sock is not None]

    def close(self) -> None:
        for x in self.exchanges:
            x.close()
        self.exchanges = []


class MongoPusher(TcpPusher):
    """``mongodb:addr=,collection=,freq=``: insert the stats JSON (OP_MSG ``insert``)."""

    raw = False
    OP_MSG = 2013

    def __init__(self, kind: str, arg: str, **kw: Any) -> None:
        super().__init__(kind, arg, **kw)
        what = f"stats-push mongodb:{arg}"
        kv = parse_kv(arg, ("addr", "address", "collection", "freq"), what)
        self.address = kv.get("addr") or kv.get("address") or "127.0.0.1:27017"
        self.dest = Destination(self.address, what)
        self.collection = kv.get("collection") or "uwsgi.statistics"
        db, dot, coll = self.collection.partition(".")
        if not dot or not db or not coll:
            raise MetricError(f"{what}: collection {self.collection!r} must be DATABASE.COLLECTION")
        self.db, self.coll = db, coll
        if kv.get("freq"):
            self.freq = _freq(kv["freq"], what)
        try:
            import bson  # noqa: F401 - pymongo's, the imperium[mongodb] extra
        except ImportError:
            raise MetricError(f"{what}: needs pymongo's bson module (pip install 'imperium[mongodb]')") from None
        self.request_id = 0

    def message(self, doc: dict) -> bytes:
        import bson

        body = bson.encode({"insert": self.coll, "documents": [doc], "$db": self.db})
        self.request_id += 1
        payload = struct.pack("<I", 0) + b"\0" + body
        return struct.pack("<iiii", 16 + len(payload), self.request_id, 0, self.OP_MSG) + payload

    def push(self, now: float) -> None:
        found = self.dest.address(now)
        if self.json_doc is None or found is None:
            return
        try:
            doc = json.loads(self.json_doc())
        except ValueError as exc:
            log(f"[stats-pusher-mongodb] ERROR({self.address}/{self.collection}): {exc}")
            return
        started = now

        def done(error: str | None, answer: bytes) -> None:
            if error is None:
                error = _mongo_error(answer)
            if error is not None:
                log(f"[stats-pusher-mongodb] ERROR({self.address}/{self.collection}): {error}")
            self.finished(time.monotonic(), error is not None)

        self.exchanges.append(TcpExchange(*found, self.message(doc),
                                          started + MONGO_TIMEOUT, done, reply=_mongo_length))
        self._prune()


def _mongo_length(answer: bytes) -> int | None:
    return struct.unpack("<i", answer[:4])[0] if len(answer) >= 4 else None


def _mongo_error(answer: bytes) -> str | None:
    """None when the OP_MSG answer says ok and reports no write error."""
    import bson

    try:
        length, _rid, _to, opcode = struct.unpack("<iiii", answer[:16])
        if opcode != MongoPusher.OP_MSG or answer[20] != 0:
            return f"unexpected answer (opcode {opcode})"
        reply = bson.decode(answer[21:length])
    except Exception as exc:  # noqa: BLE001 - whatever the server sent, one log line
        return f"unreadable answer: {exc}"
    if reply.get("ok") != 1:
        return str(reply.get("errmsg") or reply)
    if reply.get("writeErrors"):
        return str(reply["writeErrors"][0].get("errmsg"))
    return None


PUSHERS.update({"statsd": StatsdPusher, "socket": SocketPusher, "file": FilePusher,
                "mongodb": MongoPusher})


def from_config(config: Any, table: MetricTable | None, json_doc: Callable[[], bytes] | None,
                extra: dict[str, Callable[..., Pusher]] | None = None) -> list[Pusher]:
    """The pushers of every ``stats-push`` value, in order; MetricError on a bad one."""
    kinds: dict[str, Callable[..., Pusher]] = {**PUSHERS, **(extra or {})}
    default_freq = int(config.get("stats-pusher-default-freq") or 3)
    out: list[Pusher] = []
    for value, origin in config.occurrences("stats-push"):
        text = str(value)
        kind, _, arg = text.partition(":")
        if kind not in kinds:
            raise MetricError(f'stats-push {text} ({origin}): unable to find "{kind}" stats_pusher '
                              f"(one of {', '.join(sorted(kinds))})")
        try:
            out.append(kinds[kind](kind, arg, table=table, default_freq=default_freq, json_doc=json_doc))
        except MetricError as exc:
            raise MetricError(f"{exc} ({origin})") from None
    return out
