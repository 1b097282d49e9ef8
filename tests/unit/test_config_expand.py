"""Placeholders %(x), $(ENV), @(file), placeholder arithmetic and the magic variables."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from pathlib import Path

import pytest

from vassal.config import Config, ConfigError, load_config
from vassal.config.magic import djb33x_hex
from vassal.config.placeholders import expand, placeholder_value
from vassal.options import VERSION


def load(argv: list[str], env: dict[str, str] | None = None, **kw: object) -> Config:
    return load_config(argv, env or {}, **kw)  # type: ignore[arg-type]


def ini(tmp_path: Path, body: str, name: str = "app.ini") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[uwsgi]\n" + body)
    return str(path)


# ---- placeholders ---------------------------------------------------------------------------

def test_placeholder_refers_to_options_and_custom_keys(tmp_path: Path) -> None:
    f = ini(tmp_path, "my_domain = example.org\nsocket = /tmp/%(my_domain).sock\nchdir = /srv/%(socket)\n")
    c = load([f])
    assert c.get("socket") == "/tmp/example.org.sock"
    assert c.get("chdir") == "/srv//tmp/example.org.sock"
    assert c.placeholders == {"my_domain": "example.org"}


def test_placeholder_may_be_defined_later_and_uses_first_occurrence(tmp_path: Path) -> None:
    # uWSGI expands after the whole config is assembled and takes the first value of a key
    f = ini(tmp_path, "procname = %(base)-%(socket)\nsocket = :1\nsocket = :2\nbase = x\n")
    assert load([f]).get("procname") == "x-:1"


def test_placeholder_chain_and_unresolved(tmp_path: Path) -> None:
    # uWSGI rescans a value after a replacement from its second character: a reference that
    # becomes the start of the value stays as written (checked against uWSGI in
    # test_config_vs_uwsgi)
    f = ini(tmp_path, "a = %(b)\nb = %(c)!\nc = deep\nprocname = %(a) %(nothing)\nx = y%(a)\n")
    c = load([f])
    assert c.placeholders["a"] == "%(c)!" and c.placeholders["b"] == "deep!"
    assert c.get("procname") == "%(c)! %(nothing)"
    assert c.placeholders["x"] == "ydeep!"


def test_placeholder_loop_is_an_error(tmp_path: Path) -> None:
    f = ini(tmp_path, "a = x%(a)\nprocname = %(a)\n")
    with pytest.raises(ConfigError, match="endless expansion"):
        load([f])


def test_placeholder_math(tmp_path: Path) -> None:
    f = ini(tmp_path, "foo = 17\nbar = 30\nprocesses = %(foo + bar + 3)\nthreads = %(foo + bar + 3 * 2)\n"
                      "listen = %(bar - foo)\nharakiri = %(bar / 4)\nmax-requests = %(bar / 0)\n"
                      "procname = %(foo bar)\nheartbeat = %(foo ++)\nidle = %(foo --)\n")
    c = load([f])
    assert c.get("processes") == 50
    assert c.get("threads") == 100  # a pipeline, left to right
    assert c.get("listen") == 13
    assert c.get("harakiri") == 7
    assert c.get("max-requests") == 0
    assert c.get("procname") == "1730"
    assert (c.get("heartbeat"), c.get("idle")) == (18, 16)


def test_math_with_cpu_count(tmp_path: Path) -> None:
    f = ini(tmp_path, "threads = %(%k * 3)\n")
    assert load([f]).get("threads") == (os.cpu_count() or 1) * 3


def test_placeholder_by_canonical_name(tmp_path: Path) -> None:
    f = ini(tmp_path, "workers = 3\nlisten = %(processes)\n")
    assert load([f]).get("listen") == 3


def test_placeholder_from_command_line_and_environment(tmp_path: Path) -> None:
    f = ini(tmp_path, "socket = /run/%(name).sock\n")
    assert load([f, "--set-placeholder", "name=cli"]).get("socket") == "/run/cli.sock"
    assert load([f], {"UWSGI_NAME": "env"}).get("socket") == "/run/env.sock"


def test_set_placeholder_cannot_shadow_an_option() -> None:
    with pytest.raises(ConfigError, match="processes is an option"):
        load(["--set-ph", "processes=3"])


def test_unused_unknown_key_gets_a_notice_but_a_referenced_one_is_a_placeholder(tmp_path: Path) -> None:
    f = ini(tmp_path, "master = 1\ndomain = x\ndomain = y\n")
    c = load([f])
    assert c.placeholders == {"domain": "x"}
    assert c.notices() == [f"domain ({f}:3) is not an option: kept as a placeholder (as uWSGI does; "
                           "strict refuses it)"]  # once, at its first place
    c = load([ini(tmp_path, "domain = x\nprocname = %(domain)\n")])
    assert c.get("procname") == "x" and c.notices() == []


# ---- $(ENV) and @(file) -------------------------------------------------------------------------

def test_environment_references(tmp_path: Path) -> None:
    f = ini(tmp_path, "chdir = $(APP_HOME)/src\nprocname = $(UNSET_VAR)\n")
    c = load([f], {"APP_HOME": "/srv/app"})
    assert c.get("chdir") == "/srv/app/src"
    assert c.get("procname") == "$(UNSET_VAR)"


def test_environment_references_on_the_command_line() -> None:
    assert load(["--chdir", "$(X)/y"], {"X": "/a"}).get("chdir") == "/a/y"


def test_file_references(tmp_path: Path) -> None:
    (tmp_path / "name.txt").write_text("myhost\n")
    f = ini(tmp_path, f"procname = app@@({tmp_path}/name.txt)\nchdir = @({tmp_path}/missing)\n")
    c = load([f])
    assert c.get("procname") == "app@myhost"
    assert c.get("chdir") == f"@({tmp_path}/missing)"


def test_exec_references(tmp_path: Path) -> None:
    f = ini(tmp_path, "procname = @(exec://echo hi there)\n")
    assert load([f]).get("procname") == "hi there"


def test_expansion_order_env_then_file_then_placeholder(tmp_path: Path) -> None:
    (tmp_path / "v.txt").write_text("%(ph)")
    f = ini(tmp_path, "ph = done\nprocname = @($(DIR)/v.txt)\n")
    assert load([f], {"DIR": str(tmp_path)}).get("procname") == "done"


def test_expand_balanced_parentheses() -> None:
    assert expand("a $(X(1)) b", "$", {"X(1)": "v"}.get) == "a v b"
    assert expand("$(A)$(B)", "$", {"A": "1", "B": "2"}.get) == "12"
    assert expand("$(unterminated", "$", {"unterminated": "v"}.get) == "$(unterminated"
    assert placeholder_value("a + 2", {"a": "3"}.get) == "5"


# ---- magic variables -----------------------------------------------------------------------------

def test_magic_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ini(tmp_path, "procname = %v|%o|%p|%s|%d|%e|%n|%c|%x|%0|%1|%%|%h|%V|%k|%u|%U|%g|%G|%i|%j\n",
            name="vassals/web.app.ini")
    rel = "vassals/web.app.ini"
    c = load(["--ini", rel + ":uwsgi"])
    full = str(tmp_path / "vassals" / "web.app.ini")
    parts = [p for p in str(tmp_path / "vassals").split("/") if p]
    expected = [str(tmp_path), rel + ":uwsgi", full, "web.app.ini", str(tmp_path / "vassals") + "/", "ini",
                "web.app", "vassals", "uwsgi", parts[0], parts[1], "%", socket.gethostname(), VERSION,
                str(os.cpu_count()), str(os.getuid()), pwd.getpwuid(os.getuid()).pw_name, str(os.getgid()),
                grp.getgrgid(os.getgid()).gr_name, str(os.lstat(full).st_ino), djb33x_hex(full.encode())]
    assert c.get("procname").split("|") == expected


def test_magic_time_variables(tmp_path: Path) -> None:
    f = ini(tmp_path, "procname = %t %T\n")
    t, micro = load([f]).get("procname").split()
    assert abs(int(micro) // 1_000_000 - int(t)) <= 1


def test_magic_variables_refer_to_the_file_they_are_in(tmp_path: Path) -> None:
    inc = ini(tmp_path, "procname-master = %n\n", name="sub/common.ini")
    f = ini(tmp_path, f"procname = %n\ninclude = {inc}\nprocname-prefix = %n-\n", name="web.ini")
    c = load([f])
    assert (c.get("procname"), c.get("procname-master"), c.get("procname-prefix")) == ("web", "common", "web-")


def test_upper_case_magic_refers_to_the_first_real_config(tmp_path: Path) -> None:
    tmpl = ini(tmp_path, "procname = %N|%n|%P\n", name="templates/base.ini")
    f = ini(tmp_path, "master = 1\n", name="vassals/shop.ini")
    # what an emperor with vassals-include-before runs
    c = load(["--include", tmpl, "--ini", f])
    assert c.get("procname") == "|base|"  # upper case: not known yet when the template is read
    c = load(["--ini", f, "--include", tmpl])
    assert c.get("procname") == f"shop|base|{tmp_path}/vassals/shop.ini"


def test_unknown_magic_letter_disappears(tmp_path: Path) -> None:
    # uWSGI replaces every %<char>; unknown letters (even a newline) are empty
    f = ini(tmp_path, "procname = 50%zoff 100%\n")
    assert load([f]).get("procname") == "50off 100"


def test_magic_is_not_applied_to_command_line_values() -> None:
    assert load(["--procname", "%n"]).get("procname") == "%n"


def test_djb33x_matches_uwsgi() -> None:
    # value printed by uWSGI 2.0.21 for %j of /tmp/cfgt/app.ini
    assert djb33x_hex(b"/tmp/cfgt/app.ini") == "746CAB32"
    assert len(djb33x_hex("/tmp/é".encode())) == 8
    assert struct.calcsize("=I") == 4
