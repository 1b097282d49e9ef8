"""How a vassal process is made: argv, environment, and the two ways in (fork and exec).

The argv and the environment are uWSGI 2.0's (``uwsgi_emperor_spawn_vassal``, see
shared/spec/emperor-protocol.md), so that a real uWSGI binary, our ``imperium`` or any
program speaking the emperor protocol can be a vassal.

Every vassal is made by the **fork server** (``emperor.forkserver``): a small process the
emperor starts once, before any thread, with the interpreter and the instance code already
imported. For one of our own vassals it forks and runs the instance in the child (a fork
instead of exec + interpreter start + ~100 ms of imports); for a foreign binary,
``binary-path``, a wrapper, or ``emperor-spawn = exec``, the child execs it. The child is
set up the same way for both (``forkserver.become_vassal``, in this order): own process
group, signal dispositions and mask reset, ``PR_SET_PDEATHSIG`` = SIGKILL, stdin on
/dev/null, stdout and stderr on the emperor's pipe when it collects them (emperor.output),
and no fd but the emperor fd and config fd (received over SCM_RIGHTS), cwd,
environment, the jail (namespaces, cgroups, capabilities, uid/gid: ``emperor.isolation.jail``),
the ``vassals-start-hook``; then exec or the instance.

Why a fork server and no bare ``fork()`` in the emperor: the emperor runs threads
(watchdog observers, network monitor clients), and Python code run between fork and exec in
a threaded process can deadlock on a lock another thread held at fork time. The fork server
is started before any thread exists and itself stays single-threaded, so Python code in its
children is safe. Spawning never blocks the emperor loop: the request is one datagram, the
pid comes back as another; until then the vassal is ``STARTING``.

When the fork server cannot run, ``ThreadSpawner`` makes vassals with ``subprocess.Popen``
in a worker thread (C fork + exec, no Python in the child): util-linux ``setpriv
--pdeathsig KILL`` sets the death signal, a tiny ``/bin/sh`` stage runs the start hook, and
a vassal with namespaces, capabilities or cgroups goes through ``emperor.isolation.stage``,
a Python program exec'd first that applies the same ``JailSpec`` as the fork server's child
(``emperor.isolation.jail``) and then execs the vassal."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from emperor.isolation.jail import JailSpec
from emperor.protocol import ENV_CONFIG_FD, ENV_FD
from emperor.settings import EmperorSettings

#: how the emperor tells a spawner's outcome: (pid, None) or (None, reason)
Started = Callable[[int | None, str | None], None]
#: a spawned process has exited: (pid, wait status)
Exited = Callable[[int, int], None]

SETPRIV = shutil.which("setpriv")
PR_SET_PDEATHSIG = 1

_START_HOOK_SCRIPT = (
    'h=$0; n=$1; shift; '
    'echo "[emperor] running vassal start-hook: $h $n" >&2; '
    '"$h" "$n"; echo "[emperor] $n start-hook returned $?" >&2; '
    'exec "$@"'
)


def loader_flag(name: str, extra_extensions: Sequence[str] = (), broodlord: bool = False) -> str:
    """The option that makes the vassal load its config, chosen by the name's ending."""
    base = name.split(":", 1)[0] if broodlord and ":" in name else name
    flag = "--inherit"
    if base.endswith(".xml"):
        flag = "--xml"
    if base.endswith(".ini"):
        flag = "--ini"
    if base.endswith((".yml", ".yaml")):
        flag = "--yaml"
    if base.endswith((".js", ".json")):
        flag = "--json"
    for ext in extra_extensions:
        if base.endswith(ext):
            flag = "--config"
            break
    return flag


def config_argument(name: str, config_arg: str, *, has_config: bool, magic_exec: bool,
                    cwd: str | None) -> str:
    """What follows the loader flag: the name, ``exec://NAME`` or ``emperor://NAME``."""
    if has_config:
        return f"emperor://{name}"
    if magic_exec:
        target = config_arg if os.path.isabs(config_arg) or not cwd else os.path.join(cwd, config_arg)
        if os.access(target, os.R_OK | os.X_OK):
            return f"exec://{config_arg}"
    return config_arg


