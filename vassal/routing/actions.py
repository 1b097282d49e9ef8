"""The actions of routing rules (``NAME:ARG``), as uWSGI 2.0 and its router plugins define them.

Each entry builds, once at start-up, a function of the request's Exchange returning what the
routing engine does next: NEXT (the next rule), CONTINUE (stop the rules, serve the request),
BREAK (stop, the request is over: answered by the action, or dropped). Facts from
core/routing.c and plugins/router_{redirect,rewrite,static,basicauth,expires,hash,metrics}; which
arguments are templates (``$1``, ``${VAR}``) and which are taken as written follows them
(``break`` and ``return`` statuses, ``addvar``'s and ``logvar``'s names are not expanded).

Actions of plugins not built here (proxies, caches, transformations, RPC, ...) are refused by
name when the config is read, with what to do instead.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import os
import stat
import sys
import threading
from collections.abc import Callable
from typing import Any

from vassal.api import metrics as _metrics
from vassal.api.cache import djb33x, murmur2
from vassal.config.placeholders import c_int
from vassal.log import log, set_logvar, skip_request_line
from vassal.protocols.static import http_date, mime_type
from vassal.services.daemons import kvlist  # uWSGI's uwsgi_kvlist_parse

from .exchange import REASONS, Exchange
from .expand import Template, compile_template, expand

try:  # imported now: after a privilege drop the interpreter's own files may be unreadable
    import setproctitle
except ImportError:  # pragma: no cover - a dependency of the project
    setproctitle = None  # type: ignore[assignment]

NEXT, CONTINUE, BREAK = 0, 1, 2

Action = Callable[[Exchange], int]


class ActionError(ValueError):
    """An action that cannot be built; the message says why."""


def _c_atoi(text: str) -> int:
    """C's atoi (strtol's leading integer, 0 when there is none)."""
    return c_int(text)


# --- flow -----------------------------------------------------------------------------------


def _continue(arg: str) -> Action:
    return lambda ex: CONTINUE


def _break(arg: str) -> Action:
    status = arg

    def act(ex: Exchange) -> int:
        if len(status) >= 3 and ex.prepare(status):
            ex.add_header("Connection", "close")
            ex.add_header("Content-Type", "text/plain")
            ex.write_headers()
        return BREAK
    return act


def _return(arg: str) -> Action:
    reason = REASONS.get(arg[:3]) if len(arg) >= 3 else None

    def act(ex: Exchange) -> int:
        if reason is not None and ex.prepare(f"{arg} {reason}"):
            ex.add_header("Content-Type", "text/plain")
            ex.add_header("Content-Length", str(len(reason)))
            ex.write_body(reason.encode("latin-1"))
        return BREAK
    return act


def _goto(arg: str) -> Action:
    label = compile_template(arg)
    number = _c_atoi(arg)

    def act(ex: Exchange) -> int:
        name = expand(label, ex.ctx)
        target = ex.chain.labels.get(name, number)
        ex.goto = target
        return NEXT
    act.goto_label = label  # type: ignore[attr-defined]
    act.goto_number = number  # type: ignore[attr-defined]
    return act


# --- logging ----------------------------------------------------------------------------------


def _log(arg: str) -> Action:
    text = compile_template(arg)

    def act(ex: Exchange) -> int:
        log(expand(text, ex.ctx))
        return NEXT
    return act


def _key_value(what: str, arg: str) -> tuple[str, Template]:
    key, eq, value = arg.partition("=")
    if not eq:
        raise ActionError(f"invalid {what} syntax, must be KEY=VALUE: {arg!r}")
    return key, compile_template(value)


def _logvar(arg: str) -> Action:
    key, value = _key_value("logvar", arg)

    def act(ex: Exchange) -> int:
        set_logvar(key, expand(value, ex.ctx).encode("latin-1", "replace"))
        return NEXT
    return act


def _donotlog(arg: str) -> Action:
    def act(ex: Exchange) -> int:
        skip_request_line()
        return NEXT
    return act


def _donotoffload(arg: str) -> Action:
    def act(ex: Exchange) -> int:
        ex.no_offload = True
        return NEXT
    return act


# --- request variables ----------------------------------------------------------------------


def _setvar(var: str, *, reselect: bool = False, until_colon: bool = False,
            also: Callable[[Exchange, str], None] | None = None) -> Callable[[str], Action]:
    def make(arg: str) -> Action:
        value = compile_template(arg)

        def act(ex: Exchange) -> int:
            text = expand(value, ex.ctx)
            if until_colon:
                text = text.partition(":")[0]
            ex.env[var] = text
            if reselect:
                ex.reselect = True
            if also is not None:
                also(ex, text)
            return NEXT
        return act
    return make


def _scheme(ex: Exchange, scheme: str) -> None:
    ex.env["wsgi.url_scheme"] = scheme


def _addvar(arg: str) -> Action:
    key, value = _key_value("addvar", arg)

    def act(ex: Exchange) -> int:
        ex.env[key] = expand(value, ex.ctx)
        return NEXT
    return act


def _fixpathinfo(arg: str) -> Action:
    def act(ex: Exchange) -> int:
        script = ex.env.get("SCRIPT_NAME") or ""
        if script:
            ex.env["PATH_INFO"] = (ex.env.get("PATH_INFO") or "")[len(script):]
        return NEXT
    return act


def _math(op: str) -> Callable[[str], Action]:
    def make(arg: str) -> Action:
        var, comma, amount = arg.partition(",")
        value = compile_template(amount) if comma else None

        def act(ex: Exchange) -> int:
            base = ex.ctx.var(var)
            if base is None:
                return BREAK
            a = _str_num(base)
            b = _str_num(expand(value, ex.ctx)) if value is not None else 1
            if op == "+":
                total = a + b
            elif op == "-":
                total = a - b
            elif op == "*":
                total = a * b
            else:
                total = a // b if b else 0
            ex.env[var] = str(total)
            return NEXT
        return act
    return make


def _str_num(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 10 + ord(ch) - 48
    return n


# --- headers and body -------------------------------------------------------------------------


def _addheader(arg: str) -> Action:
    line = compile_template(arg)

    def act(ex: Exchange) -> int:
        ex.additional.append(expand(line, ex.ctx))
        return NEXT
    return act


def _delheader(arg: str) -> Action:
    name = compile_template(arg)

    def act(ex: Exchange) -> int:
        ex.removed.add(expand(name, ex.ctx).lower())
        return NEXT
    return act


def _clearheaders(arg: str) -> Action:
    status = compile_template(arg)

    def act(ex: Exchange) -> int:
        return NEXT if ex.prepare(expand(status, ex.ctx)) else BREAK
    return act


def _disableheaders(arg: str) -> Action:
    def act(ex: Exchange) -> int:
        ex.resp.head_sent = True  # uWSGI marks the headers sent: what follows goes out raw
        ex.resp.keep = False
        return NEXT
    return act


def _send(crnl: bool) -> Callable[[str], Action]:
    def make(arg: str) -> Action:
        data = compile_template(arg)

        def act(ex: Exchange) -> int:
            out = expand(data, ex.ctx) + ("\r\n" if crnl else "")
            ex.write_body(out.encode("latin-1", "replace"))
            return NEXT
        return act
    return make


# --- process --------------------------------------------------------------------------------


def _chdir(arg: str) -> Action:
    path = compile_template(arg)

    def act(ex: Exchange) -> int:
        target = expand(path, ex.ctx)
        try:
            os.chdir(target)
        except (OSError, ValueError) as exc:
            log(f"uwsgi_router_chdir_func()/chdir(): {getattr(exc, 'strerror', None) or exc} "
                f"[{ex.env.get('REQUEST_METHOD', '')} {ex.env.get('REQUEST_URI', '')}]")
            return BREAK
        return NEXT
    return act


def _setprocname(arg: str) -> Action:
    name = compile_template(arg)

    def act(ex: Exchange) -> int:
        if setproctitle is not None:
            setproctitle.setproctitle(expand(name, ex.ctx))
        return NEXT
    return act


def _signal(arg: str) -> Action:
    num = _c_atoi(arg)

    def act(ex: Exchange) -> int:
        api = sys.modules.get("uwsgi")
        try:
            api.signal(num)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a bad signal is logged, the request goes on
            log(f"[uwsgi-route] signal {num}: {exc}")
        return NEXT
    return act


def _harakiri(arg: str) -> Action:
    seconds = _c_atoi(arg)

    def act(ex: Exchange) -> int:
        if seconds > 0:
            api = sys.modules.get("uwsgi")
            if api is not None:
                api.set_user_harakiri(seconds)
        return NEXT
    return act


# --- router_redirect, router_rewrite ------------------------------------------------------------


def _redirect(status: str, body: bytes) -> Callable[[str], Action]:
    def make(arg: str) -> Action:
        target = compile_template(arg)

        def act(ex: Exchange) -> int:
            if ex.prepare(status):
                ex.add_header("Location", expand(target, ex.ctx))
                ex.write_body(body)
            return BREAK
        return act
    return make


def url_decode(path: str) -> str:
    """uWSGI's ``http_url_decode``: %XX decoded (a bad digit gives NUL), ``//`` and ``/./``
    folded, ``/../`` removing the previous segment, a ``#`` ending the path."""
    out: list[str] = []
    state = "slash" if path and path[0] != "/" else "zero"
    no_slash = bool(path) and path[0] != "/"
    hex1 = ""

    def unhex(a: str, b: str) -> str:
        try:
            return chr(int(a + b, 16)) if a in _HEX and b in _HEX else "\0"
        except ValueError:
            return "\0"

    for i, c in enumerate(path):
        if c == "#":
            break
        if state == "zero":
            if c == "%":
                state = "p1"
            elif c == "/":
                state = "slash"
            else:
                out.append(c)
        elif state == "p1":
            if c == "%":
                out.append("%")
                state = "zero"
            else:
                hex1 = c
                state = "p2"
        elif state == "p2":
            out.append(unhex(hex1, c))
            state = "zero"
        elif state == "slash":
            if c == ".":
                state = "dot"
                continue
            if i > 0 or not no_slash:
                out.append("/")
            if c == "%":
                state = "p1"
            elif c == "/":
                state = "slash"
            else:
                out.append(c)
                state = "zero"
        elif state == "dot":
            if c == ".":
                state = "dotdot"
                continue
            if c == "/":
                state = "slash"
                continue
            if i > 1:
                out.append("/")
            out.append(".")
            if c == "%":
                state = "p1"
            else:
                out.append(c)
                state = "zero"
        else:  # dotdot
            if c == "/":
                _drop_segment(out)
                state = "slash"
                continue
            if i > 2:
                out.append("/")
            out += (".", ".")
            if c == "%":
                state = "p1"
            else:
                out.append(c)
                state = "zero"
    if state in ("slash", "dot"):
        out.append("/")
    elif state == "dotdot":
        text = "".join(out)
        cut = text.rfind("/")
        return text[:cut + 1] if cut >= 0 else ""
    return "".join(out)


