"""What the emperor does to a vassal's process before it runs: ``JailSpec`` and ``enter``.

A ``JailSpec`` travels with the spawn request (it is plain data: picklable, and JSON for the
exec stage). ``enter`` runs in the child, single-threaded, after the fds are in place and
before the vassal's code or exec, in this order (the same for the fork server's children and
for the exec stage):

0. **pid namespace** — made *before* the child exists: the fork server (or the stage)
   calls ``unshare(CLONE_NEWPID)`` and forks, so the vassal is pid 1 of its namespace, as
   with uWSGI's ``clone()``; the server then returns to its own namespace (``setns``).
1. **cgroups** — join the emperor's cgroups for this vassal (limits set beforehand), so
   that everything after is accounted.
2. **mount namespace** (``fs``, and implied by ``pid``): mounts made slave recursively
   (the host's new mounts still appear, the vassal's never leave), and with ``pid`` a fresh
   ``/proc`` on ``/proc``, so ``ps`` shows the vassal's own processes only.
3. **user, net, uts, ipc namespaces** — one ``unshare``. With ``user`` a helper forked
   beforehand (still outside) writes the maps: the vassal's uid 0 and gid 0 are the
   tyrant owner (or the emperor's own ids when it is not root), one id each, and the
   vassal becomes that root; with ``net`` the loopback of the new namespace is brought up.
4. **bounding set** (``emperor-cap``/``vassals-cap``): every other capability dropped.
5. **uid/gid** (tyrant, without a user namespace): ``setgroups`` (or ``initgroups`` with
   ``emperor-tyrant-initgroups``), ``setgid``, ``setuid`` — keeping the listed
   capabilities across it when there are some (``PR_SET_KEEPCAPS``, then ``capset`` and the
   ambient set so that they survive the exec). A vassal that stays root (or root of its
   user namespace) keeps the listed capabilities plus ``setpcap`` in its sets, what an exec
   would leave it after the bounding set was cut.

Any failure is a ``JailError`` whose message names the step and the errno text; the child
logs it with the vassal's name and exits 1 (the emperor's throttle and blacklist apply).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from emperor.isolation import capabilities, linux
from emperor.isolation.linux import Clone, Mount
from emperor.isolation.namespaces import describe

MS_SLAVE = 1 << 19


class JailError(Exception):
    """One line: the step that failed and why."""


@dataclass
class JailSpec:
    clone: int = 0  # Clone flags (emperor-use-clone)
    uid: int | None = None  # tyrant: the config's owner
    gid: int | None = None
    initgroups: bool = False  # emperor-tyrant-initgroups
    caps: list[int] | None = None  # emperor-cap / vassals-cap
    cgroups: list[str] = field(default_factory=list)  # directories to join (cgroup.procs)
    #: ids the user namespace maps to the vassal's root when there is no tyrant owner
    map_uid: int | None = None
    map_gid: int | None = None

    @property
    def needed(self) -> bool:
        """Anything beyond what a plain fork or exec does."""
        return bool(self.clone or self.caps or self.cgroups or self.uid is not None
                    or self.gid is not None)

    @property
    def pid_ns(self) -> bool:
        return bool(self.clone & Clone.NEWPID)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JailSpec:
        return cls(**json.loads(text))


def _step(what: str, exc: OSError) -> JailError:
    return JailError(f"{what}: {exc.strerror or exc}")


def enter(spec: JailSpec) -> None:
    """Apply ``spec`` to this process (steps 1-5 of the module docstring)."""
    flags = Clone(spec.clone)
    for path in spec.cgroups:
        try:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            raise _step(f"joining cgroup {path}", exc) from None
    if flags & (Clone.NEWNS | Clone.NEWPID):
        _mount_namespace(bool(flags & Clone.NEWPID))
    rest = flags & (Clone.NEWUSER | Clone.NEWNET | Clone.NEWUTS | Clone.NEWIPC)
    if rest & Clone.NEWUSER:
        _user_namespace(spec, rest)
    elif rest:
        try:
            linux.unshare(rest)
        except OSError as exc:
            raise _step(f"unshare({describe(rest)})", exc) from None
    if flags & Clone.NEWNET:
        try:
            linux.set_loopback_up()
        except OSError as exc:
            raise _step("bringing up lo in the new network namespace", exc) from None
    if spec.caps:
        try:
            capabilities.drop_bounding(spec.caps)
        except OSError as exc:
            raise _step("dropping the capability bounding set", exc) from None
    if not rest & Clone.NEWUSER and (spec.uid is not None or spec.gid is not None):
        _drop_privileges(spec)
    elif spec.caps:
        # a vassal that stays root: its sets shrink to the bounding set now, as an exec
        # would make them (so a forked vassal and an exec'd one hold the same)
        keep = capabilities.mask(spec.caps) | (1 << capabilities.SETPCAP)
        try:
            linux.capset(keep, keep, capabilities.mask(spec.caps))
        except OSError as exc:
            raise _step("limiting capabilities", exc) from None


def _mount_namespace(new_proc: bool) -> None:
    try:
        linux.unshare(Clone.NEWNS)
    except OSError as exc:
        raise _step("unshare(mount)", exc) from None
    try:
        linux.mount(None, "/", None, Mount.REC | MS_SLAVE)
    except OSError as exc:
        raise _step("making / a slave mount", exc) from None
    if new_proc:
        try:
            linux.mount("proc", "/proc", "proc", Mount.NOSUID | Mount.NODEV | Mount.NOEXEC)
        except OSError as exc:
            raise _step("mounting /proc for the pid namespace", exc) from None


def _user_namespace(spec: JailSpec, flags: int) -> None:
    """unshare with CLONE_NEWUSER; a helper still outside writes the id maps."""
    uid = spec.uid if spec.uid is not None else (spec.map_uid if spec.map_uid is not None
                                                 else os.geteuid())
    gid = spec.gid if spec.gid is not None else (spec.map_gid if spec.map_gid is not None
                                                 else os.getegid())
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    me = os.getpid()
    helper = os.fork()
    if helper == 0:  # pragma: no cover - runs in the forked helper
        code = 1
        try:
            os.close(go_w)
            os.close(done_r)
            if os.read(go_r, 1) == b"1":
                _write_maps(me, uid, gid)
                os.write(done_w, b"1")
                code = 0
        except BaseException:  # noqa: BLE001 - the helper only reports through the pipe
            pass
        os._exit(code)
    os.close(go_r)
    os.close(done_w)
    try:
        try:
            linux.unshare(flags)
        except OSError as exc:
            raise _step(f"unshare({describe(flags)})", exc) from None
        os.write(go_w, b"1")
        if os.read(done_r, 1) != b"1":
            raise JailError(f"cannot map uid {uid} / gid {gid} into the user namespace")
    finally:
        os.close(go_w)
        os.close(done_r)
        os.waitpid(helper, 0)
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as exc:
        raise _step("becoming root of the user namespace", exc) from None
    try:
        os.setgroups([])
    except OSError:
        pass  # "deny" was written for an unprivileged emperor: its own groups stay


def _write_maps(pid: int, uid: int, gid: int) -> None:
    privileged = os.geteuid() == 0
    if not privileged:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"0 {uid} 1\n")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"0 {gid} 1\n")


def _drop_privileges(spec: JailSpec) -> None:
    try:
        if spec.gid is not None:
            groups: list[int] = []
            if spec.initgroups and spec.uid is not None:
                import pwd

                try:
                    name = pwd.getpwuid(spec.uid).pw_name
                    groups = os.getgrouplist(name, spec.gid)
                except KeyError:
                    groups = []
            os.setgroups(groups)
            os.setgid(spec.gid)
        if spec.caps:
            capabilities.keep_across_setuid()
        if spec.uid is not None:
            os.setuid(spec.uid)
    except OSError as exc:
        raise _step(f"dropping privileges to {spec.uid} {spec.gid}", exc) from None
    if spec.caps:
        _raise_ambient(spec.caps)


def _raise_ambient(caps: list[int]) -> None:
    try:
        capabilities.restore_after_setuid(caps)
    except OSError as exc:
        raise _step(f"keeping capabilities {capabilities.describe(caps)}", exc) from None
