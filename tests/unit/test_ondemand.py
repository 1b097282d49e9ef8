"""emperor/ondemand.py: how an on-demand vassal's socket is found (uWSGI's three options)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from emperor import ondemand
from emperor.settings import EmperorSettings


def test_first_line_cuts_at_the_first_control_character() -> None:
    assert ondemand.first_line(b"127.0.0.1:8080\nnext\n") == "127.0.0.1:8080"
    assert ondemand.first_line(b"/run/a.sock\tx") == "/run/a.sock"
    assert ondemand.first_line(b"\n/run/a.sock") is None  # an empty first line: no socket
    assert ondemand.first_line(b"") is None


def test_extension_and_directory(tmp_path: Path) -> None:
    (tmp_path / "app.ini.socket").write_bytes(b":9000\n")
    by_ext = EmperorSettings(on_demand_extension=".socket")
    assert ondemand.from_options(by_ext, "app.ini", str(tmp_path / "app.ini")) == ":9000"
    assert ondemand.from_options(by_ext, "other.ini", str(tmp_path / "other.ini")) is None
    by_dir = EmperorSettings(on_demand_directory="/run/od")
    assert ondemand.from_options(by_dir, "app.ini", "/etc/v/app.ini") == "/run/od/app.socket"


def test_exec_gets_the_file_name_as_one_argument_never_as_shell_text(tmp_path: Path) -> None:
    """uWSGI pastes the name into the command line; a file named with $(...) would run it as
    the emperor. Here the command sees the name, and nothing else runs."""
    pwned = tmp_path / "pwned"
    name = f'x$(touch {pwned})`touch {pwned}`";touch {pwned};".ini'
    got = ondemand.run_exec("printf '%s\\n'", name)
    assert got == name and not pwned.exists()
    # the command itself is still shell text, as uWSGI's (pipes, variables)
    assert ondemand.run_exec("echo /run/$((1+1)).sock | cat; :", "a.ini") == "/run/2.sock"


def test_exec_that_hangs_or_fails_means_no_socket(capfd) -> None:
    assert ondemand.run_exec("sleep 5; echo late", "a.ini", timeout=0.3) is None
    assert "emperor-on-demand-exec for a.ini: no answer within 0.3s" in capfd.readouterr().err
    assert ondemand.run_exec("exit 3", "a.ini") is None  # no output: not on demand


def test_bind_removes_a_leftover_socket_and_nothing_else(tmp_path: Path) -> None:
    leftover = tmp_path / "old.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(leftover))
    dead.close()  # the file stays, nobody listens: a leftover of a dead emperor
    sock = ondemand.bind(str(leftover))
    sock.close()

    config = tmp_path / "app.ini"  # a socket name that names the config by mistake
    config.write_text("[uwsgi]\n")
    with pytest.raises(OSError) as info:
        ondemand.bind(str(config))
    assert info.value.errno == errno.EEXIST and "is not a socket" in str(info.value)
    assert config.read_text() == "[uwsgi]\n"

    live = socket.socket(socket.AF_UNIX)
    live.bind(str(tmp_path / "live.sock"))
    live.listen(1)
    try:
        with pytest.raises(OSError) as info:
            ondemand.bind(str(tmp_path / "live.sock"))
        assert info.value.errno == errno.EADDRINUSE and "another process listens" in str(info.value)
    finally:
        live.close()
