"""Isolation of vassals, as root, with real namespaces, real users and real cgroups.

The emperor's side (``emperor-use-clone``, ``emperor-cap``, tyrant mode) and the instance's
own (``unshare``, ``chroot``, ``cgroup``), each seen from inside (the probe app) and from
the host (/proc). Every namespace dies with its vassal; users and cgroups are removed by
their fixtures.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Procs, descendants, free_port, need_root, port_open, wait_until
from tests.integration import isolation_harness
from tests.integration.emperor_harness import Emperor
from tests.integration.isolation_harness import (
    Tenant,
    get_json,
    own,
    owned_file,
    probe_copy,
    status_ids,
)

# the fixtures of the harness, visible to pytest in this module
tenant = isolation_harness.tenant
open_dir = isolation_harness.open_dir
cgroup_name = isolation_harness.cgroup_name


def probe_ini(port: int, app: Path, *extra: str, master: bool = True) -> str:
    lines = ["[uwsgi]", f"http-socket = 127.0.0.1:{port}", f"wsgi-file = {app}"]
    if master:
        lines += ["master = true", "processes = 2"]
    return "\n".join([*lines, *extra]) + "\n"


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root("namespaces, cgroups, capabilities and other users need root")


# --- emperor-use-clone --------------------------------------------------------------------------


@pytest.mark.parametrize("spawn", ["fork", "exec"])
def test_pid_namespace_vassal_sees_only_its_own_tree(procs: Procs, tmp_path: Path, spawn: str) -> None:
    port = free_port()
    e = Emperor(procs, tmp_path, "--emperor-use-clone", "pid", "--emperor-spawn", spawn,
                own_binary=True)
    (e.dir / "p.ini").write_text(probe_ini(port, probe_copy(tmp_path)))
    wait_until(lambda: port_open(port), 20, message=f"the vassal serving; log:\n{e.log()[-3000:]}")
    seen = get_json(port)
    # the master is pid 1 of the namespace; /proc (remounted) shows the vassal's tree only
    assert seen["ppid"] == 1, seen
    assert seen["procs"] and set(seen["procs"]) <= {1, 2, 3, 4}, seen
    host_pid = e.wait_vassal("p.ini", ready=1)["pid"]
    assert host_pid != 1 and os.path.exists(f"/proc/{host_pid}")
    with open(f"/proc/{host_pid}/status") as f:
        nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
    assert nspid == [str(host_pid), "1"]
    assert e.stop() == 0


def test_net_namespace_serves_through_emperor_socket_but_cannot_reach_host(
        procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    host_service = socket.socket()
    host_service.bind(("127.0.0.1", 0))
    host_service.listen(5)
    service_port = host_service.getsockname()[1]
    e = Emperor(procs, tmp_path, "--emperor-use-clone", "net,pid",
                "--emperor-on-demand-extension", ".sock", own_binary=True)
    (e.dir / "n.ini.sock").write_text(f"127.0.0.1:{port}\n")
    (e.dir / "n.ini").write_text(probe_ini(port, probe_copy(tmp_path), "protocol = http"))
    e.wait_vassal("n.ini", on_demand=f"127.0.0.1:{port}")
    try:
        seen = get_json(port, f"connect={service_port}", timeout=15)
        # the host's loopback service is out of reach from the vassal's network namespace
        assert seen["connect"].startswith("error"), seen
        with socket.create_connection(("127.0.0.1", service_port), timeout=2):
            pass  # while the host itself reaches it
    finally:
        host_service.close()
    e.wait_vassal("n.ini", loyal=1)
    assert e.stop() == 0


def test_uts_namespace_hostname_is_the_vassals_own(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    before = socket.gethostname()
    e = Emperor(procs, tmp_path, "--emperor-use-clone", "uts", own_binary=True)
    (e.dir / "u.ini").write_text(probe_ini(port, probe_copy(tmp_path)))
    wait_until(lambda: port_open(port), 20, message=f"the vassal serving; log:\n{e.log()[-3000:]}")
    seen = get_json(port, "sethostname=jailed-vassal")
    assert seen["hostname"] == "jailed-vassal", seen
    assert socket.gethostname() == before
    assert e.stop() == 0


def test_thread_spawner_stage_applies_the_same_jail(tmp_path: Path) -> None:
    """Without the fork server, an exec'd stage makes the pid and uts namespaces."""
    import asyncio

    from emperor.isolation.jail import JailSpec
    from emperor.isolation.linux import Clone
    from emperor.spawn import SpawnRequest, ThreadSpawner

    out = tmp_path / "out"
    script = f'echo "$$ $(hostname)" > {out}; hostname staged; echo "$(hostname)" >> {out}'

    async def go() -> int:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future = loop.create_future()
        started: asyncio.Future = loop.create_future()
        spawner = ThreadSpawner(loop, lambda pid, status: exited.set_result(status))
        a, b = socket.socketpair()
        req = SpawnRequest("stage.ini", ["/bin/sh", "-c", script], {"PATH": os.defpath}, None,
                           "exec", jail=JailSpec(clone=int(Clone.NEWPID | Clone.NEWUTS)))
        spawner.spawn(req, [b.fileno()], lambda pid, err: started.set_result((pid, err)))
        pid, err = await asyncio.wait_for(started, 20)
        b.close()
        assert err is None
        status = await asyncio.wait_for(exited, 20)
        a.close()
        spawner.close()
        return status

    status = asyncio.run(go())
    assert os.waitstatus_to_exitcode(status) == 0
    first, second = out.read_text().splitlines()
    assert first.split()[0] == "1"  # pid 1 of its namespace
    assert second == "staged" and socket.gethostname() != "staged"


