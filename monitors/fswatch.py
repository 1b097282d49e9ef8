"""What dir:// and glob:// share: inotify through watchdog, plus a periodic full rescan.

A watchdog observer thread hands raw filesystem events to the emperor's loop
(``call_soon_threadsafe``); everything else happens in the loop. For one config path:

* created or modified (IN_CREATE / IN_MODIFY): a writer may still be writing it, so we wait
  for its close (IN_CLOSE_WRITE), or ``SETTLE`` seconds if no close comes (e.g. it is held
  open); symlinks and hard links are complete at once;
* closed after writing, attrib change (touch, chmod, chown), moved in or out, deleted:
  looked at now.

"Looked at" is uWSGI's ``stat()`` rule (``lstat()`` with emperor-nofollow): a regular file
(or, with nofollow, a symlink) with a valid name is reported with its mtime (a newer mtime
reloads the vassal); a missing one is reported gone. An existing file the emperor cannot
read is neither started nor stopped (one log line says why).

Every ``emperor-freq`` seconds the whole source is listed again and a ``Sync`` sent: the
safety net for anything inotify missed (queue overflow, a directory moved away and back).
A source that cannot be listed (the directory is gone) is reported ``Unavailable``: its
vassals are left alone until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable

from emperor.events import Available, Destroy, Sync, Touch, Unavailable, printable
from emperor.events import Monitor as _Monitor

#: seconds to wait for the close of a file that was created or modified
SETTLE = 0.5


def _quiet_watchdog() -> None:
    # watchdog logs its own races at shutdown ("called when the thread is inactive"): they
    # are not the emperor's business and must not reach its log
    wlog = logging.getLogger("watchdog")
    wlog.addHandler(logging.NullHandler())
    wlog.propagate = False


def _tune_watchdog() -> None:
    """Do not let watchdog hold IN_MOVED_FROM events for 0.5 s.

    watchdog keeps a moved-from event up to 0.5 s to pair it with its moved-to, and its
    reader sleeps on it, delaying every event behind it. For the emperor a rename is simply
    "old name gone, new name there", so 10 ms (enough to pair a rename inside one directory,
    whose two events arrive in the same read) is plenty.
    """
    try:
        from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
    except ImportError:  # another watchdog layout: keep its default
        return
    if getattr(InotifyMoveEventGrouper, "delay", 0) > 0.01:
        InotifyMoveEventGrouper.delay = 0.01


class FsEvents:
    """A watchdog observer whose events are delivered, as plain tuples, on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 callback: Callable[[str, str, str, bool], None]) -> None:
        _tune_watchdog()
        _quiet_watchdog()
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers.inotify import InotifyObserver

        self.loop = loop
        self.callback = callback
        outer = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # type: ignore[no-untyped-def]
                kind = event.event_type
                if kind in ("opened", "closed_no_write"):
                    return
                src = os.fsdecode(event.src_path)
                dest = os.fsdecode(getattr(event, "dest_path", "") or "")
                try:
                    outer.loop.call_soon_threadsafe(outer.callback, kind, src, dest,
                                                    event.is_directory)
                except RuntimeError:  # the loop is closed: we are shutting down
                    pass

        self.handler = Handler()
        self.observer = InotifyObserver(generate_full_events=True)
        self.observer.daemon = True
        self.observer.start()

    def watch(self, path: str):  # type: ignore[no-untyped-def]
        """Watch one directory (not recursively); None if it cannot be watched now."""
        try:
            return self.observer.schedule(self.handler, path, recursive=False)
        except (OSError, KeyError):
            return None

    def unwatch(self, watch) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(Exception):
            self.observer.unschedule(watch)

    def stop(self) -> None:
        """Stop the observer without waiting: its stop() joins threads, which must never
        block the emperor's loop (its threads are daemons and die with the process)."""
        def stop() -> None:
            with contextlib.suppress(Exception):
                self.observer.stop()
        threading.Thread(target=stop, name="fswatch-stop", daemon=True).start()


