"""Assemble a Config the way uWSGI 2.0 does (core/uwsgi.c, init.c, config.c, ini.c ...).

Order of the option list, which decides precedence (a single-valued option takes the last
value, a repeatable one keeps them all in this order):

1. ``UWSGI_<OPTION>`` environment variables, in environment order (lowest precedence);
2. command-line options in order; a loader option (``--ini``, ``--include``, ``--set`` ...)
   splices its options in at that point ("top-bottom, expand asap");
3. positional config files, after *all* command-line options (getopt moves them to the end);
4. then ``$(ENV)``, ``@(file)`` and ``%(placeholder)`` are expanded over the whole list;
5. finally every ``inherit`` is loaded, its options appended at the end, not expanded.

Magic variables (``%n``, ``%d`` ...) are replaced in the raw text of each file when it is read.
"""

from __future__ import annotations

import glob
import os
import socket
import sys
from collections.abc import Callable, Mapping

from vassal.options import ALIASES, OPTIONS, SHORT, Option

from . import formats
from .errors import ConfigError
from .magic import MagicTable, has_scheme, split_section
from .model import Config, Entry, convert
from .origin import COMMAND_LINE, Origin
from .placeholders import expand, placeholder_names, placeholder_value, read_at_file
from .sources import EmperorReader, read_source

#: UWSGI_* variables that are protocol or bookkeeping, never options (uWSGI's own list)
ENV_NOT_OPTIONS = frozenset({
    "UWSGI_RELOADS", "UWSGI_VASSALS_DIR", "UWSGI_EMPEROR_FD", "UWSGI_BROODLORD_NUM",
    "UWSGI_EMPEROR_FD_CONFIG", "UWSGI_EMPEROR_PROXY", "UWSGI_JAIL_PID", "UWSGI_ORIGINAL_PROC_NAME",
})

_FILE_LOADERS = {"ini": "ini", "xml": "xml", "yaml": "yaml", "json": "json", "config": None}
_LOGIC_END = ("endfor", "endif", "end")
_PLACEHOLDER_ONLY = "set-placeholder"


class _Stop(Exception):
    """--help or --version: stop reading the command line."""


class _Logic:
    """An active for/if block: every option given until the end marker goes through it."""

    def __init__(self, kind: str, arg: str | None) -> None:
        self.kind, self.arg = kind, arg


