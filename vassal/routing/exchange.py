"""One request seen by the routing rules: its variables and uWSGI's response state machine.

The rules act on a response the way uWSGI 2.0's core/writer.c does, over the worker's own
response object (``resp``: status, headers, what was sent), so that what the app, the static
files and the rules send is counted and logged in one place:

- ``prepare(status)`` starts (or restarts) a response: refused once anything was sent. It
  runs the ``error`` chain first (every status, not only errors, as in uWSGI).
- ``add_header`` drops names listed by ``del-header`` or a ``delheader`` action, stores
  ``pull-header`` names in a request variable instead, copies ``collect-header`` ones.
- ``write_headers`` runs the ``response`` chain (once per request), then sends the head with
  the ``add-header`` lines and the ``addheader`` lines after the response's own headers
  (those lines are never filtered, as in uWSGI).
- ``write_body`` sends the head first when it is not out yet; a body written before any
  status (``send``) goes out raw, without a head.

When a chain answers instead (BREAK), the response that was under way is dropped: the app's
body goes nowhere, and no error is logged (uWSGI's ``ignore_body``).

A response made by the rules carries only the headers uWSGI's would; one without a
Content-Length ends its connection.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from vassal.protocols.offload import send_chunk
from vassal.protocols.static import StaticReply

from .expand import Context

#: uWSGI's reason phrases (core/init.c ``hsc``), for a status given as three digits
REASONS = {
    "200": "OK", "302": "Found", "404": "Not Found", "500": "Internal Server Error",
    "301": "Moved Permanently", "304": "Not Modified", "303": "See Other", "403": "Forbidden",
    "307": "Temporary Redirect", "401": "Unauthorized", "400": "Bad Request",
    "405": "Method Not Allowed", "408": "Request Timeout", "100": "Continue",
    "101": "Switching Protocols", "201": "Created", "202": "Accepted",
    "203": "Non-Authoritative Information", "204": "No Content", "205": "Reset Content",
    "206": "Partial Content", "300": "Multiple Choices", "305": "Use Proxy",
    "402": "Payment Required", "406": "Not Acceptable", "407": "Proxy Authentication Required",
    "409": "Conflict", "410": "Gone", "411": "Length Required", "412": "Precondition Failed",
    "413": "Request Entity Too Large", "414": "Request-URI Too Long",
    "415": "Unsupported Media Type", "416": "Requested Range Not Satisfiable",
    "417": "Expectation Failed", "418": "I'm a teapot", "422": "Unprocessable Entity",
    "425": "Too Early", "426": "Upgrade Required", "428": "Precondition Required",
    "429": "Too Many Requests", "431": "Request Header Fields Too Large",
    "451": "Unavailable For Legal Reasons", "501": "Not Implemented", "502": "Bad Gateway",
    "503": "Service Unavailable", "504": "Gateway Timeout", "505": "HTTP Version Not Supported",
    "509": "Bandwidth Limit Exceeded", "511": "Network Authentication Required",
}


def status_code(status: str) -> int:
    """uWSGI's ``uwsgi_str3_num``: the first three characters as digits, whatever they are."""
    s = (status + "\0\0\0")[:3]
    return 100 * (ord(s[0]) - 48) + 10 * (ord(s[1]) - 48) + (ord(s[2]) - 48)