def build_argv(settings: EmperorSettings, name: str, config_arg: str, *, has_config: bool,
               cwd: str | None, broodlord: bool = False) -> list[str]:
    argv = [settings.binary()]
    for f in settings.vassals_inherit_before:
        argv += ["--inherit", f]
    for f in settings.vassals_include_before:
        argv += ["--include", f]
    for kv in settings.vassal_set:
        argv += ["--set", kv]
    argv.append(loader_flag(name, settings.extra_extensions, broodlord))
    argv.append(config_argument(name, config_arg, has_config=has_config,
                                magic_exec=settings.magic_exec, cwd=cwd))
    for f in settings.vassals_inherit:
        argv += ["--inherit", f]
    for f in settings.vassals_include:
        argv += ["--include", f]
    return argv


def build_env(base: Mapping[str, str], emperor_fd: int, config_fd: int | None, *,
              vassals_dir: str | None = None, broodlord_num: int | None = None) -> dict[str, str]:
    env = dict(base)
    env.pop("UWSGI_RELOADS", None)
    env.pop("NOTIFY_SOCKET", None)
    env.pop(ENV_CONFIG_FD, None)
    env[ENV_FD] = str(emperor_fd)
    if broodlord_num is not None:
        env["UWSGI_BROODLORD_NUM"] = str(broodlord_num)
    if config_fd is not None:
        env[ENV_CONFIG_FD] = str(config_fd)
    for key in [k for k in env if k.startswith("UWSGI_VASSAL_")]:
        value = env.pop(key)
        env["UWSGI_" + key[len("UWSGI_VASSAL_"):]] = value
    if vassals_dir:
        env["UWSGI_VASSALS_DIR"] = vassals_dir
    return env


def _pdeathsig_preexec() -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl

    def preexec() -> None:  # pragma: no cover - only without setpriv
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return preexec


class BinaryNotFound(OSError):
    pass


