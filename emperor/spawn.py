"""How a vassal process is made: socketpairs, argv, environment, uid/gid, death signal.

The argv and the environment are uWSGI 2.0's (``uwsgi_emperor_spawn_vassal``, see
shared/spec/emperor-protocol.md), so that a real uWSGI binary, our ``imperium`` or any
program speaking the emperor protocol can be a vassal.

Why no bare ``fork()`` and no ``preexec_fn``: the emperor runs threads (watchdog observers,
network monitor clients), and Python code run between fork and exec in a threaded process
can deadlock on a lock another thread held at fork time. ``subprocess.Popen`` without
``preexec_fn`` forks and execs in C. What uWSGI does in the child we do without Python:

* ``PR_SET_PDEATHSIG`` = SIGKILL (a vassal dies with its emperor, even a SIGKILLed one):
  the child execs util-linux ``setpriv --pdeathsig KILL --`` which sets it and execs the
  vassal (the death signal survives execve). Only when setpriv is missing do we fall back
  to a ``preexec_fn`` calling prctl through ctypes.
* uid/gid in tyrant mode: Popen's ``user``/``group``/``extra_groups=[]`` (setgroups(0)).
* ``vassals-start-hook``: uWSGI runs it in the child before exec; we do the same with a
  tiny ``/bin/sh`` stage that runs ``HOOK NAME``, logs like uWSGI, then ``exec``s the vassal.
* Each vassal gets its own process group (``process_group=0``): a Ctrl-C on the emperor's
  terminal reaches only the emperor, which then stops its vassals in order (royal death),
  and the emperor can SIGKILL a vassal's whole group so that no worker outlives its master.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from emperor.protocol import ENV_CONFIG_FD, ENV_FD
from emperor.settings import EmperorSettings

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
class Spawned:
    """A started vassal process and the emperor's ends of its sockets."""

    popen: subprocess.Popen
    sock: socket.socket
    config_sock: socket.socket | None
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.popen.pid


def spawn(argv: list[str], env: dict[str, str], cwd: str | None, *, with_config: bool,
          uid: int | None = None, gid: int | None = None, start_hook: str | None = None,
          name: str = "") -> Spawned:
    """Start the vassal; raises BinaryNotFound (uWSGI exiles such a vassal) or OSError."""
    path = env.get("PATH", os.defpath)
    if shutil.which(argv[0], path=path) is None and not (os.sep in argv[0] and os.access(argv[0], os.X_OK)):
        raise BinaryNotFound(argv[0])
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    cparent = cchild = None
    try:
        if with_config:
            cparent, cchild = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = [child.fileno()] + ([cchild.fileno()] if cchild else [])
        env = dict(env)
        env[ENV_FD] = str(child.fileno())
        if cchild:
            env[ENV_CONFIG_FD] = str(cchild.fileno())
        command = list(argv)
        if start_hook:
            command = ["/bin/sh", "-c", _START_HOOK_SCRIPT, start_hook, name, *command]
        kwargs: dict = {}
        if SETPRIV:
            command = [SETPRIV, "--pdeathsig", "KILL", "--", *command]
        else:
            kwargs["preexec_fn"] = _pdeathsig_preexec()
        if uid is not None:
            kwargs["user"] = uid
            kwargs["extra_groups"] = []
        if gid is not None:
            kwargs["group"] = gid
        popen = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                 pass_fds=fds, close_fds=True, process_group=0, **kwargs)
    except BaseException:
        for s in (parent, cparent):
            if s is not None:
                s.close()
        raise
    finally:
        child.close()
        if cchild is not None:
            cchild.close()
    parent.setblocking(False)
    if cparent is not None:
        cparent.setblocking(False)
    return Spawned(popen, parent, cparent, argv)


def run_hook(hook: str, name: str, env: Mapping[str, str], cwd: str | None) -> subprocess.Popen:
    """Start ``HOOK NAME`` (a program, as uWSGI execvp()s it), without waiting."""
    kwargs: dict = {}
    command = [hook, name]
    if SETPRIV:
        command = [SETPRIV, "--pdeathsig", "KILL", "--", *command]
    return subprocess.Popen(command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            close_fds=True, **kwargs)
