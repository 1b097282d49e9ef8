"""The four config file formats, each turned into an ordered list of (key, value, line).

Values stay strings, exactly as uWSGI hands them to its option setters: a bare ini key is "",
an empty xml element is "1", json true/false/null are "1"/"0"/"0". Repeated keys and lists
give one entry per value, in order. Malformed files raise ConfigError with file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple
from xml.parsers import expat

if TYPE_CHECKING:  # yaml costs ~25 ms to import: only yaml configs pay for it
    import yaml

from .errors import ConfigError


class RawOption(NamedTuple):
    key: str
    value: str
    line: int | None


class Parsed(NamedTuple):
    options: list[RawOption]
    warnings: list[str]


_INI_WS = " \t\r"


def parse_ini(text: str, name: str, section: str = "uwsgi") -> Parsed:
    """uWSGI's ini dialect: whole-line comments only, ``key = value``, a bare key is ""."""
    options: list[RawOption] = []
    current = ""
    found = False
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(_INI_WS)
        if not line:
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(f"{name}:{lineno}: malformed ini section header {line!r}")
            current = line[1:-1]
            continue
        if line[0] in ";#":
            continue
        key, sep, value = line.partition("=")
        if current != section:
            continue
        if not key.strip(_INI_WS):
            raise ConfigError(f"{name}:{lineno}: ini line without an option name: {line!r}")
        found = True
        options.append(RawOption(key.rstrip(_INI_WS), value.strip(_INI_WS) if sep else "", lineno))
    warnings = [] if found else [f"cannot find section [{section}] in {name}"]
    return Parsed(options, warnings)


class _XmlNode:
    __slots__ = ("tag", "attrs", "line", "children", "text", "cdata")

    def __init__(self, tag: str, attrs: dict[str, str], line: int) -> None:
        self.tag, self.attrs, self.line = tag, attrs, line
        self.children: list[_XmlNode] = []
        self.text: list[str] = []
        self.cdata: list[str] = []


def _xml_tree(text: str, name: str) -> _XmlNode:
    parser = expat.ParserCreate()
    root = _XmlNode("#document", {}, 1)
    stack = [root]
    in_cdata = False

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = _XmlNode(tag, attrs, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        (stack[-1].cdata if in_cdata else stack[-1].text).append(data)

    def cdata_start() -> None:
        nonlocal in_cdata
        in_cdata = True

    def cdata_end() -> None:
        nonlocal in_cdata
        in_cdata = False

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartCdataSectionHandler = cdata_start
    parser.EndCdataSectionHandler = cdata_end
    try:
        parser.Parse(text.encode(), True)
    except expat.ExpatError as exc:
        raise ConfigError(f"{name}:{exc.lineno}: malformed xml: {expat.ErrorString(exc.code)}") from None
    if not root.children:
        raise ConfigError(f"{name}: empty xml config")
    return root.children[0]


def parse_xml(text: str, name: str, section: str | None = None) -> Parsed:
    """``<uwsgi>`` root (or the ``<uwsgi id=section>`` child of another root); an element
    per option; an empty element is a flag ("1"); ``<app mountpoint=..>`` is a mount."""
    root = _xml_tree(text, name)
    if root.tag != "uwsgi":
        chosen = None
        for child in root.children:
            if child.tag != "uwsgi":
                continue
            if section is not None and "id" in child.attrs and child.attrs["id"] != section:
                continue
            chosen = child
            break
        if chosen is None:
            raise ConfigError(f"{name}:{root.line}: invalid xml root element, <uwsgi> expected")
        root = chosen
    options: list[RawOption] = []
    for node in root.children:
        if section is not None and "id" in node.attrs and node.attrs["id"] != section:
            continue
        if node.children:
            raise ConfigError(f"{name}:{node.line}: option <{node.tag}> must not contain elements")
        value = "".join(node.text).strip()
        if node.tag == "app":
            if value:
                if "mountpoint" in node.attrs:
                    value = f"{node.attrs['mountpoint']}={value}"
                elif "domain" in node.attrs:
                    value = f"{node.attrs['domain']}|={value}"
                options.append(RawOption("mount", value, node.line))
            options.append(RawOption("app", "", node.line))
            continue
        options.append(RawOption(node.tag, value if (value or node.text) else "1", node.line))
    for chunk in root.cdata:
        if chunk.strip():
            options.append(RawOption("eval", chunk, root.line))
    return Parsed(options, [])


def _yaml_scalar(node: yaml.Node, name: str, key: str) -> str:
    import yaml

    if isinstance(node, yaml.ScalarNode):
        if node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null", "Null", "NULL"):
            return ""
        return str(node.value)
    raise ConfigError(f"{name}:{node.start_mark.line + 1}: option {key} must be a scalar or a list of scalars")


def parse_yaml(text: str, name: str, section: str = "uwsgi") -> Parsed:
    """A top-level mapping whose ``section`` key maps option names to scalars or lists."""
    import yaml

    try:
        doc = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}{line}: malformed yaml: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: malformed yaml: {exc}") from None
    if doc is None:
        return Parsed([], [f"cannot find section {section} in {name}"])
    if not isinstance(doc, yaml.MappingNode):
        raise ConfigError(f"{name}:{doc.start_mark.line + 1}: yaml config must be a mapping")
    body = None
    for k, v in doc.value:
        if isinstance(k, yaml.ScalarNode) and k.value == section:
            body = v
            break
    if body is None:
        return Parsed([], [f"cannot find section {section} in {name}"])
    if isinstance(body, yaml.ScalarNode) and body.value in ("", "~", "null"):
        return Parsed([], [])
    if not isinstance(body, yaml.MappingNode):
        raise ConfigError(f"{name}:{body.start_mark.line + 1}: section {section} must be a mapping")
    options: list[RawOption] = []
    for k, v in body.value:
        key = _yaml_scalar(k, name, "key")
        if isinstance(v, yaml.SequenceNode):
            for item in v.value:
                options.append(RawOption(key, _yaml_scalar(item, name, key), item.start_mark.line + 1))
        else:
            options.append(RawOption(key, _yaml_scalar(v, name, key), k.start_mark.line + 1))
    return Parsed(options, [])


class _Pairs(list):  # type: ignore[type-arg]
    """A json object as its (key, value) pairs, repeated keys included."""


def _json_value(value: object, name: str, key: str) -> str:
    if value is True:
        return "1"
    if value is False or value is None:
        return "0"
    if isinstance(value, str):
        return value
    if isinstance(value, _Pairs):
        raise ConfigError(f"{name}: option {key} must not be an object")
    if isinstance(value, int | float):
        return str(value)
    raise ConfigError(f"{name}: option {key} must be a string, number, boolean or a list of them")


def parse_json(text: str, name: str, section: str = "uwsgi") -> Parsed:
    """A top-level object whose ``section`` member maps option names to values or arrays."""
    try:
        doc = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}:{exc.lineno}: malformed json: {exc.msg}") from None
    if not isinstance(doc, _Pairs):
        raise ConfigError(f"{name}: json config must be an object")
    body = next((v for k, v in doc if k == section), None)
    if not isinstance(body, _Pairs):
        raise ConfigError(f"{name}: you must define an object named {section} in your json data")
    locate = _line_finder(text)
    options: list[RawOption] = []
    for key, value in body:
        line = locate(key)
        if isinstance(value, list) and not isinstance(value, _Pairs):
            options.extend(RawOption(key, _json_value(v, name, key), line) for v in value)
        else:
            options.append(RawOption(key, _json_value(value, name, key), line))
    return Parsed(options, [])


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
