"""The three expansion passes run once the whole config is assembled: ``$(ENV)``, then
``@(file)``, then ``%(placeholder)`` (uWSGI's uwsgi_apply_config_pass, core/utils.c).

uWSGI scans a value left to right; ``<symbol>(`` opens a reference, parentheses nest inside
it, another symbol abandons it (so ``%(a%(b))`` resolves the inner one first), and the
closing parenthesis resolves it. A reference that resolves is replaced and uWSGI scans the
new value again from its *second* character (so a replacement may itself hold references,
and an outer reference can close over the inner one's result); one that does not resolve
is left as written.

uWSGI rescans the whole value after every replacement and copies it each time: a big value
used many times costs time and memory quadratic in its size. Here the scan goes on from the
state it had where the reference started, which gives the same result, and every character
of the output is scanned and copied a bounded number of times. A value may not grow beyond
``MAX_VALUE`` characters, nor take more than ``MAX_EXPANSIONS`` replacements (a reference
that refers to itself without growing would otherwise never end).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

from .errors import ConfigError

Resolver = Callable[[str], str | None]

#: largest value (in characters) an expansion may produce
MAX_VALUE = 1 << 20
#: most references one value may resolve
MAX_EXPANSIONS = 1000


class _Scan:
    """The scanner's state: 0 outside a reference, 1 just after a symbol, 2 inside one."""

    __slots__ = ("mode", "depth", "start")

    def __init__(self, mode: int = 0, depth: int = 0, start: int = -1) -> None:
        self.mode, self.depth, self.start = mode, depth, start  # start: output index of the symbol

    def copy(self) -> _Scan:
        return _Scan(self.mode, self.depth, self.start)


class _Output:
    """The expanded text so far, as pieces; it can be cut back and read from the end."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.length = 0

    def add(self, text: str) -> None:
        if text:
            self.pieces.append(text)
            self.length += len(text)

    def tail(self, start: int) -> str:
        """The text from index ``start`` to the end."""
        parts: list[str] = []
        need = self.length - start
        i = len(self.pieces) - 1
        while need > 0:
            piece = self.pieces[i]
            if len(piece) >= need:
                parts.append(piece[len(piece) - need:])
                break
            parts.append(piece)
            need -= len(piece)
            i -= 1
        return "".join(reversed(parts))

    def cut(self, start: int) -> None:
        """Forget everything from index ``start`` on."""
        while self.length > start:
            piece = self.pieces.pop()
            self.length -= len(piece)
            if self.length < start:
                self.pieces.append(piece[: start - self.length])
                self.length = start

    def text(self) -> str:
        return "".join(self.pieces)


def expand(value: str, symbol: str, resolve: Resolver, where: str = "", *,
           limit: int = MAX_VALUE, private: bool = False) -> str:
    """Expand every ``symbol(key)`` in ``value`` using ``resolve`` (None: leave as is).

    ``private``: the value comes from a file whose content must not be quoted in errors.
    """
    if symbol + "(" not in value:
        return value
    special = re.compile("[" + re.escape(symbol + "()") + "]")
    out = _Output()
    inputs: list[tuple[str, int]] = [(value, 0)]  # text still to scan, innermost last
    scan = _Scan()
    saved = _Scan()  # the state just before the symbol of the open reference
    count = 0
    blind = False  # the next output character is at index 0 after a replacement: not scanned
    while inputs:
        text, pos = inputs.pop()
        while pos < len(text):
            if blind:
                out.add(text[pos])
                pos += 1
                blind = False
                continue
            if scan.mode == 0:
                nxt = text.find(symbol, pos)
                if nxt < 0:
                    out.add(text[pos:])
                    pos = len(text)
                    break
                out.add(text[pos:nxt])
                pos = nxt
            elif scan.mode == 2:
                m = special.search(text, pos)
                end = m.start() if m else len(text)
                out.add(text[pos:end])
                pos = end
                if m is None:
                    break
            if out.length > limit:
                raise ConfigError(f"{where}: value longer than {limit} characters after "
                                  f"expanding {symbol}(...)")
            ch = text[pos]
            here = out.length
            out.add(ch)
            pos += 1
            if ch == symbol:
                saved = scan.copy()
                scan = _Scan(1, 0, here)
            elif scan.mode == 1:
                scan = _Scan(2, 0, scan.start) if ch == "(" else _Scan()
            elif ch == "(":
                scan.depth += 1
            elif scan.depth:  # ")" closing a nested parenthesis
                scan.depth -= 1
            else:  # ")" closing the reference
                key = out.tail(scan.start + 2)[:-1]
                try:
                    replacement = resolve(key) if key else None
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
                if replacement is None:
                    scan = _Scan()
                    continue
                count += 1
                if count > MAX_EXPANSIONS:
                    shown = "..." if private else key
                    raise ConfigError(f"{where}: endless expansion of {symbol}({shown}) "
                                      "(does it refer to itself?)")
                start = scan.start
                out.cut(start)
                inputs.append((text, pos))
                text, pos = replacement, 0
                scan = _resume(saved, start)
                blind = start == 0
    if out.length > limit:
        raise ConfigError(f"{where}: value longer than {limit} characters after expanding {symbol}(...)")
    return out.text()


def _resume(saved: _Scan, start: int) -> _Scan:
    """The state uWSGI's rescan (from index 1) has on reaching index ``start``."""
    if saved.mode and saved.start == 0:
        return _Scan()  # that symbol sat at index 0, which the rescan never looks at
    return saved.copy()


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
            data = fh.read(MAX_VALUE + 2).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    # uWSGI reads the file into the value verbatim except for one trailing newline
    return data[:-1] if data.endswith("\n") else data


