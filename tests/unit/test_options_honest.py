"""The option table is honest: every option is read by some code, or marked ``ignored=True``
(a notice names it, ``--help`` and docs/instance.md list it), or listed in ``INHERENT``
(Imperium always behaves as it asks).

"Read by some code" is found in the source, not at run time: an option counts as read when
its name (or an alias) is written as a string literal where code uses a name: an argument
of a call (``config.get("x")``, ``_open_logfile(config, "logto")``), a subscript, a
comparison, or an element of a tuple/list/set/dict display (``for o in ("logto",
"logto2")``, ``{"socket": "uwsgi"}``). Docstrings, comments and f-strings do not count.
Loader options (``loader=True``) are read by vassal/config itself.

The other way round, an option marked ignored must not be read through the Config
(``config.get/getlist/has/origin("x")``): whoever implements it flips the mark.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from vassal.options import ALIASES, IGNORED, INHERENT, OPTIONS, format_help

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("emperor", "monitors", "vassal")
#: the table itself and facts about uWSGI name options without reading them
NOT_READERS = ("vassal/options.py", "vassal/config/uwsgi_names.py")
CONFIG_READS = ("get", "getlist", "has", "origin")


def sources() -> list[tuple[str, ast.Module]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in NOT_READERS:
                out.append((rel, ast.parse(path.read_text(), rel)))
    return out


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def uses(tree: ast.Module) -> list[tuple[ast.AST, list[ast.AST]]]:
    """(node, the expressions in it where a string names something) for every such node."""
    out: list[tuple[ast.AST, list[ast.AST]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            out.append((node, [*node.args, *(k.value for k in node.keywords)]))
        elif isinstance(node, ast.Subscript):
            out.append((node, [node.slice]))
        elif isinstance(node, ast.Compare):
            out.append((node, [node.left, *node.comparators]))
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            out.append((node, list(node.elts)))
        elif isinstance(node, ast.Dict):
            out.append((node, [k for k in node.keys if k is not None]))
    return out


def read_options() -> dict[str, str]:
    """Canonical option name -> first place in the code that names it."""
    found: dict[str, str] = {}
    for rel, tree in sources():
        for _node, exprs in uses(tree):
            for expr in exprs:
                text = _literal(expr)
                if text in ALIASES:
                    found.setdefault(ALIASES[text], f"{rel}:{expr.lineno}")  # type: ignore[attr-defined]
    return found


def config_reads() -> dict[str, str]:
    """Options read through a Config: ``<...config/cfg...>.get("x")`` or a bare ``get("x")``
    helper (emperor/settings.py)."""
    found: dict[str, str] = {}
    for rel, tree in sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CONFIG_READS:
                receiver = ast.unparse(func.value).lower()
                if "config" not in receiver and "cfg" not in receiver:
                    continue
            elif not (isinstance(func, ast.Name) and func.id in CONFIG_READS):
                continue
            text = _literal(node.args[0])
            if text in ALIASES:
                found.setdefault(ALIASES[text], f"{rel}:{node.lineno}")
    return found


def test_every_option_is_read_marked_ignored_or_inherent() -> None:
    read = read_options()
    silent = sorted(name for name, opt in OPTIONS.items()
                    if not opt.ignored and not opt.loader and name not in INHERENT and name not in read)
    assert not silent, ("options accepted without effect and without a notice; implement them, "
                        f"or mark them ignored=True in vassal/options.py: {' '.join(silent)}")


def test_no_ignored_option_is_read_by_code() -> None:
    reads = config_reads()
    wrong = {name: reads[name] for name in sorted(IGNORED) if name in reads}
    assert not wrong, ("options marked ignored=True but read by code (they print 'has no effect'): "
                       "drop the mark in vassal/options.py: "
                       + ", ".join(f"{n} ({where})" for n, where in wrong.items()))


def test_inherent_options_are_not_marked_and_say_why() -> None:
    for name in sorted(INHERENT):
        opt = OPTIONS[name]
        assert not opt.ignored, name
        assert re.search(r"always|built in|not needed|none here", opt.help), (name, opt.help)


def test_ignored_options_are_listed_in_help_and_docs() -> None:
    help_text = format_help()
    listed = help_text.split("Accepted for uWSGI compatibility, without effect:", 1)[1].split()
    assert sorted(listed) == sorted(IGNORED)
    docs = (ROOT / "docs" / "instance.md").read_text()
    section = docs.split("<!-- ignored options: start -->", 1)[1].split("<!-- ignored options: end -->", 1)[0]
    in_docs = re.findall(r"^- `([a-z0-9-]+)`", section, re.M)
    assert in_docs == sorted(IGNORED), (
        "docs/instance.md lists the options without effect, one per line, sorted: "
        f"add {sorted(set(IGNORED) - set(in_docs))}, remove {sorted(set(in_docs) - set(IGNORED))}")


def test_the_scan_sees_reads() -> None:
    # the heuristics find what they are meant to find (and the test can fail)
    tree = ast.parse('config.get("harakiri")\nfor o in ("logto", "logto2"): pass\nx = {"http": 1}\n'
                     'cfg.getlist("socket")\nself.d.get("static-map")\n')
    names = {_literal(e) for _n, exprs in uses(tree) for e in exprs} - {None}
    assert names >= {"harakiri", "logto", "logto2", "http", "socket", "static-map"}
