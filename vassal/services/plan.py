"""What the instance asks of ``vassal.services``: the checked plan of a config's services.

``ServicePlan(config)`` reads and checks every option of the master's duties up front (hook
actions, daemons, crons, the FIFO), so a value that can never work stops the start-up with
one line naming option and value before any of it runs. The instance then calls
``phase(...)`` at each moment of its start-up, ``worker_phase(...)`` in its workers and
takes ``services()`` for the master loop.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from vassal.log import log
from vassal.services import Service, commands, where
from vassal.services.autoreload import AutoReload
from vassal.services.control import MasterControl
from vassal.services.cron import Cron, CronConfigError, crons_from_config
from vassal.services.daemons import DaemonConfigError, Daemons, daemons_from_config
from vassal.services.fifo import FifoError, MasterFifo
from vassal.services.hooks import Context, FatalHook, HookPhases, has_phase, run_phase, validate
from vassal.services.touch import Touches


class PlanError(Exception):
    """A service option that cannot work; the message is one line."""


class ServicePlan:
    def __init__(self, config: Any) -> None:
        self.config = config
        errors = validate(config)
        if errors:
            raise PlanError(errors[0])
        try:
            self.daemons = daemons_from_config(config)
            self.crons = crons_from_config(config)
        except (DaemonConfigError, CronConfigError) as exc:
            raise PlanError(str(exc)) from None
        #: lines for values uWSGI would also run without (logged, the instance goes on)
        self.warnings = [w for item in (*self.daemons, *self.crons) for w in item.warnings]
        for value in config.getlist("touch-exec"):
            path, sep, command = value.partition(" ")
            if not sep or not command.strip():
                self.warnings.append(f"touch-exec = {value}: no command, must be: <file> <command> (skipped)")
        for line in self.warnings:
            log(f"imperium: {line}")
        commands.set_binsh(config.getlist("binsh"))
        self.control = MasterControl(config)
        self.ctx = Context(role="master", pending_signals=self.control.pending_signals)
        self.fifo = MasterFifo(config.getlist("master-fifo"), self.control) if config.getlist("master-fifo") else None
        #: the master's cron table, also for callables the signal framework registers
        self.cron = Cron(config, self.crons)
        self._services: list[Service] | None = None

    # --- start-up phases -----------------------------------------------------------------

    def phase(self, phase: str) -> None:
        """Run a start-up phase in the master (before the loop); PlanError when fatal."""
        try:
            run_phase(self.config, phase, self.ctx)
        except FatalHook as exc:
            raise PlanError(f"{phase} hook failed: {exc}") from None

    def has(self, phase: str) -> bool:
        return has_phase(self.config, phase)

    def worker_phase(self, phase: str) -> None:
        """Run a phase in a worker: a fatal failure stops the instance (uWSGI sends the
        master SIGINT and the worker carries on until the master stops it)."""
        try:
            run_phase(self.config, phase, Context(role="worker"))
        except FatalHook:
            try:
                os.kill(os.getppid(), signal.SIGINT)
            except OSError:
                pass

    def accepting(self, wid: int, first_spawn: bool) -> None:
        """The accepting phases of worker ``wid`` (the ``-once`` ones on its first spawn)."""
        self.worker_phase("accepting")
        if first_spawn:
            self.worker_phase("accepting-once")
        if wid == 1:
            self.worker_phase("accepting1")
            if first_spawn:
                self.worker_phase("accepting1-once")

    def wants_accepting(self) -> bool:
        return any(self.has(p) for p in ("accepting", "accepting-once", "accepting1", "accepting1-once"))

    # --- the master loop -----------------------------------------------------------------

    def open_fifo(self) -> None:
        if self.fifo is not None:
            try:
                self.fifo.open()
            except FifoError as exc:
                raise PlanError(f"{exc} ({where(self.config, 'master-fifo', self.fifo.path())})") from None

    def services(self) -> list[Service]:
        if self._services is None:
            out: list[Service] = [self.control, HookPhases(self.config, self.control)]
            if self.daemons:
                self.daemon_service: Daemons | None = Daemons(self.config, self.daemons, self.control)
                out.append(self.daemon_service)
            else:
                self.daemon_service = None
            out.append(self.cron)
            if self.fifo is not None:
                out.append(self.fifo)
            out.append(Touches(self.config, self.control))
            if int(self.config.get("py-autoreload") or 0) > 0:
                out.append(AutoReload(self.config))
            self._services = out
        return self._services

    def daemon_stats(self) -> list[dict[str, Any]]:
        self.services()
        return self.daemon_service.stats() if self.daemon_service is not None else []