_HEX = frozenset("0123456789abcdefABCDEF")


def _drop_segment(out: list[str]) -> None:
    """Remove back to (and including) the last '/' written, as uWSGI's ``..`` does."""
    text = "".join(out)
    cut = text.rfind("/")
    out[:] = [text[:cut]] if cut > 0 else []


def _rewrite(last: bool) -> Callable[[str], Action]:
    def make(arg: str) -> Action:
        target = compile_template(arg)

        def act(ex: Exchange) -> int:
            new = expand(target, ex.ctx)
            path, qmark, qs = new.partition("?")
            old_qs = ex.env.get("QUERY_STRING") or ""
            if qmark:
                if old_qs:
                    qs = f"{qs}&{old_qs}"
            else:
                qs = old_qs
            ex.env["PATH_INFO"] = url_decode(path)
            ex.env["QUERY_STRING"] = qs
            return CONTINUE if last else NEXT
        return act
    return make


# --- router_static ----------------------------------------------------------------------------


def _static(next_: bool) -> Callable[[str], Action]:
    def make(arg: str) -> Action:
        path = compile_template(arg)

        def act(ex: Exchange) -> int:
            ex.router.serve_file(ex, expand(path, ex.ctx))
            return NEXT if next_ else BREAK
        return act
    return make


