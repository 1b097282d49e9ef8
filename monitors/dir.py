"""dir:// — every config file directly inside one directory is a vassal.

``--emperor DIR`` or ``--emperor dir://DIR``. As uWSGI's ``uwsgi_imperial_monitor_directory``:
the directory is resolved with realpath() once, a vassal is named by its file name (so the
vassal runs in DIR with ``--ini NAME``), only valid extensions count (``app.skel`` is
ignored), symlinks are followed unless emperor-nofollow.

Changes arrive through inotify (watchdog) as they happen; a full listing every
emperor-freq seconds repairs anything missed. The directory being removed is not "no
vassals" (deleting its files is, and inotify reports those): the monitor reports the
directory unavailable, also watches its parent, and picks the directory up again as soon as
it is back, at the same path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from emperor.events import Event, Monitor, MonitorContext
from monitors.fswatch import FileMonitor


class DirMonitor(FileMonitor):
    scheme = "dir"

    def __init__(self, arg: str, emit: Callable[[Monitor, Event], None], ctx: MonitorContext) -> None:
        super().__init__(arg, emit, ctx)
        raw = arg[len("dir://"):] if arg.startswith("dir://") else arg
        if not raw:
            raise ValueError(f"{arg}: empty directory")
        self.directory = os.path.realpath(raw)
        self.base_dir = self.directory
        self.parent = os.path.dirname(self.directory)
        self._watch = None
        self._parent_watch = None
        self._identity: tuple[int, int] | None = None

    @property
    def id(self) -> str:
        return self.directory

    def listing(self) -> Iterable[tuple[str, str]] | None:
        prefix = self.directory.rstrip(os.sep) + os.sep
        try:
            with os.scandir(self.directory) as it:
                return [(prefix + e.name, e.name) for e in it]
        except OSError:
            return None

    def in_scope(self, path: str) -> bool:
        return os.path.dirname(path) == self.directory

    def name_of(self, path: str) -> str:
        return os.path.basename(path)

    def arm(self) -> None:
        assert self.fs is not None
        if self._parent_watch is None and self.parent != self.directory:
            self._parent_watch = self.fs.watch(self.parent)
        try:
            st = os.stat(self.directory)
            identity = (st.st_dev, st.st_ino)
        except OSError:
            identity = None
        if identity is None or (self._watch is not None and identity == self._identity):
            # Gone, or unchanged: keep the watch. Dropping it when the directory goes would
            # also drop its queued events (watchdog discards events of an unscheduled watch),
            # such as the deletions `rm -r` makes just before the directory itself goes.
            return
        if self._watch is not None:
            # another directory now has the name: watch that one
            self.fs.unwatch(self._watch)
        self._watch = self.fs.watch(self.directory)
        self._identity = identity if self._watch is not None else None

    def on_dir_event(self, kind: str, src: str, dest: str) -> None:
        # only our own directory matters (the parent watch also reports its siblings)
        if self.directory in (src, dest):
            self.request_rescan()
