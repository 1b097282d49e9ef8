"""``vassals-cgroup-opt``: a cgroup per vassal, limited by the admin, on the spawn path.

An Imperium option (uWSGI has only the vassal's own ``cgroup``, which a tyrant vassal cannot
use: it is not root, and limits chosen by the tenant are no limits). Every vassal gets the
cgroup ``imperium-EMPERORPID-NAME`` (``dir_name``) under the emperor's own cgroup (v2 where
its controllers can be enabled, else the v1 hierarchies the settings need, as ``emperor.isolation.cgroups``
places relative names), with the settings written before the vassal exists; the vassal's
child joins it first thing (``JailSpec.cgroups``). When the vassal's process has exited
the cgroup is removed (tried again on the emperor's tick while dying processes are still in
it), and at the emperor's exit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from emperor.isolation.cgroups import Cgroup, CgroupError, apply, resolve

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class VassalCgroups:
    def __init__(self, opts: list[tuple[str, str]], emperor_pid: int,
                 log: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.prefix = f"imperium-{emperor_pid}-"
        self.log = log
        self.live: dict[str, list[Cgroup]] = {}
        self.pending: dict[str, list[Cgroup]] = {}  # vassal gone, cgroup not yet empty

    def dir_name(self, vassal: str) -> str:
        """``imperium-EMPERORPID-NAME``; a name that had to be changed to fit (characters
        replaced, cut at 200) also gets a digest of the real one, so that two vassals never
        share a cgroup (``a b.ini`` and ``a_b.ini`` would: one's memory counted against the
        other's limit, and one's exit removing the cgroup the other was joining)."""
        safe = _UNSAFE.sub("_", vassal)
        if safe == vassal and len(safe) <= 200:
            return self.prefix + safe
        digest = hashlib.sha256(vassal.encode(errors="surrogateescape")).hexdigest()[:16]
        return f"{self.prefix}{safe[:200]}-{digest}"

    def prepare(self, vassal: str) -> list[str]:
        """Make (or reuse) the vassal's cgroups with their limits; the directories to join."""
        if not self.opts:
            return []
        name = self.dir_name(vassal)
        self.pending.pop(vassal, None)
        groups = resolve(name, self.opts)
        apply(groups, self.opts, mode=0o755, join=False)
        self.live[vassal] = groups
        return [g.path for g in groups]

    def release(self, vassal: str) -> None:
        """The vassal's process is gone: remove its cgroups (later, if still busy)."""
        groups = self.live.pop(vassal, None)
        if groups:
            self.pending[vassal] = groups
            self.sweep()

    def sweep(self) -> None:
        for vassal, groups in list(self.pending.items()):
            left = []
            for group in groups:
                try:
                    if not group.remove():
                        left.append(group)
                except CgroupError as exc:
                    if self.log is not None:
                        self.log(f"[emperor] {exc}")
            if left:
                self.pending[vassal] = left
            else:
                del self.pending[vassal]

    def close(self) -> None:
        for vassal in list(self.live):
            self.release(vassal)