@dataclass
class SpawnRequest:
    """Everything the child needs to become the vassal (picklable: it travels to the fork
    server). ``env`` lacks the fd variables: they name the fds the child actually gets."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    method: str = "exec"  # "fork": run our instance in the child; "exec": execvp argv
    #: namespaces, cgroups, capabilities, uid/gid: applied in the child (emperor.isolation)
    jail: JailSpec = field(default_factory=JailSpec)
    start_hook: str | None = None
    overrides: list[str] = field(default_factory=list)  # emperor-wrapper-override
    fallbacks: list[str] = field(default_factory=list)  # emperor-wrapper-fallback
    with_config: bool = False
    #: an fd after the emperor fd (and config fd) becomes the vassal's stdout and stderr
    #: (emperor.output: the emperor collects what it writes)
    output: bool = False
    #: the last fd given is a listening socket to become the vassal's fd 0 (on demand)
    stdin_socket: bool = False


def find_binary(req: SpawnRequest) -> str | None:
    """The first program of the request that exists (overrides, argv[0], fallbacks)."""
    path = req.env.get("PATH", os.defpath)
    for candidate in (*req.overrides, req.argv[0], *req.fallbacks):
        if os.sep in candidate:
            if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                return candidate
        elif shutil.which(candidate, path=path):
            return candidate
    return None


def split_fds(req: SpawnRequest, fds: Sequence[int]) -> tuple[list[int], int | None, int | None]:
    """(emperor fd [+ config fd], the fd for stdout and stderr or None, the on-demand socket
    for fd 0 or None), from the fds in the order the emperor passes them."""
    rest = list(fds)
    listener = rest.pop() if req.stdin_socket and rest else None
    output = rest.pop() if req.output and rest else None
    return rest, output, listener


def child_env(req: SpawnRequest, fds: Sequence[int]) -> dict[str, str]:
    env = dict(req.env)
    env[ENV_FD] = str(fds[0])
    if req.with_config and len(fds) > 1:
        env[ENV_CONFIG_FD] = str(fds[1])
    return env


class ThreadSpawner:
    """Popen in a worker thread (the loop never waits for a fork + exec); exits seen
    through pidfds, reaped by the loop. Used when the fork server is not available."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: Exited) -> None:
        self.loop = loop
        self.on_exit = on_exit
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="imperium-spawn")
        self.pidfds: dict[int, int] = {}
        self.polled: set[int] = set()  # without pidfd (old kernels): checked by poll()
        self.popens: dict[int, subprocess.Popen] = {}

    def spawn(self, req: SpawnRequest, fds: list[int], done: Started) -> None:
        fut = self.loop.run_in_executor(self.pool, _popen, req, fds)

        def finished(f: asyncio.Future) -> None:
            exc = f.exception()
            if exc is not None:
                done(None, str(exc))
                return
            popen: subprocess.Popen = f.result()
            self.popens[popen.pid] = popen
            self._watch(popen.pid)
            done(popen.pid, None)
        fut.add_done_callback(finished)

    def _watch(self, pid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            self.polled.add(pid)
            return
        self.pidfds[pid] = pidfd
        self.loop.add_reader(pidfd, self._pidfd_ready, pid)

    def _pidfd_ready(self, pid: int) -> None:
        # exited but not reaped: its pid (so its process group id) cannot be reused yet,
        # the safe moment to kill what it left behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self._reap(pid)

    def _reap(self, pid: int) -> bool:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            got, status = pid, 0
        if got == 0:
            return False
        pidfd = self.pidfds.pop(pid, None)
        if pidfd is not None:
            self.loop.remove_reader(pidfd)
            os.close(pidfd)
        self.polled.discard(pid)
        popen = self.popens.pop(pid, None)
        if popen is not None:
            popen.returncode = os.waitstatus_to_exitcode(status) if status else 0
        self.on_exit(pid, status)
        return True

    def poll(self) -> None:
        for pid in list(self.polled):
            self._reap(pid)

    def close(self) -> None:
        for pidfd in self.pidfds.values():
            with contextlib.suppress(OSError):
                os.close(pidfd)
        self.pool.shutdown(wait=False)


def _popen(req: SpawnRequest, all_fds: list[int]) -> subprocess.Popen:
    fds, output, listener = split_fds(req, all_fds)
    env = child_env(req, fds)
    binary = find_binary(req) or req.argv[0]
    command = [binary, *req.argv[1:]]
    if req.start_hook:
        command = ["/bin/sh", "-c", _START_HOOK_SCRIPT, req.start_hook, req.name, *command]
    kwargs: dict = {}
    jail = req.jail
    if jail.clone or jail.caps or jail.cgroups:
        # no Python may run between fork and exec here (threads): an exec'd stage applies
        # the jail (emperor.isolation.stage), then execs the vassal
        command = [sys.executable, "-I", "-m", "emperor.isolation.stage", req.name,
                   jail.to_json(), "--", *command]
    else:
        if jail.uid is not None:
            kwargs["user"] = jail.uid
            kwargs["extra_groups"] = _groups(jail)
        if jail.gid is not None:
            kwargs["group"] = jail.gid
    if SETPRIV:
        command = [SETPRIV, "--pdeathsig", "KILL", "--", *command]
    else:
        kwargs["preexec_fn"] = _pdeathsig_preexec()
    return subprocess.Popen(command, env=env, cwd=req.cwd,
                            stdin=subprocess.DEVNULL if listener is None else listener,
                            stdout=output, stderr=output,
                            pass_fds=fds, close_fds=True, process_group=0, **kwargs)


def _groups(jail: JailSpec) -> list[int]:
    return owner_groups(jail.uid, jail.gid, jail.initgroups)


def owner_groups(uid: int | None, gid: int | None, initgroups: bool) -> list[int]:
    """Supplementary groups of a tyrant vassal: none, or the owner's with initgroups."""
    if not initgroups or uid is None or gid is None:
        return []
    import pwd

    try:
        return os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:
        return []


def run_hook(hook: str, name: str, env: Mapping[str, str], cwd: str | None) -> subprocess.Popen:
    """Start ``HOOK NAME`` (a program, as uWSGI execvp()s it), without waiting."""
    kwargs: dict = {}
    command = [hook, name]
    if SETPRIV:
        command = [SETPRIV, "--pdeathsig", "KILL", "--", *command]
    return subprocess.Popen(command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            close_fds=True, **kwargs)
