"""Vassal instance benchmark: a hello-world WSGI app on 4 prefork workers.

Imperium (`imperium --http-socket ... --master --processes 4`) against gunicorn (sync
workers) and Debian's real uWSGI (`uwsgi-core --plugin python3 --http-socket ...`), all
measured in this run:

- requests/s with keep-alive and with `Connection: close` (wrk -c 50 -t 2 -d 5s);
- the time from exec to the first 200 (p50 of several cold starts);
- memory per worker after the load (VmRSS and PSS from /proc).

Goals (checked by reading the table, never asserted): >= 1.5x gunicorn sync and >= 0.5x
uWSGI in requests/s, RSS per worker <= gunicorn's.

    python -m bench.bench_vassal [--duration 5] [--starts 5] [--rounds 1] [--peers a,b]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    GUNICORN,
    IMPERIUM,
    UWSGI_CORE,
    WRK,
    Server,
    cpu_seconds,
    free_port,
    memory_kib,
    percentile,
    print_table,
    ratio,
    run_wrk,
    tempdir,
    wait_first_200,
    wait_workers,
    write_hello_app,
)

WORKERS = 4
#: servers that keep a connection open despite the client's `Connection: close`
IGNORES_CLOSE = {"uwsgi-http11"}


def make_server(name: str, appdir: Path) -> Server:
    port = free_port()
    app = str(appdir / "hello.py")
    if name == "imperium":
        argv = [IMPERIUM, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app,
                "--master", "--processes", str(WORKERS), "--disable-logging"]
    elif name == "gunicorn":
        argv = [GUNICORN, "--workers", str(WORKERS), "--worker-class", "sync",
                "--bind", f"127.0.0.1:{port}", "--chdir", str(appdir), "hello:application"]
    elif name == "uwsgi":
        argv = [UWSGI_CORE, "--plugin", "python3", "--http-socket", f"127.0.0.1:{port}",
                "--wsgi-file", app, "--master", "--processes", str(WORKERS),
                "--disable-logging"]
    elif name == "uwsgi-http11":
        # uWSGI's http-socket answers one request per connection; http11-socket keeps alive
        # (and ignores a client's Connection: close, so it gets no close-per-request run)
        argv = [UWSGI_CORE, "--plugin", "python3", "--http11-socket", f"127.0.0.1:{port}",
                "--wsgi-file", app, "--master", "--processes", str(WORKERS),
                "--disable-logging"]
    else:
        raise SystemExit(f"bench_vassal: unknown peer {name!r}")
    return Server(name, argv, port, cwd=str(appdir))


@dataclass
class Result:
    name: str
    rps_keepalive: float = float("nan")
    rps_close: float = float("nan")
    p99_keepalive_ms: float = float("nan")
    p99_close_ms: float = float("nan")
    cpu_us_keepalive: float = float("nan")
    cpu_us_close: float = float("nan")
    start_ms: list[float] = field(default_factory=list)
    rss_worker_kib: float = float("nan")
    pss_worker_kib: float = float("nan")
    rss_master_kib: float = float("nan")
    errors: int = 0
    failure: str = ""


def _nan_last(x: float) -> float:
    return float("inf") if x != x else x


def measure_startup(name: str, appdir: Path, logdir: Path, result: Result, starts: int) -> None:
    for _ in range(starts):
        server = make_server(name, appdir)
        try:
            t0 = server.start(logdir)
            result.start_ms.append(wait_first_200(server, t0) * 1000)
        finally:
            server.stop()


def measure_load(name: str, appdir: Path, logdir: Path, result: Result, duration: float) -> None:
    server = make_server(name, appdir)
    try:
        t0 = server.start(logdir)
        wait_first_200(server, t0)
        workers = wait_workers(server, WORKERS)
        run_wrk(server.port, duration=1)  # warm-up: imports, caches, accept queues
        pids = server.all_pids()
        c0 = cpu_seconds(pids)
        ka = run_wrk(server.port, duration=duration, keepalive=True)
        c1 = cpu_seconds(pids)
        close = None if name in IGNORES_CLOSE else run_wrk(server.port, duration=duration,
                                                              keepalive=False)
        c2 = cpu_seconds(pids)
        # the better of several rounds: the box is shared, noise only ever slows us down
        if not ka.rps <= result.rps_keepalive:
            result.rps_keepalive, result.p99_keepalive_ms = ka.rps, ka.latency_ms.get("99", 0.0)
        if close and not close.rps <= result.rps_close:
            result.rps_close, result.p99_close_ms = close.rps, close.latency_ms.get("99", 0.0)
        # server CPU per request: the figure that a busy machine disturbs least
        if ka.requests:
            result.cpu_us_keepalive = min(result.cpu_us_keepalive,
                                          (c1 - c0) * 1e6 / ka.requests, key=_nan_last)
        if close and close.requests:
            result.cpu_us_close = min(result.cpu_us_close, (c2 - c1) * 1e6 / close.requests,
                                      key=_nan_last)
        result.errors += ka.errors + ka.non2xx + (close.errors + close.non2xx if close else 0)
        workers = server.workers() or workers
        mems = [memory_kib(pid) for pid in workers]
        if mems:
            result.rss_worker_kib = sum(m[0] for m in mems) / len(mems)
            result.pss_worker_kib = sum(m[1] for m in mems) / len(mems)
        result.rss_master_kib = memory_kib(server.proc.pid)[0]
    finally:
        server.stop()


def run(peers: list[str], duration: float, starts: int, rounds: int) -> list[Result]:
    results = {name: Result(name) for name in peers}
    with tempdir("imperium-bench-") as tmp:
        appdir = Path(tmp)
        write_hello_app(appdir)
        for _ in range(rounds):
            for name in peers:
                if results[name].failure:
                    continue
                try:
                    measure_load(name, appdir, appdir, results[name], duration)
                except Exception as exc:  # one broken peer must not hide the others
                    results[name].failure = str(exc).splitlines()[0][:200]
                    print(f"bench_vassal: {name} failed: {exc}", file=sys.stderr)
        for name in peers:
            if results[name].failure:
                continue
            try:
                measure_startup(name, appdir, appdir, results[name], starts)
            except Exception as exc:
                results[name].failure = str(exc).splitlines()[0][:200]
                print(f"bench_vassal: {name} startup failed: {exc}", file=sys.stderr)
    return [results[name] for name in peers]


def report(results: list[Result], duration: float, starts: int) -> None:
    mib = 1 / 1024
    header = ["server", "req/s keep-alive", "req/s close", "p99 ms (ka)", "p99 ms (close)",
              "CPU us/req (ka)", "CPU us/req (close)", "start->200 p50 ms", "RSS/worker MiB",
              "PSS/worker MiB", "master RSS MiB", "errors"]
    rows = []
    for r in results:
        if r.failure and r.rps_keepalive != r.rps_keepalive:
            rows.append([r.name, "FAILED", "", "", "", "", "", "", "", "", "", r.failure[:40]])
            continue
        rows.append([r.name, r.rps_keepalive, r.rps_close, r.p99_keepalive_ms, r.p99_close_ms,
                     r.cpu_us_keepalive, r.cpu_us_close, percentile(r.start_ms, 50), r.rss_worker_kib * mib, r.pss_worker_kib * mib,
                     r.rss_master_kib * mib, r.errors])
    by = {r.name: r for r in results}
    ours = by.get("imperium")
    if ours:
        for peer in (r for r in results if r.name != "imperium"):
            rows.append([f"imperium/{peer.name}",
                         ratio(ours.rps_keepalive, peer.rps_keepalive),
                         ratio(ours.rps_close, peer.rps_close), "", "",
                         ratio(ours.cpu_us_keepalive, peer.cpu_us_keepalive),
                         ratio(ours.cpu_us_close, peer.cpu_us_close),
                         ratio(percentile(ours.start_ms, 50), percentile(peer.start_ms, 50)),
                         ratio(ours.rss_worker_kib, peer.rss_worker_kib),
                         ratio(ours.pss_worker_kib, peer.pss_worker_kib), "", ""])
    notes = [f"hello-world WSGI, {WORKERS} workers; wrk -c 50 -t 2 -d {duration:g}s "
             f"(close: -H 'Connection: close'); start->200: p50 of {starts} cold starts",
             "goals: req/s >= 1.5x gunicorn (sync) and >= 0.5x uwsgi; RSS/worker <= gunicorn",
             "CPU us/req: user+system CPU of master and workers per request (lower is better; "
             "steadier than req/s on a shared box)",
             "gunicorn sync workers and uWSGI's http-socket close every connection anyway: "
             "their keep-alive column is close-per-request too",
             "uwsgi-http11 (uWSGI with --http11-socket) ignores Connection: close: "
             "no close column"]
    print_table("bench_vassal: WSGI hello world", header, rows, notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_vassal", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--starts", type=int, default=5, help="cold starts for the start->200 p50")
    ap.add_argument("--rounds", type=int, default=1, help="load rounds; the best is kept")
    ap.add_argument("--peers", default="imperium,gunicorn,uwsgi,uwsgi-http11",
                    help="comma list of imperium, gunicorn, uwsgi, uwsgi-http11")
    args = ap.parse_args(argv)
    for tool in (WRK, UWSGI_CORE, GUNICORN, IMPERIUM):
        if not Path(tool).exists():
            print(f"bench_vassal: {tool} is missing (make install services)", file=sys.stderr)
            return 1
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    results = run(peers, args.duration, args.starts, args.rounds)
    report(results, args.duration, args.starts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
