"""Our emperor with its default vassal binary: ``imperium`` instances (no binary-path)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.conftest import Procs, free_port, wait_until
from tests.integration.emperor_harness import Emperor, bump_mtime, processes_in_groups

HELLO = Path(__file__).resolve().parent.parent / "interop" / "apps" / "hello.py"


def get(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        r.read()
        return r.status


def test_imperium_vassal_spawn_serve_reload_stop(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path, own_binary=True)
    port = free_port()
    ini = e.dir / "hello.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {HELLO}\nmaster = true\n"
                   "processes = 1\n")
    e.wait_log("[emperor] vassal hello.ini has been spawned", 20)
    v = e.wait_vassal("hello.ini", ready=1, timeout=20)
    pid = v["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().rstrip(b"\0").split(b"\0")
    # the console script: python .venv/bin/imperium --ini hello.ini
    assert argv[-3:] == [str(Path(e.argv[0])).encode(), b"--ini", b"hello.ini"]
    assert wait_until(lambda: get(port) == 200, 15, message="HTTP 200 from the imperium vassal")
    e.wait_vassal("hello.ini", loyal=1, timeout=10)
    mark = e.mark()
    bump_mtime(ini)
    e.wait_log("[emperor] reload the uwsgi instance hello.ini", after=mark)
    assert wait_until(lambda: get(port) == 200, 15, message="HTTP 200 after the reload")
    mark = e.mark()
    ini.unlink()
    e.wait_log("[emperor] removed uwsgi instance hello.ini", 20, after=mark)
    wait_until(lambda: not processes_in_groups({pid}), 10, message="the imperium vassal gone")
    e.seen_pids.add(pid)
    assert e.stop() == 0
