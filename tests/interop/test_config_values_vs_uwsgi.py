"""Option values as uWSGI reads them, seen from outside: the same ini run by Debian's uWSGI
and by Imperium, compared through what each one's stats server reports.

uWSGI reads numbers with atoi/strtoul (the leading integer, the rest ignored), keeps keys
that are no option as placeholders, refuses negative numbers and, with ``strict``, keys
that are no option. ``--show-config`` (tests/unit/test_config_vs_uwsgi.py) shows the raw
text; here is what the running server made of it.
"""

from __future__ import annotations

import grp
import json
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Procs, free_port, need_root, port_open, read_to_close, wait_until
from tests.interop.helpers import backend_argv, copy_app, need_uwsgi

KINDS = ("imperium", "uwsgi")


def run(procs: Procs, tmp: Path, kind: str, body: str) -> tuple[dict, int]:
    """The stats document and the listen backlog of the socket of an instance of ``kind``."""
    d = tmp / kind
    copy_app("hello.py", d)
    stats, port = free_port(), free_port()
    (d / "v.ini").write_text(f"[uwsgi]\nsocket = 127.0.0.1:{port}\nwsgi-file = %d/hello.py\n"
                             f"master = true\nstats = 127.0.0.1:{stats}\n{body}")
    p = procs.start(backend_argv(kind, d / "v.ini"), cwd=d)
    wait_until(lambda: p.poll() is not None or port_open(stats), 20, message=f"{kind} stats")
    assert p.poll() is None, procs.output(p)[-3000:]
    return json.loads(read_to_close(stats)), backlog(port)


def backlog(port: int) -> int:
    """The backlog of a listening TCP socket: the Send-Q column of ``ss -lnt``."""
    ss = shutil.which("ss")
    assert ss, "ss (iproute2) is needed to read a socket's backlog"
    out = subprocess.run([ss, "-Hlnt", f"sport = :{port}"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[2])


def test_numbers_with_trailing_text(procs: Procs, tmp_path: Path) -> None:
    need_uwsgi()
    body = ("processes = 2 ; two workers\nthreads = 3 # per worker\nlisten = 17 connections\n"
            "project = demo\nprocname-prefix = %(project)-\n")
    for kind in KINDS:
        doc, queue = run(procs, tmp_path, kind, body)
        assert len(doc["workers"]) == 2, kind
        assert [len(w["cores"]) for w in doc["workers"]] == [3, 3], kind
        assert queue == 17, kind


@pytest.mark.parametrize(("body", "says"), [
    ("harakiri = -5\n", "harakiri"),
    ("strict = true\nprocesess = 4\n", "procesess"),
])
def test_refused_by_both(procs: Procs, tmp_path: Path, body: str, says: str) -> None:
    need_uwsgi()
    for kind in KINDS:
        d = tmp_path / kind
        d.mkdir()
        (d / "bad.ini").write_text(f"[uwsgi]\nsocket = 127.0.0.1:{free_port()}\n{body}")
        p = procs.start(backend_argv(kind, d / "bad.ini"), cwd=d)
        assert p.wait(timeout=20) != 0, (kind, procs.output(p))
        assert says in procs.output(p), (kind, procs.output(p))


def test_chown_socket(procs: Procs, tmp_path: Path) -> None:
    """``chown-socket = nobody:nogroup`` (docs/interop.md tells nginx users to set it)."""
    need_uwsgi()
    need_root("chown to another user needs root")
    for kind in KINDS:
        d = tmp_path / kind
        copy_app("hello.py", d)
        (d / "c.ini").write_text("[uwsgi]\nsocket = %d/app.sock\nchown-socket = nobody:nogroup\n"
                                 "chmod-socket = 660\nwsgi-file = %d/hello.py\nmaster = true\n")
        p = procs.start(backend_argv(kind, d / "c.ini"), cwd=d)
        # both log the bind once the socket is chowned
        wait_until(lambda p=p: p.poll() is not None or "bound to UNIX address" in procs.output(p), 20,
                   message=f"{kind} socket")
        assert p.poll() is None, procs.output(p)[-3000:]
        st = (d / "app.sock").stat()
        assert (st.st_uid, st.st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid), kind
        assert stat.S_IMODE(st.st_mode) == 0o660, kind
