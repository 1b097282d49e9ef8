"""``imperium --fleet-status zoo://...``: where each vassal of a fleet runs, read from ZooKeeper.

Two views side by side, so that a disagreement shows: *placed on* is the placement every
member computes (monitors/fleet.py) from the live member list, and *reported by* is what
each member publishes in its node as handed to its emperor. They differ for a moment while
the fleet settles (a member just joined or left); a lasting difference means a member cannot
read the tree (see its log).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from monitors import fleet, zoo_member
from monitors.zoo import MAX_CONFIG
from monitors.zoo_source import parse_zoo_arg, redact

CONNECT_TIMEOUT = 5.0


def _children(client: Any, path: str) -> dict[str, tuple[bytes | None, Any]] | None:
    """The data and stat of each child of ``path`` (None: no such path; ``(None, None)`` for a
    child whose ACL refuses us, as monitors/zoo.py reads it)."""
    from kazoo.exceptions import NoAuthError, NoNodeError

    try:  # bounded: kazoo would hold a request made while it reconnects for the whole outage
        names = client.get_children_async(path).get(timeout=CONNECT_TIMEOUT)
    except NoNodeError:
        return None
    pending = {n: client.get_async(f"{path}/{n}") for n in names}
    out: dict[str, tuple[bytes | None, Any]] = {}
    for name, result in pending.items():
        try:
            data, stat = result.get(timeout=CONNECT_TIMEOUT)
        except NoNodeError:
            continue
        except NoAuthError:
            out[name] = (None, None)
            continue
        out[name] = (data or b"", stat)
    return out


def fleet_status(arg: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Print the fleet's members and vassals; 0, or 1 when the tree cannot be read."""
    try:
        from monitors.deps import require

        require("kazoo", "zoo", "zoo")
        source = parse_zoo_arg(arg)
    except ValueError as exc:
        print(f"imperium: {exc}", file=err)
        return 1
    import logging

    from kazoo.exceptions import KazooException, NoAuthError
    from kazoo.handlers.threading import KazooTimeoutError

    quiet = logging.getLogger("imperium.zoo.status")
    quiet.setLevel(logging.CRITICAL)
    client = source.client(quiet)
    try:
        try:
            client.start(timeout=CONNECT_TIMEOUT)
        except Exception:
            print(f"imperium: cannot connect to ZooKeeper at {source.hosts} "
                  f"within {CONNECT_TIMEOUT:g}s", file=err)
            return 1
        try:
            members_raw = _children(client, source.members) or {}
            vassals_raw = _children(client, source.path)
        except NoAuthError:
            print(f"imperium: ZooKeeper refuses access to {source.where}: wrong or missing "
                  "credentials", file=err)
            return 1
        except (KazooException, KazooTimeoutError) as exc:
            print(f"imperium: reading {source.where}: {type(exc).__name__}", file=err)
            return 1
    finally:
        try:
            client.stop()
            client.close()
        except Exception:  # nothing left to do with a client that will not stop
            pass
    # a persistent node is no emperor's (monitors/zoo.py ignores it too)
    unreadable = zoo_member.MemberInfo(error="ZooKeeper refuses to read its node")
    members = {name: zoo_member.decode(data) if data is not None else unreadable
               for name, (data, stat) in sorted(members_raw.items()) if stat is None or stat.ephemeralOwner}
    print(f"fleet {redact(arg)}", file=out)
    print(f"members ({len(members)}):", file=out)
    for name, info in members.items():
        labels = ",".join(f"{k}={v}" if v else k for k, v in sorted(info.labels.items())) or "-"
        runs = "?" if info.runs is None else str(len(info.runs))
        extra = f"  ({info.error}: left out of placement)" if info.error else ""
        print(f"  {name}  labels {labels}  host {info.host or '?'} pid {info.pid or '?'}  "
              f"runs {runs}{extra}", file=out)
    for name, (_, stat) in sorted(members_raw.items()):
        if stat is not None and not stat.ephemeralOwner:
            print(f"  {name}  (not an ephemeral node: ignored by the fleet; delete it)", file=out)
    if vassals_raw is None:
        print(f"vassals: the path {source.path} does not exist", file=out)
        return 0
    reported: dict[str, list[str]] = {}
    for name, info in members.items():
        for vassal in info.runs or ():
            reported.setdefault(vassal, []).append(name)
    labels = zoo_member.placement_members(members)
    rows = [("VASSAL", "REPLICAS", "PLACED ON", "REPORTED BY")]
    for name, (data, _) in sorted(vassals_raw.items()):
        if data is None:
            rows.append((name, "?", "(ZooKeeper refuses to read its node)", ", ".join(reported.get(name, []))))
            continue
        if len(data) > MAX_CONFIG:
            rows.append((name, "-", f"(config of {len(data)} bytes is too large)", ""))
            continue
        try:
            spec = fleet.spec_from_config(name, data)
        except fleet.BadSpec as exc:
            rows.append((name, "?", f"(bad fleet section: {exc})", ", ".join(reported.get(name, []))))
            continue
        placed = sorted(fleet.place(name, spec, labels))
        by = sorted(reported.get(name, []))
        mark = "" if by == placed else "  *"
        rows.append((name, spec.describe(), ", ".join(placed) or "-", (", ".join(by) or "-") + mark))
    print(f"vassals ({len(rows) - 1}):", file=out)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3],
              file=out)
    if any(r[3].endswith("*") for r in rows[1:]):
        print("* reported differs from placed: the fleet is settling, or a member cannot read "
              "the tree", file=out)
    return 0