class Loader:
    def __init__(self, environ: Mapping[str, str], emperor_reader: EmperorReader | None,
                 cwd: str | None = None) -> None:
        self.environ = environ
        self.emperor_reader = emperor_reader
        self.entries: list[Entry] = []
        self.placeholder_keys: set[str] = set()  # declared with set-placeholder / set of a non-option
        self.magic = MagicTable(cwd=cwd, binary=sys.argv[0] if sys.argv else None)
        self.warnings: list[str] = []
        self.prints: list[Entry] = []
        self.stack: list[tuple[str, str | None]] = []  # files being read, for include loops
        self.last_file: str | None = None
        self.source: str | None = None
        self.help = False
        self.version = False
        self.logic: _Logic | None = None
        self.inheriting = False  # options added now come from an inherit: no expansion
        self.is_reload = bool(environ.get("UWSGI_RELOADS"))
        self.looked_up: set[str] = set()  # every name a %(...) asked for

    # ---- adding options -------------------------------------------------------------------
    def add(self, key: str, value: str | None, origin: Origin, *, cmdline: bool = False) -> None:
        """uWSGI's add_exported_option: run logic blocks and loader options, record the rest."""
        name = ALIASES.get(key)
        if name in _LOGIC_END:
            self.logic = None
            self.entries.append(Entry(key, name, value, origin, False))
            return
        if self.logic is not None:
            self._run_logic(key, value, origin, cmdline)
            return
        self._add_now(key, name, value, origin, cmdline)

    def _add_now(self, key: str, name: str | None, value: str | None, origin: Origin, cmdline: bool) -> None:
        if name is None:
            if cmdline:
                raise ConfigError(f"unknown option {key} ({origin})")
            self.entries.append(Entry(key, None, value, origin, not self.inheriting))
            return
        opt = OPTIONS[name]
        if not opt.loader:
            self.entries.append(Entry(key, name, value, origin, not self.inheriting))
            return
        self._loader_option(opt, key, value, origin)

    def _loader_option(self, opt: Option, key: str, value: str | None, origin: Origin) -> None:
        name = opt.name
        if name == "help":
            self.help = True
            raise _Stop
        if name == "version":
            self.version = True
            raise _Stop
        if value is None and opt.type is not bool and opt.implicit is None:
            raise ConfigError(f"option {name} requires a value ({origin})")
        # loader options are kept in the list (uWSGI shows them too); they act at once, so
        # they are not expanded, except print which uWSGI runs late like a normal option
        self.entries.append(Entry(key, name, value, origin, name == "print" and not self.inheriting,
                                  chain=tuple(self.stack)))
        if name in ("set", _PLACEHOLDER_ONLY):
            k, sep, v = (value or "").partition("=")
            k = k.strip()
            if not sep or not k:
                raise ConfigError(f"option {name} needs KEY=VALUE, got {value!r} ({origin})")
            if name == _PLACEHOLDER_ONLY:
                if k in ALIASES:
                    raise ConfigError(f"{k} is an option and cannot be used as a placeholder ({origin})")
                self.placeholder_keys.add(k)
                self.entries.append(Entry(k, None, v, origin, not self.inheriting))
                return
            if k not in ALIASES:
                self.placeholder_keys.add(k)
            self.add(k, v, origin)
            return
        if name in _FILE_LOADERS:
            assert value is not None
            self.load(value, _FILE_LOADERS[name], origin, first_round=True, main=True)
            return
        if name in ("ini-paste", "ini-paste-logged"):
            # uWSGI's python plugin: read the file's [uwsgi] section, then load it with paste
            assert value is not None
            self.load(value, "ini", origin, first_round=True, main=True)
            path = value if value.startswith("/") else os.path.join(self.magic.table["v"], value)
            self.add("paste", "config:" + path, origin)
            if name == "ini-paste-logged":
                self.add("paste-logger", None, origin)
            return
        if name == "include":
            assert value is not None
            self.load(value, None, origin, first_round=False)
            return
        if name == "inherit":
            return  # loaded at the end (see finish)
        if name == "print":
            self.prints.append(self.entries[-1])
            return
        if name.startswith(("for", "if-")):
            self.logic = _Logic(name, value)
            return
        raise AssertionError(f"loader option {name} not handled")

    def _run_logic(self, key: str, value: str | None, origin: Origin, cmdline: bool) -> None:
        logic = self.logic
        assert logic is not None
        kind, arg = logic.kind, logic.arg or ""
        self.logic = None  # options added by the block are real options (no recursion)
        try:
            for item in _logic_items(kind, arg, self, origin):
                v = value.replace("%(_)", item) if (value is not None and item is not None) else value
                self._add_dispatch(key, v, origin, cmdline)
        finally:
            self.logic = logic

    def _add_dispatch(self, key: str, value: str | None, origin: Origin, cmdline: bool) -> None:
        name = ALIASES.get(key)
        if name is not None and OPTIONS[name].loader and name.startswith(("for", "if-")):
            raise ConfigError(f"nested config logic is not supported: {key} ({origin})")
        self._add_now(key, name, value, origin, cmdline)

    # ---- files ----------------------------------------------------------------------------
    def load(self, spec: str, fmt: str | None, origin: Origin, *, first_round: bool, main: bool = False) -> None:
        """Read the config ``spec`` (``FILE[:section]``) in place; fmt None: by extension."""
        is_url = has_scheme(spec)
        path, section = split_section(spec, is_url=is_url)
        if section is not None and path == "":
            if self.last_file is None:
                raise ConfigError(f"{spec}: no previous config file to take section {section} from ({origin})")
            path = self.last_file
        if fmt is None:
            fmt = formats.format_for(spec) or formats.format_for(path)
            if fmt is None:
                if path.endswith((".py", ".wsgi")):
                    raise ConfigError(f"{spec} is not a config file ({origin}); use --wsgi-file")
                raise ConfigError(f"cannot load config {spec} ({origin}): unknown format "
                                  "(use .ini, .xml, .yaml/.yml or .json/.js, or --ini/--xml/--yaml/--json)")
        if section == "":
            section = None
        via = "" if origin.where == COMMAND_LINE else f" (from {origin})"
        try:
            self.magic.fill_for_file(spec, first_round_allowed=first_round)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{via}") from None
        key = (os.path.realpath(path) if not is_url and path != "-" else path, section)
        if key in self.stack:
            chain = " -> ".join(p for p, _ in [*self.stack, key])
            raise ConfigError(f"config include loop: {chain}")
        if main and self.source is None and not self.inheriting:
            self.source = spec
        self.stack.append(key)
        try:
            try:
                text = read_source(path, self.environ, self.emperor_reader)
            except ConfigError as exc:
                raise ConfigError(f"{exc}{via}") from None
            self.last_file = path
            text = self.magic.substitute(text)
            parse = formats.PARSERS[fmt]
            parsed = parse(text, path, section) if fmt == "xml" or section else parse(text, path)
            self.warnings.extend(parsed.warnings)
            for raw in parsed.options:
                self.add(raw.key, raw.value, Origin(path, raw.line))
        finally:
            self.stack.pop()

    # ---- sources --------------------------------------------------------------------------
    def read_environ(self) -> None:
        for var, value in self.environ.items():
            if not var.startswith("UWSGI_") or var in ENV_NOT_OPTIONS or len(var) == 6:
                continue
            if var.startswith("UWSGI_VASSAL_"):
                continue  # meant for our vassals (the emperor renames them), not for us
            key = var[6:].lower().replace("_", "-")
            self.add(key, value, Origin(f"environment variable {var}"))

    def read_argv(self, argv: list[str]) -> None:
        positional: list[str] = []
        i = 0
        origin = Origin(COMMAND_LINE)
        while i < len(argv):
            arg = argv[i]
            i += 1
            if arg == "--":
                positional.extend(argv[i:])
                break
            if arg.startswith("--"):
                body = arg[2:]
                spelled, eq, inline = body.partition("=")
                spelled = _complete(spelled)
                name = ALIASES[spelled]
                opt = OPTIONS[name]
                if eq:
                    value: str | None = inline
                elif opt.type is bool or opt.implicit is not None:
                    value = None
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise ConfigError(f"option --{spelled} requires a value (command line)")
                self.add(spelled, value, origin, cmdline=True)
            elif arg.startswith("-") and len(arg) > 1:
                j = 1
                while j < len(arg):
                    letter = arg[j]
                    j += 1
                    name = SHORT.get(letter)
                    if name is None:
                        raise ConfigError(f"unknown option -{letter} (command line)")
                    opt = OPTIONS[name]
                    if opt.type is bool:
                        self.add(name, None, origin, cmdline=True)
                        continue
                    rest = arg[j:]
                    if rest:
                        value = rest
                    elif opt.implicit is not None:
                        value = None
                    elif i < len(argv):
                        value = argv[i]
                        i += 1
                    else:
                        raise ConfigError(f"option -{letter} ({name}) requires a value (command line)")
                    self.add(name, value, origin, cmdline=True)
                    break
            else:
                positional.append(arg)
        for arg in positional:
            if arg.startswith("["):
                continue  # uWSGI skips these
            if arg.endswith((".py", ".wsgi")) and not formats.format_for(arg):
                # what uWSGI's python plugin does with a bare script name
                self.add("wsgi-file", arg, origin, cmdline=True)
                continue
            self.load(arg, None, origin, first_round=False, main=True)

    # ---- the end ----------------------------------------------------------------------------
    def expand_all(self) -> None:
        todo = [e for e in self.entries if e.expandable and e.value is not None]
        for e in todo:
            e.value = expand(e.value, "$", self.environ.get, str(e.origin))  # type: ignore[arg-type]
        for e in todo:
            e.value = expand(e.value, "@", read_at_file, str(e.origin))  # type: ignore[arg-type]
        for e in todo:
            e.value = expand(e.value, "%", lambda k: placeholder_value(k, self.lookup),  # type: ignore[arg-type]
                             str(e.origin))

    def lookup(self, key: str) -> str | None:
        """A placeholder reference: the first occurrence of that key (uWSGI's rule)."""
        self.looked_up.add(key)
        for e in self.entries:
            if e.key == key:
                return e.value
        canon = ALIASES.get(key)
        if canon is not None:
            for e in self.entries:
                if e.name == canon:
                    return e.value
        return None

    def load_inherits(self) -> None:
        self.inheriting = True
        i = 0
        while i < len(self.entries):
            e = self.entries[i]
            i += 1
            if e.name == "inherit" and e.value is not None:
                self.stack = list(e.chain)  # so that a file inheriting itself is seen as a loop
                self.load(e.value, None, e.origin, first_round=False)
        self.stack = []

    def finish(self, argv: list[str], *, allow_unknown: bool = False) -> Config:
        referenced: set[str] = set()
        for e in self.entries:
            if e.value:
                referenced |= placeholder_names(e.value)
        self.expand_all()
        self.load_inherits()
        for e in self.entries:
            if e.value:
                referenced |= placeholder_names(e.value)
        referenced |= self.looked_up
        placeholders: dict[str, str] = {}
        for e in self.entries:
            if e.name is None:
                if not allow_unknown and e.key not in referenced and e.key not in self.placeholder_keys:
                    raise ConfigError(f"unknown option {e.key} ({e.origin})")
                placeholders.setdefault(e.key, e.value or "")
                continue
            e.typed = convert(OPTIONS[e.name], e.value, e.origin)
        for e in self.prints:
            print(e.value, flush=True)
        return Config(self.entries, placeholders=placeholders, source=self.source, argv=argv,
                      magic=dict(self.magic.table), warnings=self.warnings)


