"""Process-level start-up options of the instance, each as uWSGI 2.0 applies it.

- ``max-fd N``: the file descriptor limit (soft and hard) set to N (core/uwsgi.c: a failure
  is logged, not fatal); the limit in force is logged either way.
- stdin: put on /dev/null unless ``honour-stdin`` (or unless fd 0 is a socket, which uWSGI
  would take as an inherited listening socket).
- ``pyargv``: ``sys.argv`` of the app is ``["uwsgi", *words]`` (split on spaces and tabs),
  as the python plugin builds it; without it ``["uwsgi"]``.
- ``pymodule-alias NAME=MODULE``: ``import NAME`` gives MODULE; MODULE containing a ``/`` is
  a file imported under NAME. A module that cannot be imported ends the start-up (uWSGI
  exits 1); a value without ``=`` is logged and skipped.
- ``never-swap``: ``mlockall(MCL_CURRENT | MCL_FUTURE)`` in the master at start-up and again
  in every process it forks (memory locks are not inherited across fork); a failure is logged
  and the process goes on, as core/uwsgi.c and uwsgi_fork() do.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import resource
import stat
import sys
from typing import Any

from vassal.log import log
from vassal.services import where


class SetupError(Exception):
    """One line: the option and why it cannot be applied."""


def apply_max_fd(config: Any) -> None:
    wanted = int(config.get("max-fd") or 0)
    if wanted > 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError) as exc:
            log(f"setrlimit(): max-fd {wanted}: {getattr(exc, 'strerror', None) or exc}")
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log(f"detected max file descriptor number: {soft}")


#: mlockall() flags (<sys/mman.h>)
_MCL_CURRENT = 1
_MCL_FUTURE = 2
#: set by ``lock_memory`` when never-swap is on, so that forked children lock theirs too
_never_swap = False


def lock_memory(config: Any) -> None:
    """``never-swap`` in the master, at start-up."""
    global _never_swap
    _never_swap = bool(config.get("never-swap"))
    relock_memory()


def relock_memory() -> None:
    """``never-swap`` in a freshly forked child (a worker, mule or spooler)."""
    if not _never_swap:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        log(f"mlockall(): {os.strerror(ctypes.get_errno())}")


def remap_stdin(config: Any) -> None:
    if config.get("honour-stdin"):
        return
    try:
        if stat.S_ISSOCK(os.fstat(0).st_mode):
            return
    except OSError:
        pass
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        log("WARNING: unable to remap stdin, /dev/null not available")
        return
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)


def set_pyargv(config: Any) -> None:
    words = (config.get("pyargv") or "").replace("\t", " ").split(" ")
    sys.argv = ["uwsgi", *[w for w in words if w]]


def apply_pymodule_aliases(config: Any) -> None:
    for value in config.getlist("pymodule-alias"):
        name, sep, target = value.partition("=")
        if not sep or not name:
            log(f"invalid pymodule-alias syntax: {value}")
            continue
        try:
            if "/" in target:
                spec = importlib.util.spec_from_file_location(name, target)
                if spec is None or spec.loader is None:
                    raise ImportError(f"{target} is not a python file")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
            else:
                sys.modules[name] = importlib.import_module(target)
        except BaseException as exc:  # noqa: BLE001 - the module may raise anything
            sys.modules.pop(name, None)
            raise SetupError(f"pymodule-alias {value}: cannot import {target}: "
                             f"{type(exc).__name__}: {exc} ({where(config, 'pymodule-alias', value)})") from None
        log(f"mapped virtual pymodule \"{name}\" to real pymodule \"{target}\"")
