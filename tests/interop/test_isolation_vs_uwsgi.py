"""Isolation, twin tests: the same scenario under real uWSGI (emperor and vassals from
``uwsgi-core --plugin python3``) and under Imperium, compared on what a vassal sees.

Where the two differ on purpose (Imperium remounts /proc in a pid namespace, binds its
sockets before ``unshare``, keeps ``emperor-cap`` capabilities across the exec), the
scenario sticks to what both do; docs/emperor.md lists the differences.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, UWSGI_CORE, Procs, free_port, need_root, port_open, wait_until
from tests.integration import isolation_harness
from tests.integration.isolation_harness import Tenant, get_json, owned_file, probe_copy, status_ids
from tests.interop.helpers import need_uwsgi

tenant = isolation_harness.tenant
open_dir = isolation_harness.open_dir

KINDS = ["uwsgi", "imperium"]


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_root("namespaces and other users need root")
    need_uwsgi()


def start_emperor(kind: str, procs: Procs, where: Path, vassals: Path, *extra: str):  # type: ignore[no-untyped-def]
    """A real uWSGI emperor with uwsgi-core vassals, or ours with our own vassals."""
    if kind == "uwsgi":
        wrapper = where / "uwsgi-python3"
        wrapper.write_text(f'#!/bin/sh\nexec {UWSGI_CORE} --plugin python3 "$@"\n')
        wrapper.chmod(0o755)
        argv = [UWSGI_CORE, "--emperor", str(vassals), "--binary-path", str(wrapper)]
    else:
        argv = [IMPERIUM, "--emperor", str(vassals)]
    argv += ["--emperor-freq", "1", "--emperor-throttle", "100", *extra]
    p = procs.start(argv, cwd=where)
    wait_until(lambda: "Emperor" in procs.output(p) or p.poll() is not None, 15,
               message=f"the {kind} emperor to start")
    assert p.poll() is None, procs.output(p)
    return p


def probe_ini(port: int, app: Path, *extra: str) -> str:
    return "\n".join(["[uwsgi]", f"http-socket = 127.0.0.1:{port}", f"wsgi-file = {app}",
                      "master = true", "processes = 2", *extra]) + "\n"


@pytest.mark.parametrize("kind", KINDS)
def test_use_clone_pid_uts(procs: Procs, open_dir: Path, kind: str) -> None:
    vassals = open_dir / "vassals"
    vassals.mkdir()
    port = free_port()
    before = socket.gethostname()
    p = start_emperor(kind, procs, open_dir, vassals, "--emperor-use-clone", "pid,uts")
    (vassals / "c.ini").write_text(probe_ini(port, probe_copy(open_dir)))
    wait_until(lambda: port_open(port), 30, message=f"{kind}: the cloned vassal; log:\n"
                                                    f"{procs.output(p)[-3000:]}")
    seen = get_json(port, f"sethostname=twin-{kind}")
    assert seen["ppid"] == 1, (kind, seen)  # the vassal's master is pid 1 of its namespace
    assert seen["hostname"] == f"twin-{kind}" and socket.gethostname() == before


@pytest.mark.parametrize("kind", KINDS)
def test_vassal_unshare_uts(procs: Procs, open_dir: Path, kind: str) -> None:
    vassals = open_dir / "vassals"
    vassals.mkdir()
    port = free_port()
    p = start_emperor(kind, procs, open_dir, vassals)
    (vassals / "u.ini").write_text(probe_ini(port, probe_copy(open_dir), "unshare = uts,ipc"))
    wait_until(lambda: port_open(port), 30, message=f"{kind}: the vassal; log:\n"
                                                    f"{procs.output(p)[-3000:]}")
    seen = get_json(port, "sethostname=unshared-twin")
    assert seen["hostname"] == "unshared-twin" and socket.gethostname() != "unshared-twin"
    # CLONE_NEWUTS | CLONE_NEWIPC, logged in uWSGI's words
    assert "[linux-namespace] applied unshare() mask: 201326592" in procs.output(p)


@pytest.mark.parametrize("kind", KINDS)
def test_tyrant_owner_and_root_refusal(procs: Procs, open_dir: Path, tenant: Tenant,
                                       kind: str) -> None:
    vassals = open_dir / "vassals"
    vassals.mkdir(mode=0o755)
    port = free_port()
    p = start_emperor(kind, procs, open_dir, vassals, "--emperor-tyrant")
    (vassals / "root.ini").write_text(probe_ini(free_port(), probe_copy(open_dir)))
    wait_until(lambda: "[emperor-tyrant] invalid permissions for vassal root.ini" in procs.output(p),
               15, message=f"{kind}: the refusal; log:\n{procs.output(p)[-3000:]}")
    ini = vassals / "t.ini"
    owned_file(ini, probe_ini(port, probe_copy(open_dir)), tenant)
    wait_until(lambda: port_open(port), 30, message=f"{kind}: the tyrant vassal; log:\n"
                                                    f"{procs.output(p)[-3000:]}")
    seen = get_json(port)
    assert (seen["uid"], seen["gid"]) == (tenant.uid, tenant.gid)
    assert status_ids(seen["ppid"]) == (tenant.uid, tenant.gid)  # the master, on the host
    assert f"[emperor-tyrant] dropping privileges to {tenant.uid} {tenant.gid} for instance t.ini" \
        in procs.output(p)
    assert os.path.exists(ini)
