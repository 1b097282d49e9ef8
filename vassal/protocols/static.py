"""Static files served by the worker before the app runs: ``static-map``, ``check-static`` & co.

uWSGI 2.0 (core/protocol.c, core/static.c) checks, for every request whose PATH_INFO does not
end in a ``static-skip-ext``: each ``check-static`` directory (dir + PATH_INFO), each
``static-map`` whose mountpoint prefixes PATH_INFO (docroot + the rest), each ``static-map2``
(docroot + the whole PATH_INFO), then the request's DOCUMENT_ROOT with
``check-static-docroot``. The first regular file found (a directory is tried with each
``static-index``) answers GET and HEAD with Content-Type (from ``mimefile``, first entry of an
extension wins, case-sensitive as uWSGI), Content-Length and Last-Modified, honouring
If-Modified-Since (304), ``honour-range`` (206/416), the ``static-gzip*`` variants (``.br``
then ``.gz`` next to the file, when Accept-Encoding allows), the ``static-expires*`` rules
and ``file-serve-mode``. Anything else falls through to the app, as in uWSGI.

One deliberate difference: the check that a resolved path lies inside its directory. uWSGI
compares the realpath() of the file with the docroot as plain strings, so
``static-map = /s=/srv/pub`` also serves ``/srv/pub-secret/x`` for ``/s/%2e%2e/pub-secret/x``
(or ``/s/../pub-secret/x`` over the uwsgi protocol). Here a path is inside a directory only
when it is the directory or continues it with a ``/``; the same rule applies to
``static-safe`` paths and to index and compressed variants (uWSGI does not re-check those).
Symlinks follow uWSGI: they are resolved, and a target outside the docroot is refused unless
it lies under a ``static-safe`` path.

Paths are handled as bytes: PATH_INFO is a latin-1 str in the environ (PEP 3333), so its
bytes are exactly the ones the client sent after percent-decoding.
"""

from __future__ import annotations

import calendar
import os
import re
import socket
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from vassal.log import log
from vassal.protocols.offload import send_all

DEFAULT_MIMEFILE = "/etc/mime.types"
#: files up to this size are read and sent with the head in one write
SMALL_FILE = 65536
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ServeMode(IntEnum):
    """``file-serve-mode``: who sends the bytes of a static file."""

    RAW = 0  # the worker (sendfile, or an offload thread)
    X_ACCEL_REDIRECT = 1  # nginx: the response names the file, nginx sends it
    X_SENDFILE = 2  # Apache mod_xsendfile / lighttpd: same idea, another header


_SERVE_MODES = {"x-sendfile": ServeMode.X_SENDFILE, "xsendfile": ServeMode.X_SENDFILE,
                "x-accel-redirect": ServeMode.X_ACCEL_REDIRECT, "xaccelredirect": ServeMode.X_ACCEL_REDIRECT,
                "nginx": ServeMode.X_ACCEL_REDIRECT}


class Range(IntEnum):
    """What a Range header asked for, once checked against the file size (uWSGI's enum)."""

    NOT_PARSED = 0
    PARSED = 1
    VALID = 2
    INVALID = 3


class StaticConfigError(ValueError):
    """A static-file option with a value we cannot use; the message names it."""


# --- dates -------------------------------------------------------------------------------


def http_date(t: float) -> str:
    """RFC 1123 date in GMT, as uWSGI writes Last-Modified and Expires."""
    tm = time.gmtime(t)
    return (f"{_DAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year:4d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT")


def parse_http_date(value: str) -> int:
    """Seconds since the epoch of an RFC 1123 date; 0 for anything else (uWSGI's rule)."""
    v = value.strip()
    if len(v) != 29 or v[3] != "," or not v.endswith(" GMT"):
        return 0
    try:
        month = _MONTHS.index(v[8:11]) + 1
        day, year = int(v[5:7]), int(v[12:16])
        hh, mm, ss = int(v[17:19]), int(v[20:22]), int(v[23:25])
        if not (1 <= day <= 31 and hh < 24 and mm < 60 and ss < 61):
            return 0
        return calendar.timegm((year, month, day, hh, mm, ss, 0, 0, 0))
    except (ValueError, OverflowError):
        return 0


