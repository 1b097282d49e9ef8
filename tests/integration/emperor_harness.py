"""Running our emperor (``imperium --emperor ...``) as a real process, with fake vassals.

The fake vassal (tests/fixtures/fake_vassal.py) records what it saw (argv, cwd, env, the
config, every command) as JSON lines; the emperor's log and its stats server tell what the
emperor did. Every vassal pid ever seen is remembered so that, after the emperor is gone,
the test can check that none of them (nor anything in their process groups) survived.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests import procstat
from tests.conftest import (
    IMPERIUM,
    ROOT,
    Procs,
    free_port,
    pid_alive,
    port_open,
    read_json,
    wait_until,
)

FAKE = ROOT / "tests" / "fixtures" / "fake_vassal.py"
#: a bash + dd vassal (tiny, and runnable by any user)
SH_VASSAL = ROOT / "tests" / "fixtures" / "sh_vassal.sh"
#: small values so that the emperor's timers fire within a test's patience
FAST = ["--emperor-freq", "1", "--emperor-throttle", "100", "--emperor-max-throttle", "1000",
        "--emperor-curse-tolerance", "1", "--reload-mercy", "2"]


def fake_launcher(where: Path) -> Path:
    """An executable that runs the fake vassal with this interpreter (argv passed through)."""
    path = where / "fake-vassal"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    path.chmod(0o755)
    return path


def stays(predicate, seconds: float, message: str) -> None:
    """Assert that ``predicate`` holds for the whole period (for things that must NOT happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(0.05)


def processes_in_groups(pgids: set[int]) -> list[int]:
    """Live (non-zombie) members of these process groups."""
    return [p.pid for p in procstat.table().values() if not p.exited and p.pgrp in pgids]


class Emperor:
    def __init__(self, procs: Procs, tmp: Path, *extra: str, dirs: list[Path] | None = None,
                 monitors: list[str] | None = None, fast: bool = True, stats: bool = True,
                 binary: str | None = None, own_binary: bool = False, wrap: list[str] | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.procs = procs
        self.tmp = tmp
        self.dir = tmp / "vassals"
        self.dir.mkdir(exist_ok=True)
        self.fake = fake_launcher(tmp)
        self.stats_port = free_port() if stats else None
        args: list[str] = []
        for m in monitors or [str(d) for d in (dirs or [self.dir])]:
            args += ["--emperor", m]
        if not own_binary:  # else the emperor starts vassals with its own command (imperium)
            args += ["--binary-path", binary or str(self.fake)]
        if fast:
            args += FAST
        if self.stats_port:
            args += ["--emperor-stats", f"127.0.0.1:{self.stats_port}"]
        args += list(extra)
        self.argv = [*(wrap or []), IMPERIUM, *args]
        self.proc = procs.start(self.argv, cwd=cwd or tmp, env=env)
        self.seen_pids: set[int] = set()
        wait_until(lambda: "*** starting uWSGI Emperor ***" in self.log() or self.proc.poll() is not None,
                   15, message="the emperor to start")
        assert self.proc.poll() is None, self.log()
        if self.stats_port:
            wait_until(lambda: port_open(self.stats_port), 10, message="the emperor stats server")

    # --- what the emperor says --------------------------------------------------------------

    def log(self) -> str:
        return self.procs.output(self.proc)

    def mark(self) -> int:
        return len(self.log())

    def wait_log(self, text: str, timeout: float = 20, after: int = 0) -> None:
        wait_until(lambda: text in self.log()[after:], timeout,
                   message=f"emperor log line {text!r}; log:\n{self.log()[-4000:]}")

    def stats(self) -> dict:
        assert self.stats_port
        return read_json(self.stats_port)

    def vassal(self, name: str) -> dict | None:
        for v in self.stats()["vassals"]:
            if v["id"] == name:
                self.seen_pids.add(v["pid"])
                return v
        return None

    def wait_vassal(self, name: str, timeout: float = 20, **fields) -> dict:
        def ok() -> dict | None:
            v = self.vassal(name)
            if v and all(v.get(k) == want for k, want in fields.items()):
                return v
            return None
        return wait_until(ok, timeout, message=f"vassal {name} with {fields}; log:\n{self.log()[-3000:]}")  # type: ignore[return-value]

    def wait_gone(self, name: str, timeout: float = 20) -> None:
        wait_until(lambda: self.vassal(name) is None, timeout,
                   message=f"vassal {name} removed; log:\n{self.log()[-3000:]}")

    # --- fake vassals -------------------------------------------------------------------------

    def record_path(self, name: str) -> Path:
        return self.tmp / f"{name}.jsonl"

    def ini(self, name: str, directory: Path | None = None, record: Path | None = None,
            **opts: object) -> Path:
        lines = ["[uwsgi]", f"fake-record = {record or self.record_path(name)}"]
        lines += [f"fake-{k.replace('_', '-')} = {v}" for k, v in opts.items()]
        path = (directory or self.dir) / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def records(self, name: str, event: str | None = None, record: Path | None = None) -> list[dict]:
        path = record or self.record_path(name)
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # being written
            self.seen_pids.add(rec["pid"])
            if event is None or rec["event"] == event:
                out.append(rec)
        return out

    def wait_records(self, name: str, event: str, count: int = 1, timeout: float = 20,
                     record: Path | None = None) -> list[dict]:
        return wait_until(lambda: (r := self.records(name, event, record)) and len(r) >= count and r,
                          timeout, message=f"{count} {event!r} record(s) of {name}; "
                                           f"log:\n{self.log()[-3000:]}")  # type: ignore[return-value]

    # --- the end ------------------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Stop the emperor and check that it left nothing behind."""
        from tests.conftest import descendants

        self.seen_pids.update(descendants(self.proc.pid))
        self.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the emperor did not exit; log:\n{self.log()[-3000:]}") from None
        self.assert_nothing_left()
        return code

    def assert_nothing_left(self) -> None:
        pids = {p for p in self.seen_pids if p > 0}
        wait_until(lambda: not [p for p in pids if pid_alive(p)] and not processes_in_groups(pids), 5,
                   message=f"no vassal process left (alive: {[p for p in pids if pid_alive(p)]}, "
                           f"in their groups: {processes_in_groups(pids)})")


def bump_mtime(path: Path, seconds: float = 2) -> None:
    """A newer mtime, as `touch` gives (always strictly newer, whatever the clock's grain)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))