class Exchange:
    """The routing state of one request (``resp.route`` while it is served)."""

    # per-request flags start from these class values: __init__ sets only what differs
    in_action = False  # uWSGI's is_routing: no chain starts inside an action
    in_error = False
    in_response = False
    response_done = False
    ignore_body = False
    answered = False  # the request chain said BREAK: no static file, no app
    reselect = False  # SCRIPT_NAME/UWSGI_APPID changed: the app is chosen again
    found: Any = None  # the static file located before the rules ran
    located = False
    no_offload = False
    chain: Any = None  # the chain running (``goto`` looks for its labels there)
    goto = 0  # the rule a ``goto`` asked for (0: none)

    def __init__(self, router: Any, env: dict, resp: Any, worker: Any) -> None:
        self.router = router
        self.env = env
        self.resp = resp
        self.worker = worker
        self.ctx = Context(env, router.mime, getattr(worker, "wid", 0), resp)
        self.additional: list[str] = []  # addheader lines
        self.removed: set[str] = set()  # delheader names, lower case

    # --- chains --------------------------------------------------------------------------

    def _error_chain(self) -> bool:
        """The error chain at a status; False when it answered instead."""
        chain = self.router.chains["error"]
        if self.in_error or not chain.rules:
            return True
        self.in_error = True
        if self.router.run(chain, self) == 2:
            self.ignore_body = True
            return False  # uWSGI leaves is_error_routing set: no second error pass
        self.in_error = False
        return True

    def response_chain(self) -> bool:
        """The response chain, once per request; False when it answered instead."""
        chain = self.router.chains["response"]
        if self.in_response or self.response_done or not chain.rules:
            return True
        self.in_response = True
        outcome = self.router.run(chain, self)
        self.response_done = True
        if outcome == 2:
            self.ignore_body = True
            return False
        self.in_response = False
        return True

    # --- uWSGI's writer ------------------------------------------------------------------

    def prepare(self, status: str) -> bool:
        resp = self.resp
        if resp.head_sent or resp.body_bytes or resp.write_errors or len(status) < 3:
            return False
        self.ctx.status = status_code(status)
        if not self._error_chain():
            return False
        if len(status) <= 4:
            status = f"{status[:3]} {REASONS.get(status[:3], 'Unknown')}"
        resp.status = status
        resp.headers = []
        return True

    def add_header(self, key: str, value: str) -> bool:
        resp = self.resp
        if resp.head_sent or resp.body_bytes or resp.write_errors:
            return False
        lk = key.lower()
        if lk in self.router.del_headers or lk in self.removed:
            return True
        return self._add_header_do(key, lk, value)

    def _add_header_do(self, key: str, lk: str, value: str) -> bool:
        router = self.router
        if router.pull and lk in router.pull:
            self.env[router.pull[lk]] = value
            return True
        if router.collect and lk in router.collect:
            self.env[router.collect[lk]] = value
        headers = self.resp.headers
        if type(headers) is not list:
            headers = self.resp.headers = list(headers)
        headers.append((key, value))
        return True

    def _head(self) -> bytes:
        """The head of a response made here: status line, headers, add-header, addheader."""
        resp = self.resp
        lines = [resp.protocol, " ", resp.status, "\r\n"]
        has_length = False
        for k, v in resp.headers:
            if len(k) == 14 and k.lower() == "content-length":
                has_length = True
            lines += (k, ": ", v, "\r\n")
        if resp.extra:
            lines.append(resp.extra)
        for line in self.additional:
            lines += (line, "\r\n")
        lines.append("\r\n")
        resp.nheaders = len(resp.headers) + len(self.additional) + resp.extra.count("\r\n")
        resp.has_length = has_length
        if not has_length or resp.protocol != "HTTP/1.1":
            resp.keep = False
        return "".join(lines).encode("latin-1", "replace")

    def write_headers(self) -> bool:
        resp = self.resp
        if resp.head_sent or resp.status is None or resp.body_bytes or resp.write_errors:
            return True
        if not self.response_chain():
            return False
        if resp.head_sent:  # the response chain sent an answer of its own
            return True
        head = self._head()
        resp.send(head, "uwsgi_response_write_headers_do")
        resp.head_sent = True
        resp.head_bytes += len(head)
        return True

    def write_body(self, data: bytes) -> bool:
        resp = self.resp
        if resp.write_errors:
            return False
        if self.ignore_body:
            return True
        if not resp.head_sent:
            if not self.response_chain():
                return False
            if resp.head_sent:
                return True
            if resp.status is not None:
                head = self._head()
                resp.send(head + data, "uwsgi_response_writev_headers_and_body_do")
                resp.head_sent = True
                resp.head_bytes += len(head)
                resp.body_bytes += len(data)
                resp.chunks += 1
                return True
            resp.head_sent = True  # a body without a head: nothing will frame it
            resp.keep = False
        # a rule's body goes out for HEAD requests too, as uWSGI's does
        if data:
            resp.send(data)
            resp.body_bytes += len(data)
        resp.chunks += 1
        return True

    def sendfile(self, fd: int, size: int, offload: bool) -> None:
        """A whole file as the body, after the head (``sendfile``/``fastfile``)."""
        resp = self.resp
        if self.ignore_body or not size:
            return
        worker_offload = getattr(self.worker, "offload", None)
        if offload and worker_offload is not None and not self.no_offload:
            resp.body_bytes += size
            resp.chunks += 1
            if worker_offload.send(resp.sock, os.dup(fd), 0, size):
                resp.via = "sendfile"
            else:
                resp.keep = False
                resp.via = "offload"
            return
        sent = 0
        out = resp.sock.fileno()
        try:
            while sent < size:
                n = send_chunk(out, fd, sent, size - sent)
                if n == 0:
                    break
                sent += n
        except OSError as exc:
            resp.body_bytes += sent
            resp.failed(exc, "uwsgi_response_sendfile_do")
            raise
        resp.body_bytes += sent
        resp.chunks += 1
        resp.via = "sendfile"

    # --- the app's and the static files' heads --------------------------------------------

    def filter_head(self) -> bool:
        """Before the head of the app's (or a static file's) response goes out: what uWSGI did
        at start_response (the error chain, each header through ``add_header``) and then in
        write_headers (the response chain, the addheader lines). False: a chain answered
        instead, and the body under way is dropped; the head still goes out unless the chain
        sent one (``resp.head_sent``)."""
        resp = self.resp
        status, headers = resp.status, resp.headers
        if not self.prepare(status):
            return not (self.ignore_body or resp.head_sent)
        for k, v in headers:
            self.add_header(k, v)
        answered = not self.response_chain()
        if resp.head_sent:
            return False
        # the head goes out (after a BREAK that sent nothing too, as uWSGI's close does)
        if self.additional:
            resp.extra = (resp.extra or "") + "".join(line + "\r\n" for line in self.additional)
        return not answered

    def static_head(self, status: str, headers: list[tuple[str, str]], extra: str
                    ) -> tuple[str, list[tuple[str, str]], str] | None:
        """``filter_head`` for a static file's answer; None when a chain answered instead."""
        resp = self.resp
        resp.status, resp.headers, resp.extra = status, headers, extra
        if not self.filter_head():
            return None
        return resp.status, resp.headers, resp.extra

    def absorb(self, reply: Any) -> None:
        """A static file's answer went out: count it on the response."""
        resp = self.resp
        resp.status, resp.head_bytes, resp.body_bytes = reply.status, reply.head_bytes, reply.body_bytes
        resp.nheaders, resp.keep, resp.via = reply.nheaders, reply.keep, reply.via
        resp.head_sent = resp.has_length = True

    def reply(self) -> Any:
        """What a chain sent instead of a static file, as the static module reports it."""
        resp = self.resp
        return StaticReply(resp.status or "0", resp.head_bytes, resp.body_bytes, resp.nheaders,
                           resp.keep and resp.has_length, resp.via)

    def count_routed(self) -> None:
        """A rule ended a chain with BREAK: the stats' ``routed_requests`` of this core."""
        cslots = getattr(self.worker, "cslots", None)
        if cslots:
            name = threading.current_thread().name
            core = int(name[5:]) if name.startswith("core ") and name[5:].isdigit() else 0
            cslots[min(core, len(cslots) - 1)].routed_requests += 1

    # --- the end of the request -----------------------------------------------------------

    def final(self) -> None:
        """The final chain, after the request was counted and logged."""
        chain = self.router.chains["final"]
        if chain.rules and not self.in_action:
            self.router.run(chain, self)

