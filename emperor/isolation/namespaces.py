"""Namespace names as uWSGI spells them (``emperor-use-clone``, ``unshare``): parsing only.

uWSGI's table (core/utils.c ``uwsgi_unshare_list``): ``fs``, ``ns``, ``mount`` and ``mnt``
are the mount namespace; ``files``, ``io``, ``parent`` and ``sysvsem`` are clone flags that
are no namespace but that uWSGI accepts in the same list. A name it does not know stops
uWSGI ("unknown namespace subsystem"); here it is a ``ValueError`` with the same words.
"""

from __future__ import annotations

from emperor.isolation.linux import Clone

#: every name uWSGI accepts, and its flag
NAMES: dict[str, Clone] = {
    "files": Clone.FILES, "ipc": Clone.NEWIPC, "net": Clone.NEWNET, "io": Clone.IO,
    "parent": Clone.PARENT, "pid": Clone.NEWPID, "ns": Clone.NEWNS, "fs": Clone.NEWNS,
    "mount": Clone.NEWNS, "mnt": Clone.NEWNS, "sysvsem": Clone.SYSVSEM, "uts": Clone.NEWUTS,
    "user": Clone.NEWUSER,
}
#: the flags that make a namespace (the others are refused where a namespace is asked for)
NAMESPACES = Clone.NEWNS | Clone.NEWIPC | Clone.NEWNET | Clone.NEWPID | Clone.NEWUTS | Clone.NEWUSER
#: how logs name each namespace flag
SHORT = {Clone.NEWNS: "mount", Clone.NEWIPC: "ipc", Clone.NEWNET: "net", Clone.NEWPID: "pid",
         Clone.NEWUTS: "uts", Clone.NEWUSER: "user"}


def parse(value: str, option: str) -> Clone:
    """``fs,net,pid`` -> flags. An unknown name, or a flag that is no namespace (``files``,
    ``io``, ``parent``, ``sysvsem``: clone() options that mean nothing for a process that
    already exists), is a ``ValueError`` naming the option."""
    flags = Clone(0)
    for word in str(value).split(","):
        name = word.strip()
        if not name:
            continue
        flag = NAMES.get(name)
        if flag is None:
            raise ValueError(f"{option} = {value}: unknown namespace subsystem: {name} "
                             f"(known: {', '.join(sorted(NAMES))})")
        if not flag & NAMESPACES:
            raise ValueError(f"{option} = {value}: {name} is a clone() flag, not a namespace: "
                             "not supported by Imperium")
        flags |= flag
    return flags


def describe(flags: int) -> str:
    """``mount,net,pid`` for a log line."""
    return ",".join(name for flag, name in SHORT.items() if flags & flag) or "none"
