"""Our resolved option list against real uWSGI's ``--show-config`` for the same input.

uWSGI prints its internal option list (after includes, logic, expansion and inherit) with
``--show-config`` before it binds anything; we read that, stop the process, and compare it
with our ``Config.entries`` entry by entry: same keys, same order, same expanded values.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import need_service
from vassal.config import load_config

UWSGI = shutil.which("uwsgi-core") or "/usr/bin/uwsgi-core"


@pytest.fixture(autouse=True)
def _real_uwsgi() -> None:
    need_service("uwsgi", os.access(UWSGI, os.X_OK), f"{UWSGI} (Debian's uwsgi-core)")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWSGI_")}
    env.update(extra)
    return env


def real_uwsgi(argv: list[str], env: dict[str, str], cwd: Path) -> list[tuple[str, str]]:
    proc = subprocess.Popen([UWSGI, *argv, "--show-config"], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + 10
    try:
        while b";end of configuration" not in buf and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
    finally:
        # uWSGI goes on to fork workers after --show-config: kill its whole session
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        proc.stdout.close()
    text = buf.decode()
    assert "[uwsgi]" in text and ";end of configuration" in text, text
    body = text.split("\n[uwsgi]\n", 1)[1].split(";end of configuration", 1)[0]
    pairs = [tuple(line.split(" = ", 1)) for line in body.splitlines() if line]
    return [p for p in pairs if p[0] != "show-config"]  # type: ignore[misc]


def ours(argv: list[str], env: dict[str, str], cwd: Path) -> list[tuple[str, str]]:
    c = load_config(argv, env, cwd=str(cwd), allow_unknown=True)
    return [(e.key, "true" if e.value is None else e.value) for e in c.entries]


def same(argv: list[str], tmp_path: Path, env: dict[str, str] | None = None,
         monkeypatch: pytest.MonkeyPatch | None = None) -> list[tuple[str, str]]:
    full_env = clean_env(env or {})
    expected = real_uwsgi(argv, full_env, tmp_path)
    assert ours(argv, full_env, tmp_path) == expected
    return expected


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_order_of_environment_options_and_positional_file(here: Path) -> None:
    (here / "app.ini").write_text(f"[uwsgi]\nsocket = {here}/%n.sock\nprocesses = 4\nmaster = true\n"
                                  "enable-threads\n")
    got = same(["app.ini", "-M", "-p", "2", "--http-socket=:0", "--env", "X=1"], here,
               {"UWSGI_THREADS": "3", "UWSGI_ENV": "Y=2"})
    assert got[0] == ("threads", "3") and ("socket", f"{here}/app.sock") in got


def test_include_inherit_placeholders_and_magic(here: Path) -> None:
    (here / "sub").mkdir()
    (here / "sub" / "base.ini").write_text("[uwsgi]\nlisten = 77\nprocname = %(foo)-$(MYTH)\nbasedir = %d\n")
    (here / "sub" / "inc.ini").write_text("[uwsgi]\nmax-requests = 9\ncb = %d%n|%c|%e|%s\n[other]\nharakiri = 3\n")
    (here / "app.ini").write_text(
        "[uwsgi]\nfoo = bar\nchdir = /x/%(foo)\nx = %d|%c|%0|%e|%s|%O|%P|%j|%X|%x|%k|%u|%g|%%\n"
        "inherit = sub/base.ini\ninclude = sub/inc.ini\nini = sub/inc.ini:other\nprocname-master = %O\nthreads = $(MYTH)\n"
        "procname-prefix = @(sub/word.txt)\nsocket = %(foo + 1)\n")
    (here / "sub" / "word.txt").write_text("word\n")
    same(["--ini", "app.ini", "-p", "2"], here, {"MYTH": "8"})
    same(["app.ini"], here, {"MYTH": "8"})


def test_xml_yaml_json(here: Path) -> None:
    (here / "a.xml").write_text("<uwsgi>\n  <socket>%d%n.sock</socket>\n  <master/>\n  <processes>3</processes>\n"
                                "  <app mountpoint=\"/foo\">mymod</app>\n  <!-- c -->\n  <env>A=1</env>\n"
                                "  <env>B=%(processes)</env>\n</uwsgi>\n")
    (here / "a.yaml").write_text("uwsgi:\n  socket: /tmp/%n.sock\n  master: true\n  processes: 4\n"
                                 "  module: app:application\nother:\n  socket: :9\n")
    (here / "a.json").write_text('{"uwsgi": {"socket": ["%d%n.sock", ":0"], "master": true, '
                                 '"enable-threads": false, "processes": 4, "chdir": "%d"}}')
    same(["a.xml"], here)
    same(["a.yaml"], here)
    same(["--yaml", "a.yaml:other"], here)
    same(["a.json"], here)
    same(["--xml", "a.xml", "--yaml", "a.yaml", "--json", "a.json"], here)


def test_logic_and_set(here: Path) -> None:
    (here / "logic.ini").write_text(
        "[uwsgi]\nfor = a b c\nsocket = %d%(_).sock\nendfor =\nif-env = MYV\nenv = X=%(_)\nendif =\n"
        "if-not-env = NOPE\nenv = Y=1\nend-if =\nset = processes=7\nset-placeholder = ph=9\nthreads = %(ph)\n"
        "for-times = 2\nenv = T%(_)=1\nendfor =\nharakiri = %(processes + 3)\nif-exists = %p\nenv = E=%(_)\n"
        "endif =\nif-opt = threads\nenv = O=%(_)\nendif =\n")
    same(["logic.ini"], here, {"MYV": "hello"})


def test_command_line_forms(here: Path) -> None:
    (here / "inc.ini").write_text("[uwsgi]\nmax-requests = 9\n")
    same(["-Mp4", "-s", f"{here}/s.sock", "--set", "x=y", "-S", "listen=5", "-T", "--chmod-socket",
          "--chmod-socket=660", "-C", "--workers", "3"], here, {"UWSGI_INI": "inc.ini", "UWSGI_HTTP_SOCKET": ":0"})
