"""Our vassal's stats server next to Debian's real uWSGI, started with the same ini.

The document's keys, order, types and text layout against a live uWSGI are checked by
tests/integration/test_stats.py (the instance's own tests); here is what that leaves out:
a config mixing socket kinds (the sockets list in config order, as uWSGI keeps it), and
the real clients: uWSGI's `--connect-and-read` reading our server, ours reading uWSGI's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import UWSGI_CORE, Procs, free_port, port_open, read_to_close, wait_until
from tests.interop.helpers import (
    VASSAL_BINARY,
    backend_argv,
    copy_app,
    http_request,
    need_uwsgi,
)


def start(procs: Procs, tmp: Path, kind: str) -> dict:
    d = tmp / kind
    copy_app("hello.py", d)
    http, uws, stats = free_port(), free_port(), free_port()
    (d / "s.ini").write_text(
        f"[uwsgi]\nhttp-socket = 127.0.0.1:{http}\nsocket = 127.0.0.1:{uws}\n"
        f"wsgi-file = %d/hello.py\nmaster = true\nprocesses = 2\n"
        f"stats = 127.0.0.1:{stats}\n")
    p = procs.start(backend_argv(kind, d / "s.ini"), cwd=d)
    # connections that send nothing are no requests: the counts below stay exact
    wait_until(lambda: p.poll() is not None or (port_open(stats) and port_open(http)),
               20, message=f"{kind} up")
    assert p.poll() is None, procs.output(p)[-3000:]
    return {"proc": p, "http": http, "uwsgi": uws, "stats": stats, "dir": d}


@pytest.fixture
def pair(procs: Procs, tmp_path: Path) -> dict[str, dict]:
    need_uwsgi()
    out = {kind: start(procs, tmp_path, kind) for kind in ("imperium", "uwsgi")}
    for srv in out.values():
        for i in range(3):
            assert http_request(srv["http"], "GET", f"/x{i}").status == 200
    return out


def _connect_and_read(argv: list[str]) -> dict:
    out = subprocess.run(argv, capture_output=True, timeout=20)
    assert out.returncode == 0, out
    # uWSGI prints the document on stderr (its log), we may use stdout: take what is there
    text = (out.stdout + out.stderr).decode()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def test_connect_and_read_both_ways(pair: dict[str, dict]) -> None:
    """The real `uwsgi --connect-and-read` reads our server; ours reads uWSGI's."""
    ours = _connect_and_read([UWSGI_CORE, "--connect-and-read",
                              f"127.0.0.1:{pair['imperium']['stats']}"])
    assert ours["pid"] == pair["imperium"]["proc"].pid
    assert len(ours["workers"]) == 2
    theirs = _connect_and_read([VASSAL_BINARY, "--connect-and-read",
                                f"127.0.0.1:{pair['uwsgi']['stats']}"])
    assert theirs["pid"] == pair["uwsgi"]["proc"].pid
    assert theirs["version"].startswith("2.0")


def test_sockets_listed_in_config_order(pair: dict[str, dict]) -> None:
    """http-socket then socket in the ini: uWSGI lists (and numbers) them in that order."""
    docs = {k: json.loads(read_to_close(s["stats"])) for k, s in pair.items()}
    ours, ref = docs["imperium"], docs["uwsgi"]
    assert [s["proto"] for s in ref["sockets"]] == ["http", "uwsgi"]  # the reference
    assert [s["proto"] for s in ours["sockets"]] == ["http", "uwsgi"]
    assert [s["name"] for s in ours["sockets"]] == [
        f"127.0.0.1:{pair['imperium']['http']}", f"127.0.0.1:{pair['imperium']['uwsgi']}"]
    # a worker counts a request once it has answered: wait for the count to settle
    counted = wait_until(lambda: sum(w["requests"] for w in json.loads(
        read_to_close(pair["imperium"]["stats"]))["workers"]) == 3 or None, 5,
        message="our stats counting the 3 requests")
    assert counted
