"""Property-based fuzzing of the option language with hypothesis.

Every reader and the placeholder expansion take any text: the only exception that may come
out is ConfigError (a one-line message). Where a format can say a thing exactly, writing
options and reading them back gives the same options. The linear placeholder expansion is
checked against a direct transcription of uWSGI's own rescanning loop.
"""

from __future__ import annotations

import json
import os
import tempfile
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vassal.config import ConfigError, load_config
from vassal.config.formats import parse_ini, parse_json, parse_xml, parse_yaml
from vassal.config.placeholders import expand, placeholder_value

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
#: text made of the characters the readers care about, so that the fuzzing hits structure
SYNTAX = st.text(st.sampled_from(list("[]=;#:-{}()<>/\"'!&%@$ \t\n\r\0abcuwsgi.,1*|?\\")), max_size=200)
ANY = st.one_of(TEXT, SYNTAX)
KEY = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)
fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_config_errors(fn, *args, **kw) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args, **kw)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip(), "errors are one line"


# ---- readers: nothing but ConfigError escapes -------------------------------------------------

@fuzz
@given(ANY)
def test_ini_reader_takes_any_text(text: str) -> None:
    only_config_errors(parse_ini, text, "f.ini")


@fuzz
@given(ANY)
def test_xml_reader_takes_any_text(text: str) -> None:
    only_config_errors(parse_xml, text, "f.xml")
    only_config_errors(parse_xml, "<uwsgi>" + text + "</uwsgi>", "f.xml", "s")


@fuzz
@given(ANY)
def test_yaml_reader_takes_any_text(text: str) -> None:
    only_config_errors(parse_yaml, text, "f.yaml")
    only_config_errors(parse_yaml, "uwsgi:\n  " + text, "f.yaml")


@fuzz
@given(ANY)
def test_json_reader_takes_any_text(text: str) -> None:
    only_config_errors(parse_json, text, "f.json")
    only_config_errors(parse_json, '{"uwsgi": {"a": ' + text + "}}", "f.json")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["ini", "xml", "yaml", "json"]), ANY, ANY)
def test_whole_loader_takes_any_file(fmt: str, head: str, body: str) -> None:
    starts = {"ini": "[uwsgi]\n", "xml": "<uwsgi>", "yaml": "uwsgi:\n  ", "json": '{"uwsgi": {'}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"c.{fmt}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(head + starts[fmt] + body)
        only_config_errors(load_config, [path], {})


# ---- round trips -----------------------------------------------------------------------------

VALUE = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40)
OPTIONS = st.lists(st.tuples(KEY, VALUE), max_size=12)


@fuzz
@given(OPTIONS)
def test_ini_round_trip(options: list[tuple[str, str]]) -> None:
    options = [(k, v.strip(" \t\r")) for k, v in options]
    text = "[uwsgi]\n" + "".join(f"{k} = {v}\n" for k, v in options)
    assert [(o.key, o.value) for o in parse_ini(text, "f.ini").options] == options


@fuzz
@given(OPTIONS)
def test_xml_round_trip(options: list[tuple[str, str]]) -> None:
    options = [(k, v) for k, v in options if k != "app"]
    text = "<uwsgi>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in options) + "</uwsgi>"
    assert [(o.key, o.value) for o in parse_xml(text, "f.xml").options] == [
        (k, v if v else "1") for k, v in options]


@fuzz
@given(OPTIONS)
def test_yaml_round_trip(options: list[tuple[str, str]]) -> None:
    text = "uwsgi:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in options) + "other:\n  x: 1\n"
    assert [(o.key, o.value) for o in parse_yaml(text, "f.yaml").options] == options


@fuzz
@given(st.lists(st.tuples(KEY, st.one_of(VALUE, st.booleans(), st.integers(), st.lists(VALUE, max_size=3))),
                max_size=12))
def test_json_round_trip(options: list[tuple[str, object]]) -> None:
    text = '{"uwsgi": {' + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in options) + "}}"
    expected = []
    for k, v in options:
        for item in v if isinstance(v, list) else [v]:
            expected.append((k, {True: "1", False: "0"}.get(item, str(item)) if not isinstance(item, str)
                             else item))
    assert [(o.key, o.value) for o in parse_json(text, "f.json").options] == expected


# ---- placeholder expansion -------------------------------------------------------------------

