"""The real `uwsgitop` (PyPI) against our stats server, run in a pty and read off its screen.

Each case also runs against Debian's real uWSGI, the reference that proves the harness reads
the screen right; the stats server is reached plain (`stats`) and over HTTP (`stats-http`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import (
    UWSGI_CORE,
    VENV_BIN,
    Procs,
    free_port,
    need_service,
    port_open,
    read_json,
    wait_until,
)
from tests.interop.helpers import (
    VASSAL_BINARY,
    backend_argv,
    children,
    copy_app,
    http_request,
    need_uwsgi,
    status_of,
)
from tests.interop.screen import PtyProgram

UWSGITOP = str(VENV_BIN / "uwsgitop")
ROW = re.compile(r"^ (\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+\d+\s+(\d+)\s+\d+\s+(\S+)\s")


@pytest.mark.parametrize("mode", ["plain", "http"])
@pytest.mark.parametrize("kind", ["imperium", "uwsgi"])
def test_uwsgitop_shows_our_workers(procs: Procs, tmp_path: Path, kind: str, mode: str) -> None:
    need_service("uwsgitop", os.access(UWSGITOP, os.X_OK), f"{UWSGITOP} (pip install uwsgitop)")
    if kind == "uwsgi":
        need_uwsgi()
    copy_app("hello.py", tmp_path)
    http_port, stats_port = free_port(), free_port()
    ini = tmp_path / "top.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{http_port}\nwsgi-file = %d/hello.py\n"
                   f"master = true\nprocesses = 2\nstats = 127.0.0.1:{stats_port}\n" +
                   ("stats-http = true\n" if mode == "http" else ""))
    p = procs.start(backend_argv(kind, ini), cwd=tmp_path)
    wait_until(lambda: p.poll() is not None or (port_open(http_port) and port_open(stats_port)),
               20, message=f"{kind} http and stats sockets")
    assert p.poll() is None, procs.output(p)
    served = 5
    for i in range(served):
        assert http_request(http_port, "GET", f"/r{i}").status == 200
    workers = wait_until(lambda: len(children(p.pid)) == 2 and children(p.pid), 10,
                         message="2 workers")

    address = f"http://127.0.0.1:{stats_port}" if mode == "http" else f"127.0.0.1:{stats_port}"
    top = PtyProgram([UWSGITOP, "--frequency", "1", address], rows=30, cols=320,
                     env={"TERM": "xterm", "LANG": "C.UTF-8"})
    try:
        screen = top.read_until(
            lambda t: sum(1 for ln in t.splitlines() if ROW.match(ln)) >= 2, 10)
        lines = screen.splitlines()
        assert "WID" in screen and "STATUS" in screen, screen
        header = next((ln for ln in lines if ln.startswith("uwsgi-")), "")
        assert int(re.search(r"req: (\d+)", header).group(1)) == served, screen
        node = next((ln for ln in lines if ln.startswith("node: ")), "")
        assert f"masterpid: {p.pid}" in node, screen
        assert f"cwd: {tmp_path}" in node, screen
        rows = [ROW.match(ln) for ln in lines if ROW.match(ln)]
        assert sorted(int(m.group(1)) for m in rows) == [1, 2], screen
        assert {int(m.group(3)) for m in rows} == workers, (
            f"uwsgitop shows pids {[m.group(3) for m in rows]}, the workers are {workers}\n"
            f"{screen}")
        assert sum(int(m.group(4)) for m in rows) == served, screen
        assert all(m.group(6) in ("idle", "busy") for m in rows), screen
        # 'q' quits cleanly: uwsgitop met no key or type it could not handle on any refresh
        top.send(b"q")
        assert top.wait(10) == 0, top.raw.decode(errors="replace")[-2000:]
    finally:
        top.close()


@pytest.mark.parametrize("emperor_kind", ["imperium", "uwsgi"])
def test_uwsgitop_shows_the_emperors_vassals(procs: Procs, tmp_path: Path,
                                             emperor_kind: str) -> None:
    """uwsgitop on an emperor's stats server lists its vassals with their pids."""
    need_service("uwsgitop", os.access(UWSGITOP, os.X_OK), f"{UWSGITOP} (pip install uwsgitop)")
    copy_app("hello.py", tmp_path)
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    stats_port = free_port()
    if emperor_kind == "uwsgi":
        need_uwsgi()
        argv = [UWSGI_CORE, "--emperor", str(vassals), "--binary-path", VASSAL_BINARY]
    else:
        argv = [VASSAL_BINARY, "--emperor", str(vassals)]
    emperor = procs.start([*argv, "--emperor-freq", "1", "--emperor-stats",
                           f"127.0.0.1:{stats_port}"], cwd=tmp_path)
    ports = {}
    for name in ("one.ini", "two.ini"):
        ports[name] = free_port()
        (vassals / name).write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{ports[name]}\n"
                                    f"wsgi-file = {tmp_path}/hello.py\nmaster = true\n")
    for name, port in ports.items():
        wait_until(lambda port=port: status_of(port) == 200, 30,
                   message=f"{name} serving; log:\n{procs.output(emperor)[-2000:]}")
    pids = {v["id"]: v["pid"] for v in read_json(stats_port)["vassals"]}
    assert set(pids) == set(ports)

    top = PtyProgram([UWSGITOP, "--frequency", "1", f"127.0.0.1:{stats_port}"], rows=30,
                     cols=320, env={"TERM": "xterm", "LANG": "C.UTF-8"})
    try:
        screen = top.read_until(lambda t: all(
            re.search(rf"^ {re.escape(n)}\s+{pid}\s*$", t, re.M) for n, pid in pids.items()), 10)
        assert "VASSAL" in screen and "PID" in screen, screen
        first = screen.splitlines()[0]
        assert re.match(r"uwsgi-\S+ - .* - emperor: .* - tyrant: 0$", first), screen
        assert str(vassals) in first, screen
        top.send(b"q")
        assert top.wait(10) == 0, top.raw.decode(errors="replace")[-2000:]
    finally:
        top.close()
