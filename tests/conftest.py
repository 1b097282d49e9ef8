"""Shared test helpers: free ports, polling with deadlines, processes that never leak."""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from tests import procstat

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IMPERIUM = str(VENV_BIN / "imperium")
#: Debian's real uWSGI, called by its full name because our venv's `uwsgi` shadows it
UWSGI_CORE = "/usr/bin/uwsgi-core"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Hypothesis keeps its example database and caches in ./.hypothesis unless told otherwise;
# tests never write into the checkout, so they live in the user's cache directory
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") /
                            "imperium-hypothesis")

#: what may appear in the checkout during a run (interpreter and pytest caches, all ignored)
_CHECKOUT_CACHES = {"__pycache__", ".pytest_cache"}


@pytest.fixture(autouse=True)
def _nothing_written_into_the_checkout() -> Iterator[None]:
    """Fail the test after which a file appeared in the checkout's root or the cwd: a process
    started without a cwd, or a config with a relative path (a pidfile, a stats dump...)."""
    places = {ROOT, Path.cwd()}
    before = {place: set(os.listdir(place)) for place in places}
    yield
    for place in places:
        new = set(os.listdir(place)) - before[place] - _CHECKOUT_CACHES
        if new:
            pytest.fail(f"{sorted(new)} appeared in {place} during this test (or one running at the same "
                        "time on another xdist worker): write into tmp_path", pytrace=False)


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, and not one handed out before in this process: a test
    that asks twice before binding either (a vassal's port, then the emperor's stats port)
    could otherwise get the same number twice from the kernel."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> object:
    """Poll ``predicate`` until it returns a truthy value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing polled may not exist yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}" +
                         (f" (last error: {last_exc!r})" if last_exc else ""))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_to_close(addr: int | str, send: bytes = b"", timeout: float = 5.0) -> bytes:
    """Connect to a port on 127.0.0.1 (or a UNIX socket path), send ``send`` as it is, and
    read until the server closes: how stats servers and one-shot HTTP exchanges end."""
    if isinstance(addr, int):
        s = socket.create_connection(("127.0.0.1", addr), timeout=timeout)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(addr)
    with s:
        if send:
            s.sendall(send)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def read_json(addr: int | str, timeout: float = 5.0) -> dict:
    """The JSON document a stats server sends on connect."""
    return json.loads(read_to_close(addr, timeout=timeout))


# Every skip of the suite goes through the helpers below (tests/unit/test_ci_skips.py checks
# that no test skips any other way): with CI=true a missing service, module, privilege or
# binary is a failure, never a silent skip.

def need_service(name: str, available: bool, why: str = "") -> None:
    """Skip when a real service is missing, except in CI where that is a failure.

    Works in a test, a fixture or at module level (then the whole module is skipped, or
    fails to collect in CI, which fails the run).
    """
    if available:
        return
    msg = f"service {name} is not available{': ' + why if why else ''}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: missing services fail, they do not skip)", pytrace=False)
    pytest.skip(msg, allow_module_level=True)


def need_module(name: str) -> ModuleType:
    """``import name`` (a client library of an extra), or ``need_service`` says it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        need_service(f"python module {name}", False, f"{exc} (pip install -e '.[test]')")
        raise


def need_root(why: str) -> None:
    """Tests that change uid/gid: root is part of the CI machine, so missing it fails there."""
    need_service("root", os.geteuid() == 0, why)


def optional_service(name: str, available: bool, why: str) -> None:
    """The one documented exception: a service CI does not have and is not expected to have
    (a real MongoDB server, given by MONGODB_URL). It skips even with CI=true; its behaviour
    is covered by other tests (mongomock)."""
    if not available:
        pytest.skip(f"optional service {name} not given: {why}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    info = procstat.read(pid)
    return info is not None and not info.exited


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (from /proc), to check that nothing leaks."""
    children: dict[int, list[int]] = {}
    for info in procstat.table().values():
        children.setdefault(info.ppid, []).append(info.pid)
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


class Procs:
    """Starts processes in their own session and kills every one of them at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []
        self._n = 0

    def start(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
              log: Path | None = None, **kw) -> subprocess.Popen:
        self._n += 1
        log = log or self.tmp_path / f"proc{self._n}.log"
        out = open(log, "ab")
        full_env = dict(os.environ)
        full_env.pop("UWSGI_EMPEROR_FD", None)
        if env:
            full_env.update(env)
        # the test's directory unless told otherwise: relative paths (a pidfile, a socket, a
        # store) must never land in the checkout, where pytest runs
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                             cwd=self.tmp_path if cwd is None else cwd,
                             start_new_session=True, **kw)
        out.close()
        p.log_path = log  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    @staticmethod
    def output(p: subprocess.Popen) -> str:
        return Path(p.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def kill_all(self) -> None:
        for p in self.procs:
            kids = descendants(p.pid)
            for pid in [p.pid, *kids]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.kill_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test that started processes shows the end of what each printed: a flake seen
    once in CI then says why (a vassal that exited, a port taken) without a rerun."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    started = getattr(item, "funcargs", {}).get("procs")
    if not isinstance(started, Procs):
        return
    for n, p in enumerate(started.procs, 1):
        try:
            text = Procs.output(p)[-2000:]
        except OSError:
            continue
        report.sections.append((f"process {n} (pid {p.pid}, {' '.join(map(str, p.args))[:120]})", text))


@contextmanager
def service_lock(service: str, exclusive: bool = False) -> Iterator[None]:
    """Hold a lock on a shared service across pytest-xdist workers.

    Tests that use a service hold it shared; a test that stops the service (an outage test)
    holds it exclusive, so it never pulls the server from under another test, whichever
    worker runs it. (A file lock works whichever xdist distribution mode runs the suite.)
    """
    path = Path(tempfile.gettempdir()) / f"imperium-test-{service}.lock"
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def held_service(name: str, port: int, ready: Callable[[], bool], why: str,
                 exclusive: bool = False, timeout: float = 30.0) -> Iterator[None]:
    """A real service on 127.0.0.1:``port``, held through ``service_lock`` while in use.

    The lock comes first: an outage test on the other worker holds it exclusively while the
    service is down, and a check made before it was taken would call that "missing" (under
    CI=true, a failure). Once held, a service that is not there is ``need_service``'s
    business, and one that is coming back (just started again) is waited for.
    """
    with service_lock(name, exclusive):
        need_service(name, port_open(port) or ready(), why)
        wait_until(ready, timeout=timeout, message=f"{why} accepting connections")
        yield
