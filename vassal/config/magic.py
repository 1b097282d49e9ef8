"""Magic variables (``%n``, ``%d``, ``%k`` ...): substituted in the raw text of a config file.

uWSGI keeps one table of 256 entries, all empty strings except ``%%`` (a percent sign) and
``%(`` (kept, for placeholders), fills the static entries at startup and the file entries each
time a file is loaded; the text of the file is then rewritten with every ``%<char>`` replaced
by the table entry, so an unknown letter simply disappears. The upper-case file entries are set
only by the first file loaded with an explicit loader (``--ini`` ...), not by includes.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
import time
from collections.abc import Mapping

from vassal.options import VERSION

from .errors import ConfigError

#: file entries that have an upper-case "first real config file" twin
_FIRST_ROUND = "odspcenxij"


def djb33x_hex(data: bytes) -> str:
    """uWSGI's djb33x hash of a path, as the hex of its 4 native-order bytes (``%j``)."""
    h = 5381
    for b in data:
        signed = b - 256 if b >= 128 else b  # C char is signed on the platforms we run on
        h = (((h << 5) + h) ^ signed) & 0xFFFFFFFF
    return struct.pack("=I", h).hex().upper()


def has_scheme(name: str) -> bool:
    """True for ``scheme://...`` names (emperor://, exec://, http://, fd://, data://)."""
    head, sep, _ = name.partition("://")
    return bool(sep) and head.isalnum()


def split_section(name: str, *, is_url: bool | None = None) -> tuple[str, str | None]:
    """Split ``FILE:section`` at the last colon (after the scheme part of URLs)."""
    if is_url is None:
        is_url = has_scheme(name)
    start = name.rfind("/") if is_url else 0
    colon = name.rfind(":", max(start, 0))
    if colon < 0 or (is_url and colon <= name.find("://")):
        return name, None
    return name[:colon], name[colon + 1:]


class MagicTable:
    """The magic variable table of one configuration run."""

    def __init__(self, *, cwd: str | None = None, binary: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.table: dict[str, str] = {"%": "%", "(": "%("}
        self.first_round_done = False
        t = time.time()
        uid, gid = os.getuid(), os.getgid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = str(gid)
        self.table.update({
            "v": cwd if cwd is not None else os.getcwd(),
            "h": socket.gethostname(),
            "t": str(int(t)),
            "T": str(int(t * 1_000_000)),
            "V": VERSION,
            "k": str(os.cpu_count() or 1),
            "[": "\033",
            "u": str(uid), "U": user, "g": str(gid), "G": group,
        })
        self.binary = binary

    def get(self, char: str) -> str:
        return self.table.get(char, "")

    def fill_for_file(self, filename: str, *, first_round_allowed: bool) -> None:
        """Set the per-file entries for ``filename`` (as given, possibly ``FILE:section``)."""
        tab = self.table
        tab["o"] = filename
        if has_scheme(filename) or filename == "-":
            return
        path, section = split_section(filename, is_url=False)
        if path:
            if os.path.islink(path):
                full = path if path.startswith("/") else os.path.join(self.table["v"], path)
            else:
                if not os.path.exists(path):
                    raise ConfigError(f"cannot open config file {path}: no such file")
                full = os.path.realpath(path)
            if self.binary:
                tab["b"] = self.binary
            tab["p"] = full
            tab["j"] = djb33x_hex(os.fsencode(full))
            try:
                tab["i"] = str(os.lstat(full).st_ino)
            except OSError:
                pass
            base = full.rsplit("/", 1)[-1]
            tab["s"] = base
            directory = full[: len(full) - len(base)]  # keeps its trailing slash, like uWSGI
            tab["d"] = directory
            bare = directory.rstrip("/")
            tab["c"] = bare.rsplit("/", 1)[-1] if "/" in bare else ""
            parts = [p for p in bare.split("/") if p]
            for i in range(10):
                tab[str(i)] = parts[i] if i < len(parts) else ""
            dot = base.rfind(".")
            tab["e"] = base[dot + 1:] if dot >= 0 else ""
            tab["n"] = base[:dot] if dot >= 0 else base
        tab["x"] = section if section is not None else ""
        if first_round_allowed and not self.first_round_done:
            for c in _FIRST_ROUND:
                tab[c.upper()] = tab.get(c, "")
            self.first_round_done = True

    def substitute(self, text: str) -> str:
        """Replace every ``%<char>`` in ``text`` with its table entry (unknown: empty)."""
        if "%" not in text:
            return text
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch == "%" and i + 1 < n:
                out.append(self.table.get(text[i + 1], ""))
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
