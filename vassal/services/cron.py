"""Cron: tasks the master starts at wall-clock times (``cron``, ``cron2``, ``unique-cron``).

uWSGI 2.0's rules (core/cron.c, core/master_utils.c):

- ``cron = MIN HOUR DAY MONTH WEEKDAY COMMAND``: five integers; ``-1`` means every value, and
  ``-N`` every value divisible by N (``-5`` in the minute field: every 5 minutes). Day of
  month and weekday are ORed when both are given (crontab's rule); weekday 7 is Sunday.
- ``cron2 = key=val,... COMMAND`` (``minute``, ``hour``, ``day``, ``month``, ``week``,
  ``unique``, ``harakiri``; unset fields are ``-1``); ``harakiri=0`` turns ``cron-harakiri``
  off for that task.
- ``unique-cron``: the task is not started again while its previous run is still alive.
- ``cron-harakiri = N``: a task still running N seconds after it started is killed (its
  whole process group).

A task runs at most once a minute: the master checks the table every second (local time)
and starts a task whose fields match if it has not started one in the last 60 seconds, so a
``-1 -1 -1 -1 -1`` task runs as soon as the instance starts, then once a minute.

Commands run through the shell in a session of their own (``vassal.services.commands``),
with the log lines uWSGI prints ("[uwsgi-cron] running ... (pid N)", "... exited after N
second(s)").

Signal crons (``uwsgi.add_cron``, the signal framework) live in ``vassal.services.signals``
with the same matching rule (``cron_matches``). An entry here may also be a Python callable
instead of a command: ``master_cron().table.add(minute, hour, day, month, week,
action=callable)`` in the master, or a table of one's own fed through
``master_cron().sources``; a callable is called in the master with the ``CronEntry`` and the
time (uWSGI's ``uc->func``) and starts no process.
``legion-cron``/``cron-legion``/``unique-legion-cron`` are refused: no legions here.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vassal.log import log
from vassal.services import Service, commands, log_verbose, parse_each
from vassal.services.daemons import kvlist
from vassal.services.signals import cron_matches

LEGION_OPTIONS = ("legion-cron", "cron-legion", "unique-legion-cron", "unique-cron-legion")


class CronConfigError(ValueError):
    """A cron option that cannot work: one line naming option and value."""


@dataclass
class CronEntry:
    minute: int = -1
    hour: int = -1
    day: int = -1
    month: int = -1
    week: int = -1
    command: str = ""
    action: Callable[[CronEntry, float], None] | None = None
    unique: bool = False
    mercy: int = 0  # cron2 harakiri: >0 seconds, -1 disabled, 0 the instance's cron-harakiri
    warnings: list[str] = field(default_factory=list)  # one line each, logged at start-up
    # state
    pid: int = -1
    started_at: float = 0.0
    harakiri_at: float = 0.0  # wall clock deadline, 0: none
    last_job: float = 0.0

    def describe(self) -> str:
        return self.command or getattr(self.action, "__name__", "callable")


def needs_run(tm: time.struct_time, e: CronEntry) -> bool:
    """uWSGI's ``uwsgi_cron_task_needs_execution`` (the rule signal crons share)."""
    return cron_matches(tm, e.minute, e.hour, e.day, e.month, e.week)


def parse_cron(option: str, value: str) -> CronEntry:
    if option in LEGION_OPTIONS:
        raise CronConfigError(f"{option} = {value}: legions are not available in Imperium")
    if option == "cron2":
        return _parse_cron2(value)
    fields = value.split(None, 5)
    try:
        numbers = [int(f) for f in fields[:5]]
    except ValueError:
        numbers = []
    if len(numbers) != 5 or len(fields) < 6 or not fields[5].strip():
        raise CronConfigError(f"{option} = {value}: invalid cron syntax, must be: "
                              "<minute> <hour> <day> <month> <weekday> <command>")
    e = CronEntry(*numbers, command=fields[5].strip())
    e.unique = option == "unique-cron"
    return e


_CRON2_KEYS = ("minute", "hour", "day", "month", "week", "unique", "harakiri", "legion")


