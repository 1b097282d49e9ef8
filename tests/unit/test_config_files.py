"""ini, xml, yaml and json files; sections; include/inherit; logic blocks; errors with file:line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vassal.config import Config, ConfigError, load_config


def load(argv: list[str], env: dict[str, str] | None = None, **kw: object) -> Config:
    return load_config(argv, env or {}, **kw)  # type: ignore[arg-type]


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# ---- ini ------------------------------------------------------------------------------------

def test_ini_basics(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", """
; a comment
# another comment
[uwsgi]
http-socket = :8080
  processes=4
master
enable-threads = true
socket = a ; not a comment in uWSGI
env = A=b=c
[other]
processes = 99
""")
    c = load(["--ini", f])
    assert c.getlist("http-socket") == [":8080"]
    assert c.get("processes") == 4
    assert c.get("master") is True  # a bare key is a flag
    assert c.get("enable-threads") is True
    assert c.get("socket") == "a ; not a comment in uWSGI"
    assert c.get("env") == "A=b=c"
    assert str(c.origin("processes")) == f"{f}:6"


def test_ini_section_choice(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", "[uwsgi]\nprocesses = 1\n[prod]\nprocesses = 8\n")
    assert load(["--ini", f + ":prod"]).get("processes") == 8
    assert load([f + ":prod"]).get("processes") == 8
    assert load(["--ini", f + ":"]).get("processes") == 1  # empty section: the default
    # ":section" alone re-reads the previous file
    c = load(["--ini", f, "--ini", ":prod"])
    assert c.getlist("processes") == [1, 8]


def test_ini_missing_section_warns(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", "[other]\nprocesses = 1\n")
    c = load([f])
    assert c.items() == []
    assert any("[uwsgi]" in w for w in c.warnings)


def test_ini_repeated_keys(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", "[uwsgi]\nsocket = :1\nsocket = :2\npythonpath = /a\npythonpath = /b\n")
    c = load([f])
    assert c.getlist("socket") == [":1", ":2"]
    assert c.getlist("pythonpath") == ["/a", "/b"]


def test_ini_unknown_key_is_kept_with_a_notice_naming_file_and_line(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", "[uwsgi]\nprocesses = 2\n\nprocesess = 4\n")
    c = load([f])
    assert c.get("processes") == 2 and c.placeholders == {"procesess": "4"}
    assert c.opt_dict() == {"processes": "2", "procesess": "4"}  # uwsgi.opt shows it, as uWSGI's
    assert any(n.startswith(f"procesess ({f}:4) is not an option") for n in c.notices())


def test_strict_refuses_unknown_keys_from_where_it_is_set(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", "[uwsgi]\nearly = 1\nstrict = true\nset-placeholder = ok=1\n"
              "procesess = 4\n")
    with pytest.raises(ConfigError, match=rf"unknown option procesess \({f}:5\): strict mode"):
        load([f])
    f = write(tmp_path / "ok.ini", "[uwsgi]\nearly = 1\nstrict = true\nset-placeholder = ok=1\n")
    assert load([f]).placeholders == {"early": "1", "ok": "1"}
    with pytest.raises(ConfigError, match=rf"unknown option early \({f}:2\)"):
        load([f], allow_unknown=False)


def test_unsupported_uwsgi_option_is_refused_by_name(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", "[uwsgi]\nmaster = 1\nrack = config.ru\n")
    with pytest.raises(ConfigError, match=rf"^option rack of the rack plugin is a uWSGI option that "
                       rf"Imperium does not support \({f}:3\)$"):
        load([f])


def test_ini_numbers_read_as_uwsgi_reads_them(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", "[uwsgi]\nmax-requests = 1000 ; comment\nreload-on-rss = 300 # MB\n"
              "log-slow = True\nharakiri = soon\n")
    c = load([f])
    assert (c.get("max-requests"), c.get("reload-on-rss"), c.get("log-slow"), c.get("harakiri")) == (
        1000, 300, 0, 0)
    notes = c.notices()
    assert f"option harakiri ({f}:5): 'soon' is not a number; read as 0, as uWSGI reads it" in notes
    assert any(n.startswith(f"option log-slow ({f}:4)") for n in notes)
    assert not any("max-requests" in n or "reload-on-rss" in n for n in notes)


def test_ini_lines_uwsgi_accepts(tmp_path: Path) -> None:
    # core/ini.c never refuses a line: a header is what lies between its first and last
    # character, a line without a key is an option named ""
    f = write(tmp_path / "odd.ini", "\ufeff[uwsgi]\n = 3\nmaster = 1\x00junk\n[uwsgi\nlisten = 9\n")
    c = load([f])
    assert c.placeholders == {"": "3"}
    assert c.get("master") is True and c.items() == [("master", "1")]  # C strings end at NUL


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open config file .*nope.ini"):
        load(["--ini", str(tmp_path / "nope.ini")])


def test_accepted_but_ignored_options(tmp_path: Path) -> None:
    f = write(tmp_path / "app.ini", "[uwsgi]\nvacuum = true\nthunder-lock = true\nsingle-interpreter = true\n"
              "lazy = false\nmemory-report\nstrict\nauto-procname\nprocname-prefix = x-\nplugin = python3\n"
              "plugins = http,python\nroute = ^/x break:403\nstatic-map = /s=/tmp\ncheaper = 1\n")
    c = load([f])
    assert c.get("vacuum") is True and c.get("thunder-lock") is True and c.get("lazy") is False


# ---- xml ------------------------------------------------------------------------------------

def test_xml(tmp_path: Path) -> None:
    f = write(tmp_path / "app.xml", """<?xml version="1.0"?>