_NUMBER = re.compile(r"[0-9]+")  # uWSGI's is_a_number: digits only, no sign
LEADING_INT = re.compile(r"[ \t\n\r\f\v]*([+-]?)([0-9]+)")
_INT64_MAX = 2**63 - 1


def c_int(text: str) -> int:
    """strtoll: the leading integer of ``text`` (0 if none), saturated to 64 bits."""
    m = LEADING_INT.match(text)
    if not m:
        return 0
    digits = m.group(2).lstrip("0")[:20] or "0"  # 20 digits already exceed 64 bits
    n = min(int(digits), _INT64_MAX + (m.group(1) == "-"))
    return -n if m.group(1) == "-" else n


def _wrap(n: int) -> int:
    """A result as C's int64 arithmetic leaves it (two's complement wrap-around)."""
    return (n + 2**63) % 2**64 - 2**63


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
                current = str(_wrap(c_int(current) + (1 if token == "++" else -1)))
            state = "concat"
            continue
        value = token if _NUMBER.fullmatch(token) else (lookup(token) or "")
        if state == "concat":
            current = (current or "") + value
            if len(current) > MAX_VALUE:
                raise ConfigError(f"a %(...) pipeline is longer than {MAX_VALUE} characters")
        else:
            a, b = c_int(current or ""), c_int(value)
            if state == "+":
                current = str(_wrap(a + b))
            elif state == "-":
                current = str(_wrap(a - b))
            elif state == "*":
                current = str(_wrap(a * b))
            elif b == 0:  # uWSGI avoids the division by zero with 0
                current = "0"
            else:  # C truncates toward zero
                q = abs(a) // abs(b)
                current = str(_wrap(q if (a >= 0) == (b >= 0) else -q))
        state = "concat"
    return current


_REFERENCE = re.compile(r"%\(([^()%]*)\)")


def placeholder_names(value: str) -> set[str]:
    """Every name a value refers to through ``%(...)`` (for telling placeholders from typos)."""
    names: set[str] = set()
    for m in _REFERENCE.finditer(value):
        for token in m.group(1).split(" "):
            if token and token not in ("+", "-", "*", "/", "++", "--") and not _NUMBER.fullmatch(token):
                names.add(token)
    return names
