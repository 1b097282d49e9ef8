"""``imperium top`` driven in a real terminal (tmux: send-keys, capture-pane) against a
running emperor with real app-server vassals, and its model read without a terminal."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, free_port, need_service, port_open, wait_until
from tests.fixtures.instance_helpers import APPS, get
from tests.integration.emperor_harness import Emperor


def _vassal(directory: Path, name: str, port: int, stats: str) -> None:
    (directory / name).write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = "
                                  f"{APPS / 'hello.py'}\nmaster = true\nprocesses = 2\n"
                                  f"stats = {stats}\n")


@pytest.fixture
def two_vassals(procs, tmp_path):
    em = Emperor(procs, tmp_path, own_binary=True)
    ports = {"app1.ini": free_port(), "app2.ini": free_port()}
    _vassal(em.dir, "app1.ini", ports["app1.ini"], str(tmp_path / "app1.stats"))
    # the second one's stats server on TCP: found from the sockets its master listens on too
    _vassal(em.dir, "app2.ini", ports["app2.ini"], f"127.0.0.1:{free_port()}")
    for name, port in ports.items():
        wait_until(lambda port=port: port_open(port), 30, message=f"{name} answering")
        get(port)
    yield em, ports
    em.stop()


class Tmux:
    """A tmux server of our own (its own socket), killed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        need_service("tmux", shutil.which("tmux") is not None, "tmux (deploy/install-services.sh)")
        self.base = ["tmux", "-L", f"imperium-test-{os.getpid()}-{id(self)}"]

    def run(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=10).stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", "top", "-x", "160", "-y", "30", command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "top")

    def alive(self) -> bool:
        return subprocess.run([*self.base, "has-session", "-t", "top"], capture_output=True,
                              timeout=10).returncode == 0

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10)


def _line(screen: str, name: str) -> list[str]:
    for line in screen.splitlines():
        cols = line.split()
        if cols and cols[0] == name:
            return cols
    return []


def test_top_in_tmux(two_vassals, tmp_path) -> None:
    em, ports = two_vassals
    tmux = Tmux(tmp_path)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                get(ports["app1.ini"], timeout=2)
            except OSError:
                time.sleep(0.05)

    client = threading.Thread(target=traffic, daemon=True)
    try:
        tmux.start(f"{IMPERIUM} top 127.0.0.1:{em.stats_port} --interval 0.5")
        client.start()
        pids = {n: em.vassal(n)["pid"] for n in ports}

        def shows_everything() -> bool:
            screen = tmux.screen()
            rows = {n: _line(screen, n) for n in ports}
            if not all(len(r) == 7 for r in rows.values()):
                return False
            for name, cols in rows.items():
                if int(cols[2]) != pids[name] or cols[1] not in ("loyal", "accepting", "ready"):
                    return False
                if not re.fullmatch(r"\d+(\.\d)?[KMG]", cols[5]):
                    return False
            return float(rows["app1.ini"][6]) > 0 and rows["app2.ini"][6] != "-"
        wait_until(shows_everything, 30, interval=0.2,
                   message=f"top showing both vassals with RSS and req/s:\n{tmux.screen()}")
        assert "vassals 2" in tmux.screen()
        # s twice: sorted by req/s, the busy one first
        tmux.run("send-keys", "-t", "top", "s")
        wait_until(lambda: "sort rss" in tmux.screen(), 10, message="sort by RSS")
        tmux.run("send-keys", "-t", "top", "s")

        def busy_first() -> bool:
            names = [line.split()[0] for line in tmux.screen().splitlines()
                     if line.split() and line.split()[0] in ports]
            return "sort req/s" in tmux.screen() and names[:1] == ["app1.ini"]
        wait_until(busy_first, 10, message=f"sorted by req/s:\n{tmux.screen()}")
        tmux.run("send-keys", "-t", "top", "q")
        wait_until(lambda: not tmux.alive(), 10, message="top quit on q")
    finally:
        stop.set()
        client.join(5)
        tmux.close()


def test_top_model_without_a_terminal(two_vassals) -> None:
    from emperor.top_model import TopModel

    em, ports = two_vassals
    model = TopModel(f"127.0.0.1:{em.stats_port}")
    frame = model.refresh()
    assert frame.error is None and {r.name for r in frame.rows} == set(ports)
    for _ in range(5):
        get(ports["app2.ini"])
    # a worker counts a request once it is done with it: poll until a refresh sees them (each
    # refresh is the next one's baseline, so the one that sees the new count shows a rate)
    rows = wait_until(lambda: (rows := {r.name: r for r in model.refresh().rows})["app2.ini"].rps and rows, 10,
                      message="a request rate for app2.ini")
    assert rows["app1.ini"].stats and rows["app1.ini"].stats.endswith("app1.stats")
    assert all(r.rss and r.rss > 1 << 20 for r in rows.values())
    bad = TopModel("127.0.0.1:1").refresh()
    assert bad.error and "cannot read the emperor's stats" in bad.error


def test_top_bad_arguments() -> None:
    r = subprocess.run([IMPERIUM, "top"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "address" in r.stderr


def test_top_model_reads_a_uwsgi_emperor(procs, tmp_path) -> None:
    """The same view of Debian's real uWSGI emperor and vassal (the same stats JSON)."""
    from emperor.top_model import TopModel
    from tests.interop.helpers import twin_emperor

    _, vdir, stats = twin_emperor(procs, tmp_path, "uwsgi", "uwsgi")
    port = free_port()
    (vdir / "real.ini").write_text(f"[uwsgi]\nplugins = python3\nhttp-socket = 127.0.0.1:{port}\n"
                                   f"wsgi-file = {APPS / 'hello.py'}\nmaster = true\nprocesses = 2\n"
                                   f"stats = {tmp_path / 'real.stats'}\n")
    wait_until(lambda: port_open(port), 30, message="the uWSGI vassal answering")
    model = TopModel(f"127.0.0.1:{stats}")
    wait_until(lambda: [r for r in model.refresh().rows if r.name == "real.ini" and r.pid > 0
                        and r.stats], 20, message="the vassal with its stats server")
    for _ in range(3):
        get(port)
    row = next(r for r in model.refresh().rows if r.name == "real.ini")
    assert row.state in ("loyal", "accepting", "ready") and row.rss and row.rss > 1 << 20
    assert row.stats == str(tmp_path / "real.stats") and row.rps is not None
