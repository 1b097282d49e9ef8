"""The emperor: how fast a dropped config becomes a running vassal, and what idling costs.

Both emperors are measured in the same run with the same vassals:
  * ours:  ``imperium --emperor DIR``
  * uWSGI: ``/usr/bin/uwsgi-core --emperor DIR`` (its defaults: a scan every 3 s)

Figures:
  * drop → spawned: from an ini renamed into the directory to the vassal running; the vassal
    is tests/fixtures/sh_vassal.sh (bash + dd, ~1 ms to start), which writes NAME.rec just
    before it sends byte 1; for 1 file (repeated) and for N files dropped at once;
  * touch → reload: from a newer mtime to the bash vassal getting byte 1 (it exits on it);
  * drop → first HTTP 200 and delete → port closed (connect() refused), one vassal at a
    time; the vassal is a real app server (uwsgi-core + python3 plugin under both emperors,
    and ``imperium`` under ours: forked by our fork server, no ``binary-path``);
  * vassal start → first 200: as above, but the drop is followed at once by a stats
    connection, which makes uWSGI's emperor scan now: the figure is the spawn path (fork or
    exec + app-server start), not uWSGI's scan period. Ours: ``imperium`` vassals forked
    (the default) and exec'd (``emperor-spawn = exec``); uWSGI's: uwsgi-core vassals;
  * N HTTP vassals dropped at once: first 200 of each, then, with all of them answering,
    the emperor's idle CPU and RSS, then SIGINT to the emperor → the emperor and every
    vassal process gone;
  * idle: the emperor's CPU over a quiet period and its RSS with M fake-protocol (bash)
    vassals, and the SIGINT → all gone time for them;
  * observed: the same M vassals under our emperor with its observability on (Prometheus
    endpoint, control socket): idle CPU, then the time of a ``/metrics`` scrape over HTTP,
    of an ``imperium ctl list`` exchange and of a stats JSON read, next to uWSGI's emperor
    stats JSON read with the same vassals (the one read it has).

Polling never touches the emperors (the filesystem, the vassals' ports and /proc only):
uWSGI's emperor scans its directory after *any* event, a stats connection included, so
polling its stats server would make it look event-driven.

    python -m bench emperor -- --files 200 --http-files 200 --idle-vassals 1000 --quiet 10
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    IMPERIUM,
    ROOT,
    UWSGI_CORE,
    free_port,
    memory_kib,
    percentile,
    print_table,
    tempdir,
    write_hello_app,
)
from tests import procstat
from tests.procstat import ProcStat

SH_VASSAL = str(ROOT / "tests" / "fixtures" / "sh_vassal.sh")
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"

# the goals, reported against in the last table
GOAL_DETECT_MS = 20.0
GOAL_IDLE_CPU = 1.0
GOAL_RSS_MIB = 100.0
GOAL_SCRAPE_MS = 50.0


def stats(port: int) -> dict | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            data = b""
            while chunk := s.recv(1 << 20):
                data += chunk
        return json.loads(data)
    except (OSError, ValueError):
        return None


# --- processes seen through /proc ------------------------------------------------------------


def family(root: int, table: dict[int, ProcStat]) -> dict[int, int]:
    """pid → starttime of ``root``'s descendants and of its session's members (the uWSGI
    emperor's vassals stay in its session; a vassal that makes its own is still a child)."""
    kids: dict[int, list[int]] = {}
    for pid, info in table.items():
        kids.setdefault(info.ppid, []).append(pid)
    found = {pid for pid, info in table.items() if info.session == root}
    seen: set[int] = set()
    stack = [root]
    while stack:
        for child in kids.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    found |= seen
    found.discard(root)
    return {pid: table[pid].starttime for pid in found}


def running(pid: int, start: int, table: dict[int, ProcStat]) -> bool:
    info = table.get(pid)
    return info is not None and info.starttime == start and not info.exited


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process that must exist (the emperor, never reaped mid-run)."""
    info = procstat.read(pid)
    if info is None:
        raise ProcessLookupError(pid)
    return info.cpu


# --- the emperors ------------------------------------------------------------------------------

_LIVE: list[EmperorProc] = []  # killed by main() whatever happens


class EmperorProc:
    def __init__(self, kind: str, vdir: Path, logdir: Path, binary: str | None,
                 extra: list[str] | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        self.known: dict[int, int] = {}  # vassal processes ever seen: pid → starttime
        exe = IMPERIUM if kind == "imperium" else UWSGI_CORE
        argv = [exe, "--emperor", str(vdir), "--emperor-stats", f"127.0.0.1:{self.port}"]
        if binary:
            argv += ["--binary-path", binary]
        argv += extra or []
        self.log = logdir / f"emperor-{kind}.log"
        env = dict(os.environ)
        env.pop("UWSGI_EMPEROR_FD", None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=str(vdir), env=env,
                                         start_new_session=True)
        _LIVE.append(self)
        # the only stats connection of a run: it tells us the emperor is up before any drop
        deadline = time.monotonic() + 20
        while stats(self.port) is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError(f"{kind} emperor did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def track(self, table: dict[int, ProcStat] | None = None) -> dict[int, ProcStat]:
        table = procstat.table() if table is None else table
        if self.proc.poll() is None:
            self.known.update(family(self.proc.pid, table))
        return table

    def rss_kib(self) -> int:
        return memory_kib(self.proc.pid)[0]

    def stop_all(self, timeout: float) -> tuple[float | None, int]:
        """SIGINT to the emperor → it and every vassal process it ran are gone.
        Returns (seconds or None on timeout, processes left at the end)."""
        self.track()
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        left = len(self.known) + 1
        while time.monotonic() - t0 < timeout:
            table = self.track()  # a worker forked during the stop counts too
            emperor_gone = self.proc.poll() is not None
            left = sum(running(p, s, table) for p, s in self.known.items()) + (not emperor_gone)
            if not left:
                return time.monotonic() - t0, 0
            time.sleep(0.01)
        return None, left

    def kill(self) -> None:
        """SIGKILL the emperor, its tree, its session and every vassal process seen."""
        for _ in range(3):
            table = self.track()
            victims = [p for p, s in self.known.items() if running(p, s, table)]
            if self.proc.poll() is None:
                victims.append(self.proc.pid)
            if not victims:
                break
            for pid in victims:
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
            time.sleep(0.05)
        if self in _LIVE:
            _LIVE.remove(self)


# --- waiting without touching the emperor ---------------------------------------------------


def wait_spawned(vdir: Path, names: list[str], t0: dict[str, float], timeout: float) -> dict[str, float]:
    """Seconds from each drop to its vassal running: the bash vassal writes NAME.rec just
    before it sends byte 1."""
    got: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(names) and time.monotonic() < deadline:
        for n in names:
            if n not in got and os.path.exists(vdir / f"{n}.rec"):
                got[n] = time.monotonic() - t0[n]
        time.sleep(0.0005 if len(names) == 1 else 0.005)
    return got


_REQUEST = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"


def wait_200(ports: dict[str, int], t0: dict[str, float], timeout: float,
             retry: float) -> dict[str, float]:
    """Seconds from each drop to its vassal's first 200, for many vassals at once.

    One thread, non-blocking sockets: a refused connect is retried after ``retry`` s; an
    accepted one waits for its answer however long the worker takes (a uWSGI master
    listens before its worker is ready), so no answer is missed between two polls."""
    got: dict[str, float] = {}
    next_try = dict.fromkeys(ports, 0.0)
    replies: dict[str, bytes] = {}
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + timeout

    def failed(s: socket.socket, name: str) -> None:
        sel.unregister(s)
        s.close()
        next_try[name] = time.monotonic() + retry

    try:
        while len(got) < len(ports) and time.monotonic() < deadline:
            now = time.monotonic()
            for name, when in list(next_try.items()):
                if when > now:
                    continue
                del next_try[name]
                s = socket.socket()
                s.setblocking(False)
                if s.connect_ex(("127.0.0.1", ports[name])) in (0, errno.EINPROGRESS):
                    replies[name] = b""
                    sel.register(s, selectors.EVENT_WRITE, name)
                else:
                    s.close()
                    next_try[name] = now + retry
            pause = min(next_try.values(), default=now + 0.05) - now
            for key, _ in sel.select(min(max(pause, 0.0), 0.05)):
                s, name = key.fileobj, key.data
                assert isinstance(s, socket.socket)
                if key.events == selectors.EVENT_WRITE:  # connect finished
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        failed(s, name)
                        continue
                    try:
                        s.send(_REQUEST)
                    except OSError:
                        failed(s, name)
                        continue
                    sel.modify(s, selectors.EVENT_READ, name)
                    continue
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                replies[name] += data
                if data and b"\r\n" not in replies[name]:
                    continue
                status = replies[name].split(b"\r\n", 1)[0].split()
                if len(status) >= 2 and status[1] == b"200":
                    got[name] = time.monotonic() - t0[name]
                    sel.unregister(s)
                    s.close()
                else:
                    failed(s, name)
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()
    return got


def wait_refused(port: int, t0: float, timeout: float) -> float | None:
    """Seconds from ``t0`` to connect() refused on ``port`` (nothing listens any more)."""
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1.0)
            err = s.connect_ex(("127.0.0.1", port))
        if err == errno.ECONNREFUSED:
            return time.monotonic() - t0
        time.sleep(0.002)
    return None


def rec_pid(vdir: Path, name: str) -> int:
    return int((vdir / f"{name}.rec").read_text().splitlines()[-1].split()[0])


def drop(vdir: Path, name: str, text: str = "[uwsgi]\n") -> float:
    tmp = vdir / f".{name}.tmp"
    tmp.write_text(text)
    t = time.monotonic()
    os.rename(tmp, vdir / name)
    return t


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def http_vassal(vassal: str, port: int, app: Path) -> str:
    plugin = "plugins = python3\n" if vassal == "uwsgi" else ""
    return (f"[uwsgi]\n{plugin}http-socket = 127.0.0.1:{port}\nwsgi-file = {app}\n"
            "master = true\nprocesses = 1\n")


@contextmanager
def emperor_on_fresh_dir(kind: str, label: str, binary: str | None,
                         extra: list[str] | None = None) -> Iterator[tuple[EmperorProc, Path]]:
    """An emperor on an empty vassal dir (in a temp dir that also holds its log and the
    app); on exit it is killed with every vassal process it ran, and the dir removed."""
    with tempdir(f"bench-emperor-{label}-{kind}-") as d:
        root = Path(d)
        vdir = root / "v"
        vdir.mkdir()
        em = EmperorProc(kind, vdir, root, binary, extra)
        try:
            yield em, vdir
        finally:
            em.kill()


def app_server(kind: str, vassal: str) -> str | None:
    """The ``binary-path`` to give: none for our vassals under our emperor (its own command,
    forked by the fork server; binary-path would mean exec)."""
    if vassal == "uwsgi":
        return UWSGI_CORE
    return None if kind == "imperium" else IMPERIUM


# --- the benches ------------------------------------------------------------------------------


def bench_drop(kind: str, files: int, repeat: int) -> tuple[list[float], list[float]]:
    singles: list[float] = []
    with emperor_on_fresh_dir(kind, "drop", SH_VASSAL) as (em, vdir):
        for i in range(repeat):
            name = f"one{i}.ini"
            t0 = {name: drop(vdir, name)}
            singles += wait_spawned(vdir, [name], t0, 15).values()
            time.sleep(0.2)
        names = [f"many{i:04d}.ini" for i in range(files)]
        t0 = {}
        for n in names:
            t0[n] = drop(vdir, n)
        many = list(wait_spawned(vdir, names, t0, 60).values())
    return singles, many


def bench_touch(kind: str, repeat: int) -> list[float]:
    """Touch → the vassal got byte 1 (the bash vassal exits on it: we watch its pid)."""
    out = []
    with emperor_on_fresh_dir(kind, "touch", SH_VASSAL) as (em, vdir):
        drop(vdir, "t.ini")
        for i in range(repeat):
            wait_spawned(vdir, ["t.ini"], {"t.ini": time.monotonic()}, 15)
            time.sleep(0.3)
            pid = rec_pid(vdir, "t.ini")
            (vdir / "t.ini.rec").unlink()
            st = (vdir / "t.ini").stat()
            t0 = time.monotonic()
            os.utime(vdir / "t.ini", ns=(st.st_atime_ns, st.st_mtime_ns + (i + 2) * 10**9))
            deadline = t0 + 10
            while time.monotonic() < deadline:
                info = procstat.read(pid)
                if info is None or info.exited:
                    out.append(time.monotonic() - t0)
                    break
                time.sleep(0.0005)
    return out


def bench_http_one(kind: str, vassal: str, repeat: int) -> tuple[list[float], list[float]]:
    """One HTTP vassal at a time: (drop → first 200, delete → port refused) in seconds."""
    first: list[float] = []
    closed: list[float] = []
    with emperor_on_fresh_dir(kind, "http", app_server(kind, vassal)) as (em, vdir):
        app = write_hello_app(vdir.parent)
        for i in range(repeat):
            port = free_port()
            name = f"app{i}.ini"
            t0 = drop(vdir, name, http_vassal(vassal, port, app))
            first += wait_200({name: port}, {name: t0}, 30, 0.002).values()
            em.track()
            t0 = time.monotonic()
            (vdir / name).unlink()
            gone = wait_refused(port, t0, 30)
            if gone is not None:
                closed.append(gone)
            # let the vassal be reaped: the next drop starts from a quiet emperor
            time.sleep(0.3)
    return first, closed


def bench_start(kind: str, vassal: str, method: str, repeat: int) -> list[float]:
    """Vassal start → first 200: a drop, then at once a stats connection (uWSGI's emperor
    scans after any event), so the scan period is not measured; seconds per start."""
    extra = ["--emperor-spawn", method] if kind == "imperium" else []
    out: list[float] = []
    with emperor_on_fresh_dir(kind, f"start-{method}", app_server(kind, vassal), extra) as (em, vdir):
        app = write_hello_app(vdir.parent)
        for i in range(repeat):
            port = free_port()
            name = f"s{i}.ini"
            t0 = drop(vdir, name, http_vassal(vassal, port, app))
            stats(em.port)
            out += wait_200({name: port}, {name: t0}, 30, 0.001).values()
            em.track()
            (vdir / name).unlink()
            wait_refused(port, time.monotonic(), 30)
            time.sleep(0.3)  # reaped, and the emperor quiet again
    return out


def listening(port: int) -> bool:
    """Something listens on 127.0.0.1:port (read from /proc: a connect would start an
    on-demand vassal)."""
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        except OSError:
            continue
    return False


def http_once(port: int, timeout: float = 30.0) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(_REQUEST)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0].split()[1:2] == [b"200"]


def bench_on_demand(kind: str, vassal: str, repeat: int) -> list[float]:
    """On-demand vassal: first connection -> its response (the vassal starts in between)."""
    out: list[float] = []
    extra = ["--emperor-on-demand-extension", ".socket"]
    with emperor_on_fresh_dir(kind, "ondemand", app_server(kind, vassal), extra) as (em, vdir):
        app = write_hello_app(vdir.parent)
        plugin = "plugins = python3\n" if vassal == "uwsgi" else ""
        for i in range(repeat):
            port = free_port()
            name = f"od{i}.ini"
            (vdir / f"{name}.socket").write_text(f"127.0.0.1:{port}\n")
            drop(vdir, name, f"[uwsgi]\n{plugin}protocol = http\nwsgi-file = {app}\n"
                             "master = true\nprocesses = 1\n")
            stats(em.port)  # uWSGI's emperor scans now
            deadline = time.monotonic() + 15
            while not listening(port) and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.2)  # the emperor is quiet again
            t0 = time.monotonic()
            try:
                if http_once(port):
                    out.append(time.monotonic() - t0)
            except OSError:
                pass
            em.track()
            (vdir / name).unlink()
            stats(em.port)
            wait_refused(port, time.monotonic(), 30)
            time.sleep(0.3)
    return out


_PID_APP = """import os, time
def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/sleep/"):
        time.sleep(float(path.rsplit("/", 1)[1]))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


def first_other_answer(port: int, parent: bytes, timeout: float) -> float | None:
    """8 clients in a loop of 0.5 s requests: seconds until one answer comes from another
    process than ``parent`` (a zerg), or None."""
    import threading
    import urllib.request

    done = threading.Event()
    first: list[float] = []
    t0 = time.monotonic()

    def client() -> None:
        while not done.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/sleep/0.5", timeout=30) as r:
                    if r.read() != parent and not first:
                        first.append(time.monotonic() - t0)
                        done.set()
            except OSError:
                pass
    threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    done.wait(timeout)
    done.set()
    for t in threads:
        t.join(35)
    return first[0] if first else None


def bench_broodlord(kind: str, vassal: str, repeat: int) -> list[float]:
    """Load onset -> the first answer from a zerg: a one-worker vassal with
    vassal-sos-backlog 2 gets 8 clients asking for 0.5 s requests in a loop."""
    import urllib.request

    out: list[float] = []
    for i in range(repeat):
        with emperor_on_fresh_dir(kind, f"brood{i}", app_server(kind, vassal),
                                  ["--emperor-broodlord", "2"]) as (em, vdir):
            app = vdir.parent / "pidapp.py"
            app.write_text(_PID_APP)
            port = free_port()
            zsock = vdir.parent / "brood.sock"
            plugin = "plugins = python3\n" if vassal == "uwsgi" else ""
            drop(vdir, "app.ini",
                 f"[uwsgi]\n{plugin}http-socket = 127.0.0.1:{port}\nwsgi-file = {app}\n"
                 f"master = true\nprocesses = 1\nvassal-sos-backlog = 2\nzerg-server = {zsock}\n\n"
                 f"[zerg]\n{plugin}zerg = {zsock}\nprotocol = http\nwsgi-file = {app}\n"
                 "master = true\nprocesses = 1\nidle = 5\ndie-on-idle = true\n")
            stats(em.port)
            if not wait_200({"app.ini": port}, {"app.ini": time.monotonic()}, 30, 0.01):
                continue
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                parent = r.read()
            got = first_other_answer(port, parent, 30)
            if got is not None:
                out.append(got)
            em.track()
    return out


@dataclass
class ManyResult:
    files: int
    first: list[float] = field(default_factory=list)
    spawn_cpu: float = float("nan")
    cpu: float = float("nan")
    rss_kib: int = 0
    stop_s: float | None = None
    left: int = 0
    procs: int = 0


def idle_cost(em: EmperorProc, quiet: float) -> tuple[float, int]:
    """(CPU % of one core used by the emperor over ``quiet`` s, its RSS in KiB)."""
    time.sleep(1.0)  # the last vassal's byte 5/17 and their logs are handled
    c0, w0 = cpu_seconds(em.proc.pid), time.monotonic()
    time.sleep(quiet)
    c1, w1 = cpu_seconds(em.proc.pid), time.monotonic()
    return 100.0 * (c1 - c0) / (w1 - w0), em.rss_kib()


def bench_http_many(kind: str, vassal: str, files: int, quiet: float) -> ManyResult:
    """N HTTP vassals dropped at once → each one's first 200; then the emperor idling with
    all of them up; then SIGINT → everything gone."""
    res = ManyResult(files)
    with emperor_on_fresh_dir(kind, "many", app_server(kind, vassal)) as (em, vdir):
        app = write_hello_app(vdir.parent)
        ports = dict(zip((f"web{i:04d}.ini" for i in range(files)), free_ports(files),
                         strict=True))
        texts = {n: http_vassal(vassal, p, app) for n, p in ports.items()}
        c0 = cpu_seconds(em.proc.pid)
        t0 = {n: drop(vdir, n, texts[n]) for n in ports}
        got = wait_200(ports, t0, max(120.0, files * 0.6), 0.05)
        res.spawn_cpu = cpu_seconds(em.proc.pid) - c0
        res.first = list(got.values())
        res.cpu, res.rss_kib = idle_cost(em, quiet)
        res.procs = len(family(em.proc.pid, em.track()))
        res.stop_s, res.left = em.stop_all(90)
    return res


def bench_idle(kind: str, vassals: int, quiet: float) -> tuple[float, int, float, float | None, int]:
    """(idle CPU % of a core, emperor RSS KiB, seconds until all vassals ran,
    SIGINT → all gone seconds, processes left) with M bash vassals."""
    with emperor_on_fresh_dir(kind, "idle", SH_VASSAL) as (em, vdir):
        names = [f"idle{i:04d}.ini" for i in range(vassals)]
        t = time.monotonic()
        t0 = {n: drop(vdir, n) for n in names}
        got = wait_spawned(vdir, names, t0, 180)
        ready_s = time.monotonic() - t
        if len(got) < vassals:
            print(f"  ({kind}: only {len(got)}/{vassals} vassals ready)")
        cpu, rss = idle_cost(em, quiet)
        stop_s, left = em.stop_all(90)
    return cpu, rss, ready_s, stop_s, left


def _timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    if not data.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"GET {path}: {data[:100]!r}")
    return data


