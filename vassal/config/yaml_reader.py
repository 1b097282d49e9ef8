"""uWSGI's two yaml config readers (core/yaml.c). Neither is a YAML parser.

- Built with libyaml (Debian's uWSGI), uWSGI walks the *token stream*: once the mapping
  under the key asked for starts, every ``key: scalar`` and every scalar of a ``key:``
  sequence is an option, nested mappings included (their keys become options too); a key
  without a value gives nothing; the walk stops where that mapping ends, so what follows is
  never even scanned. We walk PyYAML's scanner (a port of libyaml's) the same way.
- Built without it (``pip install uwsgi`` where libyaml is missing), uWSGI reads *lines*:
  ``#`` starts a comment anywhere, indentation opens and closes the section, ``key: value``
  lines are options, quotes are kept, the first line that is no ``key: value`` ends it.

A file the token scanner refuses (``%(base)`` or ``@(file)`` starting a value, tabs in the
indentation...) is what only the line reader accepts: we read it that way too, with a
notice, so that every file one of uWSGI's builds runs loads here. A file neither accepts
is an error naming file and line.
"""

from __future__ import annotations

import yaml

from .errors import ConfigError
from .formats import Parsed, RawOption, shown, unpaired


def parse_yaml(text: str, name: str, section: str = "uwsgi", *, private: bool = False) -> Parsed:
    """Options under the top-level key ``section``."""
    try:
        options, warnings, found = _tokens(text, name, section, private)
    except yaml.YAMLError as exc:
        line, problem = _where(exc, text)
        by_line, found = _lines(text, section)
        where = f"{name}:{line}" if line else name
        if not found:
            detail = "" if private else f": {problem}"
            raise ConfigError(f"{where}: malformed yaml{detail}", line=line) from None
        detail = "" if private else f" ({problem})"
        return Parsed(by_line, [f"{where}: not valid YAML{detail}; read line by line, as uWSGI's "
                                "built-in yaml reader does"])
    if not found:
        warnings.append(f"cannot find section {section} in {name}")
    return Parsed(options, warnings)


def _where(exc: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """The line and a one-line description of what the scanner refused."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        return (mark.line + 1 if mark else None), " ".join(problem.split())
    if isinstance(exc, yaml.reader.ReaderError):
        return text.count("\n", 0, exc.position) + 1, f"unacceptable character #x{exc.character:04x}"
    return None, " ".join(str(exc).split())


def _tokens(text: str, name: str, section: str, private: bool) -> tuple[list[RawOption], list[str], bool]:
    """The libyaml reader: (options, warnings, section found)."""
    options: list[RawOption] = []
    warnings: list[str] = []
    key: str | None = None
    key_line = 0
    status = 0  # 1: a key comes, 2: its value comes, 3: items of a sequence come
    depth = 0  # 0: outside the section; else how many blocks deep inside it
    found = False
    for tok in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(tok, yaml.StreamEndToken):
            break
        if isinstance(tok, yaml.KeyToken):
            if depth and key is not None and key_line:
                _no_value(warnings, name, key, key_line, private)
            status = 1
        elif isinstance(tok, yaml.ValueToken):
            status = 2
        elif isinstance(tok, yaml.BlockSequenceStartToken | yaml.FlowSequenceStartToken):
            if depth:
                depth += 1
            status, key_line = 3, 0
        elif isinstance(tok, yaml.BlockEntryToken | yaml.FlowEntryToken):
            status = 3
        elif isinstance(tok, yaml.BlockMappingStartToken):
            if depth:
                depth += 1
                key_line = 0
            elif key is not None and key == section:
                depth, key_line = 1, 0
                found = True
        elif isinstance(tok, yaml.BlockEndToken | yaml.FlowSequenceEndToken):
            if depth:
                if key is not None and key_line:
                    _no_value(warnings, name, key, key_line, private)
                depth -= 1
                if not depth:
                    break
            key = None
            status = 0
        elif isinstance(tok, yaml.ScalarToken):
            if status == 1:
                key, key_line = unpaired(tok.value), tok.start_mark.line + 1
            elif status in (2, 3):
                if key is not None and depth:
                    options.append(RawOption(key, unpaired(tok.value), tok.start_mark.line + 1))
                key_line = 0
                if status == 2:
                    key = None
                    status = 0
            else:
                break  # uWSGI: "unsupported YAML token", and it stops reading
        else:
            status = 0
    return options, warnings, found


def _no_value(warnings: list[str], name: str, key: str, line: int, private: bool) -> None:
    warnings.append(f"{name}:{line}: {shown(key, private)} has no value and sets nothing, "
                    "as in uWSGI (write a value, e.g. true)")


def _lines(text: str, section: str) -> tuple[list[RawOption], bool]:
    """The line reader of uWSGI builds without libyaml: (options, section found)."""
    options: list[RawOption] = []
    current_depth = 0
    inside = False
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.split("\0", 1)[0].split("#", 1)[0]
        if not line:
            continue
        depth = 0
        for ch in line:
            if ch == " ":
                depth += 1
            elif ch in "\t\r":
                depth += 8
            else:
                break
        if depth <= current_depth:
            current_depth = depth
            if inside:
                break
        elif not inside:
            continue
        body = line.lstrip(" \t\r")
        if not body:
            continue
        if body[0] in "-[{":
            if inside:
                break
            continue
        if not inside:
            head, colon, _ = body.partition(":")
            if colon and head == section:
                inside = True
            continue
        sep = body.find(": ")
        if sep < 0:
            sep = body.find(":\t")
        if sep < 0:
            break
        options.append(RawOption(body[:sep].rstrip(" \t"), body[sep + 2:].lstrip(" \t\r").rstrip(" \t"),
                                 lineno))
    return options, inside
