"""HTTP/1.x for ``http-socket``: request heads into WSGI environs, request bodies, response errors.

Framing is decided by llhttp (the parser of Node.js, through ``httptools``), strict as RFC
9112 asks: a request with both Content-Length and Transfer-Encoding, a Transfer-Encoding
whose last coding is not ``chunked``, a Content-Length that is not 1*DIGIT (or repeated),
whitespace before a colon, a bare CR or LF, a NUL or another control byte, obs-fold, a chunk
size that overflows: each is refused with a 400 and the connection is closed. We add what
llhttp leaves to the server: a head larger than ``buffer-size`` (431), more than
``MAX_HEADERS`` fields (431), a second Host (400), a transfer coding other than chunked (501),
Transfer-Encoding on HTTP/1.0 (400), versions other than 1.0/1.1 (505).

The environ carries exactly the variables uWSGI 2.0's http-socket parser (proto/http.c)
produces, in its order: REQUEST_METHOD, REQUEST_URI, PATH_INFO (dot segments removed, then
percent-decoded), QUERY_STRING, SERVER_PROTOCOL, SCRIPT_NAME, SERVER_NAME (the host name),
SERVER_PORT (from the socket's name), REMOTE_ADDR, then one HTTP_* per header (CONTENT_LENGTH and CONTENT_TYPE
without the prefix; repeated headers joined with ", "). REMOTE_PORT is not set, as in uWSGI.
Bytes above 0x7f in the request target, which llhttp refuses and uWSGI passes on, reach the
app as uWSGI gives them (latin-1 decoded).

The worker finds the end of a head itself (``take_head``: one ``bytes.find``, so the size
limit is exact and a head can be collected without blocking), then hands the head to a fresh
llhttp parser. A body with Content-Length is read raw; a chunked body goes through the same
parser, which decodes it. Beyond uWSGI 2.0's http-socket we understand chunked request bodies
and keep connections alive (HTTP/1.1, response length known), reading pipelined requests in
order.
"""

from __future__ import annotations

import io
import socket
import tempfile
from itertools import islice
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

import httptools

from vassal.accel import optional

#: the optional C accelerator of parse_request's plain case (see _headparse.c)
_headparse = optional("vassal.protocols._headparse")


def _fast_parser() -> Any:
    """``_headparse.parse`` when usable: it fills llhttp 9's settings layout as httptools 0.7
    to 0.9 carry it (0.6 has llhttp 8/9.2, whose callbacks sit elsewhere; a later release may
    move them again, so it is not trusted until checked), and must read a known head right."""
    if _headparse is None:
        return None
    try:
        version = tuple(int(x) for x in httptools.__version__.split(".")[:2])
    except ValueError:
        return None
    if not (0, 7) <= version < (0, 10):
        return None
    probe = _headparse.parse(b"GET /a%20b?c HTTP/1.0\r\nHost: h\r\nX-Y: z\r\n\r\n", "n", "1", "a", 100)
    if probe != ({"REQUEST_METHOD": "GET", "REQUEST_URI": "/a%20b?c", "PATH_INFO": "/a b", "QUERY_STRING": "c",
                  "SERVER_PROTOCOL": "HTTP/1.0", "SCRIPT_NAME": "", "SERVER_NAME": "n", "SERVER_PORT": "1",
                  "REMOTE_ADDR": "a", "HTTP_HOST": "h", "HTTP_X_Y": "z"}, False, False):
        return None
    return _headparse.parse


#: parse(head, server_name, server_port, remote_addr, max_headers[, base[, vars, offset, prefix,
#: limit]]) -> (environ, keep_alive, vars_written), or None when the head is not the plain case
#: (then parse_request() decides); see _headparse.c. None: no accelerator
fast_parse = _fast_parser()

RECV_SIZE = 65536
#: header fields accepted in one request (uWSGI has no count limit, only buffer-size)
MAX_HEADERS = 100
#: what is drained of a body the app did not read before the next request is parsed
DRAIN_LIMIT = 1 << 20
_CRLF2 = b"\r\n\r\n"

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