# --- mime types --------------------------------------------------------------------------


def load_mime_types(paths: Iterable[str]) -> dict[bytes, str]:
    """Extension -> type from mime.types files, read as uWSGI reads them.

    A line starting with a letter or digit is ``type ext ext ...``; the first file and line
    naming an extension wins; a last extension of one character is skipped (uWSGI's reader).
    """
    table: dict[bytes, str] = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            log(f"!!! no {path} file found !!!")
            continue
        entries = 0
        for line in data.split(b"\n"):
            if not line[:1].isalnum():
                continue
            parts = line.replace(b"\t", b" ").split(b" ")
            words = [p for p in parts[1:] if p]
            if not words or len(parts) < 2:
                continue
            ctype = parts[0].decode("latin-1")
            # uWSGI's loop registers a word when it meets the blank after it; the last word of
            # the line is kept only when longer than one character
            ends_blank = line[-1:] in (b" ", b"\t", b"\r")
            for i, ext in enumerate(words):
                if i == len(words) - 1 and not ends_blank and len(ext) <= 1:
                    continue
                ext = ext.rstrip(b"\r")
                entries += 1
                table.setdefault(ext, ctype)
        log(f"building mime-types dictionary from file {path}...{entries} entry found")
    return table


def mime_type(table: dict[bytes, str], name: bytes) -> str | None:
    """The type for a file name: the text after its last dot, matched exactly."""
    dot = name.rfind(b".")
    if dot < 0:
        return None
    return table.get(name[dot + 1:])


# --- ranges ------------------------------------------------------------------------------


def parse_range(value: str) -> tuple[Range, int, int]:
    """uWSGI's reading of a Range header: only the first range; malformed is INVALID (416)."""
    first = value.split(",", 1)[0]
    if len(first) < 8 or not first.startswith("bytes="):
        return Range.INVALID, 0, 0
    spec = first[6:]
    start, dash, end = spec.partition("-")
    if not dash:
        return Range.INVALID, 0, 0
    if start:
        if not start.isdigit() or (end and not end.isdigit()):
            return Range.INVALID, 0, 0
        lo = int(start)
        hi = int(end) if end else (1 << 63) - 1
        return (Range.PARSED, lo, hi) if hi >= lo else (Range.INVALID, 0, 0)
    if not end.isdigit() or int(end) == 0:
        return Range.INVALID, 0, 0
    return Range.PARSED, -int(end), (1 << 63) - 1


def fix_range(parsed: Range, lo: int, hi: int, size: int) -> tuple[Range, int, int]:
    """Clamp a parsed range to the file: the whole file is NOT_PARSED (a plain 200)."""
    if parsed != Range.PARSED:
        return parsed, lo, hi
    if lo < 0:
        lo = max(0, size + lo)  # a suffix longer than the file means the whole file
    hi = min(hi, size - 1)
    if lo == 0 and hi == size - 1:
        return Range.NOT_PARSED, lo, hi
    if hi >= lo:
        return Range.VALID, lo, hi
    return Range.INVALID, 0, 0


# --- paths -------------------------------------------------------------------------------


def under(path: bytes, root: bytes) -> bool:
    """True when ``path`` is ``root`` or inside it (component-wise, never a mere prefix)."""
    root = root.rstrip(b"/")
    return not root or path == root or path.startswith(root + b"/")


def _realpath(path: bytes) -> bytes | None:
    try:
        return os.path.realpath(path)
    except (ValueError, OSError):  # NUL in the path, or a symlink loop
        return None


@dataclass
class _Root:
    """One place to look: a check-static dir, a static-map(2) docroot."""

    mount: bytes  # prefix of PATH_INFO ("" for check-static)
    configured: bytes  # the directory (or file) as written
    strip: bool  # static-map: PATH_INFO minus the mountpoint; static-map2/check-static: all of it
    real: bytes | None = None  # realpath of ``configured``, resolved on first use
    is_file: bool = False

    def resolve(self) -> bytes | None:
        if self.real is None:
            real = _realpath(self.configured)
            if real is None or not os.path.exists(real):
                return None  # retried on the next request (uWSGI gives up on the map)
            self.real = real
            self.is_file = os.path.isfile(real)
        return self.real


