"""The emperor: how fast a dropped config becomes a running vassal, and what idling costs.

Both emperors are measured in the same run with the same vassals:
  * ours:  ``imperium --emperor DIR``
  * uWSGI: ``/usr/bin/uwsgi-core --emperor DIR`` (its defaults: a scan every 3 s)

Figures:
  * drop → spawned: from writing an ini to the emperor reporting the vassal ``ready`` (it
    sent byte 1), read from each emperor's stats server polled in a tight loop; the vassal
    is tests/fixtures/sh_vassal.sh (bash + dd) so that the vassal's own start is ~1 ms;
    for 1 file (repeated) and for N files dropped at once;
  * drop → first HTTP 200: the vassal is a real app server (uwsgi-core + python3 plugin
    under both emperors, and ``imperium`` under ours);
  * touch → reload: from a newer mtime to the emperor sending byte 1 (``respawns`` + 1);
  * idle: CPU used by the emperor process over a quiet period, and its RSS, with M
    fake-protocol vassals running.

    python -m bench emperor -- --files 200 --idle-vassals 1000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.common import (
    IMPERIUM,
    ROOT,
    UWSGI_CORE,
    free_port,
    get_status,
    memory_kib,
    percentile,
    print_table,
    tempdir,
    write_hello_app,
)

SH_VASSAL = str(ROOT / "tests" / "fixtures" / "sh_vassal.sh")
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"


def stats(port: int) -> dict | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            data = b""
            while chunk := s.recv(1 << 20):
                data += chunk
        return json.loads(data)
    except (OSError, ValueError):
        return None


class EmperorProc:
    def __init__(self, kind: str, vdir: Path, logdir: Path, binary: str | None,
                 extra: list[str] | None = None) -> None:
        self.kind = kind
        self.port = free_port()
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
        deadline = time.monotonic() + 20
        while stats(self.port) is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{kind} emperor did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def vassals(self) -> dict[str, dict]:
        doc = stats(self.port) or {}
        return {v["id"]: v for v in doc.get("vassals", [])}

    def stop(self) -> None:
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=40)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        # whatever is left (the uWSGI emperor's vassals share its session): kill the session
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in _session_members(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


def _session_members(sid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(") ", 1)[1].split()
                if int(fields[3]) == sid:
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def wait_ready(em: EmperorProc, names: list[str], t0: dict[str, float], timeout: float,
               field: str = "ready") -> dict[str, float]:
    """Seconds from each drop to the first stats poll that shows ``field`` set (used only
    where polling cannot change the result: uWSGI's emperor scans after *any* event,
    a stats connection included, so tight polling would make it look event-driven)."""
    got: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(names) and time.monotonic() < deadline:
        vs = em.vassals()
        now = time.monotonic()
        for n in names:
            if n not in got and vs.get(n, {}).get(field):
                got[n] = now - t0[n]
        time.sleep(0.05)
    return got


def wait_spawned(vdir: Path, names: list[str], t0: dict[str, float], timeout: float) -> dict[str, float]:
    """Seconds from each drop to its vassal running: the bash vassal writes NAME.rec just
    before it sends byte 1. Polling the filesystem leaves the emperors undisturbed."""
    got: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(names) and time.monotonic() < deadline:
        for n in names:
            if n not in got and os.path.exists(vdir / f"{n}.rec"):
                got[n] = time.monotonic() - t0[n]
        time.sleep(0.0005 if len(names) == 1 else 0.005)
    return got


def rec_pid(vdir: Path, name: str) -> int:
    return int((vdir / f"{name}.rec").read_text().splitlines()[-1].split()[0])


def drop(vdir: Path, name: str, text: str = "[uwsgi]\n") -> float:
    tmp = vdir / f".{name}.tmp"
    tmp.write_text(text)
    t = time.monotonic()
    os.rename(tmp, vdir / name)
    return t


def bench_drop(kind: str, files: int, repeat: int) -> tuple[list[float], list[float]]:
    singles: list[float] = []
    with tempdir(f"bench-emperor-{kind}-") as d:
        root = Path(d)
        vdir = root / "v"
        vdir.mkdir()
        em = EmperorProc(kind, vdir, root, SH_VASSAL)
        try:
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
        finally:
            em.stop()
    return singles, many


def bench_touch(kind: str, repeat: int) -> list[float]:
    """Touch → the vassal got byte 1 (the bash vassal exits on it: we watch its pid)."""
    out = []
    with tempdir(f"bench-emperor-touch-{kind}-") as d:
        root = Path(d)
        vdir = root / "v"
        vdir.mkdir()
        em = EmperorProc(kind, vdir, root, SH_VASSAL)
        try:
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
                    try:
                        os.kill(pid, 0)
                        with open(f"/proc/{pid}/stat") as f:
                            if f.read().rsplit(") ", 1)[1][0] == "Z":
                                raise ProcessLookupError
                    except (ProcessLookupError, FileNotFoundError):
                        out.append(time.monotonic() - t0)
                        break
                    time.sleep(0.0005)
        finally:
            em.stop()
    return out


def bench_first_200(kind: str, vassal: str, repeat: int) -> list[float]:
    out = []
    with tempdir(f"bench-emperor-http-{kind}-") as d:
        root = Path(d)
        vdir = root / "v"
        vdir.mkdir()
        app = write_hello_app(root)
        binary = UWSGI_CORE if vassal == "uwsgi" else IMPERIUM
        em = EmperorProc(kind, vdir, root, binary)
        try:
            for i in range(repeat):
                port = free_port()
                plugin = "plugins = python3\n" if vassal == "uwsgi" else ""
                text = (f"[uwsgi]\n{plugin}http-socket = 127.0.0.1:{port}\nwsgi-file = {app}\n"
                        "master = true\nprocesses = 1\n")
                name = f"app{i}.ini"
                t0 = drop(vdir, name, text)
                deadline = t0 + 30
                while time.monotonic() < deadline:
                    if get_status(port, timeout=0.5) == 200:
                        out.append(time.monotonic() - t0)
                        break
                    time.sleep(0.002)
                (vdir / name).unlink()
        finally:
            em.stop()
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle(kind: str, vassals: int, quiet: float) -> tuple[float, int, float]:
    """(CPU % of one core while idle, emperor RSS KiB, seconds to get all vassals ready)."""
    with tempdir(f"bench-emperor-idle-{kind}-") as d:
        root = Path(d)
        vdir = root / "v"
        vdir.mkdir()
        em = EmperorProc(kind, vdir, root, SH_VASSAL)
        try:
            names = [f"idle{i:04d}.ini" for i in range(vassals)]
            t = time.monotonic()
            t0 = {n: drop(vdir, n) for n in names}
            got = wait_spawned(vdir, names, t0, 180)
            ready_s = time.monotonic() - t
            if len(got) < vassals:
                print(f"  ({kind}: only {len(got)}/{vassals} vassals ready)")
            time.sleep(1.0)
            c0, w0 = cpu_seconds(em.proc.pid), time.monotonic()
            time.sleep(quiet)
            c1, w1 = cpu_seconds(em.proc.pid), time.monotonic()
            rss, _ = memory_kib(em.proc.pid)
        finally:
            em.stop()
    return 100.0 * (c1 - c0) / (w1 - w0), rss, ready_s


def ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000 if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_emperor")
    ap.add_argument("--files", type=int, default=200, help="configs dropped at once")
    ap.add_argument("--repeat", type=int, default=20, help="single drops / touches measured")
    ap.add_argument("--http-repeat", type=int, default=5)
    ap.add_argument("--idle-vassals", type=int, default=1000)
    ap.add_argument("--quiet", type=float, default=10.0, help="seconds of idle measured")
    ap.add_argument("--skip-uwsgi", action="store_true")
    args, _ = ap.parse_known_args(argv)
    kinds = ["imperium"] + ([] if args.skip_uwsgi or not os.access(UWSGI_CORE, os.X_OK) else ["uwsgi"])

    rows = []
    for kind in kinds:
        singles, many = bench_drop(kind, args.files, args.repeat)
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
    vassal_kinds = ["uwsgi"] if os.path.exists(PLUGIN) else []
    vassal_kinds.append("imperium")
    for kind in kinds:
        for vassal in vassal_kinds:
            got = bench_first_200(kind, vassal, args.http_repeat)
            rows.append([f"{kind} emperor, {vassal} vassal", len(got), ms(got, 50), ms(got, 95)])
    print_table("Emperor: config dropped -> first HTTP 200 (ms)", ["case", "n", "p50", "p95"], rows)

    rows = []
    for kind in kinds:
        cpu, rss, ready_s = bench_idle(kind, args.idle_vassals, args.quiet)
        rows.append([f"{kind} emperor", args.idle_vassals, ready_s, cpu, rss / 1024])
    print_table(f"Emperor idle with {args.idle_vassals} fake-protocol vassals",
                ["emperor", "vassals", "all ready (s)", "idle CPU (% of a core)", "RSS (MiB)"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