class FileMonitor(_Monitor):
    """Base of dir:// and glob://: file-level event handling and the periodic rescan."""

    base_dir: str | None = None

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fs: FsEvents | None = None
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.unreadable: dict[str, float] = {}
        self.down = False
        self.rescan_soon = False
        self.scans = 0  # completed full scans, for tests and the bench
        self.bad_entries: dict[str, str] = {}  # path -> reason already logged
        # what was last reported per path: a rescan re-reports only what changed (the emperor
        # keeps every claim, so repeating an unchanged Touch would only cost CPU)
        self.reported: dict[str, tuple[float, int | None, int | None]] = {}

    # --- what a subclass says --------------------------------------------------------------------

    @abstractmethod
    def listing(self) -> Iterable[tuple[str, str]] | None:
        """Every candidate (config path, vassal name), or None when it cannot be listed now."""

    @abstractmethod
    def in_scope(self, path: str) -> bool:
        """Whether a path reported by inotify is a candidate config."""

    @abstractmethod
    def name_of(self, path: str) -> str:
        """The vassal name of a config path."""

    @abstractmethod
    def arm(self) -> None:
        """(Re)establish the inotify watches."""

    def on_dir_event(self, kind: str, src: str, dest: str) -> None:
        """A directory changed somewhere we watch; by default, look at everything again."""
        self.request_rescan()

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.fs = FsEvents(loop, self.on_fs_event)
        try:
            self.arm()
            self.rescan()
            while True:
                await asyncio.sleep(self.ctx.freq)
                self.arm()
                self.rescan()
        finally:
            for timer in self.pending.values():
                timer.cancel()
            self.pending.clear()
            self.fs.stop()

    def request_rescan(self) -> None:
        if self.rescan_soon or self._loop is None:
            return
        self.rescan_soon = True

        def later() -> None:
            self.rescan_soon = False
            try:
                self.arm()
                self.rescan()
            except Exception as exc:  # the periodic rescan will try again
                self.log.warning("[emperor] %s: rescan failed: %s: %s", self.id,
                                 type(exc).__name__, exc)
        self._loop.call_soon(later)

    def on_fs_event(self, kind: str, src: str, dest: str, is_dir: bool) -> None:
        try:
            if is_dir:
                self.on_dir_event(kind, src, dest)
                return
            if self.down and kind != "deleted":
                # The source is unavailable; its watch may follow the directory to where it
                # was moved, so a path here need not exist: only a real deletion counts. The
                # rescan that finds the directory back reconciles the rest.
                return
            for path in (src, dest):
                if path and self.in_scope(path):
                    self.on_file_event(kind, path, path == dest and kind == "moved")
        except Exception as exc:  # never let one odd event stop the monitor
            self.log.warning("[emperor] %s: error on %s event for %s: %s: %s", self.id, kind,
                             printable(src), type(exc).__name__, exc)

    def on_file_event(self, kind: str, path: str, moved_in: bool) -> None:
        if kind in ("created", "modified") and not moved_in:
            try:
                st = os.lstat(path)
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                # being written: wait for its close (or settle)
                if path not in self.pending:
                    assert self._loop is not None
                    self.pending[path] = self._loop.call_later(SETTLE, self._settled, path)
                return
        timer = self.pending.pop(path, None)
        if timer is not None:
            timer.cancel()
        self.check(path)

    def _settled(self, path: str) -> None:
        self.pending.pop(path, None)
        try:
            self.check(path)
        except Exception as exc:  # a timer callback: nobody above us would log it well
            self.log.warning("[emperor] %s: skipping %s: %s: %s", self.id, printable(path),
                             type(exc).__name__, exc)

    # --- uWSGI's stat rules ----------------------------------------------------------------------

    def look(self, path: str, name: str) -> tuple[str, tuple[float, int | None, int | None] | None]:
        """('touch', (mtime, uid, gid)), ('unreadable', None) or ('absent', None)."""
        nofollow = not self.ctx.follow_symlinks
        try:
            st = os.lstat(path) if nofollow else os.stat(path)
        except OSError:
            return "absent", None
        mode = st.st_mode
        if nofollow:
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                return "absent", None
        elif not stat.S_ISREG(mode):
            return "absent", None
        mtime = st.st_mtime_ns / 1e9
        if self.ctx.tyrant:
            uid, gid = st.st_uid, st.st_gid
            if self.ctx.tyrant_nofollow:
                try:
                    lst = os.lstat(path)
                    uid, gid = lst.st_uid, lst.st_gid
                except OSError:
                    return "absent", None
            return "touch", (mtime, uid, gid)
        if not (nofollow and stat.S_ISLNK(mode)) and not os.access(path, os.R_OK):
            if self.unreadable.get(path) != mtime:
                self.unreadable[path] = mtime
                self.log.warning("[emperor] vassal config %s is not readable: not starting or "
                                 "reloading %s until it is", printable(path), printable(name))
            return "unreadable", None
        if self.unreadable and path in self.unreadable:
            del self.unreadable[path]
            self.log.warning("[emperor] vassal config %s is readable again", printable(path))
        return "touch", (mtime, None, None)

    def report(self, path: str, name: str, key: tuple[float, int | None, int | None]) -> None:
        if self.reported.get(path) != key:
            self.reported[path] = key
            self.emit(Touch(name=name, mtime=key[0], path=path, uid=key[1], gid=key[2]))

    def check(self, path: str) -> None:
        name = self.name_of(path)
        if not self.valid(name):
            return
        what, key = self.look(path, name)
        if key is not None:
            self.report(path, name, key)
            return
        self.reported.pop(path, None)
        if what == "absent":
            self.unreadable.pop(path, None)
            self.emit(Destroy(name))

    def rescan(self) -> None:
        """List the whole source and report it; a listing that fails part-way sends no Sync."""
        try:
            listed = self.listing()
            entries = None if listed is None else list(listed)
        except Exception as exc:  # not a full listing, so not "no vassals" either
            self.log.warning("[emperor] %s: cannot list the vassals, none stopped: %s: %s",
                             self.id, type(exc).__name__, exc)
            return
        if entries is None:
            if not self.down:
                self.down = True
                self.emit(Unavailable(f"{self.id} cannot be listed"))
            return
        if self.down:
            self.down = False
            self.emit(Available())
        names: set[str] = set()
        bad: dict[str, str] = {}
        for path, name in entries:
            try:
                self._rescan_entry(path, name, names)
            except Exception as exc:  # one odd entry must not stop the scan
                names.add(name)  # whatever it is, its running vassal is kept
                bad[path] = f"{type(exc).__name__}: {exc}"
        for path, reason in bad.items():
            if self.bad_entries.get(path) != reason:
                self.log.warning("[emperor] %s: skipping %s: %s", self.id, printable(path), reason)
        self.bad_entries = bad
        for gone in [p for p in self.reported if self.name_of(p) not in names]:
            # gone from the listing, but a vassal stops only if its file is really gone: a
            # listing can miss what it could not read (glob() skips such directories)
            if self.look(gone, self.name_of(gone))[1] is not None:
                names.add(self.name_of(gone))
            else:
                del self.reported[gone]
        self.emit(Sync(frozenset(names)))
        self.scans += 1

    def _rescan_entry(self, path: str, name: str, names: set[str]) -> None:
        if not self.valid(name):
            return
        if path in self.pending:
            names.add(name)  # being written: neither new nor gone
            return
        what, key = self.look(path, name)
        if key is not None:
            self.report(path, name, key)
            names.add(name)
        elif what == "unreadable":
            self.reported.pop(path, None)
            names.add(name)
