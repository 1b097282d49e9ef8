"""``never-swap``, ``py-call-uwsgi-fork-hooks`` and ``profiler`` side by side with Debian's real
uWSGI: the same ini (ports aside) must lock the same processes' memory, run the app's fork
hooks in the same workers and log the same profiler lines for the app's code."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests import procstat
from tests.conftest import Procs, free_port, need_root, wait_until
from tests.interop.helpers import backend_argv, children, http_request, need_uwsgi
from tests.interop.helpers import start_twins as _start

KINDS = ("imperium", "uwsgi")

FORK_APP = """import os

forked = []
os.register_at_fork(after_in_child=lambda: forked.append(os.getpid()))


def application(env, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [('hook ran in me' if os.getpid() in forked else 'no hook').encode()]
"""

PROFILED_APP = """def marker(a, b):
    total = a + b
    return total


def application(env, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [str(marker(1, 2)).encode()]
"""


def _locked_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    return 0


def test_never_swap_locks_the_master_and_every_worker(tmp_path: Path, procs: Procs) -> None:
    need_root("mlockall() of a whole python process needs CAP_IPC_LOCK")
    (tmp_path / "app.py").write_text(FORK_APP)
    body = "http-socket = 127.0.0.1:{port}\nwsgi-file = {base}/app.py\nmaster = true\nprocesses = 2\n"
    locked = _start(procs, tmp_path, "locked", body + "never-swap = true\n")
    plain = _start(procs, tmp_path, "plain", body)
    for group, want in ((locked, True), (plain, False)):
        for kind, (port, p, _d) in group.items():
            assert http_request(port).status == 200
            wait_until(lambda p=p: len(children(p.pid)) == 2, 10, message=f"{kind}'s workers")
            for pid in (p.pid, *children(p.pid)):
                assert (_locked_kb(pid) > 0) is want, (kind, pid, want, procstat.table().get(pid))


def test_fork_hooks_run_in_the_workers(tmp_path: Path, procs: Procs) -> None:
    (tmp_path / "app.py").write_text(FORK_APP)
    servers = _start(procs, tmp_path, "hooks", """http-socket = 127.0.0.1:{port}
wsgi-file = {base}/app.py
master = true
processes = 2
enable-threads = true
py-call-uwsgi-fork-hooks = true
""")
    answers = {kind: {http_request(port).body for _ in range(4)} for kind, (port, _p, _d) in servers.items()}
    assert answers["imperium"] == answers["uwsgi"] == {b"hook ran in me"}


def _profile_lines(text: str, app: str) -> list[str]:
    """The profiler's lines about the app's file, without the microseconds between lines."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\[uWSGI Python profiler \d+\] (.*)", line)
        if m and app in m.group(1):
            out.append(m.group(1))
    return out


def test_profiler_logs_the_apps_calls_and_lines(tmp_path: Path, procs: Procs) -> None:
    app = tmp_path / "profiled.py"
    app.write_text(PROFILED_APP)
    for kind_of_profiler, expected in (
            ("pycall", f"CALL: {app} (line 1) -> marker 2 args"),
            ("pyline", f"file {app} line 2: marker argc:2")):
        servers = _start(procs, tmp_path, kind_of_profiler, f"""http-socket = 127.0.0.1:{{port}}
wsgi-file = {app}
master = true
profiler = {kind_of_profiler}
""")
        logs = {}
        for kind, (port, p, _d) in servers.items():
            assert http_request(port).body == b"3"
            wait_until(lambda p=p, e=expected: e in procs.output(p), 10, message=f"{kind}'s profiler lines")
            logs[kind] = _profile_lines(procs.output(p), str(app))
        assert logs["imperium"] == logs["uwsgi"], logs
    # a value uWSGI does not know does nothing there; here too, with a notice
    servers = _start(procs, tmp_path, "other", f"""http-socket = 127.0.0.1:{{port}}
wsgi-file = {app}
master = true
profiler = true
""")
    for kind, (port, p, _d) in servers.items():
        assert http_request(port).body == b"3"
        assert "uWSGI Python profiler" not in procs.output(p), kind
    assert "profiler true: not a profiler" in procs.output(servers["imperium"][1])


def test_never_swap_beyond_the_users_memlock_limit_stops_the_start(tmp_path: Path, procs: Procs) -> None:
    """The master locks its memory as root, then drops to a user whose memlock limit is far
    below it: uWSGI's next shared mapping fails and it exits 1; so do we, in one line."""
    need_root("dropping privileges to nobody")
    need_uwsgi()
    os.chmod(tmp_path, 0o755)
    (tmp_path / "app.py").write_text(FORK_APP)
    ini = tmp_path / "s.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{free_port()}\nwsgi-file = {tmp_path}/app.py\n"
                   "master = true\nnever-swap = true\nuid = nobody\ngid = nogroup\n")
    outputs = {}
    for kind in KINDS:
        p = procs.start(backend_argv(kind, ini), cwd=tmp_path)
        wait_until(lambda p=p: p.poll() is not None, 20, message=f"{kind} exiting")
        assert p.returncode == 1, kind
        outputs[kind] = procs.output(p)
        assert "mmap(): Resource temporarily unavailable" in outputs[kind], outputs[kind]
    assert "Traceback" not in outputs["imperium"], outputs["imperium"]
