"""End-to-end helpers for the network monitors: a real ``imperium --emperor`` process driving
fake vassals that keep a journal of what the emperor told them.

The fake vassal is given to the emperor with ``--emperor-wrapper``: it speaks the emperor fd
protocol (reads its config from the config fd, reports spawned, obeys reload and stop) and
appends ``start``/``reload``/``stop`` lines with its pid and a digest of its config to
``$MONITOR_E2E_JOURNAL/<name>.log``. Tests read those journals with deadlines.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import IMPERIUM, ROOT, Procs, need_service, pid_alive, wait_until

FAKE_VASSAL = f"""#!{sys.executable}
import hashlib, os, select, sys
sys.path.insert(0, {str(ROOT)!r})
from emperor.protocol import ToVassal, VassalLink

target = sys.argv[-1]
name = target.split("://", 1)[1] if target.startswith("emperor://") else target
journal = os.path.join(os.environ["MONITOR_E2E_JOURNAL"], name.replace("/", "_") + ".log")

def note(what, config=None):
    digest = hashlib.sha1(config).hexdigest()[:12] if config is not None else "-"
    with open(journal, "a") as f:
        f.write(f"{{what}} {{os.getpid()}} {{digest}}\\n")

link = VassalLink.from_environ()
config = link.read_config() if link else None
note("start", config)
if link is None:
    sys.exit(0)
link.spawned()
link.accepting()
while True:
    select.select([link], [], [])
    cmd = link.read_command()
    if cmd == ToVassal.RELOAD:
        config = link.read_config(request=True) if link.config_sock else None
        note("reload", config)
        link.spawned()
        link.accepting()
    elif cmd in (ToVassal.STOP, ToVassal.GRACEFUL_STOP, None):
        note("stop")
        sys.exit(0)
"""


def digest(config: str | bytes) -> str:
    data = config.encode() if isinstance(config, str) else config
    return hashlib.sha1(data).hexdigest()[:12]


@dataclass
class Line:
    what: str
    pid: int
    digest: str


class Emperor:
    """An ``imperium --emperor ARG`` process with fake vassals journaling into tmp_path."""

    def __init__(self, procs: Procs, tmp_path: Path, arg: str, *extra: str, freq: int = 1,
                 command: tuple[str, ...] = (IMPERIUM,)) -> None:
        """``command`` is the emperor binary (ours by default; real uWSGI for comparisons)."""
        self.journal = tmp_path / "journal"
        self.journal.mkdir(parents=True, exist_ok=True)
        self.wrapper = tmp_path / "fake_vassal.py"
        self.wrapper.write_text(FAKE_VASSAL)
        self.wrapper.chmod(0o755)
        self.procs = procs
        self.proc = procs.start([*command, "--emperor", arg, "--emperor-wrapper", str(self.wrapper),
                                 "--emperor-freq", str(freq), *extra],
                                env={"MONITOR_E2E_JOURNAL": str(self.journal)}, cwd=tmp_path)

    def log(self) -> str:
        return self.procs.output(self.proc)

    def lines(self, name: str) -> list[Line]:
        path = self.journal / (name.replace("/", "_") + ".log")
        if not path.exists():
            return []
        out = []
        for raw in path.read_text().splitlines():
            what, pid, dig = raw.split()
            out.append(Line(what, int(pid), dig))
        return out

    def wait_line(self, name: str, what: str, config: str | bytes | None = None,
                  after: int = 0, timeout: float = 30) -> Line:
        """The first ``what`` line of ``name``'s journal at index >= ``after`` (with that config)."""
        want = digest(config) if config is not None else None

        def found() -> Line | None:
            self.check_alive()
            for line in self.lines(name)[after:]:
                if line.what == what and (want is None or line.digest == want):
                    return line
            return None

        return wait_until(found, timeout=timeout,  # type: ignore[return-value]
                          message=f"{what} of vassal {name} (journal {self.lines(name)}); "
                                  f"emperor log: {self.log()[-2000:]}")

    def running(self, name: str) -> int | None:
        """The pid of the vassal if its last journal line is start/reload and it lives."""
        lines = self.lines(name)
        if lines and lines[-1].what in ("start", "reload") and pid_alive(lines[-1].pid):
            return lines[-1].pid
        return None

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the emperor exited with {self.proc.returncode}: {self.log()[-3000:]}")


@functools.cache
def emperor_available() -> tuple[bool, str]:
    """Does ``imperium --emperor`` exist yet (the core may be missing in a partial tree)?"""
    try:
        import emperor.core  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "emperor.core":
            raise  # the core is there but broken: that must fail, not skip
        return False, "emperor.core does not exist yet"
    if not os.path.exists(IMPERIUM):
        return False, f"{IMPERIUM} is missing"
    return True, ""


def need_emperor() -> None:
    """Skip a test of the emperor process while ``imperium --emperor`` does not exist yet."""
    ok, why = emperor_available()
    need_service("imperium emperor", ok, why)
