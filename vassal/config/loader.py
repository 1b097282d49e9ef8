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

import dataclasses
import os
import sys
from collections.abc import Mapping

from vassal.options import ALIASES, OPTIONS, REFUSED, REFUSED_PLUGINS, SHORT, Option

from . import formats
from .errors import ConfigError
from .logic import Logic, logic_items
from .magic import MagicTable, has_scheme, split_section
from .model import Config, Entry, convert
from .origin import COMMAND_LINE, Origin
from .placeholders import expand, placeholder_names, placeholder_value, read_at_file
from .privacy import Author
from .sources import EmperorReader, read_source
from .uwsgi_names import UWSGI_OPTIONS

#: UWSGI_* variables that are protocol or bookkeeping, never options (uWSGI's own list)
ENV_NOT_OPTIONS = frozenset({
    "UWSGI_RELOADS", "UWSGI_VASSALS_DIR", "UWSGI_EMPEROR_FD", "UWSGI_BROODLORD_NUM",
    "UWSGI_EMPEROR_FD_CONFIG", "UWSGI_EMPEROR_PROXY", "UWSGI_JAIL_PID", "UWSGI_ORIGINAL_PROC_NAME",
})

_FILE_LOADERS = {"ini": "ini", "xml": "xml", "yaml": "yaml", "json": "json", "config": None}
_LOGIC_END = ("endfor", "endif", "end")
_PLACEHOLDER_ONLY = "set-placeholder"

#: files being read inside each other (include, inherit, ini = ...) at most
MAX_DEPTH = 32
#: options (and placeholders) one configuration may hold
MAX_OPTIONS = 100_000
#: characters all expanded values together may hold
MAX_EXPANDED = 16 << 20


class _Stop(Exception):
    """--help or --version: stop reading the command line."""