def _file(mode: str, next_: bool) -> Callable[[str], Action]:
    """``file``/``sendfile``/``fastfile`` (and ``-next``): a file as the whole answer."""
    def make(arg: str) -> Action:
        conf = kvlist(arg)
        if "filename" not in conf:
            raise ActionError(f"you have to specify a filename for the \"{mode}\" router: {arg!r}")
        filename = compile_template(conf["filename"])
        status = compile_template(conf.get("status") or "200 OK")
        ctype = conf.get("content_type") or "text/html"
        no_cl = any(k in conf for k in ("nocl", "no_cl", "no_content_length")) and mode == "file"
        use_mime = "mime" in conf
        no_headers = "no_headers" in conf

        def act(ex: Exchange) -> int:
            name = expand(filename, ex.ctx)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
            except (OSError, ValueError):
                return NEXT if next_ else BREAK
            try:
                st = os.fstat(fd)
                if not no_headers:
                    if not ex.prepare(expand(status, ex.ctx)):
                        return BREAK
                    if not no_cl:
                        ex.add_header("Content-Length", str(st.st_size))
                    found = None
                    if use_mime:
                        found = mime_type(ex.router.mime, name.encode("latin-1", "replace"))
                    ex.add_header("Content-Type", found or ctype)
                if mode == "file":
                    _copy_body(ex, fd, st)
                else:
                    if not ex.write_headers():
                        return BREAK
                    if stat.S_ISREG(st.st_mode):
                        ex.sendfile(fd, st.st_size, offload=mode == "fastfile")
            finally:
                os.close(fd)  # an offload thread got its own copy
            return BREAK
        return act
    return make


