"""The relaxed JSON of MongoDB filters, as uWSGI's mongodb:// accepts it: ``{enabled:1}``.

Beyond strict JSON: object keys may be bare words (``enabled``, ``$gt``, ``a.b``), strings
may use single quotes, and a trailing comma is tolerated. Enough for query filters; not a
full MongoDB Extended JSON reader.
"""

from __future__ import annotations

import json
import re
from typing import Any

_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_BARE = re.compile(r"[A-Za-z_$][\w$.]*")
_WORDS = {"true": True, "false": False, "null": None}


class RelaxedJSONError(ValueError):
    pass


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> RelaxedJSONError:
        return RelaxedJSONError(f"{what} at character {self.pos + 1} of {self.text!r}")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.pos += 1

    def value(self) -> Any:
        ch = self.peek()
        if ch == "{":
            return self.obj()
        if ch == "[":
            return self.array()
        if ch and ch in "\"'":
            return self.string()
        m = _NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return json.loads(m.group())
        m = _BARE.match(self.text, self.pos)
        if m and m.group() in _WORDS:
            self.pos = m.end()
            return _WORDS[m.group()]
        raise self.fail("expected a value")

    def string(self) -> str:
        quote = self.text[self.pos]
        out: list[str] = []
        i = self.pos + 1
        while i < len(self.text):
            ch = self.text[i]
            if ch == quote:
                self.pos = i + 1
                return "".join(out)
            if ch == "\\" and i + 1 < len(self.text):
                nxt = self.text[i + 1]
                if nxt == "u" and i + 5 < len(self.text):
                    out.append(chr(int(self.text[i + 2:i + 6], 16)))
                    i += 6
                    continue
                out.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(nxt, nxt))
                i += 2
                continue
            out.append(ch)
            i += 1
        raise self.fail("unterminated string")

    def key(self) -> str:
        if self.peek() and self.peek() in "\"'":
            return self.string()
        m = _BARE.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a key")
        self.pos = m.end()
        return m.group()

    def obj(self) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        while self.peek() != "}":
            k = self.key()
            self.expect(":")
            out[k] = self.value()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                raise self.fail("expected ',' or '}'")
        self.pos += 1
        return out

    def array(self) -> list[Any]:
        self.expect("[")
        out: list[Any] = []
        while self.peek() != "]":
            out.append(self.value())
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise self.fail("expected ',' or ']'")
        self.pos += 1
        return out


def loads(text: str) -> Any:
    """Parse relaxed JSON; an empty text is an empty object (match everything)."""
    if not text.strip():
        return {}
    reader = _Reader(text)
    value = reader.value()
    if reader.peek():
        raise reader.fail("unexpected text after the value")
    return value
