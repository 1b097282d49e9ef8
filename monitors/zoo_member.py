"""A fleet member's znode: what an emperor says about itself under the members path.

The node is ephemeral: it lives as long as the emperor's ZooKeeper session, which is how
the other emperors learn that it died (the session expires) or left (it closed the session).
Its data is a small JSON object::

    {"labels": {"zone": "eu"}, "host": "web1", "pid": 4242, "boot": "<boot id>",
     "since": 1796000000.0, "runs": ["blog.ini", "shop.ini"]}

``labels`` decide placement; ``runs`` is what this member's monitor has handed to its
emperor (the ``--fleet-status`` view); ``host``/``boot``/``pid`` let an emperor restarted on
the same machine recognise the node of its dead predecessor and take it over at once
instead of waiting for that session to expire.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: ZooKeeper's default jute.maxbuffer is 1 MiB; the runs list is cut well below it
MAX_DATA = 512 * 1024


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def default_name() -> str:
    """One emperor per machine: the host name is the natural member name."""
    return socket.gethostname() or "localhost"


@dataclass
class MemberInfo:
    labels: dict[str, str] = field(default_factory=dict)
    host: str = ""
    pid: int = 0
    boot: str = ""
    since: float = 0.0
    runs: list[str] | None = None  # None: not published (or cut)
    error: str | None = None  # the data could not be read: no labels are assumed


def encode(labels: Mapping[str, str], runs: Iterable[str], since: float) -> bytes:
    doc: dict[str, object] = {"labels": dict(labels), "host": socket.gethostname(),
                              "pid": os.getpid(), "boot": boot_id(), "since": since}
    names = sorted(runs)
    doc["runs"] = names
    data = json.dumps(doc, separators=(",", ":")).encode()
    if len(data) > MAX_DATA:
        doc["runs"] = None
        doc["runs_count"] = len(names)
        data = json.dumps(doc, separators=(",", ":")).encode()
    return data


#: a pid outside this range is garbage (Linux's pid_max is at most 2**22)
_PID_LIMIT = 2 ** 31


def decode(data: bytes) -> MemberInfo:
    """What a member node says; never raises: data that cannot be read gives ``error``."""
    try:
        doc = json.loads(data.decode())
    except (ValueError, RecursionError):  # not UTF-8, not JSON, a number of 5000 digits...
        return MemberInfo(error="its data is not JSON")
    if not isinstance(doc, dict):
        return MemberInfo(error="its data is not a JSON object")
    labels = doc.get("labels")
    if labels is None:
        labels = {}
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        return MemberInfo(error="its labels are not a string map")
    runs = doc.get("runs")
    if not (isinstance(runs, list) and all(isinstance(r, str) for r in runs)):
        runs = None
    pid = doc.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < _PID_LIMIT:
        pid = 0  # os.kill() of a bool or a huge number would mean another pid, or raise
    since = doc.get("since")
    try:
        since = float(since) if isinstance(since, int | float) and not isinstance(since, bool) else 0.0
    except OverflowError:  # an integer beyond any float
        since = 0.0
    return MemberInfo(labels=labels, host=_text(doc.get("host")), pid=pid, boot=_text(doc.get("boot")),
                      since=since, runs=runs)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def placement_members(members: Mapping[str, MemberInfo]) -> dict[str, Mapping[str, str]]:
    """The members placement counts, with their labels: a node whose data cannot be read is
    left out (every emperor reads the same node the same way, so they all agree on that),
    rather than taken as a member without labels that every unconstrained vassal could land on."""
    return {name: info.labels for name, info in members.items() if info.error is None}


def left_by_dead_local_emperor(info: MemberInfo) -> bool:
    """Was this node written by an emperor of this machine (this boot) that no longer runs?

    A live pid is trusted (it may be a recycled pid: then we wait for the session to
    expire, the safe way); only a pid that is certainly gone lets us take the name over.
    """
    if info.error or not info.host or info.host != socket.gethostname():
        return False
    if not info.boot or info.boot != boot_id() or info.pid <= 0 or info.pid == os.getpid():
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(info.pid)


def _zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet is dead for us."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # the state follows the command name, which is in parentheses and may hold anything
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"Z"