@dataclass
class _Expires:
    pattern: re.Pattern[bytes] | str  # a regexp, or a content type for static-expires-type
    seconds: int
    from_mtime: bool


@dataclass
class StaticReply:
    """What was sent, for the worker's accounting and the request log."""

    status: str
    head_bytes: int
    body_bytes: int
    nheaders: int
    keep: bool  # the connection may serve another request
    via: str = ""  # "sendfile" or "offload" when the body went that way (uWSGI's log says so)


@dataclass
class _Found:
    path: bytes  # resolved file name
    fd: int
    st: os.stat_result
    root: bytes


@dataclass
class StaticFiles:
    roots: list[_Root] = field(default_factory=list)
    docroot: bool = False  # check-static-docroot
    index: list[bytes] = field(default_factory=list)
    skip_ext: list[bytes] = field(default_factory=list)
    safe: list[bytes] = field(default_factory=list)
    mime: dict[bytes, str] = field(default_factory=dict)
    gzip_all: bool = False
    gzip_dirs: list[bytes] = field(default_factory=list)
    gzip_exts: list[bytes] = field(default_factory=list)
    gzip_regexps: list[re.Pattern[bytes]] = field(default_factory=list)
    expires_file: list[_Expires] = field(default_factory=list)
    expires_path_info: list[_Expires] = field(default_factory=list)
    expires_uri: list[_Expires] = field(default_factory=list)
    expires_type: list[_Expires] = field(default_factory=list)
    mode: ServeMode = ServeMode.RAW
    honour_range: bool = False

    # --- finding the file ----------------------------------------------------------------

    def serve(self, env: dict, sock: socket.socket, keep: bool, extra_headers: str,
              offload: Any = None, route: Any = None) -> StaticReply | None:
        """Answer the request with a static file, or None to let the app answer it.

        ``route``: the request's routing Exchange (vassal.routing), which may have looked the
        file up already (before its rules ran, as uWSGI does) and sees the head before it goes.
        """
        if route is not None and route.located:
            found, route.found = route.found, None
        else:
            found = self.locate(env)
        if found is None:
            return None
        return self._answer(found, env, sock, keep, extra_headers, offload, route)

    def locate(self, env: dict) -> _Found | None:
        """The static file for this request (opened), or None."""
        path_info = env.get("PATH_INFO", "").encode("latin-1", "replace")
        for ext in self.skip_ext:
            if path_info.endswith(ext):
                return None
        for root in self.roots:
            if not path_info.startswith(root.mount):
                continue
            base = root.resolve()
            if base is None:
                continue
            if root.is_file:
                name = base
            else:
                name = base + b"/" + (path_info[len(root.mount):] if root.strip else path_info)
            found = self._find(name, base)
            if found is not None:
                return found
        if self.docroot and env.get("DOCUMENT_ROOT"):
            base = _realpath(env["DOCUMENT_ROOT"].encode("latin-1", "replace"))
            if base is not None:
                return self._find(base + b"/" + path_info, base)
        return None

    def serve_path(self, path: bytes, env: dict, sock: socket.socket, keep: bool, extra_headers: str,
                   offload: Any = None, route: Any = None) -> StaticReply | None:
        """One named file as a static file (the routing ``static`` action): the path is its
        own document root, so a symlink leading elsewhere needs a ``static-safe`` path."""
        found = self._find(path, path)
        if found is None:
            return None
        return self._answer(found, env, sock, keep, extra_headers, offload, route)

    def _allowed(self, real: bytes, root: bytes) -> bool:
        if under(real, root) or any(under(real, s) for s in self.safe):
            return True
        log(f"[uwsgi-fileserve] security error: {os.fsdecode(real)} is not under {os.fsdecode(root)} "
            "or a safe path")
        return False

    def _find(self, name: bytes, root: bytes) -> _Found | None:
        real = _realpath(name)
        if real is None or not self._allowed(real, root):
            return None
        try:
            st = os.stat(real)
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(st.st_mode):
            for index in self.index:
                candidate = _realpath(real.rstrip(b"/") + b"/" + index)
                if candidate is None:
                    continue
                try:
                    if os.path.isfile(candidate):
                        if not self._allowed(candidate, root):
                            return None
                        real = candidate
                        break
                except (OSError, ValueError):
                    continue
            else:
                return None
        elif not stat.S_ISREG(st.st_mode):
            return None
        for ext in self.skip_ext:
            if real.endswith(ext):
                return None
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None
        return _Found(real, fd, st, root)

    def _compressed(self, found: _Found, accept: str) -> str | None:
        """Swap ``found`` for its .br/.gz sibling when wanted; the Content-Encoding or None."""
        can_br, can_gzip = "br" in accept, "gzip" in accept
        if not (can_br or can_gzip):
            return None
        name = found.path
        wanted = (self.gzip_all or any(name.startswith(d) for d in self.gzip_dirs)
                  or any(name.endswith(e) for e in self.gzip_exts)
                  or any(r.search(name) for r in self.gzip_regexps))
        if not wanted:
            return None
        for suffix, encoding, ok in ((b".br", "br", can_br), (b".gz", "gzip", can_gzip)):
            if not ok:
                continue
            real = _realpath(name + suffix)
            # a named file (the routing static action) is its own root: its sibling is its own
            if real is None or not (under(real, found.root) or real == found.root + suffix
                                    or any(under(real, s) for s in self.safe)):
                continue
            try:
                fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                continue
            os.close(found.fd)
            # uWSGI keeps the name it appended the suffix to (the Expires regexps see it)
            found.path, found.fd, found.st = name + suffix, fd, st
            return encoding
        return None

    # --- answering -----------------------------------------------------------------------

    def _answer(self, found: _Found, env: dict, sock: socket.socket, keep: bool, extra_headers: str,
                offload: Any, route: Any = None) -> StaticReply | None:
        method = env.get("REQUEST_METHOD", "")
        if method not in ("GET", "HEAD"):
            os.close(found.fd)
            return None
        handed = False

        def routed(status: str, headers: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]], str] | None:
            """The head as the routing rules leave it (None: they answered instead)."""
            if route is None:
                return status, headers, extra_headers
            return route.static_head(status, headers, extra_headers)

        try:
            ctype = mime_type(self.mime, found.path)
            encoding = self._compressed(found, env.get("HTTP_ACCEPT_ENCODING", ""))
            st = found.st
            protocol = env.get("SERVER_PROTOCOL") or "HTTP/1.0"
            ims = env.get("HTTP_IF_MODIFIED_SINCE")
            if ims and st.st_mtime // 1 <= parse_http_date(ims):
                head = routed("304 Not Modified", [])
                return route.reply() if head is None else _send_head(sock, protocol, *head, keep)
            size = st.st_size
            lo, length = 0, size
            parsed = Range.NOT_PARSED
            if self.honour_range and "HTTP_RANGE" in env:
                parsed, lo, hi = fix_range(*parse_range(env["HTTP_RANGE"]), size)
                if parsed == Range.INVALID:
                    # no body and no length: the connection ends the answer
                    head = routed("416 Requested Range Not Satisfiable", [("Content-Range", f"bytes */{size}")])
                    return route.reply() if head is None else _send_head(sock, protocol, *head, False)
                if parsed == Range.VALID:
                    if_range = env.get("HTTP_IF_RANGE")
                    # a date at or after the mtime keeps the file "unchanged"; an ETag reads as 0
                    if not if_range or parse_http_date(if_range) < st.st_mtime:
                        length = hi - lo + 1
                    else:
                        parsed, lo = Range.NOT_PARSED, 0
            status = "206 Partial Content" if parsed == Range.VALID else "200 OK"
            now = int(time.time())
            headers = self._expires(found, env, now)
            if encoding:
                headers.append(("Content-Encoding", encoding))
            if ctype:
                headers.append(("Content-Type", ctype))
                for rule in self.expires_type:
                    if rule.pattern == ctype:
                        headers.append(("Expires", http_date((st.st_mtime if rule.from_mtime else now)
                                                             + rule.seconds)))
                        break
            last_modified = ("Last-Modified", http_date(st.st_mtime))
            if self.mode != ServeMode.RAW:
                header = "X-Accel-Redirect" if self.mode == ServeMode.X_ACCEL_REDIRECT else "X-Sendfile"
                headers += [(header, os.fsdecode(found.path)), last_modified]
                # no body and no length: the front server takes it from here
                head = routed(status, headers)
                return route.reply() if head is None else _send_head(sock, protocol, *head, False)
            headers.append(("Content-Length", str(length)))
            if parsed == Range.VALID:
                headers.append(("Content-Range", f"bytes {lo}-{lo + length - 1}/{size}"))
            headers.append(last_modified)
            if route is not None:
                shown = routed(status, headers)
                if shown is None:
                    return route.reply()
                status, headers, extra_headers = shown
            head = _head(protocol, status, headers, extra_headers)
            if method == "HEAD":
                sock.sendall(head)
                return StaticReply("200 OK", len(head), 0, len(headers), keep)
            if length <= SMALL_FILE:
                data = os.pread(found.fd, length, lo)
                sock.sendall(head + data)
                return StaticReply(status, len(head), len(data), len(headers), keep, "sendfile")
            sock.sendall(head)
            if offload is not None:
                handed = True  # the offloader closes the file either way
                if offload.send(sock, found.fd, lo, length):
                    return StaticReply(status, len(head), length, len(headers), keep, "sendfile")
                # the offload thread owns the connection now: nothing more may be read from it
                return StaticReply(status, len(head), length, len(headers), False, "offload")
            sent = send_all(sock.fileno(), found.fd, lo, length)
            return StaticReply(status, len(head), sent, len(headers), keep and sent == length, "sendfile")
        finally:
            if not handed:
                os.close(found.fd)

    def _expires(self, found: _Found, env: dict, now: int) -> list[tuple[str, str]]:
        """Expires headers from the filename, PATH_INFO and REQUEST_URI rules (one per list)."""
        out = []
        subjects = ((self.expires_file, found.path),
                    (self.expires_path_info, env.get("PATH_INFO", "").encode("latin-1", "replace")),
                    (self.expires_uri, env.get("REQUEST_URI", "").encode("latin-1", "replace")))
        for rules, subject in subjects:
            for plain in (False, True):  # uWSGI tries every "now" rule before the mtime ones
                rule = next((r for r in rules if r.from_mtime == plain and r.pattern.search(subject)), None)
                if rule is not None:
                    base = found.st.st_mtime if rule.from_mtime else now
                    out.append(("Expires", http_date(int(base) + rule.seconds)))
                    break
        return out


