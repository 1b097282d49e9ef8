"""Config text from the emperor config fd, commands, URLs, file descriptors and stdin."""

from __future__ import annotations

import functools
import http.server
import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emperor.protocol import ENV_CONFIG_FD, ENV_FD, ToEmperor, pack_config
from vassal.config import ConfigError, load_config


@pytest.fixture
def config_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    emperor_end, vassal_end = socket.socketpair()
    yield emperor_end, vassal_end
    emperor_end.close()
    vassal_end.close()


def test_emperor_scheme_reads_the_config_fd(config_pair: tuple[socket.socket, socket.socket]) -> None:
    emperor_end, vassal_end = config_pair
    emperor_end.sendall(pack_config(b"[uwsgi]\nprocesses = 3\nsocket = /tmp/%o.sock\n"))
    env = {ENV_CONFIG_FD: str(vassal_end.fileno())}
    c = load_config(["--ini", "emperor://shop.ini"], env)
    assert c.get("processes") == 3
    assert c.get("socket") == "/tmp/emperor://shop.ini.sock"
    assert c.source == "emperor://shop.ini"
    assert vassal_end.fileno() >= 0  # still open: read through a duplicate


def test_emperor_scheme_positional_format_from_name(config_pair: tuple[socket.socket, socket.socket]) -> None:
    emperor_end, vassal_end = config_pair
    emperor_end.sendall(pack_config(b'{"uwsgi": {"processes": 5}}'))
    c = load_config(["emperor://shop.json"], {ENV_CONFIG_FD: str(vassal_end.fileno())})
    assert c.get("processes") == 5


def test_emperor_scheme_leaves_the_variable_in_place(config_pair: tuple[socket.socket, socket.socket],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    emperor_end, vassal_end = config_pair
    emperor_end.sendall(pack_config(b"[uwsgi]\nlisten = 9\n"))
    monkeypatch.setenv(ENV_CONFIG_FD, str(vassal_end.fileno()))
    for key in [k for k in os.environ if k.startswith("UWSGI_") and k != ENV_CONFIG_FD]:
        monkeypatch.delenv(key)
    assert load_config(["--ini", "emperor://x.ini"]).get("listen") == 9
    assert os.environ[ENV_CONFIG_FD] == str(vassal_end.fileno())


def test_emperor_scheme_asks_a_quiet_emperor(config_pair: tuple[socket.socket, socket.socket]) -> None:
    # a 2.1 emperor sends the config only when asked with byte 2 on the main fd
    emperor_cfg, vassal_cfg = config_pair
    emperor_main, vassal_main = socket.socketpair()
    asked: list[bytes] = []

    def emperor() -> None:
        emperor_main.settimeout(10)
        asked.append(emperor_main.recv(1))
        emperor_cfg.sendall(pack_config(b"[uwsgi]\nlisten = 11\n"))

    t = threading.Thread(target=emperor)
    t.start()
    try:
        env = {ENV_CONFIG_FD: str(vassal_cfg.fileno()), ENV_FD: str(vassal_main.fileno())}
        assert load_config(["--ini", "emperor://x.ini"], env).get("listen") == 11
    finally:
        t.join(10)
        emperor_main.close()
        vassal_main.close()
    assert asked == [bytes([ToEmperor.CONFIG_REQUEST])]


def test_emperor_scheme_custom_reader() -> None:
    seen: list[str] = []

    def reader(name: str) -> bytes:
        seen.append(name)
        return b"[uwsgi]\nthreads = 4\n"

    assert load_config(["--ini", "emperor://a.ini"], {}, emperor_reader=reader).get("threads") == 4
    assert seen == ["a.ini"]


def test_emperor_scheme_outside_a_vassal_is_an_error() -> None:
    with pytest.raises(ConfigError, match="not a vassal"):
        load_config(["--ini", "emperor://a.ini"], {})


def test_exec_scheme(tmp_path: Path) -> None:
    c = load_config(["--ini", "exec://printf '[uwsgi]\\nprocesses = 6\\n'"], {})
    assert c.get("processes") == 6


def test_exec_scheme_failure() -> None:
    with pytest.raises(ConfigError, match="exited with status 3"):
        load_config(["--ini", "exec://exit 3"], {})


def test_http_scheme(tmp_path: Path) -> None:
    (tmp_path / "remote.ini").write_text("[uwsgi]\nprocesses = 7\n[b]\nprocesses = 8\n")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/remote.ini"
        assert load_config(["--ini", url], {}).get("processes") == 7
        assert load_config(["--ini", url + ":b"], {}).get("processes") == 8
        with pytest.raises(ConfigError, match="cannot fetch"):
            load_config(["--ini", url + "nope"], {})
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_fd_scheme(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.write(w, b"[uwsgi]\nthreads = 2\n")
    os.close(w)
    try:
        assert load_config(["--ini", f"fd://{r}"], {}).get("threads") == 2
    finally:
        os.close(r)


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("<uwsgi><threads>3</threads></uwsgi>"))
    assert load_config(["--xml", "-"], {}).get("threads") == 3


def test_unknown_scheme() -> None:
    with pytest.raises(ConfigError, match="unsupported config scheme"):
        load_config(["--ini", "ftp://x/a.ini"], {})
