"""The conditions of ``route-if``/``route-if-not``: ``NAME:ARGS``, uWSGI 2.0's set.

A condition that compares takes ``SUBJECT;PATTERN`` (split at the first ``;``; without one it
is false, as in uWSGI); both sides are templates (``${VAR}``). The file checks take one path.
``regexp``/``re`` match the subject with the pattern (compiled once here, when uWSGI compiles
it per request) and their groups are the rule's ``$1``...; the numeric ones read each side as
C's ``strtol`` does (the leading integer; 0 when there is none).

Facts from core/routing.c (``uwsgi_route_condition_*``) and plugins/router_cache
(``incache``, refused: the cache router is not built here).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .expand import Context, Template, compile_template, expand

_STRTOL = re.compile(r"[ \t\n\r\f\v]*([+-]?[0-9]+)")

#: conditions uWSGI gets from plugins not built here: name -> plugin
PLUGIN_CONDITIONS = {"incache": "router_cache", "lord": "legion (uWSGI's SSL build)"}


class ConditionError(ValueError):
    """A condition that cannot be built (unknown name, bad regexp); the message says why."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: ``test(ctx)`` is True/False; regexp conditions set ctx.groups."""

    name: str
    left: Template
    right: Template | tuple[()] | None  # None: no ";" (comparisons are then false) or a one-path test
    pattern: re.Pattern[str] | None
    test: Callable[[Condition, Context], bool]


def _strtol(text: str) -> int:
    m = _STRTOL.match(text)
    return int(m.group(1)) if m else 0


def _sides(c: Condition, ctx: Context) -> tuple[str, str] | None:
    right = c.right
    if right is None:
        return None
    return c.left.render(ctx), right.render(ctx)  # type: ignore[union-attr]


def _pair(op: Callable[[str, str], bool]) -> Callable[[Condition, Context], bool]:
    def test(c: Condition, ctx: Context) -> bool:
        sides = _sides(c, ctx)
        return sides is not None and op(*sides)
    return test


def _path(op: Callable[[str], bool]) -> Callable[[Condition, Context], bool]:
    def test(c: Condition, ctx: Context) -> bool:
        path = expand(c.left, ctx)
        try:
            return op(path)
        except (ValueError, OSError):  # a NUL in the path, a name too long
            return False
    return test


def _regexp(c: Condition, ctx: Context) -> bool:
    if c.right is None or c.pattern is None:
        return False
    subject = expand(c.left, ctx)
    m = c.pattern.search(subject)
    if m is None:
        return False
    ctx.groups = (m.group(0), *m.groups())
    return True


def _empty(c: Condition, ctx: Context) -> bool:
    return expand(c.left, ctx) == ""


def _ipv4in(a: str, b: str) -> bool:
    net, _, bits = b.partition("/")
    try:
        prefix = int(bits) if bits else 32
        if not 0 <= prefix <= 32:
            return False
        ip = int(ipaddress.IPv4Address(a))
        base = int(ipaddress.IPv4Address(net))
    except ValueError:
        return False
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return (ip & mask) == (base & mask)


def _ipv6in(a: str, b: str) -> bool:
    net, _, bits = b.partition("/")
    try:
        prefix = int(bits) if bits else 128
        if not 0 <= prefix <= 128:
            return False
        ip = int(ipaddress.IPv6Address(a))
        base = int(ipaddress.IPv6Address(net))
    except ValueError:
        return False
    mask = ((1 << 128) - 1) ^ ((1 << (128 - prefix)) - 1)
    return (ip & mask) == (base & mask)


def _is_file(p: str) -> bool:
    return os.path.isfile(p)


def _is_dir(p: str) -> bool:
    return os.path.isdir(p)


def _is_link(p: str) -> bool:
    return os.path.islink(p)


def _exists(p: str) -> bool:
    return os.path.exists(p)


def _is_exec(p: str) -> bool:
    return os.access(p, os.X_OK)


_EQUAL = _pair(lambda a, b: a == b)
_HIGHER = _pair(lambda a, b: _strtol(a) > _strtol(b))
_LOWER = _pair(lambda a, b: _strtol(a) < _strtol(b))
_HIGHER_EQUAL = _pair(lambda a, b: _strtol(a) >= _strtol(b))
_LOWER_EQUAL = _pair(lambda a, b: _strtol(a) <= _strtol(b))
_CONTAINS = _pair(lambda a, b: b in a)

#: name -> (test, takes SUBJECT;PATTERN)
CONDITIONS: dict[str, tuple[Callable[[Condition, Context], bool], bool]] = {
    "exists": (_path(_exists), False), "isfile": (_path(_is_file), False),
    "isdir": (_path(_is_dir), False), "islink": (_path(_is_link), False),
    "isexec": (_path(_is_exec), False),
    "equal": (_EQUAL, True), "isequal": (_EQUAL, True), "eq": (_EQUAL, True), "==": (_EQUAL, True),
    "startswith": (_pair(lambda a, b: a.startswith(b)), True),
    "endswith": (_pair(lambda a, b: a.endswith(b)), True),
    "regexp": (_regexp, True), "re": (_regexp, True),
    "ishigher": (_HIGHER, True), ">": (_HIGHER, True),
    "islower": (_LOWER, True), "<": (_LOWER, True),
    "ishigherequal": (_HIGHER_EQUAL, True), ">=": (_HIGHER_EQUAL, True),
    "islowerequal": (_LOWER_EQUAL, True), "<=": (_LOWER_EQUAL, True),
    "contains": (_CONTAINS, True), "contain": (_CONTAINS, True),
    "ipv4in": (_pair(_ipv4in), True), "ipv6in": (_pair(_ipv6in), True),
    "empty": (_empty, False),
}


def compile_condition(name: str, args: str) -> Condition:
    """The condition ``NAME:ARGS``; ConditionError for an unknown name or a bad regexp."""
    entry = CONDITIONS.get(name)
    if entry is None:
        if name in PLUGIN_CONDITIONS:
            raise ConditionError(f"route condition \"{name}\" needs uWSGI's {PLUGIN_CONDITIONS[name]} plugin, "
                                 "which is not built here")
        raise ConditionError(f"unable to find \"{name}\" route condition (known: "
                             f"{' '.join(sorted(CONDITIONS))})")
    test, paired = entry
    if not paired:
        return Condition(name, compile_template(args), None, None, test)
    left, semi, right = args.partition(";")
    if not semi:
        return Condition(name, compile_template(left), None, None, test)
    pattern = None
    if test is _regexp:
        pattern = compile_regexp(right)
        return Condition(name, compile_template(left), (), pattern, test)
    return Condition(name, compile_template(left), compile_template(right), None, test)


def compile_regexp(text: str) -> re.Pattern[str]:
    """A PCRE pattern as Python's ``re`` reads it; ConditionError naming the problem."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConditionError(f"bad regular expression {text!r}: {exc}") from None
    except (OverflowError, RecursionError, ValueError) as exc:  # absurdly nested or sized
        raise ConditionError(f"bad regular expression {text!r}: {exc}") from None


def describe(c: Any) -> str:
    return c.name
