"""One full read of a table-like source (pg rows, mongodb documents) turned into events.

Shared by pg and mongodb: a ``Touch`` for every usable record, then one ``Sync`` naming
every record seen, so the emperor stops only the vassals whose record is really gone. A
record that cannot be used is skipped but its name still counts as seen (its running
vassal is kept); the warning is logged once per record and reason, because the read
repeats every emperor-freq seconds and the log must not repeat with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from emperor.events import Event, Sync, Touch, as_name, printable

R = TypeVar("R")


class RecordScan(Generic[R]):
    """Turns the records of one read into events; remembers what it already warned about.

    ``name_of`` gives a record's vassal name as stored (anything: it is checked here),
    ``key_of`` how a skipped record is named in the log, ``parse`` its ``Touch`` (raising
    ``bad`` for a record that cannot be used). ``what`` names a record in the log.
    """

    def __init__(self, emit: Callable[[Event], None], log: logging.Logger, prefix: str, what: str,
                 valid: Callable[[str], bool], name_of: Callable[[R], object],
                 key_of: Callable[[R], str], parse: Callable[[R], Touch],
                 bad: type[Exception]) -> None:
        self._emit = emit
        self._log = log
        self._prefix = prefix
        self._what = what
        self._valid = valid
        self._name_of = name_of
        self._key_of = key_of
        self._parse = parse
        self._bad = bad
        self._warned: dict[str, str] = {}  # key -> reason already logged
        self.scans = 0  # successful full reads, for tests and stats

    def emit_all(self, records: Iterable[R]) -> None:
        names: set[str] = set()
        bad: dict[str, str] = {}
        for record in records:
            name = as_name(self._name_of(record))
            if name:
                names.add(name)  # a skipped record still protects its running vassal
            key = printable(self._key_of(record))
            try:
                touch = self._parse(record)
            except self._bad as exc:
                bad[key] = str(exc)
                continue
            except Exception as exc:  # one odd record must not stop the read
                bad[key] = f"{type(exc).__name__}: {exc}"
                continue
            if not self._valid(touch.name):
                bad[key] = (f"{printable(touch.name)!r} is not a valid vassal name "
                            "(needs a config extension)")
                continue
            self._emit(touch)
        for key, reason in bad.items():
            if self._warned.get(key) != reason:
                self._log.warning("%s skipping %s %s: %s", self._prefix, self._what, key, reason)
        self._warned = bad
        self.scans += 1
        self._emit(Sync(frozenset(names)))
