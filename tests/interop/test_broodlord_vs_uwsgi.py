"""Broodlord, the same scenario under uWSGI's emperor and ours (twin test).

A vassal with one worker, ``vassal-sos-backlog`` and a ``zerg-server``, and a ``[zerg]``
stanza; requests that keep its worker busy fill the listen queue; the emperor (with
``emperor-broodlord``) starts ``NAME:zerg``, shown with ``zerg`` 1 in its stats, which
attaches to the zerg server and serves; idle, it leaves. Run for uWSGI's emperor with
uwsgi-core vassals, ours with ours, and each emperor with the other's vassals.
"""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Procs, free_port, read_json, wait_until
from tests.interop.helpers import twin_emperor

APP = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "pid_sleep.py"


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as r:
        return r.read().decode()


@pytest.mark.parametrize("emperor,vassal", [("uwsgi", "uwsgi"), ("imperium", "imperium"),
                                            ("imperium", "uwsgi"), ("uwsgi", "imperium")])
def test_broodlord_twin(procs: Procs, tmp_path: Path, emperor: str, vassal: str) -> None:
    proc, vdir, stats = twin_emperor(procs, tmp_path, emperor, vassal, "--emperor-broodlord", "1")
    port = free_port()
    zsock = tmp_path / "brood.sock"
    plugin = "plugins = python3\n" if vassal == "uwsgi" else ""
    (vdir / "app.ini").write_text(
        f"[uwsgi]\n{plugin}http-socket = 127.0.0.1:{port}\nwsgi-file = {APP}\nmaster = true\n"
        f"processes = 1\nvassal-sos-backlog = 2\nzerg-server = {zsock}\n\n"
        f"[zerg]\n{plugin}zerg = {zsock}\nprotocol = http\nwsgi-file = {APP}\nmaster = true\n"
        "processes = 1\nidle = 2\ndie-on-idle = true\n")
    log = lambda: procs.output(proc)  # noqa: E731

    def doc(name: str) -> dict | None:
        return next((v for v in read_json(stats)["vassals"] if v["id"] == name), None)

    wait_until(lambda: (d := doc("app.ini")) and d["accepting"], 20,
               message=f"the vassal accepting; log:\n{log()[-2000:]}")
    answers: list[str] = []
    clients = [threading.Thread(target=lambda: answers.append(get(port, "/sleep/1.5")))
               for _ in range(8)]
    for t in clients:
        t.start()
    zerg = wait_until(lambda: doc("app.ini:zerg"), 20,
                      message=f"a zerg; log:\n{log()[-3000:]}")
    assert zerg["zerg"] == 1 and doc("app.ini")["zerg"] == 0
    for t in clients:
        t.join(90)
    assert len(answers) == 8 and len(set(answers)) >= 2, answers  # the zerg served too
    wait_until(lambda: doc("app.ini:zerg") is None, 40,
               message=f"the idle zerg gone; log:\n{log()[-3000:]}")
    assert doc("app.ini")["pid"] > 0
