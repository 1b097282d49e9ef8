"""Route templates: ``$1`` regexp groups and ``${VAR}`` request variables in a rule's text.

uWSGI 2.0 (core/routing.c ``uwsgi_routing_translate``) expands a template in two passes over
the text: first every ``$N`` (one digit) becomes group N of the rule's match (nothing when the
rule has fewer groups; a ``$`` before anything else stays as it is; a ``$`` at the very end is
dropped), then every ``${KEY}`` becomes the request variable KEY (the last value given wins),
or ``${NAME[ARG]}`` the route variable NAME (``cookie``, ``qs``, ``mime``, ``time``,
``httptime``, ``base64``, ``hex``, ``uwsgi``, ``metric``) applied to ARG. An unknown variable is empty; an
unclosed ``${`` stays as text.

One deliberate difference: here a template is split into its parts once, when the config is
read, so text a client sent never becomes syntax. In uWSGI the second pass also reads the
values the first pass put in, so ``route = ^/(.*) redirect:/x/$1`` asked for
``/${HTTP_AUTHORIZATION}`` puts the request's credentials (or a variable the front server
added and the client never saw) into the Location header. Here a group's text is data: it may
name the variable (``${$1}``, as in uWSGI) but is never expanded itself.

Values are ``str`` holding bytes as latin-1, as in the WSGI environ (PEP 3333).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vassal.api.metrics import metric_get
from vassal.protocols.static import http_date, mime_type

#: route variables registered by plugins that are not built here: refused when a rule names one
PLUGIN_VARS = {"math": "matheval", "geoip": "geoip", "xattr": "xattr", "xattr2": "xattr"}


class TemplateError(ValueError):
    """A template that can never work (it names a route variable not built here)."""


@dataclass(frozen=True, slots=True)
class Group:
    """``$N``: group N of the rule's match."""

    n: int


@dataclass(frozen=True, slots=True)
class Var:
    """``${KEY}``: KEY's parts (text and groups) are joined when the request comes."""

    key: tuple[str | Group, ...]


Part = str | Group | Var


class Template(tuple):
    """A compiled template: its parts, and ``render(ctx)``, a function made for them once
    (a constant, one variable, ...) so that the request path does no dispatch of its own."""

    render: Callable[[Context], str]


class Context:
    """What a template reads: the request's variables, the rule's match, the route variables."""

    __slots__ = ("env", "groups", "wid", "status", "mime", "started", "resp")

    def __init__(self, env: dict, mime: dict[bytes, str] | None = None, wid: int = 0, resp: Any = None) -> None:
        self.env = env
        self.resp = resp  # the worker's response: ``${uwsgi[rsize]}``
        self.groups: Sequence[str | None] = ()  # group 0 (the whole match), 1, 2, ...
        self.wid = wid
        self.status = 0  # the response status once known (``${uwsgi[status]}``)
        self.mime = mime or {}
        self.started = time.time()

    def var(self, key: str) -> str | None:
        value = self.env.get(key)
        return value if type(value) is str else None

    def group(self, n: int) -> str:
        groups = self.groups
        if n < len(groups):
            return groups[n] or ""
        return ""


# --- compiling --------------------------------------------------------------------------------


def _pass1(text: str) -> list[str | Group]:
    """uWSGI's first pass, with the groups kept as markers."""
    out: list[str | Group] = []
    lit: list[str] = []
    dollar = False
    for ch in text:
        if dollar:
            dollar = False
            if "0" <= ch <= "9":
                if lit:
                    out.append("".join(lit))
                    lit = []
                out.append(Group(ord(ch) - 48))
            else:
                lit += ("$", ch)
        elif ch == "$":
            dollar = True
        else:
            lit.append(ch)
    if lit:
        out.append("".join(lit))
    return out


def compile_template(text: str) -> Template:
    """The template's parts (see ``_parts``) with their renderer."""
    t = Template(_parts(text))
    t.render = _renderer(t)
    return t


def _parts(text: str) -> tuple[Part, ...]:
    """The parts of a template; the second pass runs over the first one's text and markers."""
    parts: list[Part] = []
    lit: list[str] = []
    key: list[str | Group] = []
    state = 0  # 0: text, 1: after "$", 2: inside "${"

    def flush() -> None:
        if lit:
            parts.append("".join(lit))
            lit.clear()

    for item in _pass1(text):
        if isinstance(item, Group):
            if state == 2:
                key.append(item)
                continue
            if state == 1:
                lit.append("$")
                state = 0
            flush()
            parts.append(item)
            continue
        for ch in item:
            if state == 0:
                if ch == "$":
                    state = 1
                else:
                    lit.append(ch)
            elif state == 1:
                if ch == "{":
                    state = 2
                    key = []
                else:
                    lit += ("$", ch)
                    state = 0
            elif ch == "}":
                flush()
                parts.append(Var(_join_literals(key)))
                state = 0
            elif key and isinstance(key[-1], str):
                key[-1] += ch
            else:
                key.append(ch)
    if state == 1:
        lit.append("$")
    elif state == 2:
        # an unclosed "${": its text stays (its groups as they matched)
        lit.append("${")
        for k in key:
            if isinstance(k, Group):
                flush()
                parts.append(k)
            else:
                lit.append(k)
    flush()
    for part in parts:
        if isinstance(part, Var) and all(type(k) is str for k in part.key):
            _check_plugin_var("".join(part.key))  # type: ignore[arg-type]
    return tuple(parts)


def _join_literals(key: list[str | Group]) -> tuple[str | Group, ...]:
    return tuple(key)


def _check_plugin_var(key: str) -> None:
    bracket = key.find("[")
    if bracket > 0 and key.endswith("]") and key[:bracket] in PLUGIN_VARS:
        name = key[:bracket]
        raise TemplateError(f"route variable ${{{key}}} needs uWSGI's {PLUGIN_VARS[name]} plugin, "
                            "which is not built here")


