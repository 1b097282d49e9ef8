"""Caches and user locks in a real instance with several workers: a worker killed while
holding a lock does not wedge the others, a cache with a store survives the workers' respawn,
the instance's reload and its restart, and bad cache specs stop the start with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, free_port, wait_until
from tests.fixtures.instance_helpers import APPS, get, start


def call(port: int, path: str) -> dict:
    status, body = get(port, path)
    assert status == 200, body
    return json.loads(body)


def r(port: int, path: str) -> str | None:
    return call(port, path).get("r")


def _hold(port: int, path: str) -> None:
    """Fire a request that never answers (its worker sleeps holding a lock)."""
    def run() -> None:
        try:
            get(port, path, timeout=60)
        except OSError:
            pass
    threading.Thread(target=run, daemon=True).start()


@pytest.mark.parametrize("what", ["cache", "user-lock"])
def test_worker_killed_holding_a_lock_does_not_wedge_the_others(procs, tmp_path: Path, what: str) -> None:
    port = free_port()
    p = start(procs, "--wsgi-file", str(APPS / "cache_app.py"), "--master", "--processes", "2",
              "--cache2", "name=a,items=100", "--locks", "2", port=port)
    assert r(port, "/update?k=before&v=1&c=a") == "True"
    flag = tmp_path / "holder.pid"
    _hold(port, f"/hold?c=a&f={flag}" if what == "cache" else f"/lockhold?n=1&f={flag}")
    holder = int(wait_until(lambda: flag.exists() and flag.read_text(), 20, message="the holder"))
    if what == "user-lock":
        assert r(port, "/is_locked?n=1") == "True"
    os.kill(holder, signal.SIGKILL)
    # every worker (the survivor and the respawned one) gets the lock and the data is whole
    assert r(port, "/update?k=after&v=2&c=a") == "True"
    for _ in range(6):
        assert r(port, "/get?k=before&c=a") == "b'1'"
        assert r(port, "/get?k=after&c=a") == "b'2'"
    if what == "cache":
        wait_until(lambda: "died holding the lock of cache" in procs.output(p), 10, message="the repair log line")
    else:
        assert r(port, "/is_locked?n=1") == "False"
        assert r(port, "/lock?n=1") == "None"
        assert r(port, "/unlock?n=1") == "None"


def test_store_survives_respawn_reload_and_restart(procs, tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / "c.store"
    args = ("--wsgi-file", str(APPS / "cache_app.py"), "--master", "--processes", "2",
            "--cache2", f"name=p,items=50,blocksize=128,store={store}", "--cache-store-sync", "1")
    p = start(procs, *args, port=port)
    assert r(port, "/update?k=kept&v=across&c=p") == "True"
    assert r(port, "/inc?k=count&n=7&c=p") == "True"
    # every worker killed and respawned: the cache is in shared memory, untouched
    for pid in worker_pids(p.pid):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "Respawned uWSGI worker 2" in procs.output(p) and "Respawned uWSGI worker 1" in procs.output(p),
               20, message="the respawns")
    wait_until(lambda: _answers(port, "/get?k=kept&c=p") == "b'across'", 20, message="the value after respawn")
    os.kill(p.pid, signal.SIGHUP)  # graceful reload: the master re-execs itself
    wait_until(lambda: "binary reloading" in procs.output(p), 20, message="the reload")
    wait_until(lambda: _answers(port, "/get?k=kept&c=p") == "b'across'", 20, message="the value after reload")
    assert r(port, "/num?k=count&c=p") == "7"
    os.kill(p.pid, signal.SIGINT)
    p.wait(20)
    assert store.stat().st_size > 0
    start(procs, *args, port=port)
    assert r(port, "/get?k=kept&c=p") == "b'across'"
    assert r(port, "/num?k=count&c=p") == "7"


def worker_pids(master: int) -> list[int]:
    from tests import procstat

    return [p.pid for p in procstat.table().values() if p.ppid == master and not p.exited]


def _answers(port: int, path: str) -> str | None:
    try:
        return r(port, path)
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("spec,words", [
    (["--cache2", "name=x,items=abc"], ["cache2", "items must be a number"]),
    (["--cache2", "items=10"], ["cache2", "needs a name"]),
    (["--cache2", "name=x"], ["cache2", "maximum number of items"]),
    (["--cache2", "name=x,items=10,blocksize=0"], ["cache2", "blocksize must be a positive number"]),
    (["--cache2", "name=x,items=10,itmes=3"], ["cache2", "unknown key 'itmes'"]),
    (["--cache2", "name=x,items=10,hash=rr"], ["cache2", "hash 'rr'"]),
    (["--cache2", "name=x,items=10,blocks=5"], ["cache2", "blocks (5) must be at least items"]),
    (["--cache2", "name=x,items=10,nodes=127.0.0.1:1"], ["cache2", "not supported"]),
    (["--cache2", "name=x,items=10", "--cache2", "name=x,items=5"], ["two caches have the same name"]),
    (["--cache", "0"], ["cache 0"]),
    (["--cache-udp-node", "127.0.0.1:1"], ["cache-udp-node", "not supported"]),
    (["--locks", "-1"], ["locks", "-1"]),
    (["--cache2", "name=x,items=10,hashsize=99999999999"], ["cache2", "more than a machine can map"]),
    (["--cache2", "name=x,items=100000000,blocksize=100000"], ["cache2", "more than a machine can map"]),
    (["--sharedarea", "pages=abc"], ["sharedarea", "pages must be a number"]),
])
def test_bad_cache_specs_stop_the_start_with_one_line(tmp_path: Path, spec: list[str], words: list[str]) -> None:
    port = free_port()
    res = subprocess.run([IMPERIUM, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "hello.py"),
                          *spec], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("imperium:")]
    assert len(lines) == 1, res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_store_of_another_size_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "s"
    store.write_bytes(b"x" * 1000)
    res = subprocess.run([IMPERIUM, "--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file",
                          str(APPS / "hello.py"), "--cache2", f"name=s,items=10,store={store}"],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert res.returncode != 0
    assert "invalid cache store file" in res.stderr and "cache s" in res.stderr
