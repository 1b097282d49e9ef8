"""The four config file formats, each turned into an ordered list of (key, value, line).

Values stay strings, exactly as uWSGI hands them to its option setters: a bare ini key is "",
an empty xml element is "1", json true/false/null are "1"/"0"/"0". Repeated keys and lists
give one entry per value, in order. Each reader accepts what uWSGI 2.0's reader accepts
(core/ini.c, core/xmlconf.c, core/yaml.c, core/json.c); a file that uWSGI refuses too
raises ConfigError with file and line.

``private``: the file's content must not appear in messages (see ``loader``), only its
name and line numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import NamedTuple

from .errors import ConfigError


class RawOption(NamedTuple):
    key: str
    value: str
    line: int | None


class Parsed(NamedTuple):
    options: list[RawOption]
    warnings: list[str]


def unpaired(text: str) -> str:
    """``text`` with escaped UTF-16 surrogate pairs joined and lone surrogates replaced:
    json and yaml escapes (``\\ud83d\\ude00``) give them, and they cannot be printed."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def shown(text: str, private: bool) -> str:
    """``text`` quoted for a message, or a stand-in when the file's content is private."""
    return "(content not shown)" if private else repr(text)


_INI_WS = " \t\r"


def parse_ini(text: str, name: str, section: str = "uwsgi", *, private: bool = False) -> Parsed:
    """uWSGI's ini dialect: whole-line comments only, ``key = value``, a bare key is "".

    Like core/ini.c it never refuses a line: a header is whatever sits between the first
    character and the last one (``[uwsgi`` names section "uwsg"), and a line without a key
    gives an option named "" (kept as a placeholder nobody can use).
    """
    options: list[RawOption] = []
    current = ""
    found = False
    if text.startswith("\ufeff"):
        text = text[1:]  # a BOM would hide the first header from uWSGI; it is never meant
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.split("\0", 1)[0].strip(_INI_WS)  # C strings end at NUL
        if not line:
            continue
        if line[0] == "[":
            current = line[1:-1]
            continue
        if line[0] in ";#" or current != section:
            continue
        key, sep, value = line.partition("=")
        found = True
        options.append(RawOption(key.rstrip(_INI_WS), value.strip(_INI_WS) if sep else "", lineno))
    warnings = [] if found else [f"cannot find section [{section}] in {name}"]
    return Parsed(options, warnings)


class _Pairs(list):  # type: ignore[type-arg]
    """A json object as its (key, value) pairs, repeated keys included."""


class _Number(str):
    """A json number, kept as written (yajl hands uWSGI the text of a number)."""


def _json_scalar(value: object) -> str | None:
    """The option value yajl's tree reader gives uWSGI, None for what it skips."""
    if value is True:
        return "1"
    if value is False or value is None:
        return "0"
    if isinstance(value, str):
        return unpaired(str(value))
    return None  # objects (and arrays inside arrays) are skipped by uWSGI, without a word


def parse_json(text: str, name: str, section: str = "uwsgi", *, private: bool = False) -> Parsed:
    """A top-level object whose ``section`` member maps option names to values or arrays."""
    try:
        doc = json.loads(text, object_pairs_hook=_Pairs, parse_int=_Number, parse_float=_Number,
                         parse_constant=_Number)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}:{exc.lineno}: malformed json: {exc.msg}", line=exc.lineno) from None
    except RecursionError:
        raise ConfigError(f"{name}: malformed json: nested too deeply") from None
    if not isinstance(doc, _Pairs):
        raise ConfigError(f"{name}: json config must be an object")
    body = next((v for k, v in doc if k == section), None)
    if not isinstance(body, _Pairs):
        raise ConfigError(f"{name}: you must define an object named {section} in your json data")
    locate = _line_finder(text)
    options: list[RawOption] = []
    warnings: list[str] = []
    for key, value in body:
        line = locate(key)
        items = value if isinstance(value, list) and not isinstance(value, _Pairs) else [value]
        for item in items:
            scalar = _json_scalar(item)
            if scalar is None:
                where = f"{name}:{line}" if line else name
                warnings.append(f"{where}: a value of {shown(key, private)} that is not a string, "
                                "number or boolean is skipped, as uWSGI does")
                continue
            options.append(RawOption(unpaired(key), scalar, line))
    return Parsed(options, warnings)


def _line_finder(text: str) -> Callable[[str], int | None]:
    """Line numbers for json keys, found in document order (json gives none)."""
    pos = 0

    def find(key: str) -> int | None:
        nonlocal pos
        m = re.compile(re.escape(json.dumps(key)) + r"\s*:").search(text, pos)
        if not m:
            return None
        pos = m.end()
        return text.count("\n", 0, m.start()) + 1

    return find


def parse_xml(text: str, name: str, section: str | None = None, *, private: bool = False) -> Parsed:
    from .xml_reader import parse_xml as parse

    return parse(text, name, section, private=private)


def parse_yaml(text: str, name: str, section: str = "uwsgi", *, private: bool = False) -> Parsed:
    from .yaml_reader import parse_yaml as parse  # yaml costs ~25 ms to import: only yaml pays

    return parse(text, name, section, private=private)


PARSERS = {"ini": parse_ini, "xml": parse_xml, "yaml": parse_yaml, "json": parse_json}

_EXTENSIONS = (
    (".ini", "ini"), (".xml", "xml"), (".yaml", "yaml"), (".yml", "yaml"), (".json", "json"), (".js", "json"),
)


def format_for(name: str) -> str | None:
    """The format a file name implies by its ending (section suffix ignored), or None."""
    for ext, fmt in _EXTENSIONS:
        if name.endswith(ext):
            return fmt
    return None
