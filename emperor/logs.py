"""The emperor's log, in uWSGI's style.

uWSGI writes two kinds of lines to stderr: plain ones (``uwsgi_log``) and "verbose" ones
prefixed with a ctime-like date and `` - `` (``uwsgi_log_verbose``)::

    Mon Nov 23 08:45:48 2026 - [emperor] vassal app.ini has been spawned

Every line is one ``write(2)`` so that lines of the emperor and of its vassals (which share
its stderr) never interleave mid-line. Monitors log through the ``logging`` module; their
records are written the same way.
"""

from __future__ import annotations

import logging
import os
import time

_fd = 2


def set_output(fd: int) -> None:
    global _fd
    _fd = fd


def output_fd() -> int:
    """The fd the emperor's log lines go to."""
    return _fd


def _write(text: str) -> None:
    try:
        # a vassal name that is not UTF-8 is written as its own bytes, as uWSGI does
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        os.write(_fd, data)
    except OSError:
        pass


def stamp(now: float | None = None) -> str:
    # ctime without the trailing newline: 'Mon Nov 23 08:45:48 2026'
    return time.ctime(time.time() if now is None else now)


def log(msg: str) -> None:
    """A plain uWSGI log line."""
    _write(msg)


def log_verbose(msg: str) -> None:
    """A uWSGI "verbose" line: date, ' - ', message."""
    _write(f"{stamp()} - {msg}")


class UwsgiStyleHandler(logging.Handler):
    """Sends ``logging`` records (from monitors) to the emperor log as plain lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write(self.format(record))
        except Exception:  # a log line must never take the emperor down
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger("imperium")
    if not any(isinstance(h, UwsgiStyleHandler) for h in logger.handlers):
        handler = UwsgiStyleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logging.getLogger("imperium.emperor")
