"""Shared pieces of the isolation tests: a tenant user, a world-readable work dir, the probe.

Tenants are real users made with ``useradd`` (and removed, with their group, at teardown);
their files live in a directory under /tmp that every user can traverse (pytest's own
tmp tree is root's alone). Cgroups a test makes are removed by the ``cgroup_name`` fixture.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, Procs, need_root, service_lock, wait_until

PROBE = ROOT / "tests" / "fixtures" / "apps" / "jail_probe.py"


@dataclass
class Tenant:
    name: str
    uid: int
    gid: int
    extra_gid: int
    extra_group: str


def _run(*argv: str, check: bool = True) -> bool:
    """One shadow-utils command, under a lock shared by the test processes (two at once
    fail on /etc/passwd's lock), tried again while the file is locked by someone else."""
    with service_lock("etc-passwd", exclusive=True):
        for _ in range(50):
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode != 10:  # 10: cannot lock the password file
                break
            time.sleep(0.1)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv, stderr=done.stderr)
    return done.returncode == 0


def _no_process_of(uid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    return False
            except OSError:
                continue
    return True


@pytest.fixture
def tenant(procs: Procs) -> Iterator[Tenant]:
    """A fresh user (own group, one supplementary group), deleted after the test (after the
    test's processes: an emperor still running would respawn the user's vassals)."""
    need_root("creating users needs root")
    tag = uuid.uuid4().hex[:8]
    name, extra = f"impt{tag}", f"impx{tag}"
    _run("groupadd", extra)
    try:
        _run("useradd", "-M", "-U", "-s", "/usr/sbin/nologin", "-G", extra, name)
    except subprocess.CalledProcessError:
        _run("groupdel", extra, check=False)
        raise
    pw = pwd.getpwnam(name)
    try:
        import grp

        yield Tenant(name, pw.pw_uid, pw.pw_gid, grp.getgrnam(extra).gr_gid, extra)
    finally:
        procs.kill_all()
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        wait_until(lambda: _no_process_of(pw.pw_uid), 10, message=f"no process of {name} left")
        _run("userdel", name)  # its own group goes with it
        _run("groupdel", extra)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can traverse and read (for tenants' configs and apps)."""
    path = Path(tempfile.mkdtemp(prefix="imperium-iso-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cgroup_name() -> Iterator[str]:
    """A relative cgroup name for a vassal; every cgroup of that name under ours goes after."""
    from emperor.isolation import cgroups

    name = f"imperium-test-{uuid.uuid4().hex[:8]}"
    yield name
    own = cgroups.own_paths()
    dirs = []
    for h in cgroups.hierarchies():
        base = own.get("" if h.version == 2 else next(iter(h.controllers)), "/")
        dirs.append(Path(h.mountpoint) / base.lstrip("/") / name)
    for d in dirs:
        if d.exists():
            wait_until(lambda d=d: cgroups.Cgroup(str(d), 1).remove(), 10,
                       message=f"cgroup {d} empty and removed")


def probe_copy(where: Path) -> Path:
    """The probe app, readable by everyone, in ``where``."""
    target = where / "jail_probe.py"
    shutil.copy(PROBE, target)
    target.chmod(0o644)
    return target


def get_json(port: int, query: str = "", timeout: float = 5.0) -> dict:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/?" + query if query else "/")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, body
    return json.loads(body)


def status_ids(pid: int) -> tuple[int, int]:
    """(real uid, real gid) of a process as the host sees it."""
    uid = gid = -1
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("Gid:"):
                gid = int(line.split()[1])
    return uid, gid


def own(path: Path, t: Tenant, mode: int | None = None) -> Path:
    os.chown(path, t.uid, t.gid, follow_symlinks=False)
    if mode is not None:
        path.chmod(mode)
    return path


def owned_file(path: Path, text: str, t: Tenant, mode: int | None = None) -> Path:
    """Write ``path`` already owned by the tenant: made next to its directory, then renamed in,
    so that an emperor scanning meanwhile never sees it root-owned (a tyrant refusal first)."""
    staging = path.parent.parent / f".{path.name}.staging"
    staging.write_text(text)
    own(staging, t, mode)
    staging.rename(path)
    return path
