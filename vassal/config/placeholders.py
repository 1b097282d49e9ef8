"""The three expansion passes run once the whole config is assembled: ``$(ENV)``, then
``@(file)``, then ``%(placeholder)`` (uWSGI's uwsgi_apply_config_pass).

Each pass scans a value for ``<symbol>(...)`` with balanced parentheses; a reference that
resolves is replaced and the value is scanned again from the start (so a placeholder may
expand to another one); one that does not resolve is left as written.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

from .errors import ConfigError

Resolver = Callable[[str], str | None]

_MAX_EXPANSIONS = 1000


def expand(value: str, symbol: str, resolve: Resolver, where: str = "") -> str:
    """Expand every ``symbol(key)`` in ``value`` using ``resolve`` (None: leave as is)."""
    count = 0
    start = 0
    while True:
        found = _find(value, symbol, start)
        if found is None:
            return value
        begin, end = found  # value[begin] is the symbol, value[end] the closing parenthesis
        key = value[begin + 2:end]
        replacement = resolve(key) if key else None
        if replacement is None:
            start = end + 1
            continue
        value = value[:begin] + replacement + value[end + 1:]
        count += 1
        if count > _MAX_EXPANSIONS:
            raise ConfigError(f"{where}: endless expansion of {symbol}({key}) (does it refer to itself?)")
        start = 0


def _find(value: str, symbol: str, start: int) -> tuple[int, int] | None:
    pos = start
    while True:
        begin = value.find(symbol + "(", pos)
        if begin < 0:
            return None
        depth = 0
        for i in range(begin + 2, len(value)):
            c = value[i]
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    return begin, i
                depth -= 1
        return None


def read_at_file(name: str) -> str | None:
    """``@(file)``: the file's content (``exec://cmd``: the command's output), or None."""
    if name.startswith("exec://"):
        try:
            done = subprocess.run(name[7:], shell=True, stdout=subprocess.PIPE, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.decode("utf-8", "replace").rstrip("\n")
    try:
        with open(name, "rb") as fh:
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    # uWSGI reads the file into the value verbatim except for one trailing newline
    return data[:-1] if data.endswith("\n") else data


_NUMBER = re.compile(r"^-?\d+$")


def _c_int(text: str) -> int:
    """strtoll-like: the leading integer of ``text``, 0 if none."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def placeholder_value(key: str, lookup: Callable[[str], str | None]) -> str | None:
    """Resolve a ``%(...)`` body: a plain name, or uWSGI's pipeline arithmetic
    (``%(foo + bar * 2)``: tokens separated by spaces, applied left to right)."""
    if " " not in key:
        return lookup(key)
    current: str | None = None
    state = "concat"
    for token in (t for t in key.split(" ") if t):
        if token in ("+", "-", "*", "/"):
            state = token
            continue
        if token in ("++", "--"):
            if current is not None:
                current = str(_c_int(current) + (1 if token == "++" else -1))
            state = "concat"
            continue
        value = token if _NUMBER.match(token) else (lookup(token) or "")
        if state == "concat":
            current = (current or "") + value
        else:
            a, b = _c_int(current or ""), _c_int(value)
            if state == "+":
                current = str(a + b)
            elif state == "-":
                current = str(a - b)
            elif state == "*":
                current = str(a * b)
            else:  # integer division truncating toward zero, as C does; x/0 is 0 in uWSGI
                current = str(0 if b == 0 else int(a / b) if abs(a) < 2**52 else (abs(a) // abs(b)) * (
                    1 if (a >= 0) == (b >= 0) else -1))
        state = "concat"
    return current


def placeholder_names(value: str) -> set[str]:
    """Every name a value refers to through ``%(...)`` (for telling placeholders from typos)."""
    names: set[str] = set()
    start = 0
    while True:
        found = _find(value, "%", start)
        if found is None:
            return names
        begin, end = found
        for token in value[begin + 2:end].split(" "):
            if token and token not in ("+", "-", "*", "/", "++", "--") and not _NUMBER.match(token):
                names.add(token)
        start = begin + 2
