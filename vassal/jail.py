"""The instance's own jail: ``unshare``, ``chroot``, ``pivot-root``, ``cap``, cgroups, rlimits.

uWSGI applies these in ``uwsgi_start``/``uwsgi_as_root`` (core/uwsgi.c, core/utils.c); the
instance calls the three steps below at the same moments of its start-up, with ``phase``
running a hook phase (``vassal.services.hooks`` where the hooks exist; a no-op otherwise):

``start`` (before the ``in-jail`` phase): ``namespace`` (``vassal.namespace``: the process
becomes the jailed master, pid 1 of new namespaces under a new root), then the cgroups
(``cgroup``, ``cgroup-opt``, ``cgroup-dir-mode``: made, limited, joined).

``as_root`` (after the sockets are bound, before the ``as-root`` phase and the privilege
drop): ``unshare``, ``cap`` (the sets shrink to what the drop needs plus the listed ones),
the ``post-jail`` phase (when a namespace was entered, or ``jailed``), ``chroot``,
``pivot-root``, ``unshare2``. The sockets exist before: a ``net`` namespace made here still
serves on the host's sockets (uWSGI binds after its drop, so its sockets would be in the new
namespace), and ``chroot`` does not need the UNIX sockets' directories inside the jail.

``as_user`` (after the drop): ``cap`` again (exactly the listed capabilities, also in the
ambient set so that the re-exec of a reload keeps them, which uWSGI's does not), then
``limit-nproc`` and ``limit-as``.

Everything of ``start``/``as_root`` runs on the first start only (a reload re-execs inside
the jail it is already in), as uWSGI's ``!uwsgi.reloads``. These options need root (or the
root of a user namespace): asked for without it, the start-up stops with a line naming the
option (uWSGI skips ``unshare``, ``cap`` and ``cgroup`` in silence, which leaves a user
believing in a jail that is not there).

With ``chroot``, ``pivot-root`` or ``namespace``, whatever the instance imports after the
jail must be inside it: Imperium imports its own modules first (``preload``), but the app and
the standard library modules it imports must be reachable in the new root, as with uWSGI.
"""

from __future__ import annotations

import importlib
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emperor.isolation import capabilities, cgroups, linux, namespaces
from emperor.isolation.linux import Clone, Prctl
from vassal.log import log

#: runs one hook phase by name ("post-jail", ...)
Phase = Callable[[str], None]
#: the minimal capabilities uWSGI keeps effective until the privilege drop
_MINIMAL = [capabilities.NAMES[n] for n in ("sys_chroot", "setuid", "setgid", "setpcap")]
#: standard library modules the instance may import lazily after the jail (its own
#: modules are all imported: every module of the ``vassal`` package)
PRELOAD = ("email.utils", "http.client", "traceback", "json", "mimetypes", "selectors",
           "encodings.idna", "encodings.latin_1", "pkgutil", "runpy")


class JailError(Exception):
    """One line naming the option and what failed."""


def no_phase(name: str) -> None:
    """The phase runner when no hooks are configured."""


@dataclass
class State:
    in_jail: bool = False
    caps: list[int] | None = None


def _opt(config: Any, name: str) -> str:
    """An option named with where it was given (file and line), for one-line errors."""
    origin = config.origin(name) if hasattr(config, "origin") else None
    return f"{name} ({origin})" if origin else name


def _need_root(config: Any, names: tuple[str, ...]) -> None:
    if os.getuid() == 0:
        return
    for name in names:
        value = config.get(name)
        if value:
            raise JailError(f"{_opt(config, name)} = {value}: needs root (this instance runs as "
                            f"uid {os.getuid()})")


def _flags(config: Any, option: str) -> Clone:
    value = config.get(option)
    if not value:
        return Clone(0)
    try:
        return namespaces.parse(value, _opt(config, option))
    except ValueError as exc:
        raise JailError(str(exc)) from None


def check(config: Any) -> None:
    """Refuse bad values before anything runs (namespace and capability names)."""
    _flags(config, "unshare")
    _flags(config, "unshare2")
    if config.get("cap"):
        try:
            capabilities.parse(config.get("cap"), _opt(config, "cap"))
        except ValueError as exc:
            raise JailError(str(exc)) from None
    pivot = config.get("pivot-root")
    if pivot and " " not in pivot.strip():
        raise JailError(f"{_opt(config, 'pivot-root')} = {pivot}: invalid pivot_root syntax, new_root and put_old "
                        "must be separated by a space")
    for item in config.getlist("cgroup-opt"):
        try:
            cgroups.parse_opt(item)
        except cgroups.CgroupError as exc:
            raise JailError(str(exc)) from None
    mode = config.get("cgroup-dir-mode") or "0700"
    try:
        int(mode, 8)
    except ValueError:
        raise JailError(f"cgroup-dir-mode = {mode}: not an octal mode") from None


def preload() -> None:
    """Import, before a chroot or pivot_root, what the instance could import after it."""
    import pkgutil

    import vassal

    names = [m.name for m in pkgutil.walk_packages(vassal.__path__, "vassal.")]
    for name in (*PRELOAD, *names):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional part (a missing extra) is not needed
            pass


# --- start: namespace, cgroups --------------------------------------------------------------------

