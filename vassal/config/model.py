"""The resolved configuration: every option given, in order, typed, with where it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vassal.options import ALIASES, OPTIONS, Option

from .errors import ConfigError
from .origin import Origin
from .placeholders import LEADING_INT, c_int

_FALSE = ("false", "off", "no")


@dataclass
class Entry:
    """One option occurrence. ``name`` is the canonical option name, None for a placeholder."""

    key: str  # as written
    name: str | None
    value: str | None  # raw text after expansion; None: a flag given without value
    origin: Origin
    expandable: bool = True  # inherited options are not expanded (uWSGI expands before inherit)
    typed: Any = None
    chain: tuple[tuple[str, str | None], ...] = ()  # files being read when it was added
    placeholder_only: bool = False  # from set-placeholder: never refused by strict
    quiet: bool = False  # a key that is no option, kept without a notice (UWSGI_* variables)


def parse_bool(value: str | None) -> bool:
    """uWSGI's flag rule: only false/off/no (any case) and "0" turn a flag off."""
    if value is None:
        return True
    v = value.strip()
    return not (v.lower() in _FALSE or v == "0")


_LEADING_FLOAT = re.compile(r"[ \t\n\r\f\v]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: what may follow a number without a notice: nothing, or a comment-looking tail
_QUIET_TAIL = re.compile(r"\s*(?:[;#].*)?", re.S)


def convert(opt: Option, value: str | None, origin: Origin, notes: list[str] | None = None) -> Any:
    """The typed value of one occurrence, read as uWSGI reads it, or ConfigError naming option
    and origin. Numbers are C's: the leading number counts and the rest is ignored
    (``1000 ; requests`` is 1000, ``True`` is 0); a value that is not plainly a number adds
    a line to ``notes`` saying what was read."""
    if opt.type is bool:
        return parse_bool(value)
    if value is None or (value == "" and opt.implicit is not None):
        if opt.implicit is None:
            if opt.type is int:
                return 1  # uwsgi_opt_set_int without a value
            raise ConfigError(f"option {opt.name} requires a value ({origin})")
        value = opt.implicit
    if opt.type is int or opt.type is float:
        if opt.type is int:
            m = LEADING_INT.match(value)
            number: Any = c_int(value)
        else:
            m = _LEADING_FLOAT.match(value)
            number = float(m.group(0)) if m else 0.0
        if number < 0:
            shown = "its value" if origin.private else str(number)
            raise ConfigError(f"option {opt.name}: {shown} is negative ({origin})")
        tail = value[m.end():] if m else value
        if notes is not None and (m is None or not _QUIET_TAIL.fullmatch(tail)):
            shown = "its value" if origin.private else repr(value)
            notes.append(f"option {opt.name} ({origin}): {shown} is not a number; read as {number}, "
                         "as uWSGI reads it")
        return number
    return value


def canonical(name: str) -> str:
    """The canonical name for an option name or alias; KeyError for an unknown one."""
    try:
        return ALIASES[name]
    except KeyError:
        try:
            return ALIASES[name.replace("_", "-")]
        except KeyError:
            raise KeyError(f"unknown option {name!r} (not in vassal.options.OPTIONS)") from None


class Config:
    """What ``load_config`` returns. Read it with ``get``/``getlist``/``has``/``items``."""

    def __init__(self, entries: list[Entry], *, placeholders: dict[str, str] | None = None,
                 source: str | None = None, argv: list[str] | None = None,
                 magic: dict[str, str] | None = None, warnings: list[str] | None = None,
                 help_requested: bool = False, version_requested: bool = False,
                 private_texts: list[str] | None = None) -> None:
        self.entries = entries
        #: text from files the config's author cannot read (see privacy): ``redact`` hides it
        self.private_texts: list[str] = private_texts or []
        self.placeholders: dict[str, str] = placeholders or {}
        self.source = source
        self.argv = list(argv or [])
        self.magic: dict[str, str] = magic or {}
        self.warnings: list[str] = warnings or []
        #: uWSGI's "[uWSGI] getting INI configuration from FILE" line of every file read
        self.reading: list[str] = []
        self.help_requested = help_requested
        self.version_requested = version_requested
        self._by_name: dict[str, list[Entry]] = {}
        for e in entries:
            if e.name is not None:
                self._by_name.setdefault(e.name, []).append(e)

    def get(self, name: str, default: Any = None) -> Any:
        """The typed value given last, else ``default`` if not None, else the table default."""
        canon = canonical(name)
        given = self._by_name.get(canon)
        if given:
            return given[-1].typed
        return default if default is not None else OPTIONS[canon].default

    def getlist(self, name: str) -> list[Any]:
        """Every typed value given, in order (empty when never given)."""
        return [e.typed for e in self._by_name.get(canonical(name), [])]

    def occurrences(self, name: str) -> list[tuple[Any, Origin]]:
        """(typed value, where it was given) of every occurrence, in order: for one-line errors."""
        return [(e.typed, e.origin) for e in self._by_name.get(canonical(name), [])]

    def has(self, name: str) -> bool:
        """True when the option was given explicitly, anywhere."""
        return bool(self._by_name.get(canonical(name)))

    def origin(self, name: str) -> Origin | None:
        """Where the value ``get`` returns came from."""
        given = self._by_name.get(canonical(name))
        return given[-1].origin if given else None

    def items(self) -> list[tuple[str, str]]:
        """(canonical name, raw value) of every option given, in order (flags: "true")."""
        return [(e.name, "true" if e.value is None else e.value) for e in self.entries if e.name is not None]

    def opt_dict(self) -> dict[str, Any]:
        """Options and placeholders as uWSGI's ``uwsgi.opt``: key as written, repeated keys as lists."""
        out: dict[str, Any] = {}
        for e in self.entries:
            value = "true" if e.value is None else e.value
            if e.key in out:
                prev = out[e.key]
                out[e.key] = [*prev, value] if isinstance(prev, list) else [prev, value]
            else:
                out[e.key] = value
        return out

    def notices(self) -> list[str]:
        """What the user should hear before we start: loader warnings, and every option given
        that uWSGI has and Imperium accepts without acting on it (named with its origin)."""
        out = list(self.warnings)
        seen: set[str] = set()
        for e in self.entries:
            if e.name is not None and OPTIONS[e.name].ignored and e.name not in seen:
                seen.add(e.name)
                out.append(f"option {e.key} ({e.origin}) is accepted for uWSGI compatibility "
                           "but has no effect in Imperium")
        return out

    def show_config(self) -> str:
        """The resolved config as an ini file (like ``--show-config``)."""
        lines = [";uWSGI instance configuration", "[uwsgi]"]
        for e in self.entries:
            lines.append(f"{e.key} = {'true' if e.value is None else e.value}")
        lines.append(";end of configuration")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"Config(source={self.source!r}, {len(self.entries)} options)"
