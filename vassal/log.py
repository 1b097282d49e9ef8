"""Log lines of the instance, written straight to fd 2 (``logto``/``daemonize`` point fd 2 at
the log file, so the app's own stderr output lands in the same place, as with uWSGI)."""

from __future__ import annotations

import os
import time

_prefix_fmt: str | None = None
_prefix: str = ""


def configure(log_date: str | None = None, log_prefix: str | None = None) -> None:
    """``log-date`` (None: off, "": uWSGI's default format) and ``log-prefix``."""
    global _prefix_fmt, _prefix
    # "" means uWSGI's default: the ctime() text ("Mon Nov  3 09:19:56 2026")
    _prefix_fmt = None if log_date is None else log_date
    _prefix = log_prefix or ""


def log(line: str) -> None:
    """Write one line (a newline is added) to the log; never raises."""
    if _prefix_fmt is not None:
        line = (time.strftime(_prefix_fmt) if _prefix_fmt else time.ctime()) + " - " + line
    if _prefix:
        line = _prefix + line
    data = (line + "\n").encode("utf-8", "replace")
    try:
        while data:
            n = os.write(2, data)
            data = data[n:]
    except OSError:
        pass


def open_logfile(path: str) -> None:
    """Point fd 1 and fd 2 at ``path`` (append), as ``logto``/``daemonize`` do."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if fd > 2:
        os.close(fd)
