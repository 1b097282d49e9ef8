"""On-demand vassals, the same scenario under uWSGI's emperor and ours (twin test).

An ini plus ``NAME.socket`` naming a UNIX socket (``emperor-on-demand-extension .socket``):
the emperor binds it and shows it as ``on_demand`` with pid -1; the first connection starts
the vassal, which serves it on fd 0 (``protocol = http``); after ``idle`` + ``die-on-idle``
it sends byte 22 and the emperor puts it back to waiting; the next connection starts it
again. Run for uWSGI's emperor with uwsgi-core vassals and with ours, and for uWSGI's
emperor driving our vassal (our fd 0 adoption under the reference emperor).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import (
    IMPERIUM,
    UWSGI_CORE,
    Procs,
    free_port,
    need_service,
    port_open,
    read_json,
    wait_until,
)

HELLO = Path(__file__).resolve().parent / "apps" / "hello.py"
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"


def http_get(path: str) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    with s:
        s.connect(path)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("emperor,vassal", [("uwsgi", "uwsgi"), ("uwsgi", "imperium"),
                                            ("imperium", "imperium")])
def test_on_demand_twin(procs: Procs, tmp_path: Path, emperor: str, vassal: str) -> None:
    if "uwsgi" in (emperor, vassal):
        need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(PLUGIN),
                     f"{UWSGI_CORE} with the python3 plugin")
    vdir = tmp_path / "vassals"
    vdir.mkdir()
    stats = free_port()
    argv = [UWSGI_CORE if emperor == "uwsgi" else IMPERIUM, "--emperor", str(vdir),
            "--emperor-on-demand-extension", ".socket", "--emperor-freq", "1",
            "--emperor-stats", f"127.0.0.1:{stats}"]
    if vassal == "uwsgi" or emperor == "uwsgi":
        argv += ["--binary-path", UWSGI_CORE if vassal == "uwsgi" else IMPERIUM]
    proc = procs.start(argv, cwd=tmp_path)
    wait_until(lambda: port_open(stats) or proc.poll() is not None, 15, message="the emperor")
    path = str(tmp_path / "app.sock")
    (vdir / "app.ini.socket").write_text(path + "\n")
    plugin = "plugins = python3\n" if vassal == "uwsgi" else ""
    (vdir / "app.ini").write_text(f"[uwsgi]\n{plugin}protocol = http\nwsgi-file = {HELLO}\n"
                                  "master = true\nprocesses = 1\nidle = 2\ndie-on-idle = true\n")

    def vassal_doc() -> dict | None:
        return next((v for v in read_json(stats)["vassals"] if v["id"] == "app.ini"), None)

    log = lambda: procs.output(proc)  # noqa: E731
    v = wait_until(vassal_doc, 15, message=f"the on-demand vassal; log:\n{log()[-2000:]}")
    assert (v["on_demand"], v["pid"]) == (path, -1)
    assert "-> \"on demand\" instance detected, waiting for connections on socket" in log()
    assert b" 200 " in http_get(path) + b" "
    wait_until(lambda: (d := vassal_doc()) and d["pid"] > 0, 10, message="the vassal running")
    wait_until(lambda: '-> back to "on demand" mode' in log(), 30,
               message=f"back to waiting; log:\n{log()[-3000:]}")
    wait_until(lambda: (d := vassal_doc()) and d["pid"] == -1, 10, message="pid -1 again")
    assert b" 200 " in http_get(path) + b" "
