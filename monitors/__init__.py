"""Imperial monitors, found by URI scheme.

Built-in schemes are imported lazily (their client libraries are optional extras); third
parties register more under the ``imperium.monitors`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from emperor.events import Monitor

BUILTIN: dict[str, str] = {
    "dir": "monitors.dir:DirMonitor",
    "glob": "monitors.glob:GlobMonitor",
    "pg": "monitors.pg:PgMonitor",
    "mongodb": "monitors.mongodb:MongoMonitor",
    "amqp": "monitors.amqp:AmqpMonitor",
    "zmq": "monitors.zmq:ZmqMonitor",
    "zoo": "monitors.zoo:ZooMonitor",
}


class UnknownMonitor(LookupError):
    pass


def split_uri(arg: str) -> tuple[str, str]:
    """Return (scheme, argument) for an ``--emperor`` value.

    As uWSGI does, a value without ``scheme://`` is a directory, or a glob when it holds a
    wildcard.
    """
    if "://" in arg:
        scheme = arg.split("://", 1)[0]
        return scheme, arg
    if any(c in arg for c in "*?["):
        return "glob", arg
    return "dir", arg


def _load(target: str) -> type[Monitor]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def monitor_class(scheme: str) -> type[Monitor]:
    for ep in entry_points(group="imperium.monitors"):
        if ep.name == scheme and ep.value != BUILTIN.get(scheme):
            return ep.load()
    if scheme in BUILTIN:
        return _load(BUILTIN[scheme])
    known = sorted(set(BUILTIN) | {ep.name for ep in entry_points(group="imperium.monitors")})
    raise UnknownMonitor(f"no imperial monitor for scheme {scheme!r} (known: {', '.join(known)})")
