"""``namespace = ROOTFS[:HOSTNAME]``: the instance jails itself, as uWSGI's lib/linux_ns.c.

The process that reads the option stays outside as a *keeper*; it makes the jailed master,
pid 1 of new uts, pid, ipc and mount namespaces (and net with ``namespace-net``), runs the
``post-jail`` phase with ``UWSGI_JAIL_PID`` set, waits, and makes a new jail when the master
dies. The keeper ends with the master when it exits 1 (a start-up failure), or 0 with
``exit-on-reload`` or under an emperor (the emperor asked it to stop: uWSGI would jail it
again, and the emperor would then have to kill it).

In the new namespaces (``enter`` returns there): the hostname after ``:``; ``ROOTFS`` becomes
``/`` through ``pivot_root`` (not for ``/``); a fresh ``/proc``; each ``namespace-keep-mount``
(``PATH`` under the rootfs, or ``SOURCE:DEST`` from the old tree) bound in; every other mount
of the old tree unmounted. Mounts are private to the jail first (uWSGI makes them private in
the keeper, that is, on the host).

The keeper ignores the signals meant for the master (an emperor signals the whole group,
and the master, pid 1 of its namespace, has handlers for them); the master dies with the
keeper (``PR_SET_PDEATHSIG``), and every process of the jail with the master.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from emperor.isolation import linux
from emperor.isolation.linux import MNT_DETACH, Clone, Mount, Prctl
from vassal.log import log

TMP = ".uwsgi_ns_tmp_mountpoint"
_KEEPER_IGNORES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                   signal.SIGUSR2, signal.SIGTSTP, signal.SIGPIPE)


class NamespaceError(Exception):
    """One line naming the option and the step that failed."""


def enter(config: Any, phase: Any) -> None:
    """Return in the jailed master; the keeper never returns (it exits with the jail)."""
    value = config.get("namespace")
    root, _, hostname = value.partition(":")
    flags = Clone.NEWUTS | Clone.NEWPID | Clone.NEWIPC | Clone.NEWNS
    if config.get("namespace-net"):
        flags |= Clone.NEWNET
    try:
        own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NamespaceError(f"namespace = {value}: /proc/self/ns/pid: {exc.strerror}") from None
    under_emperor = bool(os.environ.get("UWSGI_EMPEROR_FD"))
    while True:
        log(f"*** jailing uWSGI in {root} ***")
        try:
            linux.unshare(Clone.NEWPID)
        except OSError as exc:
            raise NamespaceError(f"namespace = {value}: unshare(pid): {exc.strerror}") from None
        pid = os.fork()
        if pid == 0:
            os.close(own_pid_ns)
            linux.prctl(Prctl.SET_PDEATHSIG, int(signal.SIGKILL))
            try:
                _jail(root, hostname, flags & ~Clone.NEWPID, config.getlist("namespace-keep-mount"))
            except NamespaceError as exc:
                log(f"imperium: {exc}")
                os._exit(1)
            return
        linux.setns(own_pid_ns, Clone.NEWPID)
        for sig in _KEEPER_IGNORES:
            signal.signal(sig, signal.SIG_IGN)
        os.environ["UWSGI_JAIL_PID"] = str(pid)
        try:
            phase("post-jail")
        except BaseException as exc:  # noqa: BLE001 - a fatal hook: the jail goes too
            log(f"imperium: post-jail: {exc}")
            os.kill(pid, signal.SIGKILL)
            os._exit(1)
        log(f"waiting for jailed master (pid: {pid}) death...")
        status = _wait(pid)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1:
            os._exit(1)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and (
                config.get("exit-on-reload") or under_emperor):
            if config.get("exit-on-reload"):
                log("jailed master process exited and exit-on-reload is enabled, shutting down")
            os._exit(0)
        log(f"pid {pid} ended. Respawning...")


def _wait(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def _jail(root: str, hostname: str, flags: int, keep: list[str]) -> None:
    try:
        linux.unshare(flags)
    except OSError as exc:
        raise NamespaceError(f"namespace: unshare(): {exc.strerror}") from None
    if os.getpid() != 1:
        raise NamespaceError("namespace: your kernel does not support linux pid namespace")
    if flags & Clone.NEWNET:
        try:
            linux.set_loopback_up()
        except OSError:
            pass
    if hostname:
        try:
            socket.sethostname(hostname)
        except OSError as exc:
            log(f"sethostname(): {exc.strerror}")
    try:
        linux.mount(None, "/", None, Mount.REC | Mount.PRIVATE)
    except OSError as exc:
        raise NamespaceError(f"namespace: making mounts private: {exc.strerror}") from None
    try:
        os.chdir(root)
    except OSError as exc:
        raise NamespaceError(f"namespace = {root}: chdir(): {exc.strerror}") from None
    pivoted = root.rstrip("/") != ""
    if pivoted:
        tmp = os.path.join(root, TMP)
        try:
            os.mkdir(tmp, 0o700)
            os.mkdir(os.path.join(tmp, TMP), 0o700)
            linux.mount(root, tmp, None, Mount.BIND | Mount.REC)
            os.chdir(tmp)
            linux.pivot_root(".", os.path.join(tmp, TMP))
            os.chdir("/")
        except OSError as exc:
            raise NamespaceError(f"namespace = {root}: pivot_root(): {exc.strerror}") from None
    log("remounting /proc")
    try:
        linux.mount("proc", "/proc", "proc", 0)
    except OSError as exc:
        raise NamespaceError(f"namespace = {root}: mounting /proc: {exc.strerror}") from None
    old = "/" + TMP if pivoted else ""
    kept: set[str] = set()
    for item in keep:
        source, sep, dest = item.partition(":")
        if not sep:
            dest = item[len(root.rstrip("/")):] if root != "/" and item.startswith(root) else item
        log(f"remounting {source} to {dest}")
        try:
            linux.mount(old + source, dest, None, Mount.BIND | Mount.REC)
            kept.add(os.path.normpath(dest))
        except OSError as exc:
            log(f"mount(): {source} -> {dest}: {exc.strerror}")
    _unmount_others(kept, old)
    if pivoted:
        for path in (f"/{TMP}/{TMP}", f"/{TMP}"):
            try:
                os.rmdir(path)
            except OSError:
                pass


def _unmount_others(kept: set[str], old: str) -> None:
    """Every mount but /, /proc and the kept ones goes (the old tree detached at once)."""
    if old:
        try:
            linux.umount(old, MNT_DETACH)
        except OSError as exc:
            raise NamespaceError(f"namespace: unmounting the old root: {exc.strerror}") from None
    while True:
        try:
            with open("/proc/self/mounts") as f:
                points = [line.split()[1] for line in f if len(line.split()) > 1]
        except OSError:
            return
        gone = 0
        for point in reversed(points):
            point = point.replace("\\040", " ")
            if point in ("/", "/proc") or point in kept or any(
                    point.startswith(k.rstrip("/") + "/") for k in kept) or point.startswith("/proc/"):
                continue
            try:
                linux.umount(point)
                gone += 1
            except OSError:
                pass
        if not gone:
            return