def is_constant(parts: tuple[Part, ...]) -> bool:
    return all(type(p) is str for p in parts)


def constant(parts: tuple[Part, ...]) -> str:
    return "".join(parts)  # type: ignore[arg-type]


# --- expanding --------------------------------------------------------------------------------


def expand(parts: Template, ctx: Context) -> str:
    """The template's text for this request."""
    return parts.render(ctx)


def _renderer(parts: tuple[Part, ...]) -> Callable[[Context], str]:
    if all(type(p) is str for p in parts):
        text = "".join(parts)  # type: ignore[arg-type]
        return lambda ctx: text
    pieces = [_piece(p) for p in parts]
    if len(pieces) == 1:
        return pieces[0]
    return lambda ctx: "".join([f(ctx) for f in pieces])


def _piece(p: Part) -> Callable[[Context], str]:
    if type(p) is str:
        return lambda ctx: p  # type: ignore[return-value]
    if type(p) is Group:
        n = p.n
        return lambda ctx: ctx.group(n)
    key = p.key  # type: ignore[union-attr]
    if all(type(k) is str for k in key):
        name = "".join(key)  # type: ignore[arg-type]
        bracket = name.find("[")
        if bracket >= 0 and name.endswith("]") and name[:bracket] in ROUTE_VARS:
            func, arg = ROUTE_VARS[name[:bracket]], name[bracket + 1:-1]
            return lambda ctx: func(ctx, arg) or ""

        def var(ctx: Context) -> str:
            value = ctx.env.get(name)
            return value if type(value) is str else ""
        return var

    def dynamic(ctx: Context) -> str:
        return lookup("".join(k if type(k) is str else ctx.group(k.n) for k in key), ctx) or ""  # type: ignore[union-attr]
    return dynamic


def lookup(key: str, ctx: Context) -> str | None:
    """``${KEY}``: a route variable ``NAME[ARG]`` when NAME is one, else the request var."""
    bracket = key.find("[")
    if bracket >= 0 and key.endswith("]"):
        func = ROUTE_VARS.get(key[:bracket])
        if func is not None:
            return func(ctx, key[bracket + 1:-1])
    return ctx.var(key)


def _cookie(ctx: Context, name: str) -> str | None:
    """uWSGI's cookie reader: pairs split on ';', blanks stripped, the first NAME= with a value."""
    cookie = ctx.var("HTTP_COOKIE")
    if not cookie:
        return None
    for item in cookie.split(";"):
        item = item.strip(" \t\n\r\f\v")
        k, eq, v = item.partition("=")
        if eq and k == name and v:
            return v
    return None


def _qs(ctx: Context, name: str) -> str | None:
    """uWSGI's query-string reader: pairs split on '&', the first NAME= with a value, undecoded."""
    qs = ctx.var("QUERY_STRING")
    if not qs:
        return None
    for item in qs.split("&"):
        k, eq, v = item.partition("=")
        if eq and k == name and v:
            return v
    return None


def _mime(ctx: Context, var: str) -> str | None:
    value = ctx.var(var)
    if value is None:
        return None
    return mime_type(ctx.mime, value.encode("latin-1", "replace"))


def _time(ctx: Context, what: str) -> str | None:
    if what == "unix":
        return str(int(time.time()))
    if what == "micros":
        return str(int(time.time() * 1_000_000))
    return None


def _httptime(ctx: Context, offset: str) -> str | None:
    return http_date(int(time.time()) + _c_num(offset))


def _base64(ctx: Context, var: str) -> str | None:
    value = ctx.var(var)
    if value is None:
        return None
    return base64.b64encode(value.encode("latin-1", "replace")).decode("ascii")


def _hex(ctx: Context, var: str) -> str | None:
    value = ctx.var(var)
    if value is None:
        return None
    return value.encode("latin-1", "replace").hex().upper()


def _uwsgi(ctx: Context, what: str) -> str | None:
    if what == "wid":
        return str(ctx.wid)
    if what == "pid":
        return str(os.getpid())
    if what == "uuid":
        return _uuid4()
    if what == "status":
        return str(ctx.status)
    if what == "rtime":
        return str(int((time.time() - ctx.started) * 1_000_000))
    if what == "sor":
        return str(int(ctx.started * 1_000_000))
    if what == "rsize":
        return str(int(getattr(ctx.resp, "body_bytes", 0)))
    return None  # "lq" (the listen queue) is not kept here


def _uuid4() -> str:
    """A random (version 4) UUID in its text form, as uWSGI's uwsgi_uuid gives."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _c_num(text: str) -> int:
    """uWSGI's uwsgi_str_num: every character counts as a decimal digit (c - '0')."""
    n = 0
    for ch in text:
        n = (n * 10 + ord(ch) - 48) & 0xFFFFFFFFFFFFFFFF
    return n


def _metric(ctx: Context, name: str) -> str:
    """router_metrics' ``${metric[NAME]}``: the value, 0 for an unknown name or metrics off."""
    return str(metric_get(name))


ROUTE_VARS: dict[str, Callable[[Context, str], str | None]] = {
    "cookie": _cookie, "qs": _qs, "mime": _mime, "time": _time, "httptime": _httptime,
    "base64": _base64, "hex": _hex, "uwsgi": _uwsgi, "metric": _metric,
}


def describe(parts: Any) -> str:
    """The template as text again (for the routing table dump)."""
    out = []
    for p in parts:
        if type(p) is str:
            out.append(p)
        elif type(p) is Group:
            out.append(f"${p.n}")
        else:
            out.append("${" + "".join(k if type(k) is str else f"${k.n}" for k in p.key) + "}")
    return "".join(out)
