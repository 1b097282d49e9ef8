"""On-demand vassals, the same scenario under uWSGI's emperor and ours (twin test).

An ini plus ``NAME.socket`` naming a UNIX socket (``emperor-on-demand-extension .socket``):
the emperor binds it and shows it as ``on_demand`` with pid -1; the first connection starts
the vassal, which serves it on fd 0 (``protocol = http``); after ``idle`` + ``die-on-idle``
it sends byte 22 and the emperor puts it back to waiting; the next connection starts it
again. Run for uWSGI's emperor with uwsgi-core vassals and with ours, and for ours with
uwsgi-core vassals and with ours (each emperor driving the other's vassal: our fd 0
adoption under the reference emperor, and our socket handed to the reference vassal).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Procs, read_json, read_to_close, wait_until
from tests.interop.helpers import twin_emperor

HELLO = Path(__file__).resolve().parent / "apps" / "hello.py"


def http_get(path: str) -> bytes:
    """The status line of one HTTP/1.0 exchange over a UNIX socket."""
    return read_to_close(path, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", timeout=20).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("emperor,vassal", [("uwsgi", "uwsgi"), ("uwsgi", "imperium"),
                                            ("imperium", "uwsgi"), ("imperium", "imperium")])
def test_on_demand_twin(procs: Procs, tmp_path: Path, emperor: str, vassal: str) -> None:
    proc, vdir, stats = twin_emperor(procs, tmp_path, emperor, vassal, "--emperor-on-demand-extension", ".socket")
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