def uwsgi_expand(value: str, symbol: str, table: dict[str, str], limit: int) -> str | None:
    """uwsgi_apply_config_pass for one value, transcribed from core/utils.c (quadratic: it
    rescans from index 1 after each replacement); None when it runs past ``limit`` steps."""
    has_symbol = depth = 0
    magic_key = -1
    steps = 0
    j = 0
    while j < len(value):
        c = value[j]
        if c == symbol:
            has_symbol = 1
        elif c == "(" and has_symbol == 1:
            has_symbol, depth, magic_key = 2, 0, j + 1
        elif has_symbol > 1:
            if c == "(":
                has_symbol += 1
                depth += 1
            elif c == ")":
                if depth > 0:
                    has_symbol += 1
                    depth -= 1
                    j += 1
                    continue
                if has_symbol <= 2:
                    magic_key, has_symbol = -1, 0
                    j += 1
                    continue
                key = value[magic_key:magic_key + has_symbol - 2]
                new = table.get(key)
                if new is None:
                    magic_key, has_symbol = -1, 0
                    j += 1
                    continue
                value = value[:magic_key - 2] + new + value[magic_key + has_symbol - 1:]
                steps += 1
                if steps > limit or len(value) > 10_000:
                    return None
                magic_key, has_symbol = -1, 0
                j = 1
                continue
            else:
                has_symbol += 1
        else:
            has_symbol = 0
        j += 1
    return value


PIECES = st.lists(st.sampled_from(["%", "(", ")", "a", "b", "k", "%(a)", "%(b)", "%(k)", "x", " ", "$"]),
                  max_size=30).map("".join)
TABLES = st.dictionaries(st.sampled_from(["a", "b", "k", "a(b)", "ab", "x"]), PIECES, max_size=5)


@settings(max_examples=500, deadline=None)
@given(PIECES, TABLES)
def test_expansion_matches_uwsgi_rescanning(value: str, table: dict[str, str]) -> None:
    reference = uwsgi_expand(value, "%", table, 200)
    assume(reference is not None)  # uWSGI itself would loop (or grow) without end
    assert expand(value, "%", table.get, "f:1") == reference


@fuzz
@given(ANY, st.dictionaries(st.text(max_size=5), ANY, max_size=5))
def test_expansion_takes_anything(value: str, table: dict[str, str]) -> None:
    for symbol in "%$@":
        only_config_errors(expand, value, symbol, table.get, "f:1")
    only_config_errors(placeholder_value, value, table.get)


# ---- the loader with the option language's own keys ------------------------------------------

LOADER_KEYS = ["include", "inherit", "ini", "yaml", "json", "xml", "set", "set-placeholder", "for", "for-times",
               "for-glob", "endfor", "end", "if-env", "if-not-env", "if-opt", "if-exists", "endif", "print",
               "strict", "processes", "socket", "procname", "env", "chdir", "x", "y", "_"]
WORDS = st.sampled_from(["a.ini", "b.ini", "c.yaml", "a.ini:s", ":s", "%(x)", "%(y)", "%(_)", "$(HOME)",
                         "@(a.ini)", "x=%(y)", "y=%(x)x", "3", "-1", "99999999", "true", "HOME", "*.ini",
                         "%p", "%d", "%n", "%(x + 1)", " ", "=", "(", ")", "%", "%(", "@(", "$("])
LINE = st.tuples(st.sampled_from(LOADER_KEYS), st.lists(WORDS, max_size=3).map("".join))
FILE = st.lists(LINE, max_size=10).map(lambda ls: "[uwsgi]\n" + "".join(f"{k} = {v}\n" for k, v in ls)
                                       + "[s]\nlisten = 5\n")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FILE, FILE, FILE)
def test_loader_options_in_any_order(a: str, b: str, c: str) -> None:
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        for name, text in (("a.ini", a), ("b.ini", b)):
            with open(os.path.join(d, name), "w") as fh:
                fh.write(text)
        with open(os.path.join(d, "c.yaml"), "w") as fh:
            fh.write("uwsgi:\n" + "".join(f"  {line.replace('=', ':', 1)}\n" for line in c.splitlines()[1:]))
        os.chdir(d)
        try:
            only_config_errors(load_config, ["a.ini"], {"HOME": d})
        finally:
            os.chdir(cwd)
