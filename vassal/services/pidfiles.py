"""``safe-pidfile``/``safe-pidfile2``: the master's pid, written once the instance is up.

uWSGI 2.0 writes ``pidfile`` as soon as the master exists, and the "safe" ones at the end of
its initialization, after the first workers were forked (core/uwsgi.c, "END OF
INITIALIZATION"), so a watcher that sees the file sees an instance that serves. Both are
written with the master's pid on the first start only (a reload keeps them) and removed by
``vacuum`` at exit. Here that point is the master loop's first tick, which comes after the
first workers were spawned.
"""

from __future__ import annotations

import os
from typing import Any

from vassal.log import log

from . import Service


class SafePidfiles(Service):
    name = "safe-pidfile"

    def __init__(self, paths: list[str], reloading: bool) -> None:
        self.paths = paths
        self.pending = not reloading

    @classmethod
    def from_config(cls, config: Any) -> SafePidfiles | None:
        paths = [p for p in (config.get("safe-pidfile"), config.get("safe-pidfile2")) if p]
        if not paths:
            return None
        return cls(paths, bool(os.environ.get("UWSGI_RELOADS")))

    def timeout(self, now: float) -> float | None:
        return 0.0 if self.pending else None

    def tick(self, now: float) -> None:
        if not self.pending:
            return
        self.pending = False
        for path in self.paths:
            log(f"writing pidfile to {path}")
            try:
                with open(path, "w") as f:
                    f.write(f"{os.getpid()}\n")
            except OSError as exc:
                log(f"could not write pidfile {path}: {exc.strerror}")
