"""The command line, UWSGI_* variables and precedence between them and config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from vassal.config import Config, ConfigError, load_config


def load(argv: list[str], env: dict[str, str] | None = None, **kw: object) -> Config:
    return load_config(argv, env or {}, **kw)  # type: ignore[arg-type]


def test_long_options_with_and_without_equals() -> None:
    c = load(["--http-socket", ":8080", "--processes=4", "--master", "--module", "app:application"])
    assert c.getlist("http-socket") == [":8080"]
    assert c.get("processes") == 4
    assert c.get("master") is True
    assert c.get("module") == "app:application"
    assert c.has("master") and not c.has("threads")


def test_defaults_come_from_the_table() -> None:
    c = load([])
    assert c.get("processes") == 1
    assert c.get("listen") == 100
    assert c.get("buffer-size") == 4096
    assert c.get("socket-timeout") == 4
    assert c.get("callable") == "application"
    assert c.get("emperor-freq") == 3
    assert c.get("emperor-throttle") == 1000
    assert c.get("master") is False
    assert c.get("socket") is None and c.getlist("socket") == []
    assert c.get("threads", 8) == 8  # an explicit default wins over the table's
    assert c.source is None and not c.help_requested and not c.version_requested


def test_short_options_from_uwsgi() -> None:
    c = load(["-M", "-p", "3", "-s", "127.0.0.1:3031", "-w", "mod", "-H", "/venv", "-T", "-d", "/tmp/log",
              "-t", "30", "-R", "100", "-L", "-b", "8192", "-z", "7"])
    assert c.get("master") is True
    assert c.get("processes") == 3
    assert c.getlist("socket") == ["127.0.0.1:3031"]
    assert c.get("module") == "mod"
    assert c.get("home") == "/venv"
    assert c.get("enable-threads") is True
    assert c.get("daemonize") == "/tmp/log"
    assert (c.get("harakiri"), c.get("max-requests"), c.get("buffer-size"), c.get("socket-timeout")) == (30, 100, 8192, 7)
    assert c.get("disable-logging") is True


def test_short_option_clusters_and_attached_values() -> None:
    c = load(["-Mp4", "-s:3031", "-TMp", "2"])
    assert c.get("master") is True and c.get("enable-threads") is True
    assert c.getlist("processes") == [4, 2]
    assert c.getlist("socket") == [":3031"]


def test_aliases_resolve_to_canonical_names() -> None:
    c = load(["--workers", "5", "--uwsgi-socket", ":1", "--virtualenv", "/v", "--emperor-stats-server", ":9"])
    assert c.get("processes") == 5
    assert c.get("workers") == 5
    assert c.getlist("socket") == [":1"]
    assert c.get("home") == "/v"
    assert c.get("emperor-stats") == ":9"
    assert ("processes", "5") in c.items()


def test_repeated_options_keep_order_and_last_wins() -> None:
    c = load(["--socket", ":1", "--socket", ":2", "--processes", "2", "--processes", "6", "--env", "A=1",
              "--env", "B=2"])
    assert c.getlist("socket") == [":1", ":2"]
    assert c.get("socket") == ":2"
    assert c.get("processes") == 6
    assert c.getlist("env") == ["A=1", "B=2"]
    assert [k for k, _ in c.items()] == ["socket", "socket", "processes", "processes", "env", "env"]


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("yes", True), ("on", True), ("1", True), ("TRUE", True), ("anything", True),
    ("false", False), ("no", False), ("off", False), ("0", False), ("False", False), ("OFF", False),
])
def test_boolean_values(value: str, expected: bool) -> None:
    assert load([f"--master={value}"]).get("master") is expected
    assert load([], {"UWSGI_MASTER": value}).get("master") is expected


def test_optional_value_chmod_socket() -> None:
    assert load(["--chmod-socket"]).get("chmod-socket") == "666"
    assert load(["--chmod-socket=660"]).get("chmod-socket") == "660"
    assert load(["-C"]).get("chmod-socket") == "666"
    assert load(["-C644"]).get("chmod-socket") == "644"


def test_unknown_command_line_option_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown option --no-such-thing \(command line\)"):
        load(["--no-such-thing", "1"])
    with pytest.raises(ConfigError, match=r"unknown option -Z \(command line\)"):
        load(["-Z"])


def test_unique_prefix_of_a_long_option_is_accepted_like_getopt() -> None:
    assert load(["--virtualen", "/v"]).get("home") == "/v"
    assert load(["--emperor-tyrant-no"]).get("emperor-tyrant-nofollow") is True
    with pytest.raises(ConfigError, match="--emperor-t is ambiguous"):
        load(["--emperor-t"])


def test_missing_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--socket requires a value"):
        load(["--socket"])
    with pytest.raises(ConfigError, match=r"-p \(processes\) requires a value"):
        load(["-p"])


def test_numbers_are_read_as_uwsgi_reads_them() -> None:
    # atoi: the leading integer counts, the rest is ignored; no number at all is 0
    c = load(["--processes", "four", "--max-requests", "1000 ; per worker", "--listen=64k"])
    assert (c.get("processes"), c.get("max-requests"), c.get("listen")) == (0, 1000, 64)
    notes = "\n".join(c.notices())
    assert "option processes (command line): 'four' is not a number; read as 0" in notes
    assert "option listen (command line): '64k' is not a number; read as 64" in notes
    assert "max-requests" not in notes  # a comment-looking tail is what the user meant
    c = load([], {"UWSGI_WORKERS": "x"})
    assert c.get("processes") == 0
    assert "environment variable UWSGI_WORKERS" in "\n".join(c.notices())


def test_negative_number_is_an_error_naming_option_and_origin() -> None:
    # uwsgi_opt_set_int: "invalid value for option ...: must be > 0", exit 1
    with pytest.raises(ConfigError, match=r"option harakiri: -5 is negative \(command line\)"):
        load(["--harakiri", "-5"])


def test_help_and_version() -> None:
    assert load(["--help"]).help_requested
    assert load(["-h"]).help_requested
    assert load(["--usage"]).help_requested
    assert load(["--version"]).version_requested
    # help stops parsing: a later bad option does not matter
    assert load(["--help", "--bogus"]).help_requested


def test_environment_variables_are_options() -> None:
    c = load([], {"UWSGI_HTTP_SOCKET": ":9090", "UWSGI_PROCESSES": "3", "UWSGI_MASTER": "1", "PATH": "/bin"})
    assert c.getlist("http-socket") == [":9090"]
    assert c.get("processes") == 3
    assert c.get("master") is True
    assert str(c.origin("processes")) == "environment variable UWSGI_PROCESSES"


def test_environment_has_lowest_precedence() -> None:
    c = load(["--processes", "2", "--socket", ":2"], {"UWSGI_PROCESSES": "9", "UWSGI_SOCKET": ":1"})
    assert c.get("processes") == 2
    assert c.getlist("socket") == [":1", ":2"]


def test_protocol_variables_are_not_options() -> None:
    env = {"UWSGI_EMPEROR_FD": "3", "UWSGI_EMPEROR_FD_CONFIG": "4", "UWSGI_RELOADS": "2",
           "UWSGI_VASSALS_DIR": "/v", "UWSGI_BROODLORD_NUM": "1", "UWSGI_ORIGINAL_PROC_NAME": "x",
           "UWSGI_JAIL_PID": "1", "UWSGI_EMPEROR_PROXY": "x", "UWSGI_VASSAL_PROCESSES": "4"}
    assert load([], env).items() == []


def test_environment_variable_that_names_no_option_is_ignored() -> None:
    # images set UWSGI_USER and friends for their own scripts; uWSGI keeps them as
    # placeholders, and so do we, without a word
    c = load(["--set", "procname=%(user)"], {"UWSGI_USER": "www", "UWSGI_BOGUS_THING": "1"})
    assert c.items() == [("set", "procname=%(user)"), ("procname", "www")]
    assert c.notices() == []


def test_environment_variable_naming_an_unsupported_uwsgi_option_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"option php-index of the php plugin is a uWSGI option that "
                       r"Imperium does not support \(environment variable UWSGI_PHP_INDEX\)"):
        load([], {"UWSGI_PHP_INDEX": "index.php"})


def test_environment_variable_can_load_a_file(tmp_path: Path) -> None:
    ini = tmp_path / "e.ini"
    ini.write_text("[uwsgi]\nprocesses = 4\n")
    c = load(["--processes", "2"], {"UWSGI_INI": str(ini)})
    assert c.get("processes") == 2  # the file came with the environment, so before argv
    assert c.getlist("processes") == [4, 2]


def test_positional_file_comes_after_all_options(tmp_path: Path) -> None:
    # getopt moves non-options to the end, so the file overrides options given before *or* after it
    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\nprocesses = 4\n")
    assert load([str(ini), "--processes", "2"]).get("processes") == 4
    assert load(["--processes", "2", str(ini)]).get("processes") == 4
    # an explicit --ini is processed in place
    assert load(["--ini", str(ini), "--processes", "2"]).get("processes") == 2
    assert load(["--processes", "2", "--ini", str(ini)]).get("processes") == 4


def test_positional_file_chosen_by_extension(tmp_path: Path) -> None:
    for name, text, listen in [
        ("a.ini", "[uwsgi]\nlisten = 1\n", 1), ("a.xml", "<uwsgi><listen>2</listen></uwsgi>", 2),
        ("a.yaml", "uwsgi:\n  listen: 3\n", 3), ("a.yml", "uwsgi:\n  listen: 4\n", 4),
        ("a.json", '{"uwsgi": {"listen": 5}}', 5), ("a.js", '{"uwsgi": {"listen": 6}}', 6),
    ]:
        (tmp_path / name).write_text(text)
        c = load([str(tmp_path / name)])
        assert c.get("listen") == listen
        assert c.source == str(tmp_path / name)


def test_unknown_extension_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("[uwsgi]\n")
    with pytest.raises(ConfigError, match=r"cannot load config .*a\.conf \(command line\): unknown format"):
        load([str(tmp_path / "a.conf")])


def test_positional_python_script_is_a_wsgi_file() -> None:
    c = load(["app.py", "--http-socket", ":0"])
    assert c.get("wsgi-file") == "app.py"


def test_bracketed_positional_is_skipped() -> None:
    assert load(["[ignored]"]).items() == []


def test_double_dash_ends_options(tmp_path: Path) -> None:
    ini = tmp_path / "-weird.ini"
    ini.write_text("[uwsgi]\nlisten = 7\n")
    assert load(["--", str(ini)]).get("listen") == 7


def test_plugins_are_accepted_and_need_nothing() -> None:
    c = load(["--plugin", "python3", "--plugins", "python,http", "--need-plugin", "python3x",
              "--plugins-dir", "/usr/lib/uwsgi/plugins"])
    assert c.getlist("plugin") == ["python3", "python,http", "python3x"]


def test_set_on_the_command_line() -> None:
    c = load(["--set", "processes=3", "-S", "listen=9", "--set", "myph=hello", "--socket", "/tmp/%(myph).sock"])
    assert c.get("processes") == 3
    assert c.get("listen") == 9
    assert c.get("socket") == "/tmp/hello.sock"
    assert c.placeholders == {"myph": "hello"}


def test_set_requires_key_value() -> None:
    with pytest.raises(ConfigError, match="set needs KEY=VALUE"):
        load(["--set", "nothing"])


def test_argv_is_kept() -> None:
    assert load(["-M", "--processes", "2"]).argv == ["-M", "--processes", "2"]


def test_get_of_unknown_name_raises_keyerror() -> None:
    with pytest.raises(KeyError, match="no-such"):
        load([]).get("no-such")
