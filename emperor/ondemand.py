"""On-demand vassals (socket activation): which socket a vassal waits on, and binding it.

A vassal is on demand when its monitor gives a socket (the socket column of pg/mongodb) or
one of uWSGI's options names one (``emperor_check_on_demand_socket`` in core/emperor.c):

* ``emperor-on-demand-extension EXT``: the first line of the file ``CONFIG`` + ``EXT``;
* ``emperor-on-demand-directory DIR``: ``DIR/NAME.socket`` (NAME without its extension);
* ``emperor-on-demand-exec CMD``: the first line ``CMD "CONFIG"`` prints (run by the shell,
  in a worker thread: the loop never waits for it).

The emperor binds the socket (``host:port``, ``:port`` or a UNIX path), waits for a
connection, then spawns the vassal with the listening socket as its fd 0 (where uWSGI, and
our instance, look for it). The emperor keeps its own copy: connections queued while the
vassal starts, dies or goes back to waiting stay in the backlog, none is refused.

In tyrant mode a socket named by the vassal's own file (the extension option) is read with
the owner's say only (``emperor.tyrant.read_companion``) and bound with the owner's rights
(``bind_as``): uWSGI binds it as root, which lets whoever writes the file have a port below
1024, or a socket file made (and a dead one unlinked) in any directory of the host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Callable

from emperor.isolation import capabilities
from emperor.logs import log
from emperor.settings import EmperorSettings

#: uWSGI's listen() backlog for on-demand sockets (its default listen queue)
BACKLOG = 100


def first_line(data: bytes) -> str | None:
    """uWSGI cuts at the first control character; nothing left means no socket."""
    end = next((i for i, b in enumerate(data) if b < 32), len(data))
    text = data[:end].decode(errors="surrogateescape")
    return text or None


def _read_head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(4096)


def from_options(settings: EmperorSettings, name: str, path: str | None,
                 read: Callable[[str], bytes] = _read_head) -> str | None:
    """The socket named by the extension or directory option (not exec: see ``run_exec``);
    ``read`` gives the start of the extension's file (``OSError`` when there is none)."""
    filename = path or name
    if settings.on_demand_extension:
        try:
            return first_line(read(filename + settings.on_demand_extension))
        except OSError:
            return None
    if settings.on_demand_directory:
        base = os.path.basename(filename)
        stem, dot, _ = base.rpartition(".")
        if not dot:
            return None
        return f"{settings.on_demand_directory}/{stem}.socket"
    return None


def run_exec(command: str, filename: str, timeout: float = 10.0) -> str | None:
    """``CMD "FILENAME"`` through the shell, as uWSGI runs it; its first output line.

    The file name reaches the shell as ``"$1"``, never pasted into the command line: uWSGI
    pastes it, so a vassal file named ``x$(cmd).ini`` runs ``cmd`` as the emperor (root,
    in tyrant mode, for whoever may drop a file in the directory). The command runs in its
    own process group, killed whole after ``timeout`` (a child left behind holding the pipe
    would keep the worker thread waiting for ever).
    """
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", f'{command} "$1"', "sh", filename],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as exc:
        log(f"[emperor] emperor-on-demand-exec for {filename}: {exc.strerror or exc}")
        return None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        log(f"[emperor] emperor-on-demand-exec for {filename}: no answer within {timeout:g}s, "
            "so no on-demand socket")
        return None
    return first_line(out)


def _clear_unix_path(path: str) -> None:
    """Remove a leftover socket file at ``path``. uWSGI unlinks whatever is there: a socket
    name that names a config file, or another server's live socket, is removed with it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket (left alone)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: a leftover
        return
    except OSError:
        return  # bind() says why
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process listens on {path} (left alone)")


def bind(name: str, backlog: int = BACKLOG) -> socket.socket:
    """Bind and listen as uWSGI's on_demand_bind: TCP when the name has a ':' (SO_REUSEADDR,
    an empty host is every address), otherwise a UNIX path (a leftover socket file is
    removed, nothing else)."""
    if ":" in name:
        host, _, port = name.rpartition(":")
        family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
        host = host.strip("[]")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), int(port)))
            sock.listen(backlog)
        except (OSError, ValueError):
            sock.close()
            raise
    else:
        _clear_unix_path(name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(name)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
    sock.setblocking(False)
    return sock


#: how long the emperor waits for the helper that binds with a tyrant owner's rights
BIND_AS_TIMEOUT = 10.0


def bind_as(name: str, uid: int, gid: int, groups: list[int], caps: list[int] | None = None,
            backlog: int = BACKLOG) -> socket.socket:
    """``bind`` with the rights of ``uid``/``gid``/``groups`` (and ``caps``, the vassals'
    capabilities, kept across the drop as for the vassal itself): a forked helper drops to
    them, binds, and passes the listening socket back over a socketpair. The kernel, not a
    check of ours, decides what the owner may bind (a port below 1024, a directory it cannot
    write: ``PermissionError``)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked helper
            code = 1
            try:
                ours.close()
                _bind_in_helper(theirs, name, uid, gid, groups, caps, backlog)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        ours.settimeout(BIND_AS_TIMEOUT)
        try:
            msg, fds, _, _ = socket.recv_fds(ours, 1024, 1)
        except OSError:  # no answer in time: the helper is not waited for longer
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            raise
        finally:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    finally:
        ours.close()
        with contextlib.suppress(OSError):
            theirs.close()
    if fds:
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        return sock
    err, _, text = msg.decode(errors="replace").partition(":")
    raise OSError(int(err) if err.isdigit() else errno.EPERM,
                  text or f"cannot bind {name} as uid {uid}")


def _bind_in_helper(channel: socket.socket, name: str, uid: int, gid: int, groups: list[int],
                    caps: list[int] | None, backlog: int) -> None:  # pragma: no cover - helper
    try:
        os.setgroups(groups)
        os.setgid(gid)
        if caps:
            capabilities.keep_across_setuid()
        os.setuid(uid)
        if caps:
            capabilities.restore_after_setuid(caps)
        sock = bind(name, backlog)
    except (OSError, ValueError) as exc:
        code = getattr(exc, "errno", None) or errno.EINVAL
        text = getattr(exc, "strerror", None) or str(exc)
        channel.sendall(f"{code}:{text}".encode(errors="replace"))
        return
    socket.send_fds(channel, [b"+"], [sock.fileno()])
