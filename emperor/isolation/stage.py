"""The exec stage: ``python -I -m emperor.isolation.stage NAME SPEC -- COMMAND...``.

Used when the emperor makes a vassal from a thread (no fork server): ``subprocess`` forks
and execs this stage with no Python in between, and the stage — a fresh, single-threaded
interpreter — applies the ``JailSpec`` (JSON) with the same code as the fork server's
children (``emperor.isolation.jail.enter``), then execs COMMAND. ``-I`` keeps the vassal's
``PYTHON*`` variables from changing the stage itself; the environment is passed on as is.

A pid namespace needs one more process: ``unshare(CLONE_NEWPID)`` places the stage's next
child, not the stage, in the new namespace. The stage forks that child (pid 1 of the
namespace, the vassal), stays outside as its parent, ignores the signals meant for the
vassal (the emperor signals the whole process group, the vassal included), and exits as
the vassal did (same code, or the same signal). The vassal dies with the stage
(``PR_SET_PDEATHSIG``), and the stage with the emperor (``setpriv --pdeathsig``).
"""

from __future__ import annotations

import os
import signal
import sys

from emperor.isolation import linux
from emperor.isolation.jail import JailError, JailSpec, enter
from emperor.isolation.linux import Clone, Prctl

#: signals the emperor may send to the vassal's group: the waiting stage lets them pass
_PASSED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGTSTP)


def _say(line: str) -> None:
    try:
        os.write(2, (line + "\n").encode(errors="surrogateescape"))
    except OSError:
        pass


def _wait_as(pid: int) -> int:
    for sig in _PASSED:
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        _say("usage: python -m emperor.isolation.stage NAME SPEC -- COMMAND...")
        return 2
    name, spec_text, command = argv[0], argv[1], argv[3:]
    spec = JailSpec.from_json(spec_text)
    if spec.pid_ns:
        try:
            linux.unshare(Clone.NEWPID)
        except OSError as exc:
            _say(f"[emperor] cannot jail vassal {name}: unshare(pid): {exc.strerror}")
            return 1
        pid = os.fork()
        if pid > 0:
            return _wait_as(pid)
        linux.prctl(Prctl.SET_PDEATHSIG, int(signal.SIGKILL))
    try:
        enter(spec)
    except JailError as exc:
        _say(f"[emperor] cannot jail vassal {name}: {exc}")
        return 1
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        _say(f"execvp(): {exc.strerror} [{command[0]}]")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
