"""Files the master watches: ``touch-exec``, ``touch-chain-reload``, ``touch-workers-reload``
and ``hook-touch`` (checked by mtime once a second, as uWSGI's ``uwsgi_check_touches``),
``fs-reload`` and ``fs-brutal-reload`` (inotify, as uWSGI's fsmon).

A touch file fires when its mtime changes, when it is removed, and when it appears after
having been missing (a file missing at start-up is logged once: "unable to stat() ..., events
will be triggered as soon as the file is created"). ``TouchFile`` holds that rule for every
watcher of the master (daemons' ``touch`` keys use it too).

``fs-reload PATH`` / ``fs-brutal-reload PATH`` watch PATH (a file, or a directory and its
direct entries) through one inotify fd in the master's select loop: any change to it is a
graceful (brutal) reload of the instance.
"""

from __future__ import annotations

import os
from typing import Any

from vassal.log import log
from vassal.services import Service, commands, log_verbose
from vassal.services.hooks import Context, run_chain


class TouchFile:
    """One watched path with uWSGI's touch rule."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mtime = 0.0
        self.missing = False
        self.check()

    def check(self) -> bool:
        """True when the file changed since the last check."""
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            if self.mtime and not self.missing:
                self.missing = True
                self.mtime = 0.0
                return True  # removed
            if not self.mtime and not self.missing:
                log(f"unable to stat() {self.path}, events will be triggered as soon as the file is created")
                self.missing = True
            self.mtime = 0.0
            return False
        if not self.mtime and self.missing:
            self.mtime = mtime
            self.missing = False
            return True  # created
        if mtime != self.mtime:
            self.mtime = mtime
            return True
        return False


_FS_MASK_NAMES = ("ATTRIB", "CREATE", "DELETE", "DELETE_SELF", "MODIFY", "MOVE_SELF", "MOVED_FROM",
                  "MOVED_TO")


class Touches(Service):
    name = "touch"

    def __init__(self, config: Any, control: Any) -> None:
        self.config = config
        self.control = control
        self.execs: list[tuple[TouchFile, str]] = []
        self.chains: list[TouchFile] = []
        self.workers_reload: list[TouchFile] = []
        self.hooks: list[tuple[TouchFile, str]] = []
        self.inotify: Any = None
        self.watches: dict[int, tuple[str, bool]] = {}  # wd -> (path, brutal)
        self.last = 0.0

    def start(self, master: Any) -> None:
        self.master = master
        for value in self.config.getlist("touch-exec"):
            path, sep, command = value.partition(" ")
            if sep and command.strip():
                self.execs.append((TouchFile(path), command.strip()))
        self.chains = [TouchFile(p) for p in self.config.getlist("touch-chain-reload")]
        self.workers_reload = [TouchFile(p) for p in self.config.getlist("touch-workers-reload")]
        for value in self.config.getlist("hook-touch"):
            path, _, action = value.partition(" ")
            self.hooks.append((TouchFile(path), action))
        paths = [(p, False) for p in self.config.getlist("fs-reload")]
        paths += [(p, True) for p in self.config.getlist("fs-brutal-reload")]
        if paths:
            self._fsmon(paths)

    def _fsmon(self, paths: list[tuple[str, bool]]) -> None:
        import inotify_simple

        mask = 0
        for name in _FS_MASK_NAMES:
            mask |= getattr(inotify_simple.flags, name)
        try:
            self.inotify = inotify_simple.INotify(nonblocking=True)
        except OSError as exc:
            log(f"[uwsgi-fsmon] inotify: {exc.strerror}")
            return
        for path, brutal in paths:
            try:
                wd = self.inotify.add_watch(path, mask)
            except OSError as exc:
                log(f"fsmon_add()/inotify_add_watch(): {exc.strerror}")
                log(f"[uwsgi-fsmon] unable to register monitor for \"{path}\"")
                continue
            self.watches[wd] = (path, brutal)
            log(f"[uwsgi-fsmon] registered monitor for \"{path}\"")

    def fds(self) -> list[int]:
        return [self.inotify.fileno()] if self.inotify is not None and self.watches else []

    def on_ready(self, fd: int) -> None:
        try:
            events = self.inotify.read(timeout=0)
        except OSError:
            return
        fired = {self.watches[e.wd] for e in events if e.wd in self.watches}
        if not fired or not self.control._running():
            return
        if any(brutal for _, brutal in fired):
            self.control.do_reap_them_all()
        else:
            self.control.do_grace_them_all()

    def timeout(self, now: float) -> float | None:
        if not (self.execs or self.chains or self.hooks or self.workers_reload):
            return None
        return max(0.0, self.last + 1.0 - now)

    def tick(self, now: float) -> None:
        if now - self.last < 1.0 or not self.control._running():
            return
        self.last = now
        for tf in self.workers_reload:
            if tf.check():
                log_verbose(f"*** {tf.path} has been touched... workers reload !!! ***")
                self.control.do_uwsgi_reload_workers()  # each gets worker-reload-mercy
                return
        for tf in self.chains:
            if tf.check():
                self.control.do_uwsgi_chain_reload(touched=tf.path)
        for tf, command in self.execs:
            if tf.check() and commands.spawn(command) > 0:
                log_verbose(f"[uwsgi-touch-exec] running {command}")
        for tf, action in self.hooks:
            if tf.check():
                run_chain([action], "touch", False, Context(role="master", control=self.control),
                          "hook-touch")

    def child_exited(self, pid: int, status: int) -> bool:
        return False

    def finish(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None
