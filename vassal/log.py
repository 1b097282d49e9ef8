"""The instance's log stream: lines written straight to fd 2, the log file, rotation.

``logto``/``daemonize`` point fd 1 and fd 2 at the log file (or at a UDP address), so the
app's own output lands in the same place, as with uWSGI. With a log master
(vassal.services.log_master) fd 1 and fd 2 of the workers are a pipe the master reads, and
the master writes its own lines through ``set_direct`` instead of the pipe.

``rotate()`` and ``reopen()`` act in the master on the file named by ``logto``/``daemonize``
(uWSGI's ``uwsgi.logfile``): rotation renames it (``log-backupname``, else ``FILE.<unix
time>``) and opens a fresh one on the same fd; reopen reopens the path (after an external
logrotate). Without a log master the workers keep their own fd 2 (as in uWSGI).

Request log variables (``uwsgi.set_logvar``, ``%(name)`` in ``log-format``) live here too:
one set per thread, since a thread serves one request at a time.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

_prefix_fmt: str | None = None
#: set in a log master: lines go to its dispatcher instead of fd 2 (which is the pipe)
_direct: Callable[[bytes], None] | None = None
#: the configured log file (logto/daemonize), None when logging to stderr or UDP
logfile: str | None = None
backupname: str | None = None
chmod: int | None = None
#: where rotation/reopen act: fd 2 without a log master, the master's own fd with one
original_fd: int = 2


class _LogVars(threading.local):
    table: dict[bytes, bytes] | None = None  # a class default: no AttributeError per request
    skip = False  # the routing action ``donotlog``: no request line for this request


_logvars = _LogVars()

#: uWSGI keeps at most this many bytes of a log variable's name and value
LOGVAR_MAX = 255


def configure(log_date: str | None = None) -> None:
    """``log-date``/``log-prefix``: None: off; "" (or true/1/on/yes): ctime(); else a strftime
    format. Lines then start with that text and " - ", as in uWSGI."""
    global _prefix_fmt
    if log_date is not None and log_date.lower() in ("true", "1", "on", "yes"):
        log_date = ""
    _prefix_fmt = log_date


def date_format() -> str | None:
    """The strftime format given to ``log-date`` (None when absent or the default)."""
    return _prefix_fmt or None


def log(line: str) -> None:
    """Write one line (a newline is added) to the log; never raises."""
    if _prefix_fmt is not None:
        line = (time.strftime(_prefix_fmt) if _prefix_fmt else time.ctime()) + " - " + line
    write((line + "\n").encode("utf-8", "replace"))


def write(data: bytes) -> None:
    """Raw bytes to the log as one write (one message for a log master); never raises."""
    if _direct is not None:
        _direct(data)
        return
    try:
        while data:
            n = os.write(2, data)
            data = data[n:]
    except OSError:
        pass


def set_direct(sink: Callable[[bytes], None] | None) -> None:
    """Route this process's own lines to ``sink`` (the log master's dispatcher), or back to fd 2."""
    global _direct
    _direct = sink


# --- the log file ------------------------------------------------------------------------


def open_logfile(path: str, truncate: bool = False) -> None:
    """Point fd 1 and fd 2 at ``path`` (append; ``log-truncate``: emptied), as ``logto`` does.

    ``host:port`` is a UDP address, as in uWSGI: every write becomes one datagram.
    """
    global logfile
    if ":" in path:
        host, _, port = path.rpartition(":")
        if not host or not port.isdigit():
            raise OSError(0, f"invalid udp address {path}")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((host, int(port)))
        fd = sock.detach()
    else:
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
        fd = os.open(path, flags, 0o640)
        logfile = path
        if chmod is not None:
            os.chmod(path, chmod)
    if original_fd != 2:  # a log master holds fd 1 and 2: only the real log moves (logto2)
        os.dup2(fd, original_fd, inheritable=False)
    else:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    if fd > 2:
        os.close(fd)


def chown_logfile(uid: int, gid: int) -> None:
    """``logfile-chown``: the log file becomes the unprivileged user's (before dropping)."""
    os.fchown(original_fd, uid, gid)


