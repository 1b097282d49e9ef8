"""``imperium ctl [--json] SOCKET COMMAND [NAME]``: the client of the emperor's control socket.

Sends one command line to ``emperor-control-socket`` (see emperor.control for the
commands) and prints the answer: a table or ``key: value`` lines, or the JSON document
itself with ``--json``. Exit status 0 when the emperor says ok, 1 when it refuses (the
reason on stderr: ``imperium ctl: no vassal named x.ini``), 2 for a usage error or a
socket that cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from emperor.control import COMMANDS, NAMED

TIMEOUT = 10.0


def request(path: str, line: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """One exchange with the control socket (OSError when it cannot be reached)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(line.encode("utf-8", "surrogateescape") + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[title for _, title in columns]]
    for row in rows:
        cells.append([_cell(row.get(key)) for key, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


VASSAL_COLUMNS = [("id", "NAME"), ("state", "STATE"), ("pid", "PID"), ("respawns", "RESPAWNS"),
                  ("loyal", "LOYAL"), ("monitor", "MONITOR")]
BLACKLIST_COLUMNS = [("id", "NAME"), ("attempt", "ATTEMPT"), ("throttle_level", "THROTTLE_MS"),
                     ("retry_in", "RETRY_IN_S")]


def render(command: str, answer: dict[str, Any]) -> str:
    if command == "list":
        rows = [{**r, "state": r.get("hold") or r.get("state")} for r in answer["vassals"]]
        return _table(rows, VASSAL_COLUMNS)
    if command == "blacklist":
        return _table(answer["blacklist"], BLACKLIST_COLUMNS)
    if command == "status":
        lines = [f"{k}: {_cell(v)}" for k, v in answer["vassal"].items()]
        if answer.get("blacklist"):
            lines += [f"blacklist.{k}: {_cell(v)}" for k, v in answer["blacklist"].items()]
        return "\n".join(lines)
    if command == "clear-blacklist":
        return f"ok: {answer.get('cleared', 0)} name(s) cleared"
    return "ok"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imperium ctl", description="Drive a running emperor "
                                     "through its emperor-control-socket.")
    parser.add_argument("--json", action="store_true", help="print the emperor's JSON answer")
    parser.add_argument("socket", help="the emperor's control socket (emperor-control-socket)")
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("name", nargs="?", help="the vassal, for " + ", ".join(sorted(NAMED)))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    if (args.command in NAMED) != (args.name is not None):
        what = "needs a vassal name" if args.command in NAMED else "takes no vassal name"
        print(f"imperium ctl: {args.command} {what}", file=sys.stderr)
        return 2
    line = args.command + (f" {args.name}" if args.name is not None else "")
    try:
        answer = request(args.socket, line)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        print(f"imperium ctl: cannot talk to the emperor on {args.socket}: {reason}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer, indent=2))
    if not answer.get("ok"):
        print(f"imperium ctl: {answer.get('error', 'refused')}", file=sys.stderr)
        return 1
    if not args.json:
        print(render(args.command, answer))
    return 0
