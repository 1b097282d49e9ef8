"""The option table: names, aliases, short letters, defaults and help come from one place."""

from __future__ import annotations

import pytest

from vassal.options import ALIASES, IGNORED, OPTIONS, SHORT, VERSION, format_help, lookup

# (name, type, default, repeat) that other parts of Imperium rely on
EXPECTED = [
    ("socket", str, None, True), ("http-socket", str, None, True), ("http", str, None, True),
    ("shared-socket", str, None, True), ("zerg", str, None, True), ("zerg-server", str, None, False),
    ("zergpool", str, None, True), ("chmod-socket", str, None, False), ("chown-socket", str, None, False),
    ("listen", int, 100, False), ("master", bool, False, False), ("processes", int, 1, False),
    ("threads", int, 1, False), ("enable-threads", bool, False, False), ("lazy-apps", bool, False, False),
    ("lazy", bool, False, False), ("wsgi-file", str, None, False), ("module", str, None, False),
    ("callable", str, "application", False), ("chdir", str, None, False), ("chdir2", str, None, False),
    ("pythonpath", str, None, True), ("env", str, None, True), ("home", str, None, False),
    ("mount", str, None, True), ("manage-script-name", bool, False, False), ("max-requests", int, 0, False),
    ("harakiri", int, 0, False), ("harakiri-verbose", bool, False, False), ("reload-mercy", int, 60, False),
    ("worker-reload-mercy", int, 60, False), ("mule-reload-mercy", int, 60, False),
    ("die-on-term", bool, False, False), ("exit-on-reload", bool, False, False), ("pidfile", str, None, False),
    ("pidfile2", str, None, False), ("logto", str, None, False), ("logto2", str, None, False),
    ("log-format", str, None, False), ("disable-logging", bool, False, False), ("log-date", str, None, False),
    ("daemonize", str, None, False), ("uid", str, None, False), ("gid", str, None, False),
    ("idle", int, 0, False), ("die-on-idle", bool, False, False), ("need-app", bool, False, False),
    ("buffer-size", int, 4096, False), ("post-buffering", int, 0, False), ("stats", str, None, False),
    ("stats-http", bool, False, False), ("stats-minified", bool, False, False),
    ("connect-and-read", str, None, False), ("heartbeat", int, 0, False), ("vassal-sos-backlog", int, 0, False),
    ("emperor-fd", int, None, False), ("procname", str, None, False), ("procname-prefix", str, None, False),
    ("procname-master", str, None, False), ("auto-procname", bool, False, False),
    ("memory-report", bool, False, False), ("touch-reload", str, None, True), ("add-header", str, None, True),
    ("static-map", str, None, True), ("route", str, None, True), ("cheaper", int, 0, False),
    ("max-worker-lifetime", int, 0, False), ("reload-on-rss", int, 0, False),
    ("evil-reload-on-rss", int, 0, False), ("socket-timeout", int, 4, False), ("http-timeout", int, 60, False),
    ("so-keepalive", bool, False, False), ("http-keepalive", int, 1, False),
    ("honour-stdin", bool, False, False), ("close-on-exec", bool, False, False), ("strict", bool, False, False),
    ("vacuum", bool, False, False), ("single-interpreter", bool, False, False), ("py-autoreload", int, 0, False),
    ("touch-logreopen", str, None, True), ("catch-exceptions", bool, False, False), ("limit-post", int, 0, False),
    ("ini", str, None, True), ("xml", str, None, True), ("yaml", str, None, True), ("json", str, None, True),
    ("config", str, None, True), ("include", str, None, True), ("inherit", str, None, True),
    ("set", str, None, True), ("plugin", str, None, True),
    # emperor
    ("emperor", str, None, True), ("emperor-freq", int, 3, False), ("emperor-throttle", int, 1000, False),
    ("emperor-max-throttle", int, 180000, False), ("emperor-required-heartbeat", int, 30, False),
    ("emperor-curse-tolerance", int, 30, False), ("emperor-pidfile", str, None, False),
    ("emperor-tyrant", bool, False, False), ("emperor-tyrant-nofollow", bool, False, False),
    ("emperor-nofollow", bool, False, False), ("emperor-stats", str, None, False),
    ("emperor-broodlord", int, 0, False), ("emperor-magic-exec", bool, False, False),
    ("emperor-extra-extension", str, None, True), ("emperor-no-blacklist", bool, False, False),
    ("emperor-graceful-shutdown", bool, False, False), ("emperor-wrapper", str, None, False),
    ("emperor-procname", str, None, False), ("emperor-use-clone", str, None, False),
    ("emperor-on-demand-extension", str, None, False), ("emperor-on-demand-directory", str, None, False),
    ("emperor-on-demand-exec", str, None, False), ("binary-path", str, None, False),
    ("vassal-set", str, None, True), ("vassals-include", str, None, True), ("vassals-inherit", str, None, True),
    ("vassals-include-before", str, None, True), ("vassals-inherit-before", str, None, True),
    ("vassals-start-hook", str, None, False), ("vassals-stop-hook", str, None, False),
    ("imperial-monitor-list", bool, False, False),
]