def _ctl_list(path: str) -> None:
    from emperor.ctl import request

    if not request(path, "list").get("ok"):
        raise RuntimeError("ctl list refused")


def bench_observed(kind: str, vassals: int, quiet: float, reads: int) -> dict[str, object]:
    """M bash vassals, the emperor's observability on (ours); idle CPU, then timed reads."""
    out: dict[str, object] = {}
    prom = free_port()
    with tempdir("bench-emperor-ctl-") as d:
        ctl_path = str(Path(d) / "ctl.sock")
        extra = (["--emperor-prometheus", f"127.0.0.1:{prom}", "--emperor-control-socket", ctl_path]
                 if kind == "imperium" else [])
        with emperor_on_fresh_dir(kind, "observed", SH_VASSAL, extra) as (em, vdir):
            names = [f"obs{i:04d}.ini" for i in range(vassals)]
            t0 = {n: drop(vdir, n) for n in names}
            got = wait_spawned(vdir, names, t0, 180)
            out["ready"] = len(got)
            if kind == "imperium":
                out["idle_cpu"], out["rss"] = idle_cost(em, quiet)
                c0 = cpu_seconds(em.proc.pid)
                body = _http_get(prom, "/metrics")
                out["scrape_bytes"] = len(body)
                out["scrape"] = _timed(lambda: _http_get(prom, "/metrics"), reads)
                out["scrape_cpu_ms"] = (cpu_seconds(em.proc.pid) - c0) * 1000 / (reads + 1)
                out["ctl"] = _timed(lambda: _ctl_list(ctl_path), reads)
            out["json"] = _timed(lambda: stats(em.port), reads)
            em.stop_all(90)
    return out


def ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000 if values else float("nan")


def secs(value: float | None, left: int) -> str:
    return f"{value:.2f}" if value is not None else f"timeout ({left} left)"


def verdict(value: float | None, goal: float, strict: bool) -> str:
    if value is None or value != value:
        return "-"
    return "met" if value < goal or (value == goal and not strict) else "MISSED"


def times(a: float | None, b: float | None) -> str:
    """a/b with 3 significant digits (common.ratio's 2 decimals print 0.00x for ms vs s)."""
    if a is None or b is None or a != a or b != b or not b:
        return "-"
    return f"{a / b:.3g}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_emperor")
    ap.add_argument("--files", type=int, default=200, help="bash vassals dropped at once")
    ap.add_argument("--repeat", type=int, default=20, help="single drops / touches measured")
    ap.add_argument("--http-repeat", type=int, default=5,
                    help="single HTTP vassals dropped then deleted, per case")
    ap.add_argument("--http-files", type=int, default=200, help="HTTP vassals dropped at once")
    ap.add_argument("--idle-vassals", type=int, default=1000)
    ap.add_argument("--quiet", type=float, default=10.0, help="seconds of idle measured")
    ap.add_argument("--skip-uwsgi", action="store_true")
    ap.add_argument("--reads", type=int, default=20, help="timed /metrics, ctl and stats reads")
    ap.add_argument("--only-observed", action="store_true",
                    help="run only the observability figures (with --idle-vassals vassals)")
    args, _ = ap.parse_known_args(argv)
    kinds = ["imperium"] + ([] if args.skip_uwsgi or not os.access(UWSGI_CORE, os.X_OK) else ["uwsgi"])
    vassal_kinds = (["uwsgi"] if os.path.exists(PLUGIN) else []) + ["imperium"]
    try:
        return _run(args, kinds, vassal_kinds)
    finally:
        for em in list(_LIVE):
            em.kill()