class Loader:
    def __init__(self, environ: Mapping[str, str], emperor_reader: EmperorReader | None,
                 cwd: str | None = None, survey: list[str] | None = None) -> None:
        self.environ = environ
        self.survey = survey  # when a list: unsupported uWSGI options go there, not refused
        self.emperor_reader = emperor_reader
        self.entries: list[Entry] = []
        self.placeholder_keys: set[str] = set()  # declared with set-placeholder / set of a non-option
        self.magic = MagicTable(cwd=cwd, binary=sys.argv[0] if sys.argv else None)
        self.author: Author | None = None  # set by the first file read (see privacy)
        self.private_texts: list[str] = []  # what @(file) read from files the author cannot read
        self._looked_up_private = False  # lookup() found an option of such a file
        self.warnings: list[str] = []
        #: uWSGI's first lines, one per config file read ("[uWSGI] getting INI configuration
        #: from FILE"): printed by the command line before anything else
        self.reading: list[str] = []
        self.prints: list[Entry] = []
        self.stack: list[tuple[str, str | None]] = []  # files being read, for include loops
        self.last_file: str | None = None
        self.source: str | None = None
        self.help = False
        self.version = False
        self.logic: Logic | None = None
        self.inheriting = False  # options added now come from an inherit: no expansion
        self.is_reload = bool(environ.get("UWSGI_RELOADS"))
        self.looked_up: set[str] = set()  # every name a %(...) asked for
        self._first_key: dict[str, Entry] = {}  # first entry of each key, for placeholders
        self._first_name: dict[str, Entry] = {}  # first entry of each option

    # ---- adding options -------------------------------------------------------------------
    def add(self, key: str, value: str | None, origin: Origin, *, cmdline: bool = False) -> None:
        """uWSGI's add_exported_option: run logic blocks and loader options, record the rest."""
        # uWSGI's keys and values are C strings: they end at the first NUL
        key = key.split("\0", 1)[0]
        if value is not None:
            value = value.split("\0", 1)[0]
        name = ALIASES.get(key)
        if name in _LOGIC_END:
            self.logic = None
            self._record(Entry(key, name, value, origin, False))
            return
        if self.logic is not None:
            self._run_logic(key, value, origin, cmdline)
            return
        self._add_now(key, name, value, origin, cmdline)

    def _add_now(self, key: str, name: str | None, value: str | None, origin: Origin, cmdline: bool) -> None:
        if name is None:
            if cmdline:
                raise ConfigError(f"unknown option {key} ({origin})")
            owner = UWSGI_OPTIONS.get(key)
            if owner is not None:
                where = "" if owner == "core" else f" of the {owner} plugin"
                if self.survey is None:
                    why = REFUSED.get(key) or REFUSED_PLUGINS.get(owner)
                    if why is not None:
                        raise ConfigError(f"option {key} is not supported: {why} ({origin})")
                    raise ConfigError(f"option {key}{where} is a uWSGI option that Imperium does "
                                      f"not support ({origin})")
                self.survey.append(key)
                return
            # not an option: uWSGI keeps it, usable as %(key); only strict refuses it
            self._record(Entry(key, None, value, origin, not self.inheriting))
            return
        opt = OPTIONS[name]
        if not opt.loader:
            self._record(Entry(key, name, value, origin, not self.inheriting))
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
        shown = "its value" if origin.private else repr(value)
        # loader options are kept in the list (uWSGI shows them too); they act at once, so
        # they are not expanded, except print which uWSGI runs late like a normal option
        self._record(Entry(key, name, value, origin, name == "print" and not self.inheriting,
                                  chain=tuple(self.stack)))
        if name in ("set", _PLACEHOLDER_ONLY):
            k, sep, v = (value or "").partition("=")
            k = k.strip()
            if not sep or not k:
                raise ConfigError(f"option {name} needs KEY=VALUE, got {shown} ({origin})")
            if name == _PLACEHOLDER_ONLY:
                if k in ALIASES:
                    raise ConfigError(f"{k} is an option and cannot be used as a placeholder ({origin})")
                self.placeholder_keys.add(k)
                # uWSGI marks it configured: never expanded, never refused by strict
                self._record(Entry(k, None, v, origin, False, placeholder_only=True))
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
            self.logic = Logic(name, value)
            return
        raise AssertionError(f"loader option {name} not handled")

    def _run_logic(self, key: str, value: str | None, origin: Origin, cmdline: bool) -> None:
        logic = self.logic
        assert logic is not None
        kind, arg = logic.kind, logic.arg or ""
        self.logic = None  # options added by the block are real options (no recursion)
        try:
            items = logic_items(kind, arg, origin, self.environ, self.is_reload, self.lookup)
            for item in items:
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
        same_file = section is not None and path == ""  # ":section": the last file again
        if same_file:
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
        is_file = not is_url and path != "-"
        key = (os.path.realpath(path) if is_file else path, section)
        if key in self.stack:
            raise ConfigError(f"config include loop: {_chain([*self.stack, key])}{via}")
        if len(self.stack) >= MAX_DEPTH:
            raise ConfigError(f"config files nested more than {MAX_DEPTH} deep: "
                              f"{_chain([*self.stack, key])}{via}")
        if main and self.source is None and not self.inheriting:
            self.source = spec
        if self.author is None:
            self.author = Author.of_file(path) if is_file else Author(os.geteuid())
        if not (same_file and fmt == "ini"):  # uWSGI's ini reader is quiet for ":section"
            self.reading.append(_READING[fmt].format(path))
        self.stack.append(key)
        try:
            try:
                text = read_source(path, self.environ, self.emperor_reader)
            except ConfigError as exc:
                raise ConfigError(f"{exc}{via}") from None
            private = is_file and not self.author.may_quote(path)
            self.last_file = path
            text = self.magic.substitute(text)
            parse = formats.PARSERS[fmt]
            try:
                if fmt == "xml" or section:
                    parsed = parse(text, path, section, private=private)
                else:
                    parsed = parse(text, path, private=private)
            except ConfigError as exc:
                raise ConfigError(f"{exc}{via}", line=exc.line) from None
            self.warnings.extend(parsed.warnings)
            for raw in parsed.options:
                self.add(raw.key, raw.value, Origin(path, raw.line, private))
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
            if key not in ALIASES and key not in UWSGI_OPTIONS:
                # uWSGI keeps it as a placeholder; images set such variables for their own
                # scripts (UWSGI_USER ...), so it is kept without a notice
                self._record(Entry(key, None, value, Origin(f"environment variable {var}"),
                                          quiet=True))
                continue
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
        """The three passes over every expandable value, each as uWSGI runs them."""
        todo = [e for e in self.entries if e.expandable and e.value is not None]
        unquotable: list[str] = []  # set by at_file: it read a file the author cannot read

        def at_file(name: str) -> str | None:
            text = read_at_file(name)
            if (text is not None and self.author is not None and not name.startswith("exec://")
                    and not self.author.may_quote(name)):
                unquotable.append(text)
            return text

        def placeholder(key: str) -> str | None:
            text = placeholder_value(key, self.lookup)
            if text and self._looked_up_private:
                unquotable.append(text)  # a value of a private file, copied here
            self._looked_up_private = False
            return text

        passes = (("$", self.environ.get), ("@", at_file), ("%", placeholder))
        for symbol, resolve in passes:
            total = 0
            for e in todo:
                e.value = expand(e.value, symbol, resolve, str(e.origin),  # type: ignore[arg-type]
                                 private=e.origin.private)
                if unquotable:
                    # @(file) put a secret in this value: no message may quote it from now on
                    self.private_texts.extend(unquotable)
                    unquotable.clear()
                    if not e.origin.private:
                        e.origin = dataclasses.replace(e.origin, private=True)
                total += len(e.value)  # type: ignore[arg-type]
                if total > MAX_EXPANDED:
                    raise ConfigError(f"the expanded options hold more than {MAX_EXPANDED} characters "
                                      f"(at {e.origin})")

    def _record(self, entry: Entry) -> None:
        if len(self.entries) >= MAX_OPTIONS:
            raise ConfigError(f"more than {MAX_OPTIONS} options ({entry.origin})")
        self.entries.append(entry)
        self._first_key.setdefault(entry.key, entry)
        if entry.name is not None:
            self._first_name.setdefault(entry.name, entry)

    def lookup(self, key: str) -> str | None:
        """A placeholder reference: the first occurrence of that key (uWSGI's rule), or else
        of the option it is an alias of (``%(workers)`` finds ``processes``)."""
        self.looked_up.add(key)
        e = self._first_key.get(key)
        if e is None:
            canon = ALIASES.get(key)
            e = self._first_name.get(canon) if canon is not None else None
        if e is not None and e.origin.private:
            self._looked_up_private = True
        return e.value if e is not None else None

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

    def finish(self, argv: list[str], *, strict: bool = False) -> Config:
        """Expand, inherit, type every option; keys that are not options become placeholders
        (refused from the point ``strict`` is set on, as in uWSGI)."""
        self.expand_all()
        self.load_inherits()
        referenced = set(self.looked_up)
        for e in self.entries:
            if e.value and not e.expandable:
                referenced |= placeholder_names(e.value)
        placeholders: dict[str, str] = {}
        notes: list[str] = []
        noticed: set[str] = set()
        for e in self.entries:
            if e.name == "strict":
                strict = convert(OPTIONS["strict"], e.value, e.origin)
            if e.name is not None:
                e.typed = convert(OPTIONS[e.name], e.value, e.origin, notes)
                continue
            placeholders.setdefault(e.key, e.value or "")
            shown = "a key" if e.origin.private else e.key
            if strict and not e.placeholder_only:
                raise ConfigError(f"unknown option {shown} ({e.origin}): strict mode refuses keys "
                                  "that are not options")
            if e.quiet or e.key in referenced or e.key in self.placeholder_keys or e.key in noticed:
                continue
            noticed.add(e.key)
            notes.append(f"{shown} ({e.origin}) is not an option: kept as a placeholder (as uWSGI "
                         "does; strict refuses it)")
        for e in self.prints:
            print(e.value, flush=True)
        secrets = [e.value for e in self.entries if e.origin.private and e.value] + self.private_texts
        config = Config(self.entries, placeholders=placeholders, source=self.source, argv=argv,
                        magic=dict(self.magic.table), warnings=self.warnings + notes,
                        private_texts=secrets)
        config.reading = self.reading
        return config