def _copy_body(ex: Exchange, fd: int, st: os.stat_result) -> None:
    remains = st.st_size
    while remains:
        data = os.read(fd, min(32768, remains))
        if not data:
            break
        if not ex.write_body(data):
            break
        remains -= len(data)


# --- router_basicauth -------------------------------------------------------------------------


class _Crypt:
    """glibc's crypt(3) (libcrypt), the function uWSGI checks htpasswd lines with; loaded on
    first use, so that an instance without basicauth never looks for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fn: Any = None
        self.loaded = False

    def _load(self) -> None:
        self.loaded = True
        for name in ("libcrypt.so.1", ctypes.util.find_library("crypt")):
            if not name:
                continue
            try:
                fn = ctypes.CDLL(name).crypt
            except (OSError, AttributeError):
                continue
            fn.restype = ctypes.c_char_p
            fn.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
            self.fn = fn
            return

    def __call__(self, password: bytes, salt: bytes) -> bytes | None:
        with self.lock:
            if not self.loaded:
                self._load()
            if self.fn is None:
                return None
            return self.fn(password, salt)


_crypt = _Crypt()


def htpasswd_check(filename: str, auth: bytes) -> int:
    """uWSGI's htpasswd check: the user's length when ``user:password`` matches a line, else 0.

    As in uWSGI 2.0 a stored hash is cut to 13 characters (DES crypt), or is ``{SHA}`` and
    base64 of SHA-1; lines are read up to 1023 bytes, and a line without ``:`` ends the file.
    """
    user, colon, password = auth.partition(b":")
    if not colon:
        return 0
    try:
        with open(filename, "rb") as f:
            data = f.read()
    except OSError:
        return 0
    for raw in data.splitlines(keepends=True):
        line = raw[:1023]
        name, c2, stored = line.partition(b":")
        if not c2:
            break
        if stored.startswith(b"{SHA}"):
            crypted = b"{SHA}" + base64.b64encode(hashlib.sha1(password).digest()) + b"\n"
        else:
            if len(stored) < 13:
                break
            stored = stored[:13]
            crypted = _crypt(password, stored)
            if crypted is None:
                continue
        if crypted == stored and name == user:
            return len(user)
    return 0


def _basicauth(next_: bool) -> Callable[[str], Action]:
    def make(arg: str) -> Action:
        realm, comma, creds = arg.partition(",")
        if not comma:
            raise ActionError(f"invalid route syntax: {arg!r} (basicauth:REALM,USER:PASSWORD or "
                              "basicauth:REALM,HTPASSWD_FILE)")
        file_mode = ":" not in creds
        user_len = creds.find(":")
        want = creds.encode("latin-1", "replace")
        challenge = f'Basic realm="{realm}"'

        def act(ex: Exchange) -> int:
            env = ex.env
            if env.get("REMOTE_USER"):
                return NEXT
            authorization = env.get("HTTP_AUTHORIZATION") or ""
            if len(authorization) > 7 and creds:
                if authorization.startswith("Basic "):
                    try:
                        auth = base64.b64decode(authorization[6:].encode("latin-1", "replace"), validate=False)
                    except ValueError:
                        auth = None
                    if auth is not None:
                        if file_mode:
                            n = htpasswd_check(creds, auth)
                            if n:
                                env["REMOTE_USER"] = auth[:n].decode("latin-1")
                                return NEXT
                        elif auth == want:
                            env["REMOTE_USER"] = auth[:user_len].decode("latin-1")
                            return NEXT
                        if next_:
                            return NEXT
            if ex.prepare("401 Authorization Required"):
                ex.add_header("WWW-Authenticate", challenge)
                ex.write_body(b"Unauthorized")
            return BREAK
        return act
    return make


# --- router_expires, router_hash --------------------------------------------------------------


def _expires(arg: str) -> Action:
    conf = kvlist(arg)
    filename = conf.get("filename", conf.get("file"))
    fname = compile_template(filename) if filename is not None else None
    unix = compile_template(conf["unix"]) if "unix" in conf else None
    value = compile_template(conf["value"]) if "value" in conf else None

    def act(ex: Exchange) -> int:
        when = 0
        if fname is not None:
            try:
                when = int(os.stat(expand(fname, ex.ctx)).st_mtime)
            except (OSError, ValueError):
                return BREAK
        elif unix is not None:
            when = _strtoul(expand(unix, ex.ctx))
        if value is not None:
            when += _c_atoi(expand(value, ex.ctx))
        ex.additional.append("Expires: " + http_date(when))
        return NEXT
    return act


def _strtoul(text: str) -> int:
    return max(0, _c_atoi(text))


_HASHES = {"djb33x": djb33x, "murmur2": murmur2}


def _hash(arg: str) -> Action:
    conf = kvlist(arg)
    if not conf.get("key") or not conf.get("var") or not conf.get("items"):
        raise ActionError("invalid route syntax: you need to specify a hash key, a var and a set of items")
    algo = conf.get("algo") or "djb33x"
    if algo not in _HASHES:
        raise ActionError(f"unable to find hash algo \"{algo}\" (known: djb33x murmur2)")
    func = _HASHES[algo]
    key = compile_template(conf["key"])
    var = conf["var"]
    items = conf["items"].split(";")
    if items and items[-1] == "":
        items.pop()

    def act(ex: Exchange) -> int:
        h = func(expand(key, ex.ctx).encode("latin-1", "replace"))
        value = items[h % len(items)] if items else ""
        if not value:
            log("[uwsgi-hash-router] BUG !!! unable to hash items")
            return BREAK
        ex.env[var] = value
        return NEXT
    return act


# --- router_metrics -----------------------------------------------------------------------------


def _metric(action: str) -> Callable[[str], Action]:
    """``metricinc:NAME[,VALUE]`` (metricdec, metricmul, metricdiv, metricset): NAME and VALUE
    (default 1, read as strtol reads it) are templates. A metric that cannot change (unknown,
    collected, an alias, metrics off, a division by zero) ends the request unanswered, as
    router_metrics' BREAK does."""
    def factory(arg: str) -> Action:
        name_text, value_text = _metrics.split_action(arg)
        name, value = compile_template(name_text), compile_template(value_text)

        def act(ex: Exchange) -> int:
            ctx = ex.ctx
            return NEXT if _metrics.apply_action(action, expand(name, ctx), expand(value, ctx)) else BREAK
        return act
    return factory


