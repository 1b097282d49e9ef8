"""Config logic (``for``, ``for-glob``, ``for-times``, ``for-readline``, ``if-*``): the
``%(_)`` values a block applies its options with, as uWSGI's uwsgi_opt_logic does.

Items are produced lazily: ``for-times = 99999999999`` costs nothing until the loader's cap
on the number of options stops it.
"""

from __future__ import annotations

import glob
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping

from .errors import ConfigError
from .origin import Origin


class Logic:
    """An active for/if block: every option given until the end marker goes through it."""

    def __init__(self, kind: str, arg: str | None) -> None:
        self.kind, self.arg = kind, arg


def _readlines(path: str, origin: Origin) -> Iterator[str]:
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"for-readline {path}: {exc.strerror} ({origin})") from None
    with fh:
        for line in fh:
            yield line.rstrip("\n")


def logic_items(kind: str, arg: str, origin: Origin, environ: Mapping[str, str], is_reload: bool,
                lookup: Callable[[str], str | None]) -> Iterable[str | None]:
    """The %(_) values a logic block applies its options with (empty: skip them)."""
    if kind == "for":
        return [t for t in arg.split(" ") if t]
    if kind == "for-glob":
        return sorted(glob.glob(arg)) or [arg]
    if kind == "for-times":
        try:
            n = int(arg)
        except ValueError:
            shown = "its value" if origin.private else repr(arg)
            raise ConfigError(f"for-times needs a number, got {shown} ({origin})") from None
        return (str(i) for i in range(1, n + 1))
    if kind == "for-readline":
        return _readlines(arg, origin)
    negate = kind.startswith("if-not-")
    what = kind[7:] if negate else kind[3:]
    if what == "reload":
        return [None] if is_reload != negate else []
    if what in ("env", "opt"):
        data, sep, exp = arg.partition("=")
        expected = exp if sep else None
        found = environ.get(data) if what == "env" else lookup(data)
        ok = found is not None and (expected is None or found == expected)
        return [found if found is not None else ""] if ok != negate else []
    tests: dict[str, Callable[[str], bool]] = {
        "exists": os.path.exists, "file": os.path.isfile, "dir": os.path.isdir,
        "hostname": lambda h: h == socket.gethostname(),
        "plugin": lambda _p: True,  # every plugin we know of is built in
    }
    test = tests.get(what)
    if test is None:
        raise ConfigError(f"unsupported config logic {kind} ({origin})")
    try:
        ok = test(arg) != negate
    except ValueError:  # a NUL in the path
        ok = negate
    return [arg] if ok else []
