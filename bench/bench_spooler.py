"""Spooler benchmark: jobs per second, Imperium against Debian's real uWSGI in the same run.

Both servers run the same app (one worker, one spooler process, ``spooler-quiet``, a spooler
function that returns ``SPOOL_OK`` at once) and three figures are taken:

- **run**: N job files are put in the spooler directory (uWSGI's format, made by
  ``vassal.api.spooler.pack_job``, renamed into place), the spooler is woken with SIGUSR1,
  and the time until the directory is empty gives the jobs run per second;
- **spool()**: one request spools N jobs with ``uwsgi.spool``; N / the request's time gives
  the ``spool()`` calls per second in a worker (the spooler runs the jobs meanwhile);
- **end to end**: from that request's start until the directory is empty again.

Goal (read from the table, never asserted): >= 0.5x uWSGI's jobs per second.

    python -m bench.bench_spooler [--jobs 2000] [--rounds 1] [--peers imperium,uwsgi]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    IMPERIUM,
    UWSGI_CORE,
    Server,
    cpu_seconds,
    free_port,
    get_status,
    print_table,
    ratio,
    stats_json,
    tempdir,
    wait_first_200,
)
from vassal.api.spooler import PREFIX, job_name, pack_job

APP = '''\
import uwsgi


def spooler(job):
    return uwsgi.SPOOL_OK


uwsgi.spooler = spooler


def application(environ, start_response):
    n = int(environ.get("QUERY_STRING") or 0)
    for i in range(n):
        uwsgi.spool({b"job": str(i).encode(), b"payload": b"x" * 64})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


@dataclass
class Result:
    name: str
    run_jps: float = float("nan")
    spool_cps: float = float("nan")
    e2e_jps: float = float("nan")
    cpu_us_job: float = float("nan")  # spooler CPU per job in the run phase
    failure: str = ""


def make_server(name: str, appdir: Path, spool: Path, stats: int) -> Server:
    port = free_port()
    common = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(appdir / "app.py"), "--master",
              "--processes", "1", "--spooler", str(spool), "--spooler-quiet", "--spooler-frequency", "1",
              "--disable-logging", "--stats", f"127.0.0.1:{stats}"]
    if name == "imperium":
        return Server(name, [IMPERIUM, *common], port, cwd=str(appdir))
    if name == "uwsgi":
        return Server(name, [UWSGI_CORE, "--plugin", "python3", *common], port, cwd=str(appdir))
    raise ValueError(name)


def _pending(spool: Path) -> int:
    return sum(1 for e in os.scandir(spool) if e.name.startswith(PREFIX))


def _wait_empty(spool: Path, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pending(spool):
            return time.monotonic()
        time.sleep(0.01)
    raise RuntimeError(f"{_pending(spool)} jobs still in {spool} after {timeout:.0f}s")


def _put_jobs(spool: Path, n: int) -> None:
    """N jobs in uWSGI's format, written aside and renamed in (a spooler never sees half)."""
    staging = spool.parent / "staging"
    staging.mkdir(exist_ok=True)
    names = []
    for i in range(n):
        name = job_name("bench", os.getpid(), i + 1, time.time())
        (staging / name).write_bytes(pack_job([(b"job", str(i).encode()), (b"payload", b"x" * 64)]))
        names.append(name)
    for name in names:
        os.rename(staging / name, spool / name)


def measure(name: str, jobs: int, base: Path) -> Result:
    result = Result(name)
    appdir = base / name
    appdir.mkdir()
    (appdir / "app.py").write_text(APP)
    spool = appdir / "spool"
    spool.mkdir()
    stats = free_port()
    server = make_server(name, appdir, spool, stats)
    try:
        wait_first_200(server, server.start(appdir))
        spooler_pid = stats_json(stats)["spoolers"][0]["pid"]
        # run: a full directory, one wake-up
        _put_jobs(spool, jobs)
        cpu0 = cpu_seconds([spooler_pid])
        t0 = time.monotonic()
        os.kill(spooler_pid, signal.SIGUSR1)
        t1 = _wait_empty(spool, 120)
        result.run_jps = jobs / (t1 - t0)
        result.cpu_us_job = (cpu_seconds([spooler_pid]) - cpu0) / jobs * 1e6
        # spool() in a worker, then until everything ran
        t0 = time.monotonic()
        if get_status(server.port, f"/?{jobs}", timeout=120) != 200:
            raise RuntimeError(f"spooling request failed:\n{server.tail_log()}")
        t1 = time.monotonic()
        result.spool_cps = jobs / (t1 - t0)
        result.e2e_jps = jobs / (_wait_empty(spool, 120) - t0)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        result.failure = str(exc).splitlines()[0][:200]
        print(f"bench_spooler: {name}: {exc}\n{server.tail_log()}", file=sys.stderr)
    finally:
        server.stop()
    return result


def best(a: Result, b: Result) -> Result:
    """Per figure, the better of two rounds (noise on a shared box only ever slows down)."""
    if a.failure or b.failure:
        return b if a.failure else a
    return Result(a.name, max(a.run_jps, b.run_jps), max(a.spool_cps, b.spool_cps),
                  max(a.e2e_jps, b.e2e_jps), min(a.cpu_us_job, b.cpu_us_job))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_spooler", description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000, help="jobs per phase")
    ap.add_argument("--rounds", type=int, default=1, help="rounds; the best figure is kept")
    ap.add_argument("--peers", default="imperium,uwsgi", help="comma list of imperium, uwsgi")
    ap.add_argument("--duration", type=float, default=None, help="ignored (common bench argument)")
    ap.add_argument("--starts", type=int, default=None, help="ignored (common bench argument)")
    args = ap.parse_args(argv)
    for tool in (UWSGI_CORE, IMPERIUM):
        if not Path(tool).exists():
            print(f"bench_spooler: {tool} is missing (make install services)", file=sys.stderr)
            return 1
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    results: dict[str, Result] = {}
    with tempdir("bench-spooler-") as tmp:
        for r in range(max(1, args.rounds)):
            for name in peers:
                base = Path(tmp) / f"round{r}"
                base.mkdir(exist_ok=True)
                got = measure(name, args.jobs, base)
                results[name] = best(results[name], got) if name in results else got
    header = ["server", "run jobs/s", "spool() calls/s", "end-to-end jobs/s", "spooler CPU us/job", "error"]
    rows = [[r.name, r.run_jps, r.spool_cps, r.e2e_jps, r.cpu_us_job, r.failure[:40]] for r in results.values()]
    ours = results.get("imperium")
    for peer in (r for r in results.values() if r.name != "imperium"):
        if ours:
            rows.append([f"imperium/{peer.name}", ratio(ours.run_jps, peer.run_jps),
                         ratio(ours.spool_cps, peer.spool_cps), ratio(ours.e2e_jps, peer.e2e_jps),
                         ratio(ours.cpu_us_job, peer.cpu_us_job), ""])
    notes = [f"{args.jobs} jobs per phase, 1 worker, 1 spooler process, spooler-quiet, a job function "
             "returning SPOOL_OK at once",
             "run: jobs already on disk, one SIGUSR1; spool(): calls/s in one request; end to end: "
             "that request's start until the directory is empty",
             "goal: jobs/s >= 0.5x uwsgi"]
    print_table("bench_spooler: spooler jobs", header, rows, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
