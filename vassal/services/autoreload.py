"""``py-autoreload N``: reload the instance when a loaded python module's file changes.

As uWSGI's python plugin: each worker runs a thread (``uWSGIAutoReloader``) that every N
seconds looks at the files of every module in ``sys.modules`` (``.pyc`` as its ``.py``),
remembers the first mtime it sees and, when one changes, logs "[uwsgi-python-reloader]
module/file F has been modified" and sends SIGHUP to the master: a graceful reload of the
whole instance. ``py-autoreload-ignore NAME`` leaves a module out. A development aid; the
threads live in the workers only, never in the master (which forks).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from vassal.log import log
from vassal.services import Service


def module_files(ignore: set[str]) -> list[str]:
    """The source files of the loaded modules (``.pyc``/``.pyo``/``.pyd`` minus the last
    letter, as uWSGI does), ignored modules left out."""
    out = []
    for name, mod in list(sys.modules.items()):
        if name in ignore or mod is None:
            continue
        path = getattr(mod, "__file__", None)
        if not isinstance(path, str) or not path:
            continue
        if path.endswith((".pyc", ".pyo", ".pyd")):
            path = path[:-1]
        out.append(path)
    return out


class Watcher:
    """mtimes seen so far; ``changed()`` names the first file whose mtime moved."""

    def __init__(self, ignore: set[str]) -> None:
        self.ignore = ignore
        self.times: dict[str, float] = {}

    def changed(self) -> str | None:
        for path in module_files(self.ignore):
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue
            seen = self.times.setdefault(path, mtime)
            if seen != mtime:
                return path
        return None


class AutoReload(Service):
    name = "py-autoreload"

    def __init__(self, config: Any) -> None:
        self.interval = int(config.get("py-autoreload") or 0)
        self.ignore = set(config.getlist("py-autoreload-ignore"))

    def in_worker(self, wid: int) -> None:
        master = os.getppid()
        thread = threading.Thread(target=self._loop, args=(wid, master), daemon=True,
                                  name="uWSGIAutoReloader")
        thread.start()

    def _loop(self, wid: int, master: int) -> None:
        if wid == 1:
            log("Python auto-reloader enabled")
        watcher = Watcher(self.ignore)
        while True:
            time.sleep(self.interval)
            path = watcher.changed()
            if path is not None:
                log(f"[uwsgi-python-reloader] module/file {path} has been modified")
                try:
                    os.kill(master, signal.SIGHUP)
                except OSError:
                    pass
                return