<uwsgi>
  <!-- comment -->
  <socket>:3031</socket>
  <socket>:3032</socket>
  <master/>
  <processes>4</processes>
  <enable-threads>false</enable-threads>
  <app mountpoint="/foo">foo.app</app>
</uwsgi>
""")
    c = load([f])
    assert c.getlist("socket") == [":3031", ":3032"]
    assert c.get("master") is True
    assert c.get("processes") == 4
    assert c.get("enable-threads") is False
    assert c.getlist("mount") == ["/foo=foo.app"]
    assert str(c.origin("processes")) == f"{f}:7"


def test_xml_id_selects_a_block(tmp_path: Path) -> None:
    f = write(tmp_path / "many.xml", """<all>
  <uwsgi id="one"><socket>:1</socket></uwsgi>
  <uwsgi id="two"><socket>:2</socket></uwsgi>
</all>""")
    assert load(["--xml", f + ":two"]).getlist("socket") == [":2"]
    assert load(["--xml", f]).getlist("socket") == [":1"]


@pytest.mark.parametrize(("text", "line"), [("<uwsgi>\n<socket>:1</sock>\n</uwsgi>", 2),
                                            ("<uwsgi>\n<socket>:1</socket>\n", 3)])
def test_malformed_xml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    f = write(tmp_path / "bad.xml", text)
    with pytest.raises(ConfigError, match=rf"{f}:{line}: malformed xml"):
        load([f])


def test_xml_wrong_root(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.xml", "<config><socket>:1</socket></config>")
    with pytest.raises(ConfigError, match="<uwsgi> expected"):
        load([f])


def test_xml_unknown_option_has_line(tmp_path: Path) -> None:
    f = write(tmp_path / "app.xml", "<uwsgi>\n  <master/>\n  <sokcet>:1</sokcet>\n</uwsgi>\n")
    assert any(n.startswith(f"sokcet ({f}:3) is not an option") for n in load([f]).notices())


def test_xml_older_forms(tmp_path: Path) -> None:
    f = write(tmp_path / "old.xml", """<?xml version="1.0" encoding="ISO-8859-1"?>
<uwsgi>
  <pythonpath>/srv/app</pythonpath>
  <app mountpoint="/">
    <script>mysite.wsgi</script>
  </app>
  <app mountpoint="/b">b.wsgi</app>
  <app/>
  <socket><!-- the port -->:3031</socket>
  <listen>&#x35;0</listen>
  <![CDATA[
import x
]]>
</uwsgi>
""")
    c = load([f])
    assert c.getlist("mount") == ["/=mysite.wsgi", "/b=b.wsgi"]
    assert c.getlist("app") == ["", "", ""]
    assert c.get("socket") == " the port "  # libxml2 gives uWSGI the first child: the comment
    assert c.get("listen") == 50
    assert c.get("eval") == "\nimport x\n"


def test_xml_option_starting_with_an_element_is_an_error(tmp_path: Path) -> None:
    # uWSGI crashes on it (a NULL value); we say where
    f = write(tmp_path / "bad.xml", "<uwsgi>\n  <socket><a/>:1</socket>\n</uwsgi>\n")
    with pytest.raises(ConfigError, match=rf"^{f}:2: option 'socket' must not start with an element$"):
        load([f])


# ---- yaml -----------------------------------------------------------------------------------

def test_yaml(tmp_path: Path) -> None:
    f = write(tmp_path / "app.yaml", """
