"""Control groups: where a process's limits live, cgroup v2 where usable, v1 otherwise.

``cgroup = PATH`` with an absolute path is uWSGI's option exactly: the directory is made
(``cgroup-dir-mode``, 0700 by default), the process joins it, and each ``cgroup-opt =
KEY=VALUE`` is written to ``PATH/KEY``. uWSGI writes the pid to ``tasks`` (v1 only, and
only the calling thread); here it goes to ``cgroup.procs``, which both versions have and
which moves the whole process. An option whose file exists in none of the cgroups is an
error (uWSGI skips it without a word).

An option is written in its own words where that file exists, else in the words of the
cgroup's version (see below). ``cgroup = NAME`` without a leading ``/`` is Imperium's: NAME is made *under the cgroup the
process is already in* (so the limits of whoever started the emperor still hold), in the
unified (v2) hierarchy when it is mounted and the controllers the options need can be
enabled there, otherwise in each v1 hierarchy those controllers are mounted on (memory,
cpu, pids). Options are given in either version's words and translated where the two
differ (``memory.limit_in_bytes`` <-> ``memory.max``, ``cpu.shares`` <-> ``cpu.weight``,
``cpu.cfs_quota_us`` <-> ``cpu.max``), so one config works on both kinds of host.

``Cgroup.remove`` deletes a cgroup once its processes are gone (the emperor removes the
cgroups it made for a vassal when the vassal has exited).
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass

#: the v1 controllers a relative cgroup is placed in (when the options name none)
DEFAULT_CONTROLLERS = ("memory", "cpu", "pids")


class CgroupError(Exception):
    """One line naming the cgroup or option and what failed."""


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    mountpoint: str
    controllers: frozenset[str]  # v1: what the mount carries; v2: what its root offers


def hierarchies(mountinfo: str = "/proc/self/mountinfo") -> list[Hierarchy]:
    """The cgroup mounts this process sees."""
    out: list[Hierarchy] = []
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mountpoint = fields[4].replace("\\040", " ")
        fstype, options = rfields[0], rfields[2].split(",")
        if fstype == "cgroup2":
            out.append(Hierarchy(2, mountpoint, frozenset(_read(mountpoint, "cgroup.controllers").split())))
        elif fstype == "cgroup":
            ctl = frozenset(o for o in options if o in _V1_CONTROLLERS)
            if ctl:
                out.append(Hierarchy(1, mountpoint, ctl))
    return out


_V1_CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                   "net_cls", "net_prio", "hugetlb", "perf_event", "rdma", "misc"}


def own_paths(proc_cgroup: str = "/proc/self/cgroup") -> dict[str, str]:
    """controller -> this process's cgroup path in it ("" is the v2 one)."""
    out: dict[str, str] = {}
    try:
        with open(proc_cgroup) as f:
            for line in f:
                _, ctls, path = line.rstrip("\n").split(":", 2)
                for c in (ctls.split(",") if ctls else [""]):
                    out[c] = path
    except (OSError, ValueError):
        pass
    return out


def _read(directory: str, name: str) -> str:
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except OSError:
        return ""


# --- option names of the two versions -----------------------------------------------------------

