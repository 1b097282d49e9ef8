"""The command's own behaviour before it picks a mode: errors, notices, --show-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from emperor import cli


@pytest.mark.parametrize(("body", "line"), [("strict = true\nprocesess = 4\n", 4),  # strict: no placeholders
                                            ("rack = config.ru\n", 3),  # a uWSGI option we lack
                                            ("harakiri = -1\n", 3)])
def test_refused_option_is_one_line_naming_file_and_line(tmp_path: Path, capsys, body: str,
                                                         line: int) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = :0\n{body}")
    assert cli.main([str(ini)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert body.splitlines()[-1].split(" ")[0] in err and f"{ini}:{line}" in err


def test_options_without_effect_are_named_with_their_origin(tmp_path: Path, capsys,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\ncpu-affinity = 1\nif-env = NOT_SET_ANYWHERE\nprocesses = 2\n")
    # the stats-client mode, stubbed, is the cheapest mode to end in
    monkeypatch.setattr("vassal.stats.connect_and_read", lambda addr: 0)
    assert cli.main([str(ini), "--connect-and-read", "127.0.0.1:1", "--show-config"]) == 0
    out = capsys.readouterr()
    assert f"option cpu-affinity ({ini}:2) is accepted for uWSGI compatibility but has no effect" in out.err
    assert "config logic if-env not closed with end" in out.err
    assert out.out.startswith(";uWSGI instance configuration\n[uwsgi]\n")
    assert "cpu-affinity = 1" in out.out


def test_no_notice_for_options_that_act(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vassal.stats.connect_and_read", lambda addr: 0)
    assert cli.main(["--processes", "2", "--master", "--connect-and-read", "127.0.0.1:1"]) == 0
    assert capsys.readouterr().err == ""
