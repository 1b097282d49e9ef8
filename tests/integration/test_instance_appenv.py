"""Options that shape the app's world: env, pythonpath, home/virtualenv, `http`, listen,
abstract sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import IMPERIUM, free_port, port_open, read_to_close, wait_until
from tests.fixtures.instance_helpers import APPS, get, start
from vassal.protocols import uwsgi as U

ECHO = str(APPS / "echo_env.py")

PROBE_APP = """\
import os, sys, json
import marker_mod


def application(environ, start_response):
    out = json.dumps({"marker": marker_mod.WHERE, "GREETING": os.environ.get("GREETING"),
                      "GONE": os.environ.get("GONE"), "path": sys.path}).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]
"""


def _site_packages(venv: Path) -> Path:
    sp = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    sp.mkdir(parents=True)
    return sp


def test_env_pythonpath_and_home(procs, tmp_path: Path) -> None:
    app = tmp_path / "app" / "probe.py"
    app.parent.mkdir()
    app.write_text(PROBE_APP)
    venv = tmp_path / "venv"
    (_site_packages(venv) / "marker_mod.py").write_text("WHERE = 'venv'\n")
    libdir = tmp_path / "lib"
    libdir.mkdir()
    port = free_port()
    env = {**os.environ, "GONE": "present"}
    start(procs, "--wsgi-file", str(app), "--env", "GREETING=hello there", "--env", "GONE",
          "--home", str(venv), "--pythonpath", str(libdir), port=port, env=env)
    status, body = get(port)
    doc = json.loads(body)
    assert status == 200
    assert doc["marker"] == "venv"  # imported from the virtualenv's site-packages
    assert doc["GREETING"] == "hello there" and doc["GONE"] is None  # KEY alone unsets it
    assert str(libdir) in doc["path"]


def test_missing_virtualenv_is_a_clear_error(procs, tmp_path: Path) -> None:
    p = procs.start([IMPERIUM, "--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", ECHO,
                     "--virtualenv", str(tmp_path / "nope")])
    assert p.wait(timeout=20) == 1
    assert f"home/virtualenv {tmp_path / 'nope'}: no such directory" in procs.output(p)


def test_http_option_serves_http_and_listen_sets_the_backlog(procs) -> None:
    port = free_port()
    p = procs.start([IMPERIUM, "--http", f"127.0.0.1:{port}", "--wsgi-file", ECHO, "--listen", "37"])
    wait_until(lambda: p.poll() is not None or port_open(port), 20, message="instance on --http")
    assert p.poll() is None, procs.output(p)
    status, body = get(port, "/x")
    assert status == 200 and json.loads(body)["PATH_INFO"] == "/x"
    wait_until(lambda: "listen backlog is limited to 37 connections" in procs.output(p), 5,
               message="the backlog announced")
    # the kernel's view: for a listening socket, ss shows the backlog as Send-Q
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "LISTEN" and out[2] == "37", out


def test_abstract_uwsgi_socket(procs, tmp_path: Path) -> None:
    name = f"imperium-test-{os.getpid()}-{free_port()}"
    port = free_port()
    start(procs, "--socket", f"@{name}", "--wsgi-file", ECHO, port=port)
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/abs", "SERVER_PROTOCOL": "HTTP/1.1",
           "QUERY_STRING": ""}

    def answer() -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect("\0" + name)
            s.sendall(U.encode_packet(env))
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    out = answer()
    assert out.startswith(b"HTTP/1.1 200"), out
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["PATH_INFO"] == "/abs"
    assert read_to_close(port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