def _run(args: argparse.Namespace, kinds: list[str], vassal_kinds: list[str]) -> int:
    summary: dict[str, dict[str, float | None]] = {
        k: {} for k in ("imperium", "uwsgi", "imperium-fork", "imperium-exec")}
    if args.only_observed:
        return _observed(args, kinds, summary)

    rows = []
    for kind in kinds:
        singles, many = bench_drop(kind, args.files, args.repeat)
        summary[kind]["detect"] = ms(singles, 50)
        rows.append([f"{kind} emperor: drop 1 file", len(singles), ms(singles, 50), ms(singles, 95)])
        rows.append([f"{kind} emperor: drop {args.files} at once", len(many), ms(many, 50), ms(many, 95)])
    for kind in kinds:
        touches = bench_touch(kind, max(3, args.repeat // 4))
        rows.append([f"{kind} emperor: touch -> reload", len(touches), ms(touches, 50), ms(touches, 95)])
    print_table("Emperor: config dropped/touched -> vassal spawned/reloaded (ms)",
                ["case", "n", "p50", "p95"], rows,
                ["spawned = the vassal (bash+dd) runs and is about to send byte 1; reload = it got byte 1",
                 "uWSGI's emperor scans every emperor-freq (3 s) seconds; ours reacts to inotify"])

    rows = []
    for kind in kinds:
        for vassal in vassal_kinds:
            first, closed = bench_http_one(kind, vassal, args.http_repeat)
            if vassal == "uwsgi":
                summary[kind]["deleted"] = ms(closed, 50)
            rows.append([f"{kind} emperor, {vassal} vassal", len(first), ms(first, 50), ms(first, 95),
                         len(closed), ms(closed, 50), ms(closed, 95)])
    print_table("Emperor: one HTTP vassal: config dropped -> first 200; config deleted -> port closed (ms)",
                ["case", "n", "200 p50", "200 p95", "n", "closed p50", "closed p95"], rows,
                ["closed = connect() to the vassal's port is refused; one vassal at a time, 0.3 s apart"])

    rows = []
    start_cases = [("imperium", "imperium", "fork"), ("imperium", "imperium", "exec")]
    if "uwsgi" in kinds and "uwsgi" in vassal_kinds:
        start_cases.append(("uwsgi", "uwsgi", "fork+exec"))
    for kind, vassal, method in start_cases:
        if kind not in kinds:
            continue
        starts = bench_start(kind, vassal, method, args.http_repeat)
        summary[kind if kind == "uwsgi" else f"imperium-{method}"]["start"] = ms(starts, 50)
        rows.append([f"{kind} emperor, {vassal} vassal ({method})", len(starts), ms(starts, 50),
                     ms(starts, 95)])
    print_table("Emperor: vassal start (spawn) -> first 200 (ms)", ["case", "n", "p50", "p95"], rows,
                ["each drop is followed by a stats connection: uWSGI's emperor scans at once, so "
                 "its 3 s scan period is not counted", "fork: our vassal forked by the fork server "
                 "(instance code preloaded); exec: emperor-spawn = exec (interpreter + imports)"])

    rows = []
    od_cases = [("imperium", "imperium")] + ([("uwsgi", "uwsgi")] if "uwsgi" in kinds
                                             and "uwsgi" in vassal_kinds else [])
    for kind, vassal in od_cases:
        firsts = bench_on_demand(kind, vassal, args.http_repeat)
        summary[kind]["ondemand"] = ms(firsts, 50)
        rows.append([f"{kind} emperor, {vassal} vassal", len(firsts), ms(firsts, 50), ms(firsts, 95)])
    print_table("Emperor: on-demand vassal: first connection -> response (ms)",
                ["case", "n", "p50", "p95"], rows,
                ["emperor-on-demand-extension .socket (TCP); the vassal starts on that connection"])

    rows = []
    for kind, vassal in od_cases:
        zergs = bench_broodlord(kind, vassal, max(1, args.http_repeat // 2))
        summary[kind]["zerg"] = ms(zergs, 50)
        rows.append([f"{kind} emperor, {vassal} vassal", len(zergs), ms(zergs, 50), ms(zergs, 95)])
    print_table("Emperor: broodlord: load onset -> first answer from a zerg (ms)",
                ["case", "n", "p50", "p95"], rows,
                ["1 worker, vassal-sos-backlog 2, 8 clients in a loop of 0.5 s requests; the master "
                 "checks its backlog once a second (both)"])

    rows = []
    many_cases = [(k, "uwsgi") for k in kinds if "uwsgi" in vassal_kinds]
    if "imperium" in kinds:
        many_cases.append(("imperium", "imperium"))
    for kind, vassal in many_cases:
        r = bench_http_many(kind, vassal, args.http_files, args.quiet)
        if vassal == "uwsgi":
            summary[kind]["many200"] = ms(r.first, 95)
            summary[kind]["stop"] = r.stop_s
        if kind == vassal:  # each emperor with its own vassals: all answering (s)
            summary[kind]["all200"] = (max(r.first) if len(r.first) == r.files
                                       else float("nan"))
        rows.append([f"{kind} emperor, {vassal} vassals", f"{len(r.first)}/{r.files}",
                     ms(r.first, 50), ms(r.first, 95), max(r.first, default=float("nan")),
                     r.spawn_cpu, r.cpu, r.rss_kib / 1024, r.procs, secs(r.stop_s, r.left)])
    print_table(f"Emperor: {args.http_files} HTTP vassals dropped at once",
                ["case", "got 200", "200 p50 (ms)", "200 p95 (ms)", "all 200 (s)",
                 "emperor CPU (s)", "idle CPU (%)", "RSS (MiB)", "vassal procs", "SIGINT -> all gone (s)"], rows,
                ["vassals: master + 1 worker each; emperor CPU = what the emperor used from the drop"
                 " to all 200; idle CPU = the emperor's, % of one core, "
                 f"over {args.quiet:g} s once all answer",
                 "all gone = the emperor and every vassal process exited (zombies count as gone)"])

    rows = []
    for kind in kinds:
        cpu, rss, ready_s, stop_s, left = bench_idle(kind, args.idle_vassals, args.quiet)
        summary[kind]["idle_cpu"] = cpu
        summary[kind]["idle_rss"] = rss / 1024
        rows.append([f"{kind} emperor", args.idle_vassals, ready_s, cpu, rss / 1024, secs(stop_s, left)])
    print_table(f"Emperor idle with {args.idle_vassals} fake-protocol vassals",
                ["emperor", "vassals", "all ready (s)", "idle CPU (% of a core)", "RSS (MiB)",
                 "SIGINT -> all gone (s)"], rows)

    _observed(args, kinds, summary)
    ours, peer = summary["imperium"], summary["uwsgi"]
    rows = []
    for label, key, goal, strict in (
            ("detection: drop 1 file -> spawned p50 (ms)", "detect", GOAL_DETECT_MS, False),
            (f"{args.idle_vassals} vassals: emperor idle CPU (% of a core)", "idle_cpu",
             GOAL_IDLE_CPU, True),
            (f"{args.idle_vassals} vassals: emperor RSS (MiB)", "idle_rss", GOAL_RSS_MIB, True),
            (f"{args.idle_vassals} vassals, observability on: idle CPU (% of a core)", "obs_cpu",
             GOAL_IDLE_CPU, True),
            (f"/metrics scrape of {args.idle_vassals} vassals p50 (ms)", "scrape", GOAL_SCRAPE_MS, True),
            ("delete -> port closed p50, uwsgi vassal (ms)", "deleted", None, False),
            (f"{args.http_files} at once -> first 200 p95, uwsgi vassals (ms)", "many200", None, False),
            (f"{args.http_files} uwsgi vassals: SIGINT -> all gone (s)", "stop", None, False)):
        a, b = ours.get(key), peer.get(key)
        rows.append([label, "-" if goal is None else f"{'<' if strict else '<='} {goal:g}", a, b,
                     times(a, b), "-" if goal is None else verdict(a, goal, strict)])
    for label, ours_key, key, goal in (
            ("vassal start -> first 200 p50, forked imperium vs uwsgi-core (ms)", "imperium-fork",
             "start", True),
            ("vassal start -> first 200 p50, exec'd imperium vs uwsgi-core (ms)", "imperium-exec",
             "start", False),
            (f"{args.http_files} own HTTP vassals at once -> all 200 (s)", "imperium", "all200", True),
            ("on-demand: first connection -> response p50 (ms)", "imperium", "ondemand", True),
            ("broodlord: load onset -> first zerg answer p50 (ms)", "imperium", "zerg", False)):
        a, b = summary[ours_key].get(key), peer.get(key)
        ratio_ab = None if a is None or b is None or not b else a / b
        met = "-" if not goal or ratio_ab is None or ratio_ab != ratio_ab else verdict(ratio_ab, 1.0, False)
        rows.append([label, "<= 1.0x uWSGI" if goal else "-", a, b, times(a, b), met])
    print_table("Emperor: summary against the goals", ["figure", "goal", "imperium", "uWSGI",
                                                        "imperium/uWSGI", "imperium vs goal"], rows)
    return 0


def _observed(args: argparse.Namespace, kinds: list[str],
              summary: dict[str, dict[str, float | None]]) -> int:
    rows = []
    for kind in kinds:
        r = bench_observed(kind, args.idle_vassals, args.quiet, args.reads)
        json_t = r["json"]
        if kind == "imperium":
            scrape, ctl_t = r["scrape"], r["ctl"]
            summary[kind]["obs_cpu"] = r["idle_cpu"]
            summary[kind]["scrape"] = ms(scrape, 50)
            rows.append([f"{kind} emperor", f"{r['ready']}/{args.idle_vassals}", r["idle_cpu"],
                         ms(scrape, 50), ms(scrape, 95), r["scrape_cpu_ms"], r["scrape_bytes"] // 1024,
                         ms(ctl_t, 50), ms(json_t, 50)])
        else:
            rows.append([f"{kind} emperor", f"{r['ready']}/{args.idle_vassals}", "-", "-", "-", "-",
                         "-", "-", ms(json_t, 50)])
    print_table(f"Emperor observed: {args.idle_vassals} vassals, Prometheus endpoint and control "
                "socket on (ours)",
                ["emperor", "vassals ready", "idle CPU (%)", "/metrics p50 (ms)", "/metrics p95 (ms)",
                 "emperor CPU per scrape (ms)", "/metrics KiB", "ctl list p50 (ms)",
                 "stats JSON p50 (ms)"], rows,
                [f"idle CPU over {args.quiet:g} s with nothing scraping; then {args.reads} scrapes "
                 "over HTTP, timed by the client", "uWSGI's emperor has no /metrics nor control "
                 "socket: its stats JSON read is the peer figure (each read makes it rescan)"])
    if args.only_observed:
        a = summary["imperium"]
        print_table("Emperor observed: against the goals", ["figure", "goal", "imperium", "vs goal"],
                    [["idle CPU, observability on (% of a core)", f"< {GOAL_IDLE_CPU:g}",
                      a.get("obs_cpu"), verdict(a.get("obs_cpu"), GOAL_IDLE_CPU, True)],
                     ["/metrics scrape p50 (ms)", f"< {GOAL_SCRAPE_MS:g}", a.get("scrape"),
                      verdict(a.get("scrape"), GOAL_SCRAPE_MS, True)]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
