"""What a vassal is given (argv, environment) and what the stats server prints, as uWSGI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from emperor.clock import Clock
from emperor.policy import Blacklist, Throttle
from emperor.settings import EmperorSettings
from emperor.spawn import build_argv, build_env, config_argument, loader_flag
from emperor.stats import render
from emperor.vassal import VassalHandle
from emperor.view import Latencies, snapshot


def test_loader_flag_by_ending() -> None:
    assert loader_flag("a.ini") == "--ini"
    assert loader_flag("a.xml") == "--xml"
    assert loader_flag("a.yml") == "--yaml" and loader_flag("a.yaml") == "--yaml"
    assert loader_flag("a.js") == "--json" and loader_flag("a.json") == "--json"
    assert loader_flag("a.conf", (".conf",)) == "--config"
    assert loader_flag("a.txt") == "--inherit"
    assert loader_flag("app.ini:zerg", broodlord=True) == "--ini"
    assert loader_flag("app.ini:zerg") == "--inherit"


def test_argv_order() -> None:
    s = EmperorSettings(binary_path="/usr/bin/uwsgi-core", vassals_inherit_before=["ib"],
                        vassals_include_before=["cb"], vassal_set=["a=1", "b=2"],
                        vassals_inherit=["ia"], vassals_include=["ca"])
    assert build_argv(s, "x.ini", "x.ini", has_config=False, cwd=None) == [
        "/usr/bin/uwsgi-core", "--inherit", "ib", "--include", "cb", "--set", "a=1", "--set", "b=2",
        "--ini", "x.ini", "--inherit", "ia", "--include", "ca"]
    s.wrapper = "/opt/wrap"
    assert build_argv(s, "x.ini", "x.ini", has_config=True, cwd=None)[0] == "/opt/wrap"
    assert build_argv(s, "x.ini", "x.ini", has_config=True, cwd=None)[10] == "emperor://x.ini"


def test_magic_exec(tmp_path: Path) -> None:
    f = tmp_path / "run.ini"
    f.write_text("")
    assert config_argument("run.ini", "run.ini", has_config=False, magic_exec=True, cwd=str(tmp_path)) == "run.ini"
    f.chmod(0o755)
    assert config_argument("run.ini", "run.ini", has_config=False, magic_exec=True,
                           cwd=str(tmp_path)) == "exec://run.ini"
    assert config_argument("run.ini", "run.ini", has_config=False, magic_exec=False,
                           cwd=str(tmp_path)) == "run.ini"
    # a config from the monitor always goes over the config fd
    assert config_argument("run.ini", "run.ini", has_config=True, magic_exec=True,
                           cwd=str(tmp_path)) == "emperor://run.ini"


def test_environment_rewrites() -> None:
    base = {"PATH": "/bin", "UWSGI_VASSAL_SOCKET": "/tmp/%n.sock", "UWSGI_VASSAL_PROCESSES": "4",
            "UWSGI_RELOADS": "2", "NOTIFY_SOCKET": "/run/n", "UWSGI_EMPEROR_FD_CONFIG": "9",
            "UWSGI_OTHER": "kept"}
    env = build_env(base, 7, None)
    assert env["UWSGI_EMPEROR_FD"] == "7"
    assert env["UWSGI_SOCKET"] == "/tmp/%n.sock" and env["UWSGI_PROCESSES"] == "4"
    assert not any(k.startswith("UWSGI_VASSAL_") for k in env)
    for gone in ("UWSGI_RELOADS", "NOTIFY_SOCKET", "UWSGI_EMPEROR_FD_CONFIG"):
        assert gone not in env
    assert env["UWSGI_OTHER"] == "kept" and env["PATH"] == "/bin"
    env = build_env(base, 7, 8, vassals_dir="/etc/v", broodlord_num=3)
    assert env["UWSGI_EMPEROR_FD_CONFIG"] == "8" and env["UWSGI_VASSALS_DIR"] == "/etc/v"
    assert env["UWSGI_BROODLORD_NUM"] == "3"


def test_stats_layout_matches_uwsgi() -> None:
    monitor = SimpleNamespace(id="/etc/vassals")
    v = VassalHandle("a.ini", monitor, mtime=1700000000.7, config=None, uid=1000, gid=1000,
                     cwd="/etc/vassals", config_arg="a.ini", vassals_dir="/etc/vassals")
    v.pid = 4242
    bl = Blacklist(1000, 180000)
    bl.add("b.ini", 1700000001.0)
    emperor = SimpleNamespace(monitors=[monitor, SimpleNamespace(id="pg://x")],
                              settings=EmperorSettings(), throttle=Throttle(1000, 180000),
                              vassals={"a.ini": v}, blacklist=bl, clock=Clock(), control=None,
                              monitor_up={}, latencies=Latencies(), settled=True)
    text = render(snapshot(emperor)).decode()  # type: ignore[arg-type]
    cwd = os.getcwd()
    assert text.startswith('{\n\t"version":"')
    assert f'\t"cwd":"{cwd}",\n\t"emperor":[\n"/etc/vassals",\n"pg://x"\n\t],\n' in text
    assert '\t"vassals":[\n\t\t{\n\t\t\t"id":"a.ini",\n\t\t\t"pid":4242,\n' in text
    assert '\t\t\t"respawns":0\n\t\t}\n\t],\n\t"blacklist":[\n\t\t{\n\t\t\t"id":"b.ini",\n' in text
    assert text.endswith('\t\t\t"last_attempt":1700000001\n\t\t}\n\t]\n}')
    doc = json.loads(text)
    assert doc["vassals"][0]["born"] == 1700000000 and doc["vassals"][0]["uid"] == 1000
    assert doc["blacklist"][0]["throttle_level"] == 1
    compact = render(snapshot(emperor), minified=True).decode()  # type: ignore[arg-type]
    assert "\n" not in compact and "\t" not in compact and json.loads(compact) == doc