uwsgi:
  socket: /tmp/a.sock
  master: true
  processes: 4
  env:
    - A=1
    - B=2
  module: app:application
  enable-threads:
other:
  processes: 9
""")
    c = load([f])
    assert c.getlist("socket") == ["/tmp/a.sock"]
    assert c.get("master") is True
    assert c.get("processes") == 4
    assert c.getlist("env") == ["A=1", "B=2"]
    assert c.get("module") == "app:application"
    # a key without a value gives nothing to uWSGI's token reader (and stops its line reader)
    assert not c.has("enable-threads")
    assert c.notices() == [f"{f}:10: 'enable-threads' has no value and sets nothing, as in uWSGI (write "
                           "a value, e.g. true)"]
    assert str(c.origin("processes")) == f"{f}:5"
    assert load(["--yaml", f + ":other"]).get("processes") == 9
    assert load(["--yml", f + ":other"]).get("processes") == 9


def test_yaml_repeated_keys_are_kept(tmp_path: Path) -> None:
    f = write(tmp_path / "app.yml", "uwsgi:\n  socket: :1\n  socket: :2\n")
    assert load([f]).getlist("socket") == [":1", ":2"]


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    # neither of uWSGI's readers finds a section in it
    f = write(tmp_path / "bad.yaml", "other: 1\n\tuwsgi:\n  x: 1\n")
    with pytest.raises(ConfigError, match=rf"^{f}:2: malformed yaml: found character '\\t' that cannot"):
        load([f])


def test_yaml_that_only_the_line_reader_accepts(tmp_path: Path) -> None:
    # a value may not start with % or @ in YAML; uWSGI built without libyaml reads it anyway
    f = write(tmp_path / "lines.yaml", "uwsgi:\n  base: /srv\n  chdir: %(base)/app # here\n"
              "  socket: \"q\"\nother:\n  listen: 5\n")
    c = load([f])
    assert c.get("chdir") == "/srv/app" and c.get("socket") == '"q"'  # quotes kept, as it does
    assert not c.has("listen")
    assert any(n.startswith(f"{f}:3: not valid YAML") and "read line by line" in n for n in c.notices())


def test_yaml_nested_mapping_is_flattened_as_uwsgi_does(tmp_path: Path) -> None:
    f = write(tmp_path / "nested.yaml", "uwsgi:\n  env:\n    listen: 7\n  master: true\nother:\n  x: 1\n")
    c = load([f])
    assert c.get("listen") == 7 and c.get("master") is True and not c.placeholders


# ---- json -----------------------------------------------------------------------------------

def test_json(tmp_path: Path) -> None:
    f = write(tmp_path / "app.json", """{
  "uwsgi": {
    "socket": [":3031", ":3032"],
    "master": true,
    "enable-threads": false,
    "processes": 4,
    "harakiri": null,
    "module": "app"
  },
  "other": {"processes": 9}
}""")
    c = load([f])
    assert c.getlist("socket") == [":3031", ":3032"]
    assert c.get("master") is True
    assert c.get("enable-threads") is False
    assert c.get("processes") == 4
    assert c.get("harakiri") == 0  # null is "0", as in uWSGI
    assert str(c.origin("processes")) == f"{f}:6"
    assert load(["--json", f + ":other"]).get("processes") == 9
    assert load(["--js", f + ":other"]).get("processes") == 9


def test_json_unknown_option_has_line(tmp_path: Path) -> None:
    f = write(tmp_path / "app.json", '{"uwsgi": {\n  "master": true,\n  "mastr": true\n}}')
    assert any(n.startswith(f"mastr ({f}:3) is not an option") for n in load([f]).notices())


def test_json_values_as_yajl_gives_them(tmp_path: Path) -> None:
    f = write(tmp_path / "app.json", '{"uwsgi": {"listen": 1e2, "socket": [":1", [":2"], {"a": 1}, 3.50],'
              ' "env": {"A": "1"}}}')
    c = load([f])
    assert c.get("listen") == 1 and c.getlist("socket") == [":1", "3.50"]  # numbers as written
    assert not c.has("env")
    assert sum("is skipped, as uWSGI does" in n for n in c.notices()) == 3


@pytest.mark.parametrize(("text", "match"), [
    ('{"uwsgi": {\n "a": 1,\n}', r":3: malformed json"),
    ('{"other": {}}', r"object named uwsgi"),
    ('[1, 2]', r"must be an object"),
])
def test_malformed_json(tmp_path: Path, text: str, match: str) -> None:
    f = write(tmp_path / "bad.json", text)
    with pytest.raises(ConfigError, match=match):
        load([f])


# ---- include / inherit / loaders inside files -------------------------------------------------

def test_include_is_expanded_in_place(tmp_path: Path) -> None:
    write(tmp_path / "file2.ini", "[uwsgi]\nmaster = true\nprocesses = 4\n")
    write(tmp_path / "file3.json", '{"uwsgi": {"listen": 50}}')
    f = write(tmp_path / "file1.ini", f"[uwsgi]\nsocket = :3031\nini = {tmp_path}/file2.ini\nsocket = :3032\n"
              f"include = {tmp_path}/file3.json\nprocesses = 2\n")
    c = load([f])
    assert [k for k, _ in c.items()] == ["socket", "ini", "master", "processes", "socket", "include", "listen",
                                         "processes"]
    assert c.get("processes") == 2 and c.get("listen") == 50


def test_inherit_is_appended_after_everything_else(tmp_path: Path) -> None:
    base = write(tmp_path / "base.ini", "[uwsgi]\nprocesses = 8\nlisten = 10\nprocname = $(HOME)-%(foo)\n")
    f = write(tmp_path / "app.ini", f"[uwsgi]\ninherit = {base}\nprocesses = 2\nfoo = bar\n")
    c = load([f, "--threads", "3"], {"HOME": "/root"})
    keys = [k for k, _ in c.items()]
    assert keys == ["threads", "inherit", "processes", "processes", "listen", "procname"]
    # uWSGI loads inherited files after the expansion passes: their values stay as written
    assert c.get("procname") == "$(HOME)-%(foo)"
    assert c.get("processes") == 8


def test_include_and_inherit_on_the_command_line(tmp_path: Path) -> None:
    before = write(tmp_path / "before.ini", "[uwsgi]\nlisten = 1\n")
    after = write(tmp_path / "after.ini", "[uwsgi]\nlisten = 3\nthreads = 2\n")
    f = write(tmp_path / "app.ini", "[uwsgi]\nlisten = 2\n")
    # the emperor's argv: --inherit/--include before, the config, --include/--inherit after
    c = load(["--include", before, "--ini", f, "--include", after])
    assert c.getlist("listen") == [1, 2, 3]
    c = load(["--inherit", before, "--ini", f])
    assert c.getlist("listen") == [2, 1]  # inherit lands at the end, as in uWSGI


def test_include_loop_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.ini", f"[uwsgi]\ninclude = {tmp_path}/b.ini\n")
    write(tmp_path / "b.ini", f"[uwsgi]\ninclude = {tmp_path}/a.ini\n")
    with pytest.raises(ConfigError, match="include loop"):
        load([str(tmp_path / "a.ini")])


def test_inherit_loop_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.ini", f"[uwsgi]\ninherit = {tmp_path}/a.ini\n")
    with pytest.raises(ConfigError, match="include loop"):
        load([str(tmp_path / "a.ini")])


def test_same_file_twice_is_not_a_loop(tmp_path: Path) -> None:
    inc = write(tmp_path / "inc.ini", "[uwsgi]\nsocket = :%x\n[b]\nsocket = :2\n")
    f = write(tmp_path / "a.ini", f"[uwsgi]\ninclude = {inc}\ninclude = {inc}:b\ninclude = {inc}\n")
    assert load([f]).getlist("socket") == [":", ":2", ":"]


def test_missing_include_names_the_including_file(tmp_path: Path) -> None:
    f = write(tmp_path / "a.ini", "[uwsgi]\nmaster = 1\ninclude = nope.ini\n")
    with pytest.raises(ConfigError, match=rf"nope.ini.*\(from {f}:3\)"):
        load([f])


def test_relative_include_is_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as in uWSGI; use %d for "next to this file"
    write(tmp_path / "conf" / "base.ini", "[uwsgi]\nlisten = 5\n")
    f = write(tmp_path / "conf" / "a.ini", "[uwsgi]\ninclude = %dbase.ini\n")
    monkeypatch.chdir(tmp_path)
    assert load([f]).get("listen") == 5
    f2 = write(tmp_path / "conf" / "b.ini", "[uwsgi]\ninclude = conf/base.ini\n")
    assert load([f2]).get("listen") == 5


# ---- logic ------------------------------------------------------------------------------------

def test_for_and_if_blocks(tmp_path: Path) -> None:
    f = write(tmp_path / "l.ini", """[uwsgi]