# --- tyrant mode --------------------------------------------------------------------------------


def tyrant_emperor(procs: Procs, tmp_path: Path, open_dir: Path, *extra: str) -> Emperor:
    vassals = open_dir / "vassals"
    vassals.mkdir(mode=0o777, exist_ok=True)
    vassals.chmod(0o777)
    return Emperor(procs, tmp_path, "--emperor-tyrant", *extra, dirs=[vassals], own_binary=True)


def test_tyrant_vassal_runs_as_its_files_owner(procs: Procs, tmp_path: Path, open_dir: Path,
                                               tenant: Tenant) -> None:
    port = free_port()
    e = tyrant_emperor(procs, tmp_path, open_dir, "--emperor-tyrant-initgroups")
    ini = open_dir / "vassals" / "t.ini"
    # only the owner reads it: the vassal never opens it as root
    owned_file(ini, probe_ini(port, probe_copy(open_dir)), tenant, 0o600)
    wait_until(lambda: port_open(port), 60, message=f"the tyrant vassal; log:\n{e.log()[-3000:]}")
    seen = get_json(port)
    assert (seen["uid"], seen["gid"]) == (tenant.uid, tenant.gid)
    assert tenant.extra_gid in seen["groups"]  # emperor-tyrant-initgroups
    pid = e.wait_vassal("t.ini", uid=tenant.uid, gid=tenant.gid)["pid"]
    assert status_ids(pid) == (tenant.uid, tenant.gid)
    assert e.stop() == 0


def test_tyrant_with_user_namespace_maps_root_to_the_owner(procs: Procs, tmp_path: Path,
                                                           open_dir: Path, tenant: Tenant) -> None:
    port = free_port()
    e = tyrant_emperor(procs, tmp_path, open_dir, "--emperor-use-clone", "user,pid,uts")
    ini = open_dir / "vassals" / "u.ini"
    # uid = 0 in the config: root of its own user namespace, still the owner on the host
    owned_file(ini, probe_ini(port, probe_copy(open_dir), "uid = 0", "gid = 0"), tenant)
    wait_until(lambda: port_open(port), 60, message=f"the vassal; log:\n{e.log()[-3000:]}")
    seen = get_json(port, "sethostname=ns-root")
    assert (seen["uid"], seen["gid"]) == (0, 0) and seen["hostname"] == "ns-root"
    pid = e.wait_vassal("u.ini", ready=1)["pid"]
    assert status_ids(pid) == (tenant.uid, tenant.gid)
    assert e.stop() == 0


