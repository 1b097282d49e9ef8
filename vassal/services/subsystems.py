"""Signals, the spooler and mules of one instance, set up together before the first fork.

The three share their plumbing (mules and spoolers receive signals, anyone may spool a job or
message a mule), so ``Subsystems`` makes all of it in the master at start-up, puts the API on
the ``uwsgi`` module, and hands the instance the master services that run it plus the two
hooks a worker needs (``in_worker`` right after the fork, ``watch`` for its event loop).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from vassal.api import role
from vassal.api.harakiri import UserHarakiri
from vassal.api.mules import MuleError, Mules
from vassal.api.mules import parse as parse_mules
from vassal.api.signals import SignalHub
from vassal.api.spooler import SpoolError, Spoolers, SpoolerSettings
from vassal.services import Service
from vassal.services.harakiri import UserHarakiriService
from vassal.services.mules import MuleService
from vassal.services.signals import SignalOptionError, SignalService
from vassal.services.spooler import SpoolerService

#: names uWSGI's module has only with a spooler configured
SPOOLER_NAMES = frozenset({"spool", "send_to_spooler", "spooler_jobs", "spooler_pid", "spooler_pids",
                           "set_spooler_frequency", "spooler_get_task", "spoolers"})


class SetupError(ValueError):
    """A signal, spooler or mule option that cannot be used: one line naming it."""


class Subsystems:
    def __init__(self, config: Any, module: Any, board: Any, nworkers: int,
                 title: Callable[[str], str | None] | None = None) -> None:
        try:
            mule_specs, farms = parse_mules(config)
            settings = SpoolerSettings.from_config(config)
            self.signals = SignalHub(nworkers, len(mule_specs), [f.name for f in farms], settings is not None,
                                     int(config.get("signal-bufsize") or 0), board)
            self.mules = Mules(mule_specs, farms, self.signals, int(config.get("mule-msg-size") or 0))
            self.spoolers = Spoolers(settings, socket.gethostname()) if settings else None
            self.services: list[Service] = [SignalService(self.signals, config)]
        except (MuleError, SpoolError, SignalOptionError) as exc:
            raise SetupError(str(exc)) from None
        self.board = board
        self.module = module
        module.SPOOL_OK, module.SPOOL_RETRY, module.SPOOL_IGNORE = -2, -1, 0
        self.signals.install(module)
        self.mules.install(module)
        if self.spoolers is not None:
            self.spoolers.install(module)
            self.spoolers.signal_hub = self.signals
            self.services.append(SpoolerService(self.spoolers, config, title))
        else:
            module.__getattr__ = _no_spooler
            module.i_am_the_spooler = lambda: None
        mule_service = MuleService(self.mules, config, title) if mule_specs else None
        if mule_service is not None:
            self.services.append(mule_service)
        self.harakiri = UserHarakiri(nworkers, len(mule_specs), self.spoolers)
        self.harakiri.install(module)
        self.services.append(UserHarakiriService(
            self.harakiri, lambda wid: int(board.workers[wid].pid) if board is not None else 0,
            lambda mid: mule_service.children[mid - 1].pid if mule_service is not None else 0))

    def in_worker(self, wid: int) -> None:
        """In a worker right after the fork: its role, its signal table, its pipes."""
        role.become(role.Role.WORKER, worker_id=wid)
        self.harakiri.deadlines[self.harakiri.worker_index(wid)] = 0.0
        self.signals.reset_worker_area(wid)
        self.signals.close_unused()
        self.mules.close_unused()
        board = self.board

        def count(_sig: int) -> None:
            board.workers[wid].signals += 1

        self.signals.on_signal = count if board is not None else None

    def post_fork(self) -> None:
        """``uwsgi.post_fork_hook``: in the worker, before a lazy app loads (uWSGI's order)."""
        role.run_post_fork_hook(self.module)

    def watch(self) -> dict[int, Callable[[], Any]]:
        """fds a worker's loop must watch, with what to do when one is readable."""
        return self.signals.watch()

    def stats_sections(self) -> list[Callable[[Any], None]]:
        """Top-level sections these subsystems add to the stats document (uWSGI's order)."""
        return [self._stats_spoolers] if self.spoolers is not None else []

    def _stats_spoolers(self, e: Any) -> None:
        assert self.spoolers is not None
        e.key("spoolers")
        e.list_open()
        n = len(self.spoolers.slot_dirs)
        for i, d in enumerate(self.spoolers.slot_dirs):
            s = self.spoolers.slots[i]
            e.obj_open()
            e.kv("dir", d)
            e.kv("pid", s.pid)
            e.kv("tasks", s.tasks)
            e.kv("respawns", s.respawns)
            e.kv("running", s.running, comma=False)
            e.obj_close()
            if i < n - 1:
                e.comma()
        e.list_close()


def _no_spooler(name: str) -> Any:
    if name in SPOOLER_NAMES:
        raise AttributeError(f"module 'uwsgi' has no attribute {name!r}: this instance has no spooler "
                             "(add spooler = DIRECTORY)")
    raise AttributeError(f"module 'uwsgi' has no attribute {name!r}")