@pytest.mark.parametrize(("name", "type_", "default", "repeat"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_expected_options(name: str, type_: type, default: object, repeat: bool) -> None:
    opt = OPTIONS[name]
    assert (opt.type, opt.default, opt.repeat) == (type_, default, repeat)
    assert opt.help


@pytest.mark.parametrize(("alias", "name"), [
    ("uwsgi-socket", "socket"), ("workers", "processes"), ("virtualenv", "home"), ("venv", "home"),
    ("pyhome", "home"), ("wsgi", "module"), ("file", "wsgi-file"), ("python-path", "pythonpath"),
    ("pp", "pythonpath"), ("stats-server", "stats"), ("emperor-stats-server", "emperor-stats"),
    ("emperor-extra-ext", "emperor-extra-extension"), ("vassals-set", "vassal-set"), ("plugins", "plugin"),
    ("need-plugin", "plugin"), ("plugin-dir", "plugins-dir"), ("xmlconfig", "xml"), ("yml", "yaml"),
    ("js", "json"), ("logformat", "log-format"), ("set-ph", "set-placeholder"), ("chmod", "chmod-socket"),
    ("emperor-on-demand-ext", "emperor-on-demand-extension"), ("usage", "help"),
])
def test_aliases(alias: str, name: str) -> None:
    assert ALIASES[alias] == name
    assert lookup(alias) is OPTIONS[name]


@pytest.mark.parametrize(("letter", "name"), [
    ("s", "socket"), ("p", "processes"), ("M", "master"), ("w", "module"), ("H", "home"),
    ("T", "enable-threads"), ("d", "daemonize"), ("t", "harakiri"), ("R", "max-requests"), ("L", "disable-logging"),
    ("b", "buffer-size"), ("l", "listen"), ("z", "socket-timeout"), ("C", "chmod-socket"), ("x", "xml"),
    ("y", "yaml"), ("j", "json"), ("S", "set"), ("h", "help"), ("i", "single-interpreter"), ("m", "memory-report"),
])
def test_short_letters_follow_uwsgi(letter: str, name: str) -> None:
    assert SHORT[letter] == name


def test_every_spelling_is_unique_and_resolves() -> None:
    for name, opt in OPTIONS.items():
        assert opt.name == name
        for spelling in (name, *opt.aliases):
            assert ALIASES[spelling] == name
    assert all(SHORT[o.short] == n for n, o in OPTIONS.items() if o.short and SHORT[o.short] == n)


def test_lookup_accepts_underscores_and_rejects_unknown() -> None:
    assert lookup("http_socket") is OPTIONS["http-socket"]
    assert lookup("no-such-option") is None


def test_chmod_socket_alone_means_666() -> None:
    assert OPTIONS["chmod-socket"].implicit == "666"


def test_commonly_used_compat_options_are_accepted_but_marked_ignored() -> None:
    assert {"static-cache-paths"} <= IGNORED
    # these are real settings, not ignored
    assert not ({"vacuum", "master", "processes", "enable-threads", "thunder-lock", "reuse-port",
                 "protocol", "post-buffering", "ignore-sigpipe", "route", "no-default-app"} & IGNORED)


def test_help_lists_options_from_the_table() -> None:
    text = format_help()
    assert VERSION in text
    assert "-M|--master" in text and "--emperor-freq" in text and "default 3" in text
    assert "--http-socket" in text and "thunder-lock" in text
