"""Cheaper benchmark: how fast workers follow the load, and what watching it costs the master.

Imperium and Debian's real uWSGI (with its cheaper_busyness plugin), the same options
(`--processes 4 --cheaper 1 --cheaper-overload 1`), one run per algorithm:

- scale-up: one request is held in flight (the only worker is busy), then a second one is
  sent; seconds until the second is answered, which takes a worker the algorithm adds
  (spare: more than 1 busy cycle; busyness: a 1 s window at 100%; backlog: a queue of 2
  with `--cheaper-overload 1` needs a third request, sent with the second);
- scale-down: seconds from the release of the held requests until the stats show one
  running worker again;
- master CPU: milliseconds of CPU the master spends per minute while 4 workers idle with
  `cheaper-initial = 4` and a long overload (the cost of the cycle itself, with the RSS
  limits on so the workers' memory is read too).

The algorithms count whole master cycles (a second), so the scale figures are mostly that
cycle; a ratio far from 1.00x means a different decision or a slow spawn. Nothing asserted.

    python -m bench.bench_cheaper [--idle 10] [--rounds 3] [--algos spare,busyness,backlog] [--peers imperium,uwsgi]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import threading
import time
from pathlib import Path
from statistics import median
from urllib.parse import quote

from bench.common import (
    IMPERIUM,
    UWSGI_CORE,
    Server,
    cpu_seconds,
    free_port,
    print_table,
    ratio,
    stats_json,
    tempdir,
)

HOLD_APP = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "apps" / "hold.py"
PROCESSES = 4


def make_server(peer: str, extra: list[str], logdir: Path) -> tuple[Server, int]:
    port, stats = free_port(), free_port()
    common = ["--wsgi-file", str(HOLD_APP), "--master", "--processes", str(PROCESSES), "--disable-logging",
              "--stats", f"127.0.0.1:{stats}", *extra]
    if peer == "imperium":
        argv = [IMPERIUM, "--http-socket", f"127.0.0.1:{port}", *common]
    elif peer == "uwsgi":
        argv = [UWSGI_CORE, "--plugin", "python3,cheaper_busyness", "--http-socket", f"127.0.0.1:{port}", *common]
    else:
        raise SystemExit(f"bench_cheaper: unknown peer {peer!r}")
    server = Server(peer, argv, port)
    server.start(logdir)
    return server, stats


def running(port: int) -> int:
    try:
        return sum(1 for w in stats_json(port)["workers"] if w["pid"] > 0 and w["status"] != "cheap")
    except (OSError, ValueError):
        return -1


def wait(predicate, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def request(port: int, gate: Path, answers: list[float], t0: float) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(f"GET /hold?{quote(str(gate))} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
            while s.recv(65536):
                pass
        answers.append(time.monotonic() - t0)
    except OSError:
        pass


def scale(peer: str, algo: str, tmp: Path) -> tuple[float, float]:
    tmp.mkdir(exist_ok=True)
    extra = ["--cheaper", "1", "--cheaper-overload", "1", "--cheaper-algo", algo]
    server, stats = make_server(peer, extra, tmp)
    try:
        wait(lambda: running(stats) == 1, 30, f"{peer} up")
        held = tmp / f"held-{peer}-{algo}"
        first: list[float] = []
        threading.Thread(target=request, args=(server.port, held, first, 0.0), daemon=True).start()
        wait(lambda: stats_json(stats)["workers"][0]["status"] == "busy", 10, "the first worker busy")
        answers: list[float] = []
        t0 = time.monotonic()
        for _ in range(2 if algo == "backlog" else 1):
            threading.Thread(target=request, args=(server.port, tmp / "open", answers, t0), daemon=True).start()
        (tmp / "open").touch()
        wait(lambda: bool(answers), 30, "the second answer")
        up = min(answers)
        # released at a random phase of the master cycle: else every run measures the same phase
        time.sleep(random.random())
        held.touch()
        t1 = time.monotonic()
        wait(lambda: len(first) == 1, 30, "the held answer")
        wait(lambda: running(stats) == 1, 60, "back to one worker")
        return up, time.monotonic() - t1
    finally:
        server.stop()


def master_cpu(peer: str, idle: float, tmp: Path) -> float:
    extra = ["--cheaper", "1", "--cheaper-initial", str(PROCESSES), "--cheaper-overload", "600",
             "--memory-report", "--cheaper-rss-limit-soft", str(1 << 40), "--cheaper-rss-limit-hard", str(1 << 41)]
    server, stats = make_server(peer, extra, tmp)
    try:
        wait(lambda: running(stats) == PROCESSES, 30, f"{peer} up")
        time.sleep(1)  # start-up work done
        assert server.proc is not None
        c0 = cpu_seconds([server.proc.pid])
        time.sleep(idle)
        return (cpu_seconds([server.proc.pid]) - c0) * 1000 * 60 / idle
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.bench_cheaper", description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=float, default=10.0, help="seconds the master CPU is measured")
    ap.add_argument("--rounds", type=int, default=3, help="runs per algorithm and server (the median counts)")
    ap.add_argument("--algos", default="spare,busyness,backlog")
    ap.add_argument("--peers", default="imperium,uwsgi")
    args, _ = ap.parse_known_args(argv)
    peers = [p for p in args.peers.split(",") if p and (p != "uwsgi" or os.access(UWSGI_CORE, os.X_OK))]
    algos = [a for a in args.algos.split(",") if a]
    results: dict[tuple[str, str], tuple[float, float] | str] = {}
    cpu: dict[str, float | str] = {}
    with tempdir("bench-cheaper-") as d:
        tmp = Path(d)
        for algo in algos:
            for peer in peers:
                try:
                    runs = [scale(peer, algo, tmp / f"r{i}") for i in range(args.rounds)]
                    results[peer, algo] = (median([r[0] for r in runs]), median([r[1] for r in runs]))
                except Exception as exc:  # one peer failing must not hide the others
                    results[peer, algo] = str(exc).splitlines()[0][:80]
        for peer in peers:
            try:
                cpu[peer] = master_cpu(peer, args.idle, tmp)
            except Exception as exc:
                cpu[peer] = str(exc).splitlines()[0][:80]
    rows = []
    for algo in algos:
        for peer in peers:
            r, ref = results[peer, algo], results.get(("uwsgi", algo))
            if isinstance(r, str):
                rows.append([algo, peer, None, None, "", "", r])
                continue
            ok = isinstance(ref, tuple) and peer != "uwsgi"
            rows.append([algo, peer, r[0], r[1], ratio(r[0], ref[0]) if ok else "",
                         ratio(r[1], ref[1]) if ok else "", ""])
    print_table("cheaper: seconds to add a worker under load, and back to the minimum after it",
                ["algo", "server", "scale-up s", "scale-down s", "up vs uwsgi", "down vs uwsgi", "failure"], rows,
                [f"--processes {PROCESSES} --cheaper 1 --cheaper-overload 1; median of {args.rounds} runs",
                 "decisions come once a master cycle (uWSGI: when the wall-clock second changes; here: 1 s "
                 "after the last one), so a single figure moves by up to a second with the phase"])
    rows = [[peer, c if not isinstance(c, str) else None,
             ratio(c, cpu.get("uwsgi")) if peer != "uwsgi" and not isinstance(c, str)
             and not isinstance(cpu.get("uwsgi"), str) else "", c if isinstance(c, str) else ""]
            for peer, c in cpu.items()]
    print_table("cheaper: master CPU while 4 workers idle (ms per minute)", ["server", "ms/min", "vs uwsgi", "failure"],
                rows, [f"cheaper-rss-limit-soft/hard set (workers' RSS read every cycle); {args.idle:g}s measured; "
                       "/proc counts CPU in 10 ms ticks, so 0.00 means less than one tick in the window"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