for = a b c
socket = /tmp/%(_).sock
endfor =
for-times = 2
env = T%(_)=1
end-for =
if-env = MYV
env = X=%(_)
endif =
if-not-env = MYV
env = never
endif =
if-exists = %d
listen = 7
endif =
if-not-file = %p
threads = 99
endif =
if-opt = listen=7
harakiri = 5
endif =
""")
    c = load([f], {"MYV": "hello"})
    assert c.getlist("socket") == ["/tmp/a.sock", "/tmp/b.sock", "/tmp/c.sock"]
    assert c.getlist("env") == ["T1=1", "T2=1", "X=hello"]
    assert c.get("listen") == 7 and not c.has("threads") and c.get("harakiri") == 5


def test_for_glob_and_readline(tmp_path: Path) -> None:
    for n in ("x1.py", "x2.py"):
        write(tmp_path / "g" / n, "")
    lines = write(tmp_path / "lines.txt", "one\ntwo\n")
    f = write(tmp_path / "l.ini", f"[uwsgi]\nfor-glob = {tmp_path}/g/*.py\ntouch-reload = %(_)\nendfor =\n"
              f"for-readline = {lines}\nenv = L=%(_)\nendfor =\n")
    c = load([f])
    assert c.getlist("touch-reload") == [f"{tmp_path}/g/x1.py", f"{tmp_path}/g/x2.py"]
    assert c.getlist("env") == ["L=one", "L=two"]


def test_nested_logic_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "l.ini", "[uwsgi]\nfor = a\nfor = b\nendfor =\n")
    with pytest.raises(ConfigError, match="nested config logic"):
        load([f])


def test_print(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "p.ini", "[uwsgi]\nprocesses = 3\nprint = workers=%(processes)\n")
    load([f])
    assert capsys.readouterr().out == "workers=3\n"


def test_show_config_format(tmp_path: Path) -> None:
    f = write(tmp_path / "p.ini", "[uwsgi]\nprocesses = 3\n")
    text = load(["--ini", f, "--master"]).show_config()
    assert text == f";uWSGI instance configuration\n[uwsgi]\nini = {f}\nprocesses = 3\nmaster = true\n;end of configuration\n"


def test_opt_dict(tmp_path: Path) -> None:
    f = write(tmp_path / "p.ini", "[uwsgi]\nsocket = :1\nsocket = :2\nfoo = bar\nprocname = %(foo)\n")
    opt = load([f]).opt_dict()
    assert opt["socket"] == [":1", ":2"] and opt["foo"] == "bar" and opt["procname"] == "bar"


def test_allow_unknown(tmp_path: Path) -> None:
    f = write(tmp_path / "p.ini", "[uwsgi]\nmy-app-setting = 42\n")
    with pytest.raises(ConfigError):
        load([f], allow_unknown=False)
    c = load([f])
    assert c.placeholders == {"my-app-setting": "42"}


def test_file_mode_untouched(tmp_path: Path) -> None:
    # loading never writes anything next to the config
    f = write(tmp_path / "p.ini", "[uwsgi]\nprocesses = 3\n")
    before = sorted(os.listdir(tmp_path))
    load([f])
    assert sorted(os.listdir(tmp_path)) == before