# --- the table ---------------------------------------------------------------------------------

FACTORIES: dict[str, Callable[[str], Action]] = {
    "continue": _continue, "last": _continue, "break": _break,
    "return": _return, "break-with-status": _return,
    "log": _log, "donotlog": _donotlog, "donotoffload": _donotoffload, "logvar": _logvar,
    "goto": _goto, "addvar": _addvar, "addheader": _addheader,
    "delheader": _delheader, "remheader": _delheader,
    "clearheaders": _clearheaders, "resetheaders": _clearheaders, "disableheaders": _disableheaders,
    "signal": _signal, "send": _send(False), "send-crnl": _send(True), "chdir": _chdir,
    "setapp": _setvar("UWSGI_APPID", reselect=True), "setuser": _setvar("REMOTE_USER", until_colon=True),
    "sethome": _setvar("UWSGI_HOME"), "setscriptname": _setvar("SCRIPT_NAME", reselect=True),
    "setmethod": _setvar("REQUEST_METHOD"), "seturi": _setvar("REQUEST_URI"),
    "setremoteaddr": _setvar("REMOTE_ADDR"), "setpathinfo": _setvar("PATH_INFO"),
    "fixpathinfo": _fixpathinfo, "setdocroot": _setvar("DOCUMENT_ROOT"),
    "setscheme": _setvar("UWSGI_SCHEME", also=_scheme), "setprocname": _setprocname,
    "+": _math("+"), "-": _math("-"), "*": _math("*"), "/": _math("/"),
    "harakiri": _harakiri,
    "redirect": _redirect("302 Found", b"Moved"), "redirect-302": _redirect("302 Found", b"Moved"),
    "redirect-permanent": _redirect("301 Moved Permanently", b"Moved Permanently"),
    "redirect-301": _redirect("301 Moved Permanently", b"Moved Permanently"),
    "rewrite": _rewrite(False), "rewrite-last": _rewrite(True),
    "static": _static(False), "static-next": _static(True),
    "file": _file("file", False), "file-next": _file("file", True),
    "sendfile": _file("sendfile", False), "sendfile-next": _file("sendfile", True),
    "fastfile": _file("fastfile", False), "fastfile-next": _file("fastfile", True),
    "basicauth": _basicauth(False), "basicauth-next": _basicauth(True),
    "expires": _expires, "hash": _hash,
    **{name: _metric(name) for name in _metrics.ACTIONS},
}