def _parse_cron2(value: str) -> CronEntry:
    if not value.strip():
        raise CronConfigError("cron2: invalid command in cron definition (empty)")
    head, sep, command = value.partition(" ")
    if not sep:
        if "=" in value:
            raise CronConfigError(f"cron2 = {value}: unable to parse cron definition (no command)")
        return CronEntry(command=value.strip())
    if "=" not in head:
        return CronEntry(command=value.strip())
    kv = kvlist(head)
    unknown = [k for k in kv if k not in _CRON2_KEYS]
    if "legion" in kv:
        raise CronConfigError(f"cron2 = {value}: legions are not available in Imperium")
    if not command.strip():
        raise CronConfigError(f"cron2 = {value}: invalid command in cron definition")
    e = CronEntry(command=command.strip())
    # uWSGI skips keys it does not know: so do we, saying so
    e.warnings = [f"cron2 = {value}: unknown key {k!r} ignored" for k in unknown]
    for key in ("minute", "hour", "day", "month", "week"):
        if key in kv:
            setattr(e, key, _atoi(kv[key]))
    e.unique = bool(_atoi(kv.get("unique", "0")))
    if "harakiri" in kv:
        e.mercy = _atoi(kv["harakiri"]) or -1
    return e


def _atoi(text: str) -> int:
    text = text.strip()
    n = 0
    sign = 1
    for i, c in enumerate(text):
        if i == 0 and c in "+-":
            sign = -1 if c == "-" else 1
        elif c.isdigit():
            n = n * 10 + int(c)
        else:
            break
    return sign * n


def crons_from_config(config: Any) -> list[CronEntry]:
    names = ("cron", "cron2", "unique-cron", *LEGION_OPTIONS)
    return parse_each(config, names, parse_cron, CronConfigError)


class CronTable:
    """The master's cron entries (commands from the config, callables from the API)."""

    def __init__(self) -> None:
        self.entries: list[CronEntry] = []

    def add(self, minute: int, hour: int, day: int, month: int, week: int, *, command: str = "",
            action: Callable[[CronEntry, float], None] | None = None, unique: bool = False) -> CronEntry:
        entry = CronEntry(minute, hour, day, month, week, command=command, action=action, unique=unique)
        self.entries.append(entry)
        return entry


_master_cron: Cron | None = None


def master_cron() -> Cron | None:
    """The master's cron service (None outside a master): where the signal framework adds
    its entries (``master_cron().table.add(...)``, ``master_cron().sources.append(...)``)."""
    return _master_cron


class Cron(Service):
    name = "cron"

    def __init__(self, config: Any, entries: list[CronEntry]) -> None:
        self.table = CronTable()
        self.table.entries.extend(entries)
        self.sources: list[Callable[[], Iterable[CronEntry]]] = []
        self.harakiri = int(config.get("cron-harakiri") or 0)
        self.last_second = 0
        self.running_now = False

    def start(self, master: Any) -> None:
        global _master_cron
        _master_cron = self
        for e in self.table.entries:
            if e.command:
                log(f"[uwsgi-cron] command \"{e.command}\" registered as cron task")

    def _entries(self) -> list[CronEntry]:
        out = list(self.table.entries)
        for source in self.sources:
            out.extend(source())
        return out

    def running(self) -> None:
        self.running_now = True

    def timeout(self, now: float) -> float | None:
        if not self.running_now or not (self.table.entries or self.sources):
            return None
        return max(0.0, 1.0 - (time.time() % 1.0))

    def tick(self, now: float) -> None:
        if not self.running_now:
            return
        wall = time.time()
        second = int(wall)
        if second == self.last_second:
            return
        self.last_second = second
        tm = time.localtime(second)
        for e in self._entries():
            if e.unique and e.pid >= 0:
                continue
            if needs_run(tm, e) and second - e.last_job >= 60:
                self._run(e, second)
                e.last_job = second
        for e in self.table.entries:
            if e.pid >= 0 and e.harakiri_at and e.harakiri_at < second:
                log(f"*** HARAKIRI ON CRON \"{e.command}\" (pid: {e.pid}) ***")
                commands.kill_group(e.pid, signal.SIGKILL)
                e.harakiri_at = 0.0

    def _run(self, e: CronEntry, now: int) -> None:
        if e.action is not None:
            try:
                e.action(e, float(now))
            except Exception as exc:  # noqa: BLE001 - a registered callable must not stop the master
                log(f"[uwsgi-cron] {e.describe()} raised {type(exc).__name__}: {exc}")
            return
        if not e.command:
            return
        pid = commands.spawn(e.command)
        if pid < 0:
            return
        e.pid = pid
        e.started_at = now
        log_verbose(f"[uwsgi-cron] running \"{e.command}\" (pid {pid})")
        if e.mercy > 0:
            e.harakiri_at = now + e.mercy
        elif e.mercy == 0 and self.harakiri:
            e.harakiri_at = now + self.harakiri

    def child_exited(self, pid: int, status: int) -> bool:
        for e in self.table.entries:
            if e.pid == pid:
                log(f"[uwsgi-cron] command \"{e.command}\" running with pid {pid} exited after "
                    f"{int(time.time() - e.started_at)} second(s)")
                e.pid = -1
                e.started_at = 0.0
                e.harakiri_at = 0.0
                return True
        return False
