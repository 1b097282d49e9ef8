"""Shared benchmark helpers: servers started and reaped, wrk runs, percentiles, memory, tables.

Every bench module measures Imperium and its peers (gunicorn, Debian's real uWSGI) in the
same run on the same machine, so that the ratios printed mean something even on a busy
2-core box. Nothing here asserts: benches report numbers, tests assert behaviour.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests import procstat

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
IMPERIUM = str(VENV_BIN / "imperium")
GUNICORN = str(VENV_BIN / "gunicorn")
UWSGI_CORE = "/usr/bin/uwsgi-core"
WRK = "/usr/bin/wrk"

HELLO_APP = '''\
def application(environ, start_response):
    body = b"Hello, World!"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def write_hello_app(directory: Path) -> Path:
    path = directory / "hello.py"
    path.write_text(HELLO_APP)
    return path


# --- processes -------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` from /proc (workers of a prefork master)."""
    return sorted(p.pid for p in procstat.table().values() if p.ppid == pid)


def descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        for child in children_of(stack.pop()):
            out.append(child)
            stack.append(child)
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; PSS shares copy-on-write pages fairly."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass
    return rss, pss


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes: the cost of the work, whatever the load."""
    return sum(info.cpu for pid in pids if (info := procstat.read(pid)) is not None)


@dataclass
class Server:
    """One server under test: its argv, and the process while it runs."""

    name: str
    argv: list[str]
    port: int
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def start(self, logdir: Path) -> float:
        """Exec the server; returns the monotonic time of the exec."""
        self.log = logdir / f"{self.name}.log"
        env = dict(os.environ)
        env.pop("UWSGI_EMPEROR_FD", None)
        # a Python server keeps its compiled modules as it would when deployed: with
        # PYTHONDONTWRITEBYTECODE (set in some shells and CI) every start would compile every
        # module again, and start->200 would measure the compiler (seconds, not the server)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(self.env)
        with open(self.log, "ab") as out:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.cwd, env=env,
                                         start_new_session=True)
        return t0

    def stop(self) -> None:
        """SIGKILL the whole session: masters, workers, anything they made."""
        if self.proc is None:
            return
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        # the port must be free again before the next server takes it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _connects(self.port):
            time.sleep(0.02)

    def workers(self) -> list[int]:
        return children_of(self.proc.pid) if self.proc else []

    def all_pids(self) -> list[int]:
        return [self.proc.pid, *descendants(self.proc.pid)] if self.proc else []

    def tail_log(self, n: int = 15) -> str:
        if not self.log or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stats_json(port: int) -> dict:
    """The document a stats server on 127.0.0.1:``port`` sends on connect."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


def get_status(port: int, path: str = "/", timeout: float = 2.0) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None


def wait_first_200(server: Server, t0: float, timeout: float = 30.0) -> float:
    """Seconds from exec to the first 200; polls in a tight loop so the figure is honest."""
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if server.proc and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n"
                               f"{server.tail_log()}")
        if get_status(server.port, timeout=1.0) == 200:
            return time.monotonic() - t0
        time.sleep(0.005)
    raise RuntimeError(f"{server.name} gave no 200 within {timeout}s:\n{server.tail_log()}")


def wait_workers(server: Server, n: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.workers()
        if len(pids) >= n:
            return pids
        time.sleep(0.05)
    return server.workers()


# --- wrk --------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    requests: int
    errors: int  # every socket error wrk counted: connect + read + write + timeout
    non2xx: int
    latency_ms: dict[str, float]
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(out: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    counts = [0, 0, 0, 0]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        counts = [int(g) for g in m.groups()]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    latency = {}
    for q in ("50", "90", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", out, re.M)
        if m:
            latency[q] = _ms(m.group(1))
    return WrkResult(rps, requests, sum(counts), non2xx, latency, *counts)


def run_wrk(port: int, *, connections: int = 50, threads: int = 2, duration: float = 5,
            keepalive: bool = True, path: str = "/") -> WrkResult:
    argv = [WRK, "-c", str(connections), "-t", str(threads), "-d", f"{duration:g}s", "--latency"]
    if not keepalive:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0 or "Requests/sec" not in out.stdout:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    return parse_wrk(out.stdout)


# --- output -----------------------------------------------------------------------------


@dataclass
class WrkBest:
    """One server's best wrk figures over the rounds: noise only slows a server down."""

    name: str
    rps: float = float("nan")
    p99_ms: float = float("nan")
    cpu_us: float = float("nan")
    errors: int = 0
    failure: str = ""


def measure_wrk(server: Server, logdir: Path, result: WrkBest, *, workers: int, path: str,
                duration: float, connections: int = 20) -> None:
    """Start the server, warm it up, run wrk (keep-alive) on ``path``, keep the better figures
    in ``result`` (req/s, p99, server CPU per request), stop it."""
    try:
        t0 = server.start(logdir)
        wait_first_200(server, t0)
        wait_workers(server, workers)
        run_wrk(server.port, duration=1, connections=connections, path=path)  # warm-up (page cache too)
        pids = server.all_pids()
        c0 = cpu_seconds(pids)
        res = run_wrk(server.port, duration=duration, connections=connections, path=path, keepalive=True)
        c1 = cpu_seconds(server.all_pids() or pids)
        if not res.rps <= result.rps:
            result.rps, result.p99_ms = res.rps, res.latency_ms.get("99", float("nan"))
        if res.requests:
            cpu = (c1 - c0) * 1e6 / res.requests
            result.cpu_us = cpu if result.cpu_us != result.cpu_us else min(result.cpu_us, cpu)
        result.errors += res.errors + res.non2xx
    finally:
        server.stop()


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b or a != a or b != b:
        return "-"
    return f"{a / b:.2f}x"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]],
                notes: Sequence[str] = ()) -> None:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print()
    print(title)
    print(line)
    for i, row in enumerate(cells):
        print("| " + " | ".join(c.rjust(w) if j else c.ljust(w)
                                for j, (c, w) in enumerate(zip(row, widths, strict=True))) + " |")
        if i == 0:
            print(line)
    print(line)
    for note in notes:
        print(f"  {note}")
    sys.stdout.flush()


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def tempdir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)


def wrk_bench_main(name: str, doc: str, peers: Sequence[str], run: Callable[[list[str], float, int], object],
                   report: Callable[[object, float], None], argv: list[str] | None) -> int:
    """The command line shared by the wrk benches (``--duration``, ``--rounds``, ``--peers``):
    uWSGI peers are dropped where Debian's uwsgi-core is missing, wrk is required."""
    ap = argparse.ArgumentParser(prog=f"bench.{name}", description=doc.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=1, help="runs per server (the best one counts)")
    ap.add_argument("--peers", default=",".join(peers), help="comma-separated servers to measure")
    args = ap.parse_args(argv)
    if not os.access(WRK, os.X_OK):
        print(f"{name}: {WRK} not found", file=sys.stderr)
        return 1
    wanted = [p for p in args.peers.split(",") if p]
    if not os.access(UWSGI_CORE, os.X_OK):
        wanted = [p for p in wanted if not p.startswith("uwsgi")]
    report(run(wanted, args.duration, args.rounds), args.duration)
    return 0
