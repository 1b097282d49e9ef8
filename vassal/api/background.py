"""Signals, the spooler and mules: one subsystem of the ``uwsgi`` module, set up together.

The three share their plumbing (mules and spoolers receive signals, any process may spool a
job or message a mule), so ``setup`` makes all of it in the master before the first fork:
the signal hub, the message queues, the spooler table, the user-harakiri deadlines, and the
master services that run them (``vassal.services.signals/spooler/mules/harakiri``). The
instance then uses ``current()`` for the hooks a worker needs (``in_worker`` right after the
fork, ``post_fork`` before a lazy app loads, ``watch`` for its event loop) and for the stats.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from vassal.api import role
from vassal.api.context import ApiContext, ApiError
from vassal.api.harakiri import UserHarakiri
from vassal.api.mules import MuleError, Mules
from vassal.api.mules import parse as parse_mules
from vassal.api.signals import SignalHub
from vassal.api.spooler import SpoolError, Spoolers, SpoolerSettings
from vassal.services.harakiri import UserHarakiriService
from vassal.services.mules import MuleService
from vassal.services.signals import SignalOptionError, SignalService
from vassal.services.spooler import SpoolerService

#: names uWSGI's module has only with a spooler configured
SPOOLER_NAMES = frozenset({"spool", "send_to_spooler", "spooler_jobs", "spooler_pid", "spooler_pids",
                           "set_spooler_frequency", "spooler_get_task", "spoolers"})


class Background:
    def __init__(self, config: Any, board: Any, nworkers: int) -> None:
        self.board = board
        #: the process title of a child ("mule 1", "spooler"), set by the instance
        self.title: Callable[[str], str | None] | None = None
        try:
            mule_specs, farms = parse_mules(config)
            settings = SpoolerSettings.from_config(config)
            self.signals = SignalHub(nworkers, len(mule_specs), [f.name for f in farms], settings is not None,
                                     int(config.get("signal-bufsize") or 0), board)
            self.mules = Mules(mule_specs, farms, self.signals, int(config.get("mule-msg-size") or 0))
            self.spoolers = Spoolers(settings, socket.gethostname()) if settings else None
            self.services: list[Any] = [SignalService(self.signals, config)]
        except (MuleError, SpoolError, SignalOptionError) as exc:
            raise ApiError(str(exc)) from None
        title = self._title
        if self.spoolers is not None:
            self.spoolers.signal_hub = self.signals
            self.services.append(SpoolerService(self.spoolers, config, title))
        mule_service = MuleService(self.mules, config, title) if mule_specs else None
        if mule_service is not None:
            self.services.append(mule_service)
        self.harakiri = UserHarakiri(nworkers, len(mule_specs), self.spoolers)
        self.services.append(UserHarakiriService(
            self.harakiri, lambda wid: int(board.workers[wid].pid) if board is not None else 0,
            lambda mid: mule_service.children[mid - 1].pid if mule_service is not None else 0))

    def _title(self, what: str) -> str | None:
        return self.title(what) if self.title is not None else None

    def exports(self) -> dict[str, Any]:
        names: dict[str, Any] = {}
        names.update(self.signals.exports())
        names.update(self.mules.exports())
        names.update(self.harakiri.exports())
        names["i_am_the_spooler"] = lambda: True if role.ME.role is role.Role.SPOOLER else None
        if self.spoolers is not None:
            names.update(self.spoolers.exports())
        else:
            names["__getattr__"] = _no_spooler
        return names

    def in_worker(self, wid: int) -> None:
        """In a worker right after the fork: its role, its signal table, its pipes."""
        role.become(role.Role.WORKER, worker_id=wid)
        self.harakiri.deadlines[self.harakiri.worker_index(wid)] = 0.0
        self.signals.reset_worker_area(wid)
        self.signals.close_unused()
        self.mules.close_unused()
        board = self.board

        def running(sig: int) -> None:
            w = board.workers[wid]
            w.signals += 1
            w.signum = sig
            w.sig = 1  # the stats say "sigN" meanwhile, as uWSGI's

        def done() -> None:
            board.workers[wid].sig = 0

        self.signals.on_signal = running if board is not None else None
        self.signals.after_signal = done if board is not None else None

    def post_fork(self) -> None:
        """``uwsgi.post_fork_hook``: in the worker, before a lazy app loads (uWSGI's order)."""
        role.run_post_fork_hook()

    def watch(self) -> dict[int, Callable[[], Any]]:
        """fds a worker's loop must watch, with what to do when one is readable."""
        return self.signals.watch()

    def spooler_stats(self) -> list[dict[str, Any]]:
        if self.spoolers is None:
            return []
        return [{"dir": d, "pid": int(s.pid), "tasks": int(s.tasks), "respawns": int(s.respawns),
                 "running": int(s.running)}
                for d, s in zip(self.spoolers.slot_dirs, self.spoolers.slots, strict=True)]

    def stats_sections(self) -> list[Callable[[Any], None]]:
        """Top-level sections these subsystems add to the stats document (uWSGI's order)."""
        return [self._stats_spoolers] if self.spoolers is not None else []

    def _stats_spoolers(self, e: Any) -> None:
        entries = self.spooler_stats()
        e.key("spoolers")
        e.list_open()
        for i, entry in enumerate(entries):
            e.obj_open()
            keys = list(entry)
            for k in keys:
                e.kv(k, entry[k], comma=k != keys[-1])
            e.obj_close()
            if i < len(entries) - 1:
                e.comma()
        e.list_close()


_current: Background | None = None


def current() -> Background:
    assert _current is not None, "background.setup() has not run"
    return _current


def setup(ctx: ApiContext) -> None:
    global _current
    _current = Background(ctx.config, ctx.board, ctx.numproc)
    ctx.services.extend(_current.services)


def exports(ctx: ApiContext) -> dict[str, Any]:
    return current().exports()


def _no_spooler(name: str) -> Any:
    if name in SPOOLER_NAMES:
        raise AttributeError(f"module 'uwsgi' has no attribute {name!r}: this instance has no spooler "
                             "(add spooler = DIRECTORY)")
    raise AttributeError(f"module 'uwsgi' has no attribute {name!r}")
