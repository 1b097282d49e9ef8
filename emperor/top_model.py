"""What ``imperium top`` shows, gathered without a terminal (testable on its own).

Each refresh reads the emperor's stats server (ADDR: ``host:port`` or a UNIX path; ours or
uWSGI's, the same JSON), then for every vassal:

- its state, from the uWSGI fields (``cursed`` -> dying, ``loyal``, ``accepting``,
  ``ready``, a pid of -1 -> starting, or waiting when it is on demand);
- its memory: the RSS of the vassal's process and all its descendants (master and
  workers), from ``/proc`` (top runs on the emperor's machine);
- its requests per second: the rate of the sum of its workers' ``requests``, read from the
  vassal's own stats server. Where that server is: ``--vassal-stats TEMPLATE``
  (``{name}`` the vassal name, ``{stem}`` without its extension), else found by looking at
  the listening sockets the vassal's master holds (``/proc/PID/fd`` and ``/proc/net``) and
  keeping the one that sends a stats document on connect (found once per pid; a
  ``stats-http`` server, which waits for a request, is only found through the template;
  a vassal without one is looked at again every few seconds).

Nothing here writes to the emperor or the vassals; every read has a short deadline.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

READ_TIMEOUT = 2.0
PROBE_TIMEOUT = 0.3
RETRY_DISCOVERY = 2.0  # seconds before looking again for a stats server not found


@dataclass
class Row:
    name: str
    state: str
    pid: int
    respawns: int
    loyal: int
    rss: int | None = None  # bytes, master and workers
    rps: float | None = None  # requests per second
    stats: str | None = None  # the vassal's stats server


@dataclass
class Frame:
    emperor: str
    rows: list[Row] = field(default_factory=list)
    blacklisted: int = 0
    error: str | None = None
    at: float = 0.0


def read_stats(address: str, timeout: float = READ_TIMEOUT) -> dict:
    """The JSON document a stats server sends on connect (ValueError/OSError otherwise)."""
    family, addr = parse_address(address)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(addr)
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    return json.loads(data)


def parse_address(address: str) -> tuple[int, object]:
    if address.startswith("@"):
        return socket.AF_UNIX, "\0" + address[1:]
    if address.startswith("/") or address.startswith("."):
        return socket.AF_UNIX, address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address}: expected HOST:PORT or a UNIX socket path")
    host = host.strip("[]") or "127.0.0.1"
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


def state_of(v: dict) -> str:
    if v.get("cursed"):
        return "dying"
    if v.get("pid", -1) <= 0:
        return "waiting" if v.get("on_demand") else "starting"
    for fact in ("loyal", "accepting", "ready"):
        if v.get(fact):
            return fact
    return "running"


# --- /proc -----------------------------------------------------------------------------------


def process_table() -> dict[int, list[int]]:
    """ppid -> children, for every process."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split(b" ", 2)[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree_rss(pid: int, children: dict[int, list[int]]) -> int | None:
    page = os.sysconf("SC_PAGE_SIZE")
    total, stack, seen = 0, [pid], False
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
            seen = True
        except (OSError, ValueError, IndexError):
            pass
        stack.extend(children.get(p, ()))
    return total if seen else None


def listening_sockets(pid: int) -> list[str]:
    """Addresses of the listening sockets process ``pid`` holds (what we may read)."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    found: list[str] = []
    for name, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                found.append(_tcp_address(cols[1], v6))
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        cols = line.split()
        # Num RefCount Protocol Flags(0x10000 = listening) Type St Inode Path
        if len(cols) >= 8 and cols[6] in inodes and int(cols[3], 16) & 0x10000:
            found.append(cols[7])
    return found


def _tcp_address(hexaddr: str, v6: bool) -> str:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if v6:
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
        return f"[{ip}]:{int(port, 16)}"
    ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    if ip == "0.0.0.0":
        ip = "127.0.0.1"
    return f"{ip}:{int(port, 16)}"


def probe_stats(address: str) -> bool:
    """A stats server sends a document on connect without being asked."""
    try:
        family, addr = parse_address(address)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(PROBE_TIMEOUT)
            s.connect(addr)
            head = s.recv(64)
    except (OSError, ValueError):
        return False
    return head.lstrip().startswith(b"{")


# --- the model -------------------------------------------------------------------------------


class TopModel:
    def __init__(self, emperor: str, vassal_stats: str | None = None) -> None:
        self.emperor = emperor
        self.template = vassal_stats
        #: vassal pid -> (its stats server or None, when it was looked for)
        self.found: dict[int, tuple[str | None, float]] = {}
        self.last: dict[str, tuple[float, int]] = {}  # name -> (monotonic, total requests)

    def stats_address(self, name: str, pid: int) -> str | None:
        if self.template:
            stem = name.rsplit(".", 1)[0] if "." in name else name
            return self.template.format(name=name, stem=stem)
        if pid <= 0:
            return None
        known = self.found.get(pid)
        now = time.monotonic()
        # a vassal binds its stats server after its other sockets: look again a while later
        if known is None or (known[0] is None and now - known[1] >= RETRY_DISCOVERY):
            known = (next((a for a in listening_sockets(pid) if probe_stats(a)), None), now)
            self.found[pid] = known
        return known[0]

    def refresh(self) -> Frame:
        frame = Frame(self.emperor, at=time.time())
        try:
            doc = read_stats(self.emperor)
        except (OSError, ValueError) as exc:
            frame.error = f"cannot read the emperor's stats on {self.emperor}: " \
                          f"{getattr(exc, 'strerror', None) or exc}"
            return frame
        frame.blacklisted = len(doc.get("blacklist", []))
        children = process_table()
        alive = set()
        for v in doc.get("vassals", []):
            name, pid = str(v.get("id")), int(v.get("pid", -1))
            row = Row(name, state_of(v), pid, int(v.get("respawns", 0)), int(v.get("loyal", 0)))
            if pid > 0:
                alive.add(pid)
                row.rss = tree_rss(pid, children)
                row.stats = self.stats_address(name, pid)
                if row.stats:
                    row.rps = self._rate(name, row.stats)
            frame.rows.append(row)
        self.found = {p: a for p, a in self.found.items() if p in alive}
        names = {r.name for r in frame.rows}
        self.last = {n: x for n, x in self.last.items() if n in names}
        return frame

    def _rate(self, name: str, address: str) -> float | None:
        try:
            doc = read_stats(address, timeout=PROBE_TIMEOUT * 3)
        except (OSError, ValueError):
            return None
        total = sum(int(w.get("requests", 0)) for w in doc.get("workers", []))
        now = time.monotonic()
        before = self.last.get(name)
        self.last[name] = (now, total)
        if before is None or now <= before[0] or total < before[1]:
            return 0.0 if before is None else None
        return (total - before[1]) / (now - before[0])