def test_tyrant_refuses_symlinks_to_others_configs(procs: Procs, tmp_path: Path, open_dir: Path,
                                                   tenant: Tenant) -> None:
    e = tyrant_emperor(procs, tmp_path, open_dir)
    vassals = open_dir / "vassals"
    root_cfg = open_dir / "root.ini"
    root_cfg.write_text("[uwsgi]\nhttp-socket = 127.0.0.1:1\n")
    (vassals / "evil.ini").symlink_to(root_cfg)
    e.wait_log("[emperor-tyrant] invalid permissions for vassal evil.ini: invalid permissions: "
               "owner 0:0")
    # a tenant's link to a file of another user (nobody): it would run that file as nobody
    victim = open_dir / "victim.ini"
    victim.write_text("[uwsgi]\nhttp-socket = 127.0.0.1:1\n")
    os.chown(victim, 65534, 65534)
    link = vassals / "borrowed.ini"
    link.symlink_to(victim)
    own(link, tenant)
    e.wait_log(f"[emperor-tyrant] invalid permissions for vassal borrowed.ini: symlink "
               f"borrowed.ini belongs to uid {tenant.uid}")
    assert e.vassal("evil.ini") is None and e.vassal("borrowed.ini") is None
    assert e.stop() == 0


@pytest.mark.parametrize("line, why", [
    ("uid = 0", "cannot set uid to 0: permission denied"),
    ("chroot = /", "chroot (t.ini:6) = /: needs root (this instance runs as uid"),
    ("cgroup = mine", "cgroup (t.ini:6) = mine: needs root"),
    # files the owner could not open or make are not opened or made for it
    ("logto = /etc/imperium-tyrant.log",
     "cannot open logto file /etc/imperium-tyrant.log: Permission denied"),
    ("pidfile = /etc/imperium-tyrant.pid",
     "cannot write pidfile /etc/imperium-tyrant.pid: Permission denied"),
    ("socket = /etc/imperium-tyrant.sock",
     "cannot bind socket /etc/imperium-tyrant.sock: permission denied"),
    ("ini = /etc/shadow", "cannot open config file /etc/shadow: Permission denied (from t.ini:6)"),
])
def test_tyrant_config_cannot_raise_its_privileges(procs: Procs, tmp_path: Path, open_dir: Path,
                                                   tenant: Tenant, line: str, why: str) -> None:
    port = free_port()
    e = tyrant_emperor(procs, tmp_path, open_dir)
    ini = open_dir / "vassals" / "t.ini"
    owned_file(ini, probe_ini(port, probe_copy(open_dir), line), tenant)
    e.wait_log(why)
    e.wait_log("[emperor] vassal t.ini is blacklisted", 60)
    # it exits before serving, every time, and never as root
    assert "setuid() to 0" not in e.log() and "spawned uWSGI master" not in e.log()
    assert e.stop() == 0
    assert not [p for p in os.listdir("/etc") if p.startswith("imperium-tyrant")]


def test_tyrant_vassal_runs_no_as_root_hook_and_the_others_as_its_owner(
        procs: Procs, tmp_path: Path, open_dir: Path, tenant: Tenant) -> None:
    """The as-root phases run only in an instance started as root (uWSGI's rule): a tyrant
    vassal's exec-as-root and hook-as-root are not run (nor as-user, also a root-only
    phase in uWSGI); exec-asap runs, as the owner."""
    port = free_port()
    marks = open_dir / "marks"
    marks.mkdir(mode=0o777)
    marks.chmod(0o777)
    e = tyrant_emperor(procs, tmp_path, open_dir)
    ini = open_dir / "vassals" / "h.ini"
    ini.write_text(probe_ini(port, probe_copy(open_dir), f"exec-as-root = id -u > {marks}/root",
                             f"hook-as-root = exec:id -u > {marks}/hook",
                             f"exec-as-user = id -u > {marks}/asuser",
                             f"exec-asap = id -u > {marks}/user"))
    own(ini, tenant)
    wait_until(lambda: port_open(port), 20, message=f"the vassal; log:\n{e.log()[-3000:]}")
    assert (marks / "user").read_text().strip() == str(tenant.uid)
    assert not [p.name for p in marks.iterdir() if p.name != "user"]
    assert e.stop() == 0


def test_tyrant_config_swapped_after_the_check_changes_nothing(procs: Procs, tmp_path: Path,
                                                               open_dir: Path, tenant: Tenant) -> None:
    """The start hook (run as the tenant, between the emperor's check and the instance's
    start) swaps the config for a link to root's config on another port: the vassal runs
    what was checked, and the swapped-in file never runs."""
    port, other = free_port(), free_port()
    hook = open_dir / "swap.sh"
    root_cfg = open_dir / "root.ini"
    root_cfg.write_text(probe_ini(other, probe_copy(open_dir)))
    hook.write_text(f'#!/bin/sh\nln -s {root_cfg} "$1.new" && mv -f "$1.new" "$1"\n')
    hook.chmod(0o755)
    e = tyrant_emperor(procs, tmp_path, open_dir, "--vassals-start-hook", str(hook))
    ini = open_dir / "vassals" / "s.ini"
    owned_file(ini, probe_ini(port, probe_copy(open_dir)), tenant)
    e.wait_log(f"bound to TCP address 127.0.0.1:{port}", 60)
    assert (open_dir / "vassals" / "s.ini").is_symlink()  # the hook did swap it
    # the emperor then sees a root-owned config under that name: it stops the vassal
    e.wait_log("[emperor-tyrant] !!! permissions of vassal s.ini changed. stopping the instance... !!!")
    assert f"127.0.0.1:{other}" not in e.log() and not port_open(other)
    assert e.stop() == 0


