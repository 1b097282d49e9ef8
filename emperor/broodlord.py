"""Broodlord, the emperor's side: zerg vassals started on a vassal's SOS (byte 30).

uWSGI (core/emperor.c): with ``emperor-broodlord N`` > 0 and fewer than N zergs running,
an SOS from vassal ``NAME`` adds a vassal ``NAME:zerg`` with the same uid/gid; its argv
loads the ``[zerg]`` section of the same config (``--ini NAME:zerg``: the loader flag is
chosen from the part before ``:``), and ``UWSGI_BROODLORD_NUM`` counts the zergs ever
spawned. A zerg attaches to its parent's ``zerg-server`` and goes away by itself when idle
(``idle`` + ``die-on-idle`` in the stanza: byte 22).

What differs, and why:

* A zerg of a vassal whose config came from a monitor (pg, mongodb, amqp, zmq) gets that
  config over its config fd (``emperor://NAME:zerg``) and reads the ``[zerg]`` section from
  it. uWSGI passes no config to such a zerg, which then cannot start (its issue 2166).
* Several zergs of one vassal are listed with distinct ids (``NAME:zerg``, ``NAME:zerg:2``,
  ...): uWSGI shows them all as ``NAME:zerg``. The argv is ``NAME:zerg`` for every one.
* The desired set decides: when the parent is removed or replaced, its zergs are stopped.
  A zerg that dies is not respawned (a new SOS brings a new one), and a zerg that dies
  before it became loyal holds back its parent's next zergs by the blacklist's back-off
  (key ``NAME:zerg``), so a stanza that cannot start is not spawned in a tight loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from emperor.lifecycle import Kind

if TYPE_CHECKING:
    from emperor.vassal import VassalHandle

SUFFIX = ":zerg"


def blacklist_key(parent: str) -> str:
    return parent + SUFFIX


def is_zerg_of(v: VassalHandle, parent: str) -> bool:
    return v.life.kind is Kind.ZERG and v.parent == parent


def zerg_count(vassals: Iterable[VassalHandle]) -> int:
    """Zergs in the table, dying ones included (uWSGI's emperor_broodlord_count, which
    emperor_del decrements)."""
    return sum(1 for v in vassals if v.life.kind is Kind.ZERG and not v.exited)


def zerg_name(parent: str, taken: Iterable[str]) -> str:
    """The id of a new zerg of ``parent``: ``parent:zerg``, then ``parent:zerg:2``..."""
    names = set(taken)
    base = parent + SUFFIX
    if base not in names:
        return base
    n = 2
    while f"{base}:{n}" in names:
        n += 1
    return f"{base}:{n}"