#: what uWSGI logs as it starts reading a config file, per format (core/ini.c, yaml.c,
#: json.c; the xml reader says it once the file has parsed)
_READING = {"ini": "[uWSGI] getting INI configuration from {}", "yaml": "[uWSGI] getting YAML configuration from {}",
            "json": "[uWSGI] getting JSON configuration from {}", "xml": "[uWSGI] parsing config file {}"}


def _chain(stack: list[tuple[str, str | None]]) -> str:
    """Files being read inside each other, for a one-line error (long chains shortened)."""
    names = [p if section is None else f"{p}:{section}" for p, section in stack]
    if len(names) > 8:
        names = [*names[:3], f"... {len(names) - 6} more ...", *names[-3:]]
    return " -> ".join(names)


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


def load_config(argv: list[str], environ: Mapping[str, str] | None = None, *,
                emperor_reader: EmperorReader | None = None, cwd: str | None = None,
                allow_unknown: bool = True, survey: list[str] | None = None) -> Config:
    """Parse uWSGI's command line (plus UWSGI_* variables and config files) into a Config.

    ``emperor_reader(name)`` may supply the bytes of an ``emperor://name`` config (the default
    reads the fd in UWSGI_EMPEROR_FD_CONFIG); ``cwd`` is the ``%v`` magic variable.
    A key in a file or UWSGI_* variable that is no option is kept as a placeholder, as uWSGI
    does, with a notice; ``allow_unknown=False`` refuses them as ``strict`` does. A uWSGI
    option that Imperium does not support, and an unknown command-line option, are errors;
    given a ``survey`` list, such options are appended to it and left out instead (for tools
    that count what a corpus of configs needs, see tests/corpus).
    """
    env = dict(os.environ if environ is None else environ)
    loader = Loader(env, emperor_reader, cwd, survey)
    try:
        loader.read_environ()
        loader.read_argv(list(argv))
    except _Stop:
        return Config([], argv=list(argv), help_requested=loader.help, version_requested=loader.version)
    if loader.logic is not None:
        loader.warnings.append(f"config logic {loader.logic.kind} not closed with end")
    return loader.finish(list(argv), strict=not allow_unknown)