def test_tyrant_vassal_keeps_only_the_listed_capabilities(procs: Procs, tmp_path: Path,
                                                          open_dir: Path, tenant: Tenant) -> None:
    port = free_port()
    low = next(p for p in range(900, 1000) if not port_open(p))
    e = tyrant_emperor(procs, tmp_path, open_dir, "--vassals-cap", "net_bind_service")
    ini = open_dir / "vassals" / "c.ini"
    owned_file(ini, probe_ini(port, probe_copy(open_dir)), tenant)
    wait_until(lambda: port_open(port), 60, message=f"the vassal; log:\n{e.log()[-3000:]}")
    seen = get_json(port, f"bind={low}")
    assert seen["bind"] == "ok", seen  # a port below 1024, as an unprivileged user
    assert int(seen["cap_eff"], 16) == 1 << 10  # CAP_NET_BIND_SERVICE alone
    assert seen["uid"] == tenant.uid
    assert e.stop() == 0


# --- the instance's own jail ----------------------------------------------------------------------


def test_vassal_cannot_write_outside_its_chroot(procs: Procs, tmp_path: Path, open_dir: Path,
                                                tenant: Tenant) -> None:
    port = free_port()
    jail = open_dir / "jail"
    jail.mkdir()
    probe_copy(jail)
    own(jail, tenant, 0o755)
    escape = Path("/") / f"imperium-escape-{port}.txt"
    e = Emperor(procs, tmp_path, own_binary=True)
    (e.dir / "j.ini").write_text(probe_ini(port, Path("/jail_probe.py"), f"chroot = {jail}",
                                           f"uid = {tenant.uid}", f"gid = {tenant.gid}"))
    wait_until(lambda: port_open(port), 20, message=f"the vassal; log:\n{e.log()[-3000:]}")
    try:
        seen = get_json(port, f"write={escape}")
    except OSError as exc:
        raise AssertionError(f"{exc}; log:\n{e.log()[-3000:]}") from None
    assert seen["write"] == "ok"
    assert not escape.exists()
    assert (jail / escape.name).read_text() == "written from the jail\n"
    seen = get_json(port, "write=/../../../../../etc/imperium-escape")
    assert not Path("/etc/imperium-escape").exists()
    assert (seen["uid"], seen["procs"]) == (tenant.uid, None)  # no /proc in the jail
    assert e.stop() == 0


def test_vassal_unshare_keeps_its_host_sockets(procs: Procs, tmp_path: Path) -> None:
    """unshare = net,uts after the sockets are bound: served on the host's socket, cut off
    from the host's loopback for anything it starts itself."""
    port = free_port()
    service = socket.socket()
    service.bind(("127.0.0.1", 0))
    service.listen(1)
    e = Emperor(procs, tmp_path, own_binary=True)
    (e.dir / "s.ini").write_text(probe_ini(port, probe_copy(tmp_path), "unshare = net,uts"))
    try:
        wait_until(lambda: port_open(port), 20, message=f"the vassal; log:\n{e.log()[-3000:]}")
        seen = get_json(port, f"connect={service.getsockname()[1]}&sethostname=unshared")
        assert seen["connect"].startswith("error") and seen["hostname"] == "unshared", seen
    finally:
        service.close()
    assert socket.gethostname() != "unshared"
    assert e.stop() == 0


