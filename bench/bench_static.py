"""Static-file benchmark: a 1 MB file served by `static-map`, with and without offload-threads.

Imperium and Debian's real uWSGI, each with 2 workers (`--static-map /s=DIR`), both with no
offload thread and with 2 offload threads per worker, measured in this run with wrk
(keep-alive, -c 20 -t 2) on `/s/big.bin` (1 MiB):

- requests/s and MB/s; p99 latency; server CPU per request;
- uWSGI's http-socket answers one request per connection (wrk reconnects); its http11-socket
  keeps connections alive, as Imperium does — both are shown. An offloaded response ends
  its connection in both servers.

Nothing is asserted: the ratios are read from the table (goal: Imperium >= 0.5x uWSGI).

    python -m bench.bench_static [--duration 5] [--rounds 1] [--peers a,b]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.common import (
    IMPERIUM,
    UWSGI_CORE,
    Server,
    WrkBest,
    free_port,
    measure_wrk,
    print_table,
    ratio,
    tempdir,
    write_hello_app,
    wrk_bench_main,
)

WORKERS = 2
OFFLOAD = 2
SIZE = 1 << 20
PATH = "/s/big.bin"
PEERS = ("imperium", "imperium-offload", "uwsgi", "uwsgi-offload", "uwsgi-http11", "uwsgi-http11-offload")


def make_server(name: str, appdir: Path) -> Server:
    port = free_port()
    common = ["--wsgi-file", str(appdir / "hello.py"), "--master", "--processes", str(WORKERS),
              "--disable-logging", "--static-map", f"/s={appdir / 'pub'}"]
    offload = ["--offload-threads", str(OFFLOAD)] if name.endswith("-offload") else []
    if name.startswith("imperium"):
        argv = [IMPERIUM, "--http-socket", f"127.0.0.1:{port}", *common, *offload]
    elif name.startswith("uwsgi-http11"):
        argv = [UWSGI_CORE, "--plugin", "python3", "--http11-socket", f"127.0.0.1:{port}", *common, *offload]
    elif name.startswith("uwsgi"):
        argv = [UWSGI_CORE, "--plugin", "python3", "--http-socket", f"127.0.0.1:{port}", *common, *offload]
    else:
        raise SystemExit(f"bench_static: unknown peer {name!r}")
    return Server(name, argv, port, cwd=str(appdir))


Result = WrkBest


def measure(name: str, appdir: Path, logdir: Path, result: Result, duration: float) -> None:
    measure_wrk(make_server(name, appdir), logdir, result, workers=WORKERS, path=PATH, duration=duration)


def run(peers: list[str], duration: float, rounds: int) -> list[Result]:
    results = {p: Result(p) for p in peers}
    with tempdir("bench-static-") as tmp:
        appdir = Path(tmp)
        write_hello_app(appdir)
        (appdir / "pub").mkdir()
        (appdir / "pub" / "big.bin").write_bytes(os.urandom(SIZE))
        logdir = appdir / "logs"
        logdir.mkdir()
        for _ in range(rounds):
            for name in peers:
                try:
                    measure(name, appdir, logdir, results[name], duration)
                except Exception as exc:  # one peer failing must not hide the others
                    results[name].failure = str(exc).splitlines()[0][:120]
    return list(results.values())


def report(results: list[Result], duration: float) -> None:
    by = {r.name: r for r in results}
    rows = []
    for r in results:
        ref = by.get(r.name.replace("imperium", "uwsgi"), by.get("uwsgi"))
        rows.append([r.name, r.rps, r.rps * SIZE / 1e6 if r.rps == r.rps else float("nan"), r.p99_ms, r.cpu_us,
                     ratio(r.rps, by["uwsgi"].rps) if "uwsgi" in by else "-",
                     ratio(r.rps, by["uwsgi-http11"].rps) if "uwsgi-http11" in by else "-",
                     ratio(r.rps, ref.rps) if ref is not None and r.name.startswith("imperium") else "",
                     r.errors, r.failure])
    print_table("static file: 1 MiB over keep-alive (wrk -c 20 -t 2)",
                ["server", "req/s", "MB/s", "p99 ms", "cpu us/req", "vs uwsgi", "vs uwsgi-http11",
                 "vs same mode", "errors", "failure"], rows,
                [f"{WORKERS} workers each; offload: {OFFLOAD} offload threads per worker; {duration:g}s per run; "
                 "'vs same mode' compares with uWSGI's http-socket in the same offload mode",
                 "uWSGI's http-socket closes after every response (wrk reconnects, read errors are not "
                 "counted); an offloaded response ends its connection in both servers"])


def main(argv: list[str] | None = None) -> int:
    return wrk_bench_main("bench_static", __doc__, PEERS, run, report, argv)


if __name__ == "__main__":
    sys.exit(main())
