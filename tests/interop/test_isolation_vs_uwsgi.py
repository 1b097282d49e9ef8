"""Isolation, twin tests: the same scenario under real uWSGI (emperor and vassals from
``uwsgi-core --plugin python3``) and under Imperium, compared on what a vassal sees.

Where the two differ on purpose (Imperium remounts /proc in a pid namespace, binds its
sockets before ``unshare``, keeps ``emperor-cap`` capabilities across the exec), the
scenario sticks to what both do; docs/emperor.md lists the differences.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, UWSGI_CORE, Procs, free_port, need_root, port_open, wait_until
from tests.integration import isolation_harness
from tests.integration.isolation_harness import (
    Tenant,
    get_json,
    own,
    owned_file,
    probe_copy,
    status_ids,
)
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


def _limits(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/PID/limits: name -> (soft, hard)."""
    out = {}
    with open(f"/proc/{pid}/limits") as f:
        for line in f.read().splitlines()[1:]:
            name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
            out[name] = (soft, hard)
    return out


def test_rlimits_as_proc_shows_them(procs: Procs, tmp_path: Path) -> None:
    """limit-as, max-fd and limit-nproc of a root instance: the same limits under both."""
    seen = {}
    for kind in KINDS:
        where = tmp_path / kind
        where.mkdir()
        port = free_port()
        ini = where / "l.ini"
        ini.write_text(probe_ini(port, probe_copy(where), "limit-as = 1024", "max-fd = 2048",
                                 "limit-nproc = 4000"))
        argv = [UWSGI_CORE, "--plugin", "python3"] if kind == "uwsgi" else [IMPERIUM]
        p = procs.start([*argv, "--ini", str(ini)], cwd=where)
        wait_until(lambda p=p, port=port: port_open(port) or p.poll() is not None, 30,
                   message=f"{kind}: the instance serving")
        assert p.poll() is None, procs.output(p)
        limits = _limits(p.pid)
        seen[kind] = {k: limits[k] for k in ("Max address space", "Max open files", "Max processes")}
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
    assert seen["uwsgi"] == seen["imperium"] == {
        "Max address space": (str(1024 * 1024 * 1024),) * 2,
        "Max open files": ("2048", "2048"), "Max processes": ("4000", "4000")}, seen


#: an app that needs nothing but builtins after a chroot (real uWSGI starts Python, and
#: imports the app and whatever it imports, inside the jail; binary mode: no codec lookup)
CHROOT_APP = '''\
import os

os.chdir("/")  # uWSGI leaves the cwd outside the jail, and "." on sys.path: imports fail


def application(env, start):
    path = env["QUERY_STRING"]
    try:
        with open(path, "wb") as f:
            f.write(b"written from the jail\\n")
        answer = b"ok"
    except OSError as exc:
        answer = ("error %d" % exc.errno).encode()
    start("200 OK", [("Content-Type", "text/plain")])
    return [answer]
'''


@pytest.mark.parametrize("kind", KINDS)
def test_chroot_keeps_writes_inside_the_jail(procs: Procs, open_dir: Path, tenant: Tenant,
                                             kind: str) -> None:
    import urllib.request

    jail = open_dir / "jail"
    (jail / "usr").mkdir(parents=True)
    (jail / "app.py").write_text(CHROOT_APP)
    own(jail, tenant, 0o755)
    port = free_port()
    escape = f"imperium-twin-escape-{port}"
    ini = open_dir / "c.ini"
    ini.write_text("\n".join(["[uwsgi]", f"http-socket = 127.0.0.1:{port}", "wsgi-file = /app.py",
                              f"chroot = {jail}", f"uid = {tenant.uid}", f"gid = {tenant.gid}",
                              "master = true", "processes = 1"]) + "\n")
    argv = [UWSGI_CORE, "--plugin", "python3"] if kind == "uwsgi" else [IMPERIUM]
    # real uWSGI starts Python after the chroot: the jail gets /usr (read-only, in a mount
    # namespace of the test's own, gone with the instance), for both kinds alike
    share_usr = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f'mount --bind -o ro /usr "{jail}/usr" && exec "$0" "$@"']
    p = procs.start([*share_usr, *argv, "--ini", str(ini)], cwd=open_dir)
    wait_until(lambda: port_open(port) or p.poll() is not None, 30,
               message=f"{kind}: the chrooted instance")
    assert p.poll() is None, procs.output(p)
    for target in (f"/{escape}", f"/../../../{escape}", f"/etc/{escape}"):
        url = f"http://127.0.0.1:{port}/?{target}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            answer = resp.read()
        assert not os.path.exists(target) and not os.path.exists(f"/{escape}")
        if target == f"/etc/{escape}":
            assert answer == b"error 2", (kind, answer)  # no /etc in the jail
        else:
            assert answer == b"ok", (kind, answer, procs.output(p)[-2000:])
            assert (jail / escape).read_text() == "written from the jail\n"


@pytest.mark.parametrize("kind", KINDS)
def test_cap_kept_across_the_uid_change(procs: Procs, open_dir: Path, tenant: Tenant,
                                        kind: str) -> None:
    """cap = net_bind_service with uid/gid: the app runs as the tenant holding that
    capability alone, and can bind a port below 1024."""
    port = free_port()
    low = next(p for p in range(900, 1000) if not port_open(p))
    ini = open_dir / "cap.ini"
    ini.write_text(probe_ini(port, probe_copy(open_dir), "cap = net_bind_service",
                             f"uid = {tenant.uid}", f"gid = {tenant.gid}"))
    argv = [UWSGI_CORE, "--plugin", "python3"] if kind == "uwsgi" else [IMPERIUM]
    p = procs.start([*argv, "--ini", str(ini)], cwd=open_dir)
    wait_until(lambda: port_open(port) or p.poll() is not None, 30, message=f"{kind}: the instance")
    assert p.poll() is None, procs.output(p)
    seen = get_json(port, f"bind={low}")
    assert seen["uid"] == tenant.uid and seen["bind"] == "ok", (kind, seen)
    assert int(seen["cap_eff"], 16) == 1 << 10, (kind, seen)  # CAP_NET_BIND_SERVICE alone