def test_namespace_option_jails_the_instance_under_its_rootfs(procs: Procs, tmp_path: Path) -> None:
    """namespace = ROOTFS:HOSTNAME: pivot_root, own /proc and hostname; the kept mounts are
    all that is left of the host, and nothing of it shows on the host."""
    port = free_port()
    rootfs = tmp_path / "rootfs"
    # what the instance needs from the host: the interpreter, our code, /usr, /dev, /etc
    keep = ["/usr", "/dev", "/etc", "/" + ROOT.parts[1], sys.base_prefix]
    for d in ["proc", "tmp", *keep]:
        (rootfs / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for name in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{name}"):
            (rootfs / name).symlink_to(os.readlink(f"/{name}"))
    probe_copy(rootfs)
    e = Emperor(procs, tmp_path, own_binary=True)
    (e.dir / "ns.ini").write_text(probe_ini(port, Path("/jail_probe.py"),
                                            f"namespace = {rootfs}:jailhost",
                                            *[f"namespace-keep-mount = {k}:{k}" for k in keep],
                                            f"exec-post-jail = echo $UWSGI_JAIL_PID > {tmp_path}/jailpid"))
    wait_until(lambda: port_open(port), 20, message=f"the jailed vassal; log:\n{e.log()[-3000:]}")
    seen = get_json(port)
    assert seen["hostname"] == "jailhost" and seen["ppid"] == 1, seen
    assert set(seen["procs"]) <= {1, 2, 3, 4}, seen
    assert "jail_probe.py" in seen["root"] and "var" not in seen["root"], seen
    with open("/proc/self/mounts") as f:
        assert str(rootfs) not in f.read()  # the jail's mounts live in its own namespace
    # the keeper, outside, ran the post-jail phase with the jailed master's (host) pid
    master = int((tmp_path / "jailpid").read_text())
    with open(f"/proc/{master}/status") as f:
        assert next(line for line in f if line.startswith("NSpid:")).split()[1:] == [str(master), "1"]
    e.wait_vassal("ns.ini", ready=1)
    assert e.stop() == 0
    assert not (rootfs / ".uwsgi_ns_tmp_mountpoint").exists()


def test_jail_hook_phases_run_around_the_jail(procs: Procs, tmp_path: Path) -> None:
    """pre-jail and in-jail before the namespace, post-jail inside it, as-root after it."""
    port = free_port()
    host = socket.gethostname()
    marks = {p: tmp_path / p for p in ("pre", "in", "post", "asroot")}
    e = Emperor(procs, tmp_path, own_binary=True)
    (e.dir / "h.ini").write_text(probe_ini(
        port, probe_copy(tmp_path), "unshare = uts",
        f"exec-pre-jail = hostname > {marks['pre']}",
        f"exec-in-jail = hostname > {marks['in']}",
        f"exec-post-jail = hostname hooked-jail && hostname > {marks['post']}",
        f"exec-as-root = hostname > {marks['asroot']}"))
    wait_until(lambda: port_open(port), 20, message=f"the vassal; log:\n{e.log()[-3000:]}")
    assert get_json(port)["hostname"] == "hooked-jail"
    assert {k: p.read_text().strip() for k, p in marks.items()} == {
        "pre": host, "in": host, "post": "hooked-jail", "asroot": "hooked-jail"}
    assert socket.gethostname() == host
    assert e.stop() == 0


def test_cgroup_memory_limit_kills_a_greedy_vassal_and_the_emperor_respawns_it(
        procs: Procs, tmp_path: Path, cgroup_name: str) -> None:
    port = free_port()
    calm = tmp_path / "calm"
    e = Emperor(procs, tmp_path, own_binary=True, env={"PROBE_GREEDY": str(calm)})
    (e.dir / "g.ini").write_text(probe_ini(port, probe_copy(tmp_path), f"cgroup = {cgroup_name}",
                                           "cgroup-opt = memory.limit_in_bytes=64M",
                                           "cgroup-opt = pids.max=50"))
    e.wait_log("[emperor] vassal g.ini", 20)
    # killed by the kernel, respawned by the emperor, killed again (it never got to serve)
    wait_until(lambda: e.log().count("killed by signal 9 (SIGKILL)") >= 2, 30,
               message=f"the OOM killer at work; log:\n{e.log()[-3000:]}")
    assert "is now loyal" not in e.log()
    calm.write_text("enough\n")  # the next incarnation allocates nothing
    wait_until(lambda: port_open(port), 30, message=f"the respawned vassal; log:\n{e.log()[-3000:]}")
    pid = e.wait_vassal("g.ini", ready=1)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        assert any(line.rstrip().endswith("/" + cgroup_name) for line in f)
    assert e.stop() == 0


def test_emperor_cgroup_limits_a_tyrant_vassal_and_goes_with_it(
        procs: Procs, tmp_path: Path, open_dir: Path, tenant: Tenant) -> None:
    """vassals-cgroup-opt: the admin's limits, which the tenant's config cannot lift."""
    from emperor.isolation import cgroups

    port = free_port()
    calm = open_dir / "calm"
    e = tyrant_emperor(procs, tmp_path, open_dir, "--vassals-cgroup-opt", "memory.max=64M",
                       "--vassals-cgroup-opt", "pids.max=40")
    ini = open_dir / "vassals" / "g.ini"
    owned_file(ini, probe_ini(port, probe_copy(open_dir), f"env = PROBE_GREEDY={calm}"), tenant)
    wait_until(lambda: "killed by signal 9 (SIGKILL)" in e.log(), 30,
               message=f"the OOM killer at work; log:\n{e.log()[-3000:]}")
    calm.write_text("enough\n")
    wait_until(lambda: port_open(port), 30, message=f"the respawned vassal; log:\n{e.log()[-3000:]}")
    pid = e.wait_vassal("g.ini", ready=1)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        paths = [line.rstrip().split(":", 2)[2] for line in f if "imperium-" in line]
    assert paths and all(p.endswith(f"/imperium-{e.proc.pid}-g.ini") for p in paths), paths
    made = [g.path for g in cgroups.resolve(f"imperium-{e.proc.pid}-g.ini",
                                            [("memory.max", "1"), ("pids.max", "1")])]
    assert all(os.path.isdir(d) for d in made)
    assert e.stop() == 0
    assert not any(os.path.exists(d) for d in made)  # removed with the vassal


# --- bad input --------------------------------------------------------------------------------------


def test_unknown_namespace_in_a_vassal_is_its_own_error(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    e = Emperor(procs, tmp_path, own_binary=True)
    (e.dir / "bad.ini").write_text(probe_ini(port, probe_copy(tmp_path), "unshare = net,bogus"))
    (e.dir / "good.ini").write_text(probe_ini(free_port(), probe_copy(tmp_path)))
    e.wait_log("unshare (bad.ini:6) = net,bogus: unknown namespace subsystem: bogus")
    e.wait_vassal("good.ini", ready=1)
    assert e.stop() == 0


@pytest.mark.parametrize("clone, why", [
    ("net", "[emperor] cannot jail vassal a.ini: unshare(net): Operation not permitted"),
    ("pid", "[emperor] unable to spawn vassal a.ini: cannot jail vassal a.ini: unshare(pid): "
            "Operation not permitted"),
])
def test_namespace_the_kernel_refuses_is_logged_and_the_emperor_carries_on(
        procs: Procs, tmp_path: Path, clone: str, why: str) -> None:
    """An emperor without CAP_SYS_ADMIN (cut from its bounding set by setpriv)."""
    from emperor.spawn import SETPRIV

    assert SETPRIV, "util-linux setpriv is needed"
    e = Emperor(procs, tmp_path, "--emperor-use-clone", clone, own_binary=True,
                wrap=[SETPRIV, "--bounding-set", "-sys_admin", "--"])
    (e.dir / "a.ini").write_text(probe_ini(free_port(), probe_copy(tmp_path)))
    e.wait_log(why, 15)
    mark = e.mark()
    e.wait_log(why, 15, after=mark)  # tried again (throttled), and refused again
    assert e.proc.poll() is None and e.stats()["vassals"] is not None
    assert e.stop() == 0


def test_tyrant_on_demand_socket_file_gets_only_the_owners_rights(
        procs: Procs, tmp_path: Path, open_dir: Path, tenant: Tenant) -> None:
    """The socket file of emperor-on-demand-extension is the tenant's: read with its say
    only, bound with its rights. uWSGI reads and binds it as root: a link to a root-only
    file shows its first line in the log, a port below 1024 or a socket in /etc is had."""
    low = next(p for p in range(900, 1000) if not port_open(p))
    port = free_port()
    planted = Path("/etc") / f"imperium-planted-{port}.sock"
    e = tyrant_emperor(procs, tmp_path, open_dir, "--emperor-on-demand-extension", ".sock")
    vassals, app = open_dir / "vassals", probe_copy(open_dir)
    secret = open_dir / "secret"
    secret.write_text("ROOTSECRET:1\n")
    secret.chmod(0o600)
    (vassals / "s.ini.sock").symlink_to(secret)
    own(vassals / "s.ini.sock", tenant)
    for name, sock in (("p", f"127.0.0.1:{low}"), ("u", str(planted)), ("ok", f"127.0.0.1:{port}")):
        (vassals / f"{name}.ini.sock").write_text(sock + "\n")
        own(vassals / f"{name}.ini.sock", tenant)
    for name in ("s", "p", "u", "ok"):
        ini = vassals / f"{name}.ini"
        ini.write_text(probe_ini(port if name == "ok" else free_port(), app, "protocol = http"))
        own(ini, tenant)
    try:
        e.wait_log("[emperor-tyrant] on-demand socket file of vassal s.ini ignored: "
                   f"{vassals}/s.ini.sock is a file uid {tenant.uid} cannot read")
        e.wait_log(f"[emperor] cannot bind the on-demand socket 127.0.0.1:{low} of vassal p.ini: "
                   "Permission denied")
        e.wait_log(f"[emperor] cannot bind the on-demand socket {planted} of vassal u.ini: "
                   "Permission denied")
        e.wait_vassal("ok.ini", on_demand=f"127.0.0.1:{port}")
        seen = get_json(port, timeout=15)  # the owner's own socket serves, as the owner
        assert seen["uid"] == tenant.uid
        assert "ROOTSECRET" not in e.log() and not port_open(low) and not planted.exists()
    finally:
        planted.unlink(missing_ok=True)
    assert e.stop() == 0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmRSS:")))


def test_config_requests_of_a_hostile_vassal_cost_the_emperor_one_copy(
        procs: Procs, tmp_path: Path, open_dir: Path, tenant: Tenant) -> None:
    """A tyrant vassal writing config requests (byte 2) without ever reading the answers:
    the emperor queues at most one more copy of its config (it used to queue one per byte,
    each read and checked again: 8192 requests of a 16 KiB config, 128 MiB of memory)."""
    port = free_port()
    e = tyrant_emperor(procs, tmp_path, open_dir)
    ini = open_dir / "vassals" / "f.ini"
    padding = "\n".join(f"# {'x' * 60}" for _ in range(16 * 1024 // 63))
    ini.write_text(probe_ini(port, probe_copy(open_dir), "master = false", padding,
                             master=False))
    own(ini, tenant)
    wait_until(lambda: port_open(port), 20, message=f"the vassal; log:\n{e.log()[-3000:]}")
    before = _rss_kib(e.proc.pid)
    seen = get_json(port, f"flood={e.proc.pid}:8", timeout=30)
    assert seen["flood"] >= 1, seen  # it found its emperor fd
    e.stats()  # the emperor has read the flood when it answers again
    assert _rss_kib(e.proc.pid) - before < 32 * 1024
    assert e.vassal("f.ini") is not None
    assert e.stop() == 0


def _open_files(pid: int) -> dict[int, tuple[int, int]]:
    """fd -> (device, inode) of what a process holds open."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        out[int(fd)] = (st.st_dev, st.st_ino)
    return out


@pytest.mark.parametrize("spawn", ["fork", "exec"])
def test_no_emperor_fd_and_no_other_vassals_socket_leaks_into_a_vassal(
        procs: Procs, tmp_path: Path, spawn: str) -> None:
    """ls -l /proc/VASSAL/fd: besides the output it shares with the emperor (1, 2), nothing
    the emperor holds (stats, control and Prometheus sockets, inotify, the fork server's
    socket, the other vassals' channels and on-demand sockets) is open in a vassal; each
    on-demand vassal holds its own socket only."""
    ports = {"a": free_port(), "b": free_port()}
    e = Emperor(procs, tmp_path, "--emperor-on-demand-extension", ".sock", "--emperor-spawn",
                spawn, "--emperor-control-socket", str(tmp_path / "ctl.sock"),
                "--emperor-prometheus", f"127.0.0.1:{free_port()}", own_binary=True)
    app = probe_copy(tmp_path)
    for name, port in ports.items():
        (e.dir / f"{name}.ini.sock").write_text(f"127.0.0.1:{port}\n")
        (e.dir / f"{name}.ini").write_text(probe_ini(port, app, "protocol = http"))
    pids = {}
    for name, port in ports.items():
        e.wait_vassal(f"{name}.ini", on_demand=f"127.0.0.1:{port}")
        get_json(port, timeout=15)
        pids[name] = e.wait_vassal(f"{name}.ini", loyal=1)["pid"]
    # the emperor's, and its fork server's (a root process taking spawn requests)
    helpers = [k for k in descendants(e.proc.pid) if os.getpgid(k) not in pids.values()]
    if spawn == "fork":
        assert helpers  # the fork server
    emperor = set(_open_files(e.proc.pid).values())
    for helper in helpers:
        emperor |= set(_open_files(helper).values())
    held = {name: _open_files(pid) for name, pid in pids.items()}
    for name, files in held.items():
        leaked = {fd: f for fd, f in files.items() if fd > 2 and f in emperor}
        assert not leaked, (name, leaked, os.listdir(f"/proc/{pids[name]}/fd"))
    # fd 0 is the vassal's own on-demand socket, which the other does not have
    assert held["a"][0] != held["b"][0]
    assert held["a"][0] not in held["b"].values() and held["b"][0] not in held["a"].values()
    assert e.stop() == 0


def test_emperor_survives_a_vassal_that_leaves_its_cgroup(procs: Procs, tmp_path: Path) -> None:
    """A root vassal is not confined by its cgroup (root can move itself): it leaves it and
    makes a cgroup of its own inside it. The emperor carries on, and removes the vassal's
    cgroup with what the vassal made in it when the vassal is gone."""
    port = free_port()
    e = Emperor(procs, tmp_path, "--vassals-cgroup-opt", "memory.max=256M",
                "--vassals-cgroup-opt", "pids.max=200", own_binary=True)
    escape = tmp_path / "escape.sh"
    escape.write_text(
        "#!/bin/sh\n"
        "# every cgroup of the master: a sub-cgroup made in it, the master moved to its parent\n"
        "set -- \"$PPID\" \"$1\"\n"
        "while [ \"$(cat /proc/$1/comm)\" = sh ]; do set -- \"$(cut -d' ' -f4 /proc/$1/stat)\" \"$2\"; done\n"
        "while IFS=: read -r _ ctl path; do\n"
        "  case $path in */imperium-*) ;; *) continue ;; esac\n"
        "  ctl=${ctl#name=}\n"
        "  for root in /sys/fs/cgroup/$ctl /sys/fs/cgroup/unified /sys/fs/cgroup; do\n"
        "    [ -e \"$root$path/cgroup.procs\" ] || continue\n"
        "    mkdir \"$root$path/squatter\" && echo \"$root$path\" >> \"$2\"\n"
        "    echo \"$1\" > \"$root$path/../cgroup.procs\"\n"
        "    break\n"
        "  done\n"
        "done < /proc/$1/cgroup\n")
    escape.chmod(0o755)
    made = tmp_path / "made"
    (e.dir / "x.ini").write_text(probe_ini(port, probe_copy(tmp_path),
                                           f"exec-as-root = {escape} {made}"))
    wait_until(lambda: port_open(port), 20, message=f"the vassal; log:\n{e.log()[-3000:]}")
    pid = e.wait_vassal("x.ini", ready=1)["pid"]
    dirs = made.read_text().split()
    assert dirs and all(os.path.isdir(f"{d}/squatter") for d in dirs), dirs
    with open(f"/proc/{pid}/cgroup") as f:
        assert "imperium-" not in f.read()  # it did leave
    assert get_json(port)["pid"] and e.stats()["vassals"]
    assert e.stop() == 0
    assert not any(os.path.exists(d) for d in dirs), dirs  # the squatter went with it


def test_tyrant_on_demand_low_port_with_the_admins_net_bind_service(
        procs: Procs, tmp_path: Path, open_dir: Path, tenant: Tenant) -> None:
    """With emperor-cap = net_bind_service the owner may bind below 1024, so its on-demand
    socket file may name such a port (the helper keeps the capability as the vassal does)."""
    low = next(p for p in range(900, 1000) if not port_open(p))
    e = tyrant_emperor(procs, tmp_path, open_dir, "--emperor-on-demand-extension", ".sock",
                       "--vassals-cap", "net_bind_service")
    vassals = open_dir / "vassals"
    (vassals / "low.ini.sock").write_text(f"127.0.0.1:{low}\n")
    own(vassals / "low.ini.sock", tenant)
    ini = vassals / "low.ini"
    ini.write_text(probe_ini(low, probe_copy(open_dir), "protocol = http"))
    own(ini, tenant)
    e.wait_vassal("low.ini", on_demand=f"127.0.0.1:{low}")
    assert get_json(low, timeout=15)["uid"] == tenant.uid
    assert e.stop() == 0