class BadRequest(Exception):
    """The client sent something that is not an HTTP request we can serve.

    ``status`` is the answer (0: close without one, as uWSGI does for a bad uwsgi packet).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BodyError(OSError):
    """The request body could not be read (what ``wsgi.input`` raises, as uWSGI's IOError)."""


class Reader:
    """Buffered reads from one client connection; leftover bytes stay for the next request."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        self.sock = sock
        self.buf = initial

    def fill(self) -> bool:
        """Read more from the socket (blocking, within socket-timeout); False on EOF."""
        data = self.sock.recv(RECV_SIZE)
        if not data:
            return False
        self.buf = self.buf + data if self.buf else data
        return True

    def take_head(self, limit: int) -> bytes | None:
        """A whole request head (through its blank line) if buffered, else None.

        Stray CRLFs before a request line are skipped (RFC 9112 2.2). A head that is, or has
        grown, larger than ``limit`` bytes is refused (431).
        """
        buf = self.buf
        if buf[:2] == b"\r\n":
            buf = self.buf = buf.lstrip(b"\r\n")
        idx = buf.find(_CRLF2)
        if idx < 0:
            if len(buf) > limit:
                raise BadRequest(f"request head larger than {limit} bytes (raise buffer-size)", 431)
            return None
        end = idx + 4
        if end > limit:
            raise BadRequest(f"request head larger than {limit} bytes (raise buffer-size)", 431)
        self.buf = buf[end:]
        return buf[:end]

    def read_until(self, marker: bytes, limit: int) -> bytes | None:
        """Bytes up to ``marker`` (consumed, excluded), blocking; None on EOF before any byte."""
        start = 0
        while True:
            idx = self.buf.find(marker, start)
            if idx >= 0:
                if idx > limit:
                    raise BadRequest(f"request head larger than {limit} bytes (raise buffer-size)", 431)
                out = self.buf[:idx]
                self.buf = self.buf[idx + len(marker):]
                return out
            if len(self.buf) > limit:
                raise BadRequest(f"request head larger than {limit} bytes (raise buffer-size)", 431)
            start = max(0, len(self.buf) - len(marker) + 1)
            if not self.fill():
                if self.buf:
                    raise BadRequest("client closed the connection in the middle of a request")
                return None

    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes (fewer only at EOF)."""
        while len(self.buf) < n:
            if not self.fill():
                break
        out = self.buf[:n]
        self.buf = self.buf[n:]
        return out

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes, at most one recv."""
        if not self.buf:
            if n >= RECV_SIZE:
                return self.sock.recv(n)
            if not self.fill():
                return b""
        out = self.buf[:n]
        self.buf = self.buf[n:]
        return out


# --- bodies ---------------------------------------------------------------------------------


class Body:
    """``wsgi.input`` for a body of known length (CONTENT_LENGTH; 0 when absent)."""

    __slots__ = ("reader", "remaining")

    def __init__(self, reader: Reader, length: int) -> None:
        self.reader = reader
        self.remaining = length

    @property
    def complete(self) -> bool:
        """Whole body consumed: the connection is at the next request."""
        return self.remaining <= 0

    @property
    def overrun(self) -> bool:
        """The parser consumed bytes of a following request (never, for a known length)."""
        return False

    def read(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self.reader.read_exact(size)
        self.remaining -= len(data)
        if len(data) < size:
            self.remaining = 0
            raise BodyError("client closed the connection before sending the whole body")
        return data

    def readline(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        limit = self.remaining if size is None or size < 0 else min(size, self.remaining)
        r = self.reader
        while True:
            idx = r.buf.find(b"\n", 0, limit)
            if idx >= 0:
                return self.read(idx + 1)
            if len(r.buf) >= limit or not r.fill():
                return self.read(min(limit, len(r.buf)))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, limit: int) -> bool:
        """Skip what the app did not read, so the next request can be parsed; False if too much."""
        if self.remaining > limit:
            return False
        try:
            while self.remaining > 0:
                if not self.read(min(self.remaining, RECV_SIZE)):
                    return False
        except OSError:
            return False
        return True


#: ``wsgi.input`` of every request without a body: nothing to read, ever, so one is enough
NO_BODY = Body(None, 0)  # type: ignore[arg-type]


class ChunkedBody(Body):
    """``wsgi.input`` for ``Transfer-Encoding: chunked``: llhttp decodes the chunks.

    Whatever is buffered on the connection is fed to the parser, so bytes of a request
    pipelined behind this body may be consumed with it: ``overrun`` then says so, and the
    worker closes the connection after its answer (clients retry such requests).
    """

    __slots__ = ("parser", "sink", "pending", "total", "limit", "error")

    def __init__(self, reader: Reader, parser: Any, sink: Request, limit: int = 0) -> None:
        super().__init__(reader, 0)
        self.parser = parser
        self.sink = sink
        self.pending = b""
        self.total = 0
        self.limit = limit  # limit-post: 0 for none
        self.error: BadRequest | None = None

    @property
    def complete(self) -> bool:
        return self.sink.done and not self.pending and not self.sink.body

    @property
    def overrun(self) -> bool:
        return self.sink.messages > 1

    def feed_buffered(self) -> None:
        """Decode what is already buffered (before the app runs, so errors become a 400)."""
        if self.reader.buf and not self.sink.done:
            data, self.reader.buf = self.reader.buf, b""
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the message is complete; what follows is another protocol
        except httptools.HttpParserError as exc:
            if self.sink.done:
                self.sink.messages = 2  # garbage after the body: close after the answer
            else:
                self.error = BadRequest(f"bad chunked body: {exc}")
                raise BodyError(str(self.error)) from None
        if self.limit:
            self.total += sum(len(b) for b in self.sink.body)
            if self.total > self.limit:
                self.error = BadRequest(f"request body larger than limit-post ({self.limit})", 413)
                raise BodyError(str(self.error))

    def _more(self) -> bool:
        """Decode more of the body into ``pending``; False when it is complete."""
        sink = self.sink
        while not sink.body:
            if sink.done:
                return False
            if self.error is not None:
                raise BodyError(str(self.error))
            r = self.reader
            if r.buf:
                data, r.buf = r.buf, b""
            else:
                data = r.sock.recv(RECV_SIZE)
                if not data:
                    self.error = BadRequest("client closed the connection inside a chunked body")
                    raise BodyError(str(self.error))
            self._feed(data)
        self.pending += b"".join(sink.body)
        sink.body.clear()
        return True

    def read(self, size: int | None = -1) -> bytes:
        want_all = size is None or size < 0
        while want_all or len(self.pending) < size:
            if not self._more():
                break
        if want_all or len(self.pending) <= size:
            data, self.pending = self.pending, b""
        else:
            data, self.pending = self.pending[:size], self.pending[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        while True:
            idx = self.pending.find(b"\n")
            if idx >= 0 and (limit < 0 or idx < limit):
                out, self.pending = self.pending[: idx + 1], self.pending[idx + 1:]
                return out
            if 0 <= limit <= len(self.pending) or not self._more():
                n = len(self.pending) if limit < 0 else min(limit, len(self.pending))
                out, self.pending = self.pending[:n], self.pending[n:]
                return out

    def drain(self, limit: int) -> bool:
        total = len(self.pending)
        self.pending = b""
        try:
            while total <= limit and self._more():
                total += len(self.pending)
                self.pending = b""
        except OSError:
            return False
        return total <= limit and self.sink.done


class BufferedBody:
    """``wsgi.input`` over a body read whole before the app runs (``post-buffering``):
    in memory below the threshold, in an anonymous temporary file from it on, as uWSGI."""

    __slots__ = ("file", "length")

    def __init__(self, file: Any, length: int) -> None:
        self.file = file
        self.length = length

    complete = True
    overrun = False

    def read(self, size: int | None = -1) -> bytes:
        return self.file.read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        return self.file.readline(-1 if size is None else size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return self.file.readlines(-1 if hint is None else hint)

    def __iter__(self):
        return iter(self.file)

    def drain(self, limit: int) -> bool:
        return True

    def close(self) -> None:
        self.file.close()


def buffer_body(body: Body, threshold: int, bufsize: int) -> BufferedBody:
    """Read the whole body now (uWSGI's post-buffering): memory below ``threshold`` bytes,
    a temporary file from it on; reads of ``bufsize`` bytes. Raises OSError (BodyError,
    TimeoutError, ...) with ``received`` set when the client goes away or stalls on the way
    (the request is then dropped, as uWSGI does)."""
    received = 0
    spool: Any = io.BytesIO()
    known = not isinstance(body, ChunkedBody)

    def piece(n: int) -> bytes:
        if not known:
            return body.read(n)
        if not body.remaining:
            return b""
        data = body.reader.read_some(min(n, body.remaining))
        if not data:
            raise BodyError("client closed the connection before sending the whole body")
        body.remaining -= len(data)
        return data

    try:
        if known and body.remaining < threshold:
            while data := piece(RECV_SIZE):
                received += len(data)
                spool.write(data)
        else:
            while data := piece(bufsize):
                received += len(data)
                if received >= threshold and isinstance(spool, io.BytesIO):
                    disk = tempfile.TemporaryFile()
                    disk.write(spool.getvalue())
                    spool = disk
                spool.write(data)
    except OSError as exc:
        spool.close()
        exc.received = received  # type: ignore[attr-defined]
        raise
    spool.seek(0)
    return BufferedBody(spool, received)


# --- heads ----------------------------------------------------------------------------------


class Request:
    """One request head: what llhttp reported (its callbacks are these methods), then the
    environ and how the body is framed. While a chunked body is decoded the same parser keeps
    reporting here: body pieces, the end of the message, a request pipelined behind it."""

    __slots__ = ("headers", "max_headers", "messages", "done", "body", "env", "keep_alive", "length",
                 "chunked", "upgrade", "parser", "too_many", "reusable")

    def __init__(self, max_headers: int) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.max_headers = max_headers
        self.messages = 0
        self.done = False
        self.body: list[bytes] = []
        self.length = 0
        self.chunked = False
        self.upgrade = False
        self.too_many = False
        self.parser: Any = None
        self.env: dict[str, Any] = {}

    # --- llhttp callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.messages += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        headers.append((name, value))
        if len(headers) > self.max_headers:
            self.too_many = True
            raise BadRequest("too many header fields", 431)

    def on_body(self, data: bytes) -> None:
        if self.messages <= 1:  # not the body of a request pipelined behind this one
            self.body.append(data)

    def on_message_complete(self) -> None:
        if self.messages <= 1:
            self.done = True

    # --- the body --------------------------------------------------------------------------

    def body_reader(self, reader: Reader, limit_post: int = 0) -> Body:
        """The ``wsgi.input`` of this request."""
        if self.chunked:
            body = ChunkedBody(reader, self.parser, self, limit_post)
            try:
                body.feed_buffered()
            except BodyError:
                assert body.error is not None
                raise body.error from None
            return body
        if limit_post and self.length > limit_post:
            raise BadRequest(f"request body larger than limit-post ({limit_post})", 413)
        return Body(reader, self.length)


#: environ keys of header names seen before (bounded: names are client-chosen)
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 512


def _env_key(name: bytes) -> str:
    key = name.upper().replace(b"-", b"_").decode("latin-1")
    if key != "CONTENT_LENGTH" and key != "CONTENT_TYPE":
        key = "HTTP_" + key
    if len(_KEYS) < _KEYS_MAX:
        _KEYS[name] = key
    return key


def _refuse(exc: Exception, method: bytes) -> BadRequest:
    if isinstance(exc, httptools.HttpParserInvalidMethodError) and method.isalpha():
        return BadRequest(f"unknown request method {method[:20]!r}", 501)
    return BadRequest(f"malformed request ({exc})")


def remove_dot_segments(path: str) -> str:
    """PATH_INFO as uWSGI's http-socket builds it (http_url_decode in core/utils.c): the
    target stops at a ``#``, and ``.``/``..`` segments go, on the raw target before percent
    decoding (so ``%2e%2e`` stays a name); empty segments stay. A trailing ``.`` leaves a
    slash; a trailing ``..`` cuts what was built back to its last slash."""
    path = path.partition("#")[0]
    if not path.startswith("/"):
        return path
    segments = path.split("/")[1:]
    kept: list[str] = []
    for seg in segments[:-1]:
        if seg == "..":
            if kept:
                kept.pop()
        elif seg != ".":
            kept.append(seg)
    built = "/" + "/".join(kept) if kept else ""
    last = segments[-1]
    if last == ".":
        return built + "/"
    if last == "..":
        return built[:built.rfind("/") + 1]
    return built + "/" + last


def parse_request(head: bytes, server_name: str, server_port: str, remote_addr: str,
                  max_headers: int = MAX_HEADERS, previous: Request | None = None) -> Request:
    """Parse one request head (through its blank line, as ``take_head`` returns it).

    ``previous``: the last request of the same connection when it was ``reusable`` (a whole
    message without a body, the connection kept alive): its llhttp parser stands at the start
    of the next message, exactly as a new one would, and goes on with this head (a parser and
    its sink are most of what a request head costs to parse).
    """
    line_end = head.find(b"\r\n")
    line = head[:line_end]
    # one space between the three parts, and an HTTP version (llhttp also takes RTSP/ICE)
    if line.count(b" ") != 2:
        raise BadRequest(f"malformed request line {line[:80]!r}")
    method_b, target, version = line.split(b" ")
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        if version[:5] != b"HTTP/":
            raise BadRequest(f"malformed request line {line[:80]!r}")
        raise BadRequest(f"unsupported protocol {version[:20]!r}", 505)
    fed = head
    if not target.isascii():
        # llhttp refuses bytes > 0x7f in the target; uWSGI passes them on: let llhttp check
        # an escaped copy and give the app the target as sent
        escaped = quote_from_bytes(target, safe=bytes(range(128))).encode()
        fed = b" ".join((method_b, escaped, version)) + head[line_end:]
    if previous is None:
        req = Request(max_headers)
        parser = req.parser = httptools.HttpRequestParser(req)
    else:  # reusable: no body, no upgrade, not too many fields; the rest starts over
        req = previous
        req.headers = []
        req.messages = 0
        req.done = False
        parser = req.parser
    try:
        parser.feed_data(fed)
    except httptools.HttpParserUpgrade:
        req.upgrade = True  # Upgrade or CONNECT: answered, then the connection is closed
    except httptools.HttpParserError as exc:
        if req.too_many:
            raise BadRequest(f"more than {max_headers} header fields", 431) from None
        raise _refuse(exc, method_b) from None
    # no error on a head ending in its first blank line: llhttp saw the whole head
    uri = target.decode("latin-1")
    path, qmark, query = uri.partition("?")
    if "/." in path or "#" in path:
        path = remove_dot_segments(path)
    if "%" in path:
        path = unquote_to_bytes(path).decode("latin-1")
    method = method_b.decode("latin-1")
    protocol = version.decode("latin-1")
    env = req.env = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": protocol,
        "SCRIPT_NAME": "",
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": remote_addr,
    }
    cl_raw = te_raw = None
    for name, value in req.headers:
        n = len(name)
        if n == 14 and name.lower() == b"content-length":
            cl_raw = value
        elif n == 17 and name.lower() == b"transfer-encoding":
            te_raw = value
        key = _KEYS.get(name) or _env_key(name)
        val = value.decode("latin-1")
        old = env.get(key)
        if old is not None:
            if key == "HTTP_HOST":
                raise BadRequest("more than one Host header")
            env[key] = old + ", " + val
        else:
            env[key] = val
    if cl_raw is not None or te_raw is not None or "CONTENT_LENGTH" in env or (
            "HTTP_TRANSFER_ENCODING" in env):
        _framing(req, env, protocol, cl_raw, te_raw, parser)
    conn = env.get("HTTP_CONNECTION")
    if req.upgrade or "HTTP_UPGRADE" in env:
        req.keep_alive = False  # what follows the request is another protocol
    elif protocol == "HTTP/1.1":
        req.keep_alive = conn is None or "close" not in conn.lower()
    else:
        req.keep_alive = conn is not None and conn.lower() == "keep-alive"
    req.reusable = req.keep_alive and req.done and not req.length and parser.should_keep_alive()
    return req


def packet_size(env: dict, count: int | None = None) -> tuple[int, int]:
    """(vars as uWSGI counts them (key and value each count), size of the uwsgi packet they
    would make) of the CGI variables of a request, for the request log line; ``count``: only
    the first ones (the rest are the worker's own wsgi.* entries)."""
    if count is None:
        count = len(env)
    size = 0
    for k, v in islice(env.items(), count):
        size += len(k) + len(v) + 4
    return count * 2, size


def _framing(req: Request, env: dict, protocol: str, cl_raw: bytes | None, te_raw: bytes | None,
             parser: Any) -> None:
    """Content-Length / Transfer-Encoding, from the fields llhttp read as such: a look-alike
    name ("Content_Length") must not put another length or coding in front of the app."""
    te = env.get("HTTP_TRANSFER_ENCODING")
    if (te is None) != (te_raw is None) or (
            env.get("CONTENT_LENGTH") != (None if cl_raw is None else cl_raw.decode("latin-1"))):
        raise BadRequest("Content-Length or Transfer-Encoding under another spelling")
    if te is not None:
        if protocol == "HTTP/1.0":
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        codings = [c.strip().lower() for c in te.split(",") if c.strip()]
        if codings != ["chunked"]:
            raise BadRequest(f"unsupported transfer coding {te[:40]!r}", 501)
        if not req.done:
            req.chunked = True
    elif cl_raw:
        req.length = int(cl_raw)  # 1*DIGIT: llhttp checked it


def parse_head(head: bytes, server_name: str, server_port: str, remote_addr: str) -> tuple[dict, int, int]:
    """The CGI variables of one request head (the bytes before its blank line).

    Returns (environ, number of vars as uWSGI counts them (key and value each count), size of
    the equivalent uwsgi packet) — the last two feed the request log line.
    """
    env = parse_request(head + _CRLF2, server_name, server_port, remote_addr).env
    return (env, *packet_size(env))


def wants_keepalive(env: dict) -> bool:
    """HTTP/1.1 keeps the connection unless the client says close; 1.0 only when asked."""
    conn = env.get("HTTP_CONNECTION")
    if env["SERVER_PROTOCOL"] == "HTTP/1.1":
        return conn is None or "close" not in conn.lower()
    return conn is not None and conn.lower() == "keep-alive"


def request_body(reader: Reader, env: dict, chunked_ok: bool = True) -> Body:
    """The ``wsgi.input`` of a request known only by its environ (the uwsgi protocol).

    Over the uwsgi protocol the front server has already de-chunked the body and set
    CONTENT_LENGTH; HTTP_TRANSFER_ENCODING is only the client's original header.
    """
    cl = env.get("CONTENT_LENGTH")
    if cl:
        try:
            length = int(cl)
        except ValueError:
            raise BadRequest(f"bad Content-Length {cl[:40]!r}") from None
        if length < 0:
            raise BadRequest(f"bad Content-Length {cl[:40]!r}")
        return Body(reader, length)
    return Body(reader, 0)


def error_response(status: int, protocol: str = "HTTP/1.1") -> bytes:
    reason = REASONS.get(status, "Error")
    body = f"{status} {reason}\n".encode()
    return (f"{protocol} {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body