def logsize() -> int:
    """Bytes in the log file as seen from ``original_fd`` (0 when it is not a file)."""
    try:
        return os.lseek(original_fd, 0, os.SEEK_CUR)
    except OSError:
        return 0


def write_original(text: str) -> None:
    """Straight to the log file itself, past any log master (uWSGI's uwsgi_logfile_write)."""
    try:
        os.write(original_fd, text.encode("utf-8", "replace"))
    except OSError:
        pass


def _replace_fd(path: str, flags: int) -> bool:
    """Open ``path`` onto ``original_fd`` (and fd 1 with it when that is fd 2)."""
    try:
        fd = os.open(path, flags, 0o640)
    except OSError as exc:
        write_original(f"open(\"{path}\"): {exc.strerror} [vassal/log.py]\n")
        return False
    os.dup2(fd, original_fd)
    if original_fd == 2:
        os.dup2(fd, 1)
    os.close(fd)
    return True


def rotate(name: str | None = None) -> str | None:
    """Rename the log file away and go on in a new one; the name it got, or None.

    uWSGI's rotation: a last line "logsize: N, triggering rotation to NAME..." in the old
    file, rename to ``log-backupname`` (replacing the previous backup) or ``FILE.<unix time>``.
    """
    if not logfile:
        return None
    size = logsize()
    target = name or backupname or f"{logfile}.{int(time.time())}"
    if not (name or backupname) and os.path.exists(target):
        return None  # rotated once this second already: never overwrite a backup (next time)
    write_original(f"{time.ctime()} - logsize: {size}, triggering rotation to {target}...\n")
    try:
        os.rename(logfile, target)
    except OSError as exc:
        write_original(f"unable to rotate log: rename(): {exc.strerror}\n")
        return None
    _replace_fd(logfile, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    return target


def reopen() -> bool:
    """Reopen the log file by name (after logrotate moved it), as uWSGI's log-reopen does."""
    if not logfile:
        return False
    write_original(f"[{int(time.time())}] logsize: {logsize()}, triggering log-reopen...\n")
    if not _replace_fd(logfile, os.O_RDWR | os.O_CREAT | os.O_APPEND):
        return False
    write_original(f"[{int(time.time())}] {logfile} reopened.\n")
    return True


# --- request log variables -----------------------------------------------------------------


#: set once any request variable or donotlog was ever set in this process: until then a worker
#: that logs nothing has nothing to forget after a request (and skips the thread-local reads)
logvars_used = False


def set_logvar(key: str | bytes, value: str | bytes) -> None:
    """``uwsgi.set_logvar``: a value for ``%(key)`` in this request's log line."""
    global logvars_used
    logvars_used = True
    k = key.encode("utf-8", "replace") if isinstance(key, str) else bytes(key)
    v = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
    table = _logvars.table
    if table is None:
        table = _logvars.table = {}
    table[k[:LOGVAR_MAX]] = v[:LOGVAR_MAX]


def get_logvar(key: str | bytes) -> bytes | None:
    """``uwsgi.get_logvar``: the value set in this request, or None."""
    k = key.encode("utf-8", "replace") if isinstance(key, str) else bytes(key)
    table = _logvars.table
    return table.get(k[:LOGVAR_MAX]) if table else None


def skip_request_line() -> None:
    """The routing action ``donotlog``: this request gets no line in the request log."""
    global logvars_used
    logvars_used = True
    _logvars.skip = True


def take_skip() -> bool:
    """True (once) when ``donotlog`` was asked for the request on this thread."""
    if _logvars.skip:
        _logvars.skip = False
        return True
    return False


def take_logvars() -> dict[bytes, bytes]:
    """This request's variables, forgotten for the next request on this thread."""
    if _logvars.skip:  # a thread-local store costs more than the look
        _logvars.skip = False
    table = _logvars.table
    if table is None:
        return _EMPTY
    _logvars.table = None
    return table


_EMPTY: dict[bytes, bytes] = {}
