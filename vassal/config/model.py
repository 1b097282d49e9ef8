"""The resolved configuration: every option given, in order, typed, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vassal.options import ALIASES, OPTIONS, Option

from .errors import ConfigError
from .origin import Origin

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


def parse_bool(value: str | None) -> bool:
    """uWSGI's flag rule: only false/off/no (any case) and "0" turn a flag off."""
    if value is None:
        return True
    v = value.strip()
    return not (v.lower() in _FALSE or v == "0")


def convert(opt: Option, value: str | None, origin: Origin) -> Any:
    """The typed value of one occurrence, or ConfigError naming option and origin."""
    if opt.type is bool:
        return parse_bool(value)
    if value is None or (value == "" and opt.implicit is not None):
        if opt.implicit is None:
            raise ConfigError(f"option {opt.name} requires a value ({origin})")
        value = opt.implicit
    if opt.type is int:
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise ConfigError(f"option {opt.name}: {value!r} is not an integer ({origin})") from None
    if opt.type is float:
        try:
            return float(value.strip())
        except ValueError:
            raise ConfigError(f"option {opt.name}: {value!r} is not a number ({origin})") from None
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
                 help_requested: bool = False, version_requested: bool = False) -> None:
        self.entries = entries
        self.placeholders: dict[str, str] = placeholders or {}
        self.source = source
        self.argv = list(argv or [])
        self.magic: dict[str, str] = magic or {}
        self.warnings: list[str] = warnings or []
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
        for e in self.entries:
            if e.name is not None and OPTIONS[e.name].ignored:
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