def start(config: Any, reloading: bool, phase: Phase = no_phase) -> State:
    state = State()
    check(config)
    if not reloading:
        _need_root(config, ("namespace", "cgroup", "unshare", "unshare2", "chroot",
                            "pivot-root", "cap"))
        if config.get("namespace"):
            from vassal import namespace

            preload()
            try:
                namespace.enter(config, phase)  # the keeper outside ran post-jail
            except namespace.NamespaceError as exc:
                raise JailError(str(exc)) from None
    values = config.getlist("cgroup")
    if values and os.getuid() == 0:
        opts = [cgroups.parse_opt(item) for item in config.getlist("cgroup-opt")]
        mode = int(config.get("cgroup-dir-mode") or "0700", 8)
        try:
            groups: list[cgroups.Cgroup] = []
            for value in values:
                groups += [g for g in cgroups.resolve(value, opts) if g not in groups]
            cgroups.apply(groups, opts, mode=mode, log=log)
        except cgroups.CgroupError as exc:
            raise JailError(str(exc)) from None
    return state


# --- as root: unshare, cap, post-jail, chroot, pivot_root, unshare2 -------------------------------

def as_root(config: Any, reloading: bool, state: State, phase: Phase = no_phase) -> None:
    if os.getuid() != 0:
        return  # start() refused these options already, or this is a reload after the drop
    if reloading:
        if config.get("jailed"):
            phase("post-jail")  # uWSGI runs it at every start of a root instance
        return
    flags = _flags(config, "unshare")
    if flags:
        _unshare(flags)
        state.in_jail = True
    if config.get("cap"):
        state.caps = capabilities.parse(config.get("cap"), "cap")
        for cap in state.caps:
            log(f"setting capability {capabilities.BY_NUMBER.get(cap, cap)} [{cap}]")
        permitted = capabilities.mask(_MINIMAL) | capabilities.mask(state.caps)
        try:
            linux.capset(capabilities.mask(_MINIMAL), permitted, capabilities.mask(state.caps))
            linux.prctl(Prctl.SET_KEEPCAPS, 1)
        except OSError as exc:
            raise JailError(f"cap = {config.get('cap')}: {exc.strerror}") from None
    if state.in_jail or config.get("jailed"):
        phase("post-jail")
    root = config.get("chroot")
    if root:
        preload()
        log(f"chroot() to {root}")
        try:
            os.chroot(root)
            os.chdir("/")
        except OSError as exc:
            raise JailError(f"{_opt(config, 'chroot')} = {root}: {exc.strerror}") from None
    pivot = config.get("pivot-root")
    if pivot:
        preload()
        _pivot_root(pivot)
    flags2 = _flags(config, "unshare2")
    if flags2:
        _unshare(flags2)
        state.in_jail = True


def _unshare(flags: Clone) -> None:
    if flags & Clone.NEWPID:
        # only the children of the caller would be in it: uWSGI's --refork, not offered
        raise JailError("unshare = pid: a pid namespace needs a new process: use "
                        "emperor-use-clone = pid or namespace")
    try:
        linux.unshare(flags)
    except OSError as exc:
        raise JailError(f"unshare({namespaces.describe(flags)}): {exc.strerror}") from None
    log(f"[linux-namespace] applied unshare() mask: {int(flags)}")
    if flags & Clone.NEWUSER:
        try:
            os.setuid(0)
        except OSError as exc:
            raise JailError(f"unshare = user: setuid(0): {exc.strerror}") from None
    if flags & Clone.NEWNET:
        try:
            linux.set_loopback_up()
        except OSError as exc:
            log(f"[linux-namespace] cannot bring up lo: {exc.strerror}")


def _pivot_root(value: str) -> None:
    new_root, _, put_old = value.strip().partition(" ")
    try:
        linux.mount(None, "/", None, linux.Mount.REC | linux.Mount.PRIVATE)
        os.chdir(new_root)
        linux.pivot_root(".", put_old.lstrip("/") or ".")
        os.chdir("/")
    except OSError as exc:
        raise JailError(f"pivot-root = {value}: {exc.strerror}") from None


# --- as user: capabilities, rlimits --------------------------------------------------------------

def as_user(config: Any, state: State) -> None:
    if state.caps:
        try:
            capabilities.restore_after_setuid(state.caps)
        except OSError as exc:
            raise JailError(f"cap = {config.get('cap')}: {exc.strerror}") from None
    nproc = int(config.get("limit-nproc") or 0)
    if nproc > 0:
        log(f"limiting number of processes to {nproc}...")
        _setrlimit(resource.RLIMIT_NPROC, nproc, "limit-nproc")
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY:
        log(f"your processes number limit is {soft}")
    limit_as = int(config.get("limit-as") or 0)
    if limit_as > 0:
        log("limiting address space of processes...")
        _setrlimit(resource.RLIMIT_AS, limit_as * 1024 * 1024, "limit-as")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        log(f"your process address space limit is {hard} bytes ({hard // 1024 // 1024} MB)")


def _setrlimit(which: int, value: int, option: str) -> None:
    try:
        resource.setrlimit(which, (value, value))
    except (OSError, ValueError) as exc:
        # uWSGI logs the failure and goes on; the limit in force is logged after
        log(f"setrlimit(): {option} {value}: {getattr(exc, 'strerror', None) or exc}")
