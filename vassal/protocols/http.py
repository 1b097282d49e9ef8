"""HTTP/1.x for ``http-socket``: request heads into WSGI environs, request bodies, response heads.

The environ carries exactly the variables uWSGI 2.0's http-socket parser (proto/http.c)
produces, in its order: REQUEST_METHOD, REQUEST_URI, PATH_INFO (percent-decoded),
QUERY_STRING, SERVER_PROTOCOL, SCRIPT_NAME, SERVER_NAME (the host name), SERVER_PORT (from
the socket's name), REMOTE_ADDR, then one HTTP_* per header (CONTENT_LENGTH and CONTENT_TYPE
without the prefix; repeated headers joined with ", "). REMOTE_PORT is not set, as in uWSGI.

Beyond uWSGI 2.0's http-socket we also understand chunked request bodies and keep
connections alive (HTTP/1.1, response length known), reading pipelined requests in order.
"""

from __future__ import annotations

import socket
from urllib.parse import unquote_to_bytes

MAX_CHUNK_LINE = 1024
RECV_SIZE = 65536

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class BadRequest(Exception):
    """The client sent something that is not an HTTP request we can serve."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Reader:
    """Buffered reads from one client connection; leftover bytes stay for the next request."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        self.sock = sock
        self.buf = initial

    def fill(self) -> bool:
        """Read more from the socket; False on EOF."""
        data = self.sock.recv(RECV_SIZE)
        if not data:
            return False
        self.buf = self.buf + data if self.buf else data
        return True

    def read_until(self, marker: bytes, limit: int) -> bytes | None:
        """Bytes up to ``marker`` (consumed, excluded); None on EOF before any byte."""
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


class Body:
    """``wsgi.input`` for a body of known length (CONTENT_LENGTH; 0 when absent)."""

    __slots__ = ("reader", "remaining")

    def __init__(self, reader: Reader, length: int) -> None:
        self.reader = reader
        self.remaining = length

    def read(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self.reader.read_exact(size)
        self.remaining -= len(data)
        if len(data) < size:
            self.remaining = 0
            raise OSError("client closed the connection before sending the whole body")
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
        while self.remaining > 0:
            if not self.read(min(self.remaining, RECV_SIZE)):
                return False
        return True


class ChunkedBody(Body):
    """``wsgi.input`` decoding ``Transfer-Encoding: chunked``."""

    __slots__ = ("pending", "done")

    def __init__(self, reader: Reader) -> None:
        super().__init__(reader, 0)
        self.pending = b""
        self.done = False

    def _next_chunk(self) -> bytes:
        r = self.reader
        line = r.read_until(b"\r\n", MAX_CHUNK_LINE)
        if line is None:
            raise OSError("client closed the connection inside a chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise OSError(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            while True:  # trailers, up to the empty line
                trailer = r.read_until(b"\r\n", 8192)
                if not trailer:
                    break
            self.done = True
            return b""
        data = r.read_exact(size)
        if len(data) < size or r.read_exact(2) != b"\r\n":
            raise OSError("truncated chunk in request body")
        return data

    def read(self, size: int | None = -1) -> bytes:
        want_all = size is None or size < 0
        parts = [self.pending] if self.pending else []
        have = len(self.pending)
        self.pending = b""
        while (want_all or have < size) and not self.done:
            chunk = self._next_chunk()
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if not want_all and len(data) > size:
            self.pending = data[size:]
            data = data[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        while True:
            idx = self.pending.find(b"\n")
            if idx >= 0 and (limit < 0 or idx < limit):
                out, self.pending = self.pending[: idx + 1], self.pending[idx + 1:]
                return out
            if self.done or (0 <= limit <= len(self.pending)):
                n = len(self.pending) if limit < 0 else min(limit, len(self.pending))
                out, self.pending = self.pending[:n], self.pending[n:]
                return out
            self.pending += self._next_chunk()

    def drain(self, limit: int) -> bool:
        total = 0
        try:
            while not self.done:
                total += len(self._next_chunk())
                if total > limit:
                    return False
        except OSError:
            return False
        self.pending = b""
        return True


def parse_head(head: bytes, server_name: str, server_port: str, remote_addr: str) -> tuple[dict, int, int]:
    """The CGI variables of one request head (bytes before the blank line).

    Returns (environ, number of vars as uWSGI counts them (key and value each count), size of
    the equivalent uwsgi packet) — the last two feed the request log line.
    """
    try:
        text = head.decode("latin-1")
    except Exception:  # pragma: no cover - latin-1 decodes anything
        raise BadRequest("undecodable request head") from None
    line_end = text.find("\r\n")
    if line_end < 0:
        request_line, rest = text, ""
    else:
        request_line, rest = text[:line_end], text[line_end + 2:]
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest(f"malformed request line {request_line[:80]!r}")
    method, uri, protocol = parts
    if not protocol.startswith("HTTP/"):
        raise BadRequest(f"malformed request line {request_line[:80]!r}")
    path, sep, query = uri.partition("?")
    if "%" in path:
        path = unquote_to_bytes(path).decode("latin-1")
    env = {
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
    size = (len(method) + len(uri) + len(path) + len(query) + len(protocol) + len(server_name)
            + len(server_port) + len(remote_addr) + 14 + 11 + 9 + 12 + 15 + 11 + 11 + 11 + 11 + 36)
    count = 9
    if rest:
        if "\r\n " in rest or "\r\n\t" in rest:  # obsolete line folding: join continuation lines
            rest = rest.replace("\r\n ", " ").replace("\r\n\t", " ")
        for line in rest.split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon or not name:
                raise BadRequest(f"malformed header line {line[:80]!r}")
            key = name.upper().replace("-", "_")
            if key != "CONTENT_LENGTH" and key != "CONTENT_TYPE":
                key = "HTTP_" + key
            value = value.lstrip(" ")
            old = env.get(key)
            if old is not None:
                size += len(value) + 2
                env[key] = old + ", " + value
            else:
                count += 1
                size += len(key) + len(value) + 4
                env[key] = value
    return env, count * 2, size


def wants_keepalive(env: dict) -> bool:
    """HTTP/1.1 keeps the connection unless the client says close; 1.0 only when asked."""
    conn = env.get("HTTP_CONNECTION")
    if env["SERVER_PROTOCOL"] == "HTTP/1.1":
        return conn is None or "close" not in conn.lower()
    return conn is not None and conn.lower() == "keep-alive"


def request_body(reader: Reader, env: dict, chunked_ok: bool = True) -> Body:
    """The ``wsgi.input`` for this request: chunked, by CONTENT_LENGTH, or empty.

    Over the uwsgi protocol (``chunked_ok`` False) the front server has already de-chunked the
    body and set CONTENT_LENGTH; HTTP_TRANSFER_ENCODING is only the client's original header.
    """
    te = env.get("HTTP_TRANSFER_ENCODING") if chunked_ok else None
    if te is not None and "chunked" in te.lower():
        return ChunkedBody(reader)
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
