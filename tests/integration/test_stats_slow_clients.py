"""Slow and idle clients of a stats server never hold up the loop that serves it.

The vassal's stats server is served from the master's select loop, which also respawns
workers and obeys signals; the emperor's from its asyncio loop, which spawns vassals. On
main, a stats-http client that connects and sends nothing held the master for up to 3 s
(one at a time), so ten of them delayed a worker respawn or a SIGINT by half a minute.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.conftest import Procs, free_port, port_open, read_json, read_to_close, wait_until
from tests.fixtures.instance_helpers import APPS, start
from tests.integration.emperor_harness import Emperor

HELLO = str(APPS / "hello.py")


def _idle_clients(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        out.append(s)
    return out


def _http_stats(port: int, timeout: float) -> dict:
    import json

    raw = read_to_close(port, b"GET / HTTP/1.0\r\n\r\n", timeout=timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK"), head
    return json.loads(body)


def test_idle_stats_http_clients_do_not_block_the_master(procs: Procs) -> None:
    port, stats = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "2", "--stats", f"127.0.0.1:{stats}",
              "--stats-http", port=port)
    wait_until(lambda: port_open(stats), 10, message="stats server")
    first = _http_stats(stats, 5)["workers"][0]["pid"]
    idle = _idle_clients(stats, 10)
    try:
        # served at once, whatever the idle ones do (on main: after 10 x 3 s)
        doc = _http_stats(stats, 3)
        assert [w["pid"] for w in doc["workers"]][0] == first
        # a worker killed is replaced at once
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: first not in [w["pid"] for w in _http_stats(stats, 3)["workers"]]
                   and all(w["pid"] > 0 for w in _http_stats(stats, 3)["workers"]), 5,
                   message="the worker respawned while stats clients idle")
        # and SIGINT ends the instance at once
        p.send_signal(signal.SIGINT)
        wait_until(lambda: p.poll() is not None, 5, message="exit on SIGINT with idle stats clients")
        assert p.returncode == 0, procs.output(p)[-2000:]
    finally:
        for s in idle:
            s.close()


def test_stats_clients_are_capped_and_timed_out(procs: Procs) -> None:
    """At most a bounded number of stats clients are held; idle ones go at the deadline."""
    port, stats = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "1", "--stats", f"127.0.0.1:{stats}",
              "--stats-http", "--socket-timeout", "1", port=port)
    wait_until(lambda: port_open(stats), 10, message="stats server")
    before = len(os.listdir(f"/proc/{p.pid}/fd"))
    idle = _idle_clients(stats, 150)
    try:
        # a newcomer is served even with the cap reached: the oldest idle client makes room
        assert _http_stats(stats, 3)["pid"] == p.pid
        assert len(os.listdir(f"/proc/{p.pid}/fd")) - before <= 70
        # after socket-timeout, the idle ones are closed (read gives EOF)
        idle[-1].settimeout(5)
        assert idle[-1].recv(10) == b""
    finally:
        for s in idle:
            s.close()


def test_emperor_stats_clients_are_capped(procs: Procs, tmp_path: Path) -> None:
    """A flood of idle connections is bounded, and the emperor keeps spawning vassals."""
    e = Emperor(procs, tmp_path, "--stats-http")
    before = len(os.listdir(f"/proc/{e.proc.pid}/fd"))
    idle = _idle_clients(e.stats_port, 300)  # type: ignore[arg-type]
    try:
        e.ini("app.ini")
        wait_until(lambda: any(v["id"] == "app.ini" and v["loyal"]
                               for v in _http_stats(e.stats_port, 3)["vassals"]),  # type: ignore[arg-type]
                   10, message="the vassal started during the flood")
        # 64 clients, at most two accept batches (16) being closed, the vassal's few fds
        assert len(os.listdir(f"/proc/{e.proc.pid}/fd")) - before <= 64 + 2 * 16 + 10
    finally:
        for s in idle:
            s.close()
    assert read_json  # the plain mode is covered by test_stats.py
    assert e.stop() == 0