def _shares_to_weight(v: str) -> str:
    return str(max(1, min(10000, 1 + ((int(v) - 2) * 9999) // 262142)))


def _weight_to_shares(v: str) -> str:
    return str(max(2, 2 + ((int(v) - 1) * 262142) // 9999))


def translate(key: str, value: str, version: int) -> list[tuple[str, str]]:
    """(file, value) pairs that say ``key=value`` in cgroup ``version``'s words."""
    if version == 2:
        if key == "memory.limit_in_bytes":
            return [("memory.max", "max" if value.strip() == "-1" else value)]
        if key == "memory.memsw.limit_in_bytes":
            return [("memory.swap.max", value)]
        if key == "cpu.shares":
            return [("cpu.weight", _shares_to_weight(value))]
        if key == "cpu.cfs_quota_us":
            return [("cpu.max", ("max" if value.strip() == "-1" else value) + " 100000")]
        return [(key, value)]
    if key == "memory.max":
        return [("memory.limit_in_bytes", "-1" if value.strip() == "max" else value)]
    if key == "memory.swap.max":
        return [("memory.memsw.limit_in_bytes", "-1" if value.strip() == "max" else value)]
    if key == "cpu.weight":
        return [("cpu.shares", _weight_to_shares(value))]
    if key == "cpu.max":
        parts = value.split()
        quota = parts[0] if parts else "max"
        period = parts[1] if len(parts) > 1 else "100000"
        return [("cpu.cfs_period_us", period),
                ("cpu.cfs_quota_us", "-1" if quota == "max" else quota)]
    return [(key, value)]


def parse_opt(item: str) -> tuple[str, str]:
    """``KEY=VALUE`` (or uWSGI's other spelling ``KEY:VALUE``)."""
    for sep in ("=", ":"):
        key, found, value = item.partition(sep)
        if found and key.strip():
            return key.strip(), value.strip()
    raise CgroupError(f"cgroup-opt = {item}: invalid syntax (KEY=VALUE)")


# --- one cgroup -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cgroup:
    path: str
    version: int

    def create(self, mode: int = 0o700) -> bool:
        """Make the directory (True) or use the existing one (False)."""
        try:
            os.mkdir(self.path, mode)
            return True
        except FileExistsError:
            with contextlib.suppress(OSError):
                os.chmod(self.path, mode)
            return False
        except OSError as exc:
            raise CgroupError(f"cgroup {self.path}: mkdir(): {exc.strerror}") from None

    def join(self, pid: int = 0) -> None:
        self.write("cgroup.procs", str(pid or os.getpid()))

    def has(self, key: str) -> bool:
        return os.path.exists(os.path.join(self.path, key))

    def write(self, key: str, value: str) -> None:
        target = os.path.join(self.path, key)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise CgroupError(f"cgroup {target}: {exc.strerror}") from None
        try:
            os.write(fd, (value + "\n").encode())
        except OSError as exc:
            raise CgroupError(f"cgroup {target} = {value}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        return [int(p) for p in _read(self.path, "cgroup.procs").split()]

    def remove(self) -> bool:
        """rmdir once empty, with the cgroups made inside it (a root vassal may make its
        own, which would keep ours for ever); False while processes are still in it."""
        for below in _children_first(self.path):
            with contextlib.suppress(OSError):
                os.rmdir(below)  # a busy one leaves ours busy: tried again later
        try:
            os.rmdir(self.path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise CgroupError(f"cgroup {self.path}: rmdir(): {exc.strerror}") from None


def _children_first(path: str) -> list[str]:
    """The cgroups below ``path``, deepest first (interface files are not directories)."""
    out: list[str] = []
    try:
        entries = list(os.scandir(path))
    except OSError:
        return out
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            out += _children_first(entry.path)
            out.append(entry.path)
    return out


def _version_of(path: str, mounts: list[Hierarchy]) -> int:
    best: Hierarchy | None = None
    for h in mounts:
        if (path == h.mountpoint or path.startswith(h.mountpoint.rstrip("/") + "/")) and (
                best is None or len(h.mountpoint) > len(best.mountpoint)):
            best = h
    if best is None:
        raise CgroupError(f"cgroup {path}: not inside a mounted cgroup hierarchy")
    return best.version


def _controllers_of(opts: list[tuple[str, str]]) -> set[str]:
    return {key.split(".", 1)[0] for key, _ in opts} & _V1_CONTROLLERS


def _v2_usable(h: Hierarchy, own: str, needed: set[str]) -> bool:
    """Whether children of our v2 cgroup can have ``needed`` controllers (enabling them in
    our cgroup's subtree_control if they are not yet: that fails while it holds processes)."""
    base = os.path.join(h.mountpoint, own.lstrip("/"))
    offered = set(_read(base, "cgroup.controllers").split())
    if not needed <= offered:
        return False
    enabled = set(_read(base, "cgroup.subtree_control").split())
    for ctl in needed - enabled:
        try:
            Cgroup(base, 2).write("cgroup.subtree_control", "+" + ctl)
        except CgroupError:
            return False
    return True


def resolve(name: str, opts: list[tuple[str, str]]) -> list[Cgroup]:
    """The cgroup(s) a ``cgroup`` value names (see the module docstring)."""
    mounts = hierarchies()
    if name.startswith("/"):
        return [Cgroup(os.path.normpath(name), _version_of(name, mounts))]
    if not name or name.startswith(".") or "/.." in "/" + name:
        raise CgroupError(f"cgroup {name}: a relative name may not leave the current cgroup")
    own = own_paths()
    needed = _controllers_of(opts) or set(DEFAULT_CONTROLLERS)
    v2 = next((h for h in mounts if h.version == 2), None)
    if v2 is not None and _v2_usable(v2, own.get("", "/"), needed):
        return [Cgroup(os.path.join(v2.mountpoint, own.get("", "/").lstrip("/"), name), 2)]
    out: list[Cgroup] = []
    for ctl in sorted(needed):
        h = next((h for h in mounts if h.version == 1 and ctl in h.controllers), None)
        if h is None:
            if _controllers_of(opts):
                raise CgroupError(f"cgroup {name}: no usable cgroup hierarchy has the {ctl} "
                                  "controller")
            continue
        group = Cgroup(os.path.join(h.mountpoint, own.get(ctl, "/").lstrip("/"), name), 1)
        if group not in out:
            out.append(group)
    if not out:
        raise CgroupError(f"cgroup {name}: no usable cgroup hierarchy on this host")
    return out


def apply(groups: list[Cgroup], opts: list[tuple[str, str]], *, mode: int = 0o700,
          pid: int = 0, join: bool = True, log=None) -> None:  # type: ignore[no-untyped-def]
    """Make each cgroup, set every option where its file exists (in the option's own words,
    else translated to the cgroup's version), then join (limits first: the process is never
    inside a cgroup without them)."""
    for group in groups:
        made = group.create(mode)
        if log is not None:
            log(f"{'created' if made else 'using'} Linux cgroup {group.path} with mode {mode:o}")
    for key, value in opts:
        written = False
        for group in groups:
            pairs = [(key, value)]
            if not group.has(key):
                pairs = translate(key, value, group.version)
            if all(group.has(k) for k, _ in pairs):
                for k, v in pairs:
                    group.write(k, v)
                    if log is not None:
                        log(f"set {v} to {os.path.join(group.path, k)}")
                written = True
        if not written:
            where = ", ".join(g.path for g in groups)
            raise CgroupError(f"cgroup-opt = {key}={value}: no such setting in {where}")
    for group in groups if join else []:
        group.join(pid)
        if log is not None:
            log(f"assigned process {pid or os.getpid()} to cgroup {group.path}")
