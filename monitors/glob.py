"""glob:// — every config file matching a shell pattern is a vassal.

``--emperor "glob:///etc/vassals/*/conf/uwsgi.ini"`` or a bare pattern with a wildcard. As
uWSGI's ``uwsgi_imperial_monitor_glob``: the pattern is matched from the emperor's
starting directory, the vassal is named by the matched path as the pattern gives it
(relative for a relative pattern), vassals run from that starting directory, and only valid
extensions count.

inotify watches (watchdog) are put on the directory above the first wildcard and on every
existing directory the pattern's directory part can match, so new files and new matching
directories are seen at once; the set of watches is recomputed when directories come and
go, and everything is listed again every emperor-freq seconds.
"""

from __future__ import annotations

import glob as globmod
import os
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase

from emperor.events import Event, Monitor, MonitorContext
from monitors.fswatch import FileMonitor


def _magic(part: str) -> bool:
    return globmod.has_magic(part)


class GlobMonitor(FileMonitor):
    scheme = "glob"

    def __init__(self, arg: str, emit: Callable[[Monitor, Event], None], ctx: MonitorContext) -> None:
        super().__init__(arg, emit, ctx)
        self.pattern = arg[len("glob://"):] if arg.startswith("glob://") else arg
        if not self.pattern:
            raise ValueError(f"{arg}: empty glob pattern")
        # captured before the emperor chdir()s into a vassal directory, as uWSGI's glob
        # monitor always works from the directory the emperor was started in
        self.start_dir = os.getcwd()
        self.base_dir = self.start_dir
        self.relative = not os.path.isabs(self.pattern)
        self.abs_pattern = os.path.normpath(os.path.join(self.start_dir, self.pattern))
        parts = self.abs_pattern.split(os.sep)
        first = next((i for i, p in enumerate(parts) if _magic(p)), len(parts) - 1)
        self.parts = parts
        self.first_magic = first
        self.static_dir = os.sep.join(parts[:first]) or os.sep
        self._watches: dict[str, tuple[object, tuple[int, int]]] = {}

    @property
    def id(self) -> str:
        return self.pattern

    def listing(self) -> Iterable[tuple[str, str]] | None:
        if not os.path.isdir(self.static_dir):
            return None
        return [(p, self.name_of(p)) for p in globmod.glob(self.abs_pattern)]

    def in_scope(self, path: str) -> bool:
        parts = path.split(os.sep)
        if len(parts) != len(self.parts):
            return False
        for got, want in zip(parts, self.parts, strict=True):
            if got.startswith(".") and not want.startswith("."):
                return False  # like glob(), a wildcard does not match a leading dot
            if not fnmatchcase(got, want):
                return False
        return True

    def name_of(self, path: str) -> str:
        return os.path.relpath(path, self.start_dir) if self.relative else path

    def wanted_dirs(self) -> set[str]:
        dirs = {self.static_dir}
        for k in range(self.first_magic + 1, len(self.parts)):
            prefix = os.sep.join(self.parts[:k])
            if _magic(self.parts[k - 1]):
                dirs.update(d for d in globmod.glob(prefix) if os.path.isdir(d))
            elif os.path.isdir(prefix):
                dirs.add(prefix)
        return dirs

    def arm(self) -> None:
        assert self.fs is not None
        wanted = self.wanted_dirs()
        for d in list(self._watches):
            watch, identity = self._watches[d]  # type: ignore[misc]
            if d not in wanted or _identity(d) != identity:
                # gone, or another directory now has its name (its old watch is dead)
                self.fs.unwatch(watch)
                del self._watches[d]
        for d in wanted:
            if d not in self._watches:
                identity = _identity(d)
                watch = self.fs.watch(d)
                if watch is not None and identity is not None:
                    self._watches[d] = (watch, identity)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