def _complete(spelled: str) -> str:
    """getopt_long's rule: an exact name, or the one option name it is a prefix of."""
    if spelled in ALIASES:
        return spelled
    matches = [s for s in ALIASES if s.startswith(spelled)] if spelled else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(f"--{m}" for m in sorted(matches)[:6])
        raise ConfigError(f"option --{spelled} is ambiguous ({shown}...) (command line)")
    raise ConfigError(f"unknown option --{spelled} (command line)")


def _logic_items(kind: str, arg: str, loader: Loader, origin: Origin) -> list[str | None]:
    """The %(_) values a logic block applies its options with (empty: skip them)."""
    if kind == "for":
        return [t for t in arg.split(" ") if t]
    if kind == "for-glob":
        return sorted(glob.glob(arg)) or [arg]
    if kind == "for-times":
        try:
            n = int(arg)
        except ValueError:
            raise ConfigError(f"for-times needs a number, got {arg!r} ({origin})") from None
        return [str(i) for i in range(1, n + 1)]
    if kind == "for-readline":
        try:
            with open(arg, encoding="utf-8") as fh:
                return [line.rstrip("\n") for line in fh]
        except OSError as exc:
            raise ConfigError(f"for-readline {arg}: {exc.strerror} ({origin})") from None
    negate = kind.startswith("if-not-")
    what = kind[7:] if negate else kind[3:]
    if what in ("reload",):
        return [None] if loader.is_reload != negate else []
    data = arg
    expected: str | None = None
    if what in ("env", "opt"):
        data, sep, exp = arg.partition("=")
        expected = exp if sep else None
        found = loader.environ.get(data) if what == "env" else loader.lookup(data)
        ok = found is not None and (expected is None or found == expected)
        if negate:
            ok = not (found is not None and (expected is None or found == expected))
        return [found if found is not None else ""] if ok else []
    tests: dict[str, Callable[[str], bool]] = {
        "exists": os.path.exists, "file": os.path.isfile, "dir": os.path.isdir,
        "hostname": lambda h: h == socket.gethostname(),
        "plugin": lambda _p: True,  # every plugin we know of is built in
    }
    test = tests.get(what)
    if test is None:
        raise ConfigError(f"unsupported config logic {kind} ({origin})")
    ok = test(data) != negate
    return [data] if ok else []


def load_config(argv: list[str], environ: Mapping[str, str] | None = None, *,
                emperor_reader: EmperorReader | None = None, cwd: str | None = None,
                allow_unknown: bool = False) -> Config:
    """Parse uWSGI's command line (plus UWSGI_* variables and config files) into a Config.

    ``emperor_reader(name)`` may supply the bytes of an ``emperor://name`` config (the default
    reads the fd in UWSGI_EMPEROR_FD_CONFIG); ``cwd`` is the ``%v`` magic variable.
    An unknown key in a file or UWSGI_* variable is an error unless some ``%(...)`` refers
    to it (then it is a placeholder); ``allow_unknown`` accepts them all, as uWSGI does
    without ``--strict`` (unknown command-line options are always an error, as in uWSGI).
    """
    env = dict(os.environ if environ is None else environ)
    loader = Loader(env, emperor_reader, cwd)
    try:
        loader.read_environ()
        loader.read_argv(list(argv))
    except _Stop:
        return Config([], argv=list(argv), help_requested=loader.help, version_requested=loader.version)
    if loader.logic is not None:
        loader.warnings.append(f"config logic {loader.logic.kind} not closed with end")
    return loader.finish(list(argv), allow_unknown=allow_unknown)