_PROXY = "proxying to another server is not built here: let the front server (nginx's proxy_pass, " \
         "uwsgi_pass) route such requests"
#: actions uWSGI has that are refused here: name -> why (and what to do instead)
REFUSED: dict[str, str] = {
    **{n: _PROXY for n in ("http", "httpdumb", "proxyhttp", "httpconnect", "proxyhttpconnect", "proxyuwsgi")},
    "uwsgi": "router_uwsgi (forwarding to another uwsgi server, or changing modifier1/2, which select "
             "request plugins a Python-only server does not have) is not built here",
    "setmodifier1": "modifiers select request plugins, which a Python-only server does not have",
    "setmodifier2": "modifiers select request plugins, which a Python-only server does not have",
    "setfile": "it loads a dynamic app per request (UWSGI_FILE), which is not built here: mount the app",
    "alarm": "uWSGI alarms are not built here",
    **{n: "response transformations are not built here" for n in (
        "flush", "fixcl", "forcecl", "chunked", "gzip", "offload", "template", "tofile", "to-file",
        "toupper", "xslt", "toxslt")},
    **{n: "the router_cache plugin is not built here: cache in the app (uwsgi.cache_get/cache_set)"
       for n in ("cache", "cache-continue", "cachevar", "cacheset", "cachestore", "cache-store", "cacheinc",
                 "cachedec", "cachemul", "cachediv")},
    **{n: "the rpc plugin's routing actions are not built here: call uwsgi.rpc() from the app"
       for n in ("rpc", "call", "rpcret", "rpcblob", "rpcnext", "rpcraw", "rpcvar")},
    **{n: f"it needs uWSGI's {p} plugin, which is not built here" for n, p in (
        ("memcached", "router_memcached"), ("memcached-continue", "router_memcached"),
        ("memcachedstore", "router_memcached"), ("memcached-store", "router_memcached"),
        ("redis", "router_redis"), ("redis-continue", "router_redis"), ("redisstore", "router_redis"),
        ("redis-store", "router_redis"), ("xmldir", "router_xmldir"), ("access", "router_access"),
        ("radius", "router_radius"), ("radius-next", "router_radius"), ("spnego", "router_spnego"),
        ("spnego-next", "router_spnego"), ("ldapauth", "ldap"), ("ldapauth-next", "ldap"),
        ("gridfs", "gridfs"), ("cgi", "cgi"), ("cgihelper", "cgi"), ("ssi", "ssi"),
        ("symcall", "symcall"), ("symcall-next", "symcall"))},
}


def build(text: str) -> Action:
    """The action ``NAME:ARG``; ActionError naming the problem."""
    name, colon, arg = text.partition(":")
    if not colon:
        raise ActionError(f"invalid route syntax: action {text!r} has no ':' (NAME:ARGS, e.g. \"last:\")")
    factory = FACTORIES.get(name)
    if factory is None:
        why = REFUSED.get(name)
        if why is not None:
            raise ActionError(f"route action \"{name}\" is not supported: {why}")
        raise ActionError(f"unknown route action \"{name}\"")
    return factory(arg)

