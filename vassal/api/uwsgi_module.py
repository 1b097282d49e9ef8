"""The ``uwsgi`` module offered to apps, assembled from the subsystem modules of this room.

Installed in ``sys.modules['uwsgi']`` before the app is imported, so ``import uwsgi`` works
and tells the app it runs under a uWSGI-compatible server.

Each subsystem is a module of ``vassal.api`` with up to three functions, called in the master
before any worker is forked, in ``SUBSYSTEMS`` order:

- ``setup(ctx)`` (optional): read its options, create its shared memory, append the master
  services it needs to ``ctx.services``; raise ``ApiError`` (one line naming the option) on
  bad input;
- ``exports(ctx) -> dict``: the names it adds to the module (functions and constants);
- ``stats(ctx) -> dict`` (optional): what it adds to the stats document, as lists by key
  (``{"caches": [...], "locks": [(name, pid), ...]}``), joined in ``SUBSYSTEMS`` order by
  ``stats_parts``.

A new subsystem is a new module plus one line in ``SUBSYSTEMS``. Values that change per
process (``worker_id()``) are read from ``context.ctx`` when called.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from vassal.api import (
    background,
    caches,
    context,
    locks,
    metrics,
    not_built,
    process,
    rpc,
    sharedarea,
)
from vassal.api.context import ApiContext, ApiError

#: the subsystems, in the order they are set up and their names added (a later one may
#: replace a name of an earlier one)
SUBSYSTEMS: tuple[types.ModuleType, ...] = (
    process,
    locks,
    sharedarea,
    caches,
    rpc,
    background,
    metrics,
)

__all__ = ["ApiError", "install", "services", "set_apps", "set_worker_id", "SUBSYSTEMS"]


def install(config: Any, version: str, numproc: int, masterpid: int, board: Any, sockets: list,
            buffer_size: int) -> types.ModuleType:
    """Set every subsystem up (shared memory before the fork), create the module and
    register it as ``uwsgi``. Raises ``ApiError`` on a bad option."""
    ctx = ApiContext(config=config, version=version, numproc=numproc, masterpid=masterpid, board=board,
                     sockets=sockets, buffer_size=buffer_size)
    context.ctx = ctx
    m = types.ModuleType("uwsgi", "uWSGI-compatible API offered by Imperium")
    for sub in SUBSYSTEMS:
        setup = getattr(sub, "setup", None)
        if setup is not None:
            setup(ctx)
        for name, value in sub.exports(ctx).items():
            setattr(m, name, value)
    # what is not built is refused by name, with the reason (vassal/api/not_built.py)
    m.__getattr__ = not_built.module_getattr(getattr(m, "__getattr__", None))  # type: ignore[method-assign]
    sys.modules["uwsgi"] = m
    return m


def services() -> list:
    """The master services the subsystems asked for (cache sweeper, ...)."""
    return list(context.ctx.services)


def stats_parts() -> dict[str, list]:
    """What the subsystems add to the stats document: each key's lists joined in order."""
    out: dict[str, list] = {}
    for sub in SUBSYSTEMS:
        fn = getattr(sub, "stats", None)
        if fn is not None:
            for key, items in fn(context.ctx).items():
                out.setdefault(key, []).extend(items)
    return out


def set_apps(apps: list) -> None:
    """The apps of this process (``vassal.wsgi.App``), for ``uwsgi.workers()``."""
    context.ctx.apps = list(apps)


def set_worker_id(wid: int) -> None:
    context.ctx.worker_id = wid


def set_master_pid(pid: int) -> None:
    """The master's pid changed (``daemonize2`` forks after the module is installed)."""
    context.ctx.masterpid = pid