def _head(protocol: str, status: str, headers: list[tuple[str, str]], extra: str) -> bytes:
    lines = [protocol, " ", status, "\r\n"]
    for k, v in headers:
        lines += (k, ": ", v, "\r\n")
    lines += (extra, "\r\n")
    return "".join(lines).encode("latin-1", "replace")


def _send_head(sock: socket.socket, protocol: str, status: str, headers: list[tuple[str, str]], extra: str,
               keep: bool) -> StaticReply:
    head = _head(protocol, status, headers, extra)
    sock.sendall(head)
    return StaticReply(status, len(head), 0, len(headers), keep)


# --- configuration -----------------------------------------------------------------------


def _values(config: Any, name: str) -> list[tuple[str, str]]:
    """(value, where) of every occurrence of an option, for one-line errors."""
    return [(value, str(origin)) for value, origin in config.occurrences(name)]


def _regexp(option: str, text: str, where: str) -> re.Pattern[bytes]:
    try:
        return re.compile(os.fsencode(text))
    except re.error as exc:
        raise StaticConfigError(f"{option} {text!r} ({where}): bad regular expression: {exc}") from None


def _seconds(option: str, text: str, where: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise StaticConfigError(f"{option} ({where}): {text!r} is not a number of seconds")
    return int(text)


#: options that make uWSGI load its mime types (UWSGI_OPT_MIME)
#: the options that make uWSGI build its mime-type table (UWSGI_OPT_MIME in core/uwsgi.c): the
#: routing ``static`` action sends a Content-Type (and static-expires-type can match) only then
MIME_OPTIONS = ("check-static", "check-static-docroot", "static-map", "static-map2", "static-skip-ext",
                "static-index", "static-safe", "static-cache-paths", "static-cache-paths-name", "mimefile",
                "static-expires-type", "static-expires-type-mtime", "static-expires", "static-expires-mtime",
                "static-expires-uri", "static-expires-uri-mtime", "static-expires-path-info",
                "static-expires-path-info-mtime", "static-gzip", "static-gzip-all", "static-gzip-dir",
                "static-gzip-ext", "file-serve-mode")


def from_config(config: Any, always: bool = False) -> StaticFiles | None:
    """The static-file setup this config asks for, or None when it asks for none (with
    ``always``: the setup anyway, for the routing ``static`` action; its mime types are
    loaded only when an option that loads them in uWSGI is given)."""
    sf = StaticFiles()
    for value, _where in _values(config, "check-static"):
        sf.roots.append(_Root(b"", os.fsencode(value), strip=False))
        log(f"[uwsgi-static] added check for {value}")
    for option, strip in (("static-map", True), ("static-map2", False)):
        for value, where in _values(config, option):
            mount, eq, docroot = value.partition("=")
            if not eq:
                raise StaticConfigError(f"{option} {value!r} ({where}): invalid document root in static map, "
                                        "syntax mountpoint=docroot")
            sf.roots.append(_Root(os.fsencode(mount), os.fsencode(docroot), strip=strip))
            log(f"[uwsgi-static] added mapping for {mount} => {docroot}")
    sf.docroot = bool(config.get("check-static-docroot"))
    if not sf.roots and not sf.docroot and not always:
        return None
    sf.index = [os.fsencode(v) for v in config.getlist("static-index")]
    sf.skip_ext = [os.fsencode(v) for v in config.getlist("static-skip-ext")]
    sf.safe = [os.fsencode(v) for v in config.getlist("static-safe")]
    if any(config.has(name) for name in MIME_OPTIONS):
        sf.mime = load_mime_types(config.getlist("mimefile") or [DEFAULT_MIMEFILE])
    sf.gzip_all = bool(config.get("static-gzip-all"))
    sf.gzip_dirs = [os.fsencode(v) for v in config.getlist("static-gzip-dir")]
    sf.gzip_exts = [os.fsencode(v) for v in config.getlist("static-gzip-ext")]
    sf.gzip_regexps = [_regexp("static-gzip", v, w) for v, w in _values(config, "static-gzip")]
    for option, rules, mtime in (("static-expires", sf.expires_file, False),
                                 ("static-expires-mtime", sf.expires_file, True),
                                 ("static-expires-path-info", sf.expires_path_info, False),
                                 ("static-expires-path-info-mtime", sf.expires_path_info, True),
                                 ("static-expires-uri", sf.expires_uri, False),
                                 ("static-expires-uri-mtime", sf.expires_uri, True)):
        for value, where in _values(config, option):
            pattern, space, secs = value.partition(" ")
            if not space:
                raise StaticConfigError(f"{option} {value!r} ({where}): syntax is REGEXP SECONDS")
            rules.append(_Expires(_regexp(option, pattern, where), _seconds(option, secs, where), mtime))
    for option, mtime in (("static-expires-type", False), ("static-expires-type-mtime", True)):
        for value, where in _values(config, option):
            ctype, eq, secs = value.partition("=")
            if not eq:
                raise StaticConfigError(f"{option} {value!r} ({where}): syntax is CONTENT_TYPE=SECONDS")
            sf.expires_type.append(_Expires(ctype, _seconds(option, secs, where), mtime))
    # uWSGI tries every plain rule of a kind before its mtime rules
    sf.expires_type.sort(key=lambda r: r.from_mtime)
    for mode, where in _values(config, "file-serve-mode"):
        if mode.lower() not in _SERVE_MODES:
            # uWSGI leaves the mode as it was for a value it does not know (real configs say
            # "offloading"): the files still go out, so say it and go on
            log(f"imperium: file-serve-mode {mode!r} ({where}): not x-sendfile, x-accel-redirect "
                "or nginx: ignored, as uWSGI does")
            continue
        sf.mode = _SERVE_MODES[mode.lower()]
    sf.honour_range = bool(config.get("honour-range"))
    return sf
