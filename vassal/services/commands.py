"""Shell commands the master runs: hooks (``exec``), cron tasks, ``touch-exec``, daemons.

uWSGI runs every such command as ``/bin/sh -c COMMAND`` (the first executable ``binsh``
wins over /bin/sh). Two ways, as in core/utils.c:

- ``run_and_wait``: the hook way. The command inherits the master's stdio and the master
  waits for it; the result is the exit status (0 when killed by a signal, as WEXITSTATUS
  gives it).
- ``spawn``: the cron/touch-exec/daemon way. A child in a session of its own, with the
  master's fds above 2 closed (listening sockets included: a cron task must not accept
  requests), stdin on /dev/null; the master reaps it from its loop (``child_exited``).

Children are made with a plain ``fork()`` + ``exec()``: the master runs no threads, so the
fork is safe, and the child can do what ``posix_spawn`` cannot (``PR_SET_PDEATHSIG``, a
throttle sleep, a second fork for self-daemonizing daemons, a pidfile) before ``exec``.
A child never returns into the master's Python code: every path ends in ``exec`` or
``os._exit``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Sequence

from vassal.log import log

#: exit status of a child whose exec failed (the shell's "command not found" code)
EXEC_FAILED = 127

_binsh: list[str] = []
_PR_SET_PDEATHSIG = 1


def set_binsh(candidates: Sequence[str]) -> None:
    """The ``binsh`` option: shells to try, in order, before /bin/sh."""
    _binsh[:] = list(candidates)


def shell() -> str:
    for candidate in _binsh:
        if os.access(candidate, os.X_OK):
            return candidate
    return "/bin/sh"


def shell_argv(command: str) -> list[str]:
    return [shell(), "-c", command]


def run_and_wait(command: str) -> int:
    """Run ``command`` through the shell, wait, return its exit status (-1: not started)."""
    try:
        proc = subprocess.run(shell_argv(command), check=False)
    except OSError as exc:
        log(f"cannot run \"{command}\": {exc.strerror or exc}")
        return -1
    return proc.returncode if proc.returncode >= 0 else 0


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG(SIGKILL): the child goes when the master dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def reset_child_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ, the master SIGUSR2: exec keeps ignored signals,
    so put them back to their defaults for the program we start."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR2):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    try:
        signal.set_wakeup_fd(-1)
    except (OSError, ValueError):
        pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def null_stdin() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)


def spawn(command: str, *, prepare: Callable[[], None] | None = None, keep_stdin: bool = False,
          new_session: bool = True, pdeathsig: bool = False) -> int:
    """Fork a child that runs ``command`` through the shell; return its pid (-1 on failure).

    ``prepare`` runs in the child just before ``exec`` (after fds are closed); it may call
    ``os._exit`` itself. Errors in the child are logged and end it with ``EXEC_FAILED``.
    """
    argv = shell_argv(command)
    try:
        pid = os.fork()
    except OSError as exc:
        log(f"cannot fork to run \"{command}\": {exc.strerror}")
        return -1
    if pid:
        return pid
    code = EXEC_FAILED
    try:
        reset_child_signals()
        if pdeathsig:
            die_with_parent()
        os.closerange(3, _max_fd())
        if not keep_stdin:
            null_stdin()
        if new_session:
            os.setsid()
        if prepare is not None:
            prepare()
        os.execv(argv[0], argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - the child must never return into the master
        log(f"cannot run \"{command}\": {getattr(exc, 'strerror', None) or exc}")
    os._exit(code)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


def kill_group(pid: int, sig: int) -> bool:
    """Signal a child's process group (it leads one: ``setsid``), else the child alone."""
    if pid <= 0:
        return False
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
