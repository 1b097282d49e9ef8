"""POSIX capabilities: uWSGI's names, and keeping only the listed ones across a uid change.

Names come from uWSGI's table (core/utils.c ``uwsgi_cap_list``); a number is a capability
by number (uWSGI's way to name one its table lacks). uWSGI logs and skips an unknown name
and stops on an empty list; here an unknown name is a ``ValueError`` naming it (a typo in
a security option must not quietly widen what a process keeps).

``drop_bounding(keep)`` limits what any later exec can ever regain (``emperor-cap``:
uWSGI drops the bounding set of each vassal, keeping ``setpcap``). ``keep_across_setuid``
is called before setuid and ``restore_after_setuid`` after it: ``PR_SET_KEEPCAPS`` keeps
the permitted set through the uid change, then the effective, permitted and inheritable
sets become exactly the listed ones, and each is raised in the ambient set so that it
also survives an ``execve`` of a program without file capabilities (which uWSGI, predating
ambient capabilities, cannot do: its vassals lose them at exec unless they run as root).
"""

from __future__ import annotations

from emperor.isolation import linux
from emperor.isolation.linux import Ambient, Prctl

NAMES: dict[str, int] = {
    "chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4, "kill": 5,
    "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9, "net_bind_service": 10,
    "net_broadcast": 11, "net_admin": 12, "net_raw": 13, "ipc_lock": 14, "ipc_owner": 15,
    "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18, "sys_ptrace": 19, "sys_pacct": 20,
    "sys_admin": 21, "sys_boot": 22, "sys_nice": 23, "sys_resource": 24, "sys_time": 25,
    "sys_tty_config": 26, "mknod": 27, "lease": 28, "audit_write": 29, "audit_control": 30,
    "setfcap": 31, "mac_override": 32, "mac_admin": 33, "syslog": 34, "wake_alarm": 35,
}
SETPCAP = NAMES["setpcap"]
BY_NUMBER = {v: k for k, v in NAMES.items()}


def parse(value: str, option: str) -> list[int]:
    """``net_bind_service,sys_time,42`` -> capability numbers (at least one)."""
    caps: list[int] = []
    top = linux.last_cap()
    for word in str(value).split(","):
        name = word.strip()
        if not name:
            continue
        if name.isascii() and name.isdigit():
            number = int(name)
            if number > top:
                raise ValueError(f"{option} = {value}: capability {number} is beyond this "
                                 f"kernel's last one ({top})")
        elif name in NAMES:
            number = NAMES[name]
        else:
            raise ValueError(f"{option} = {value}: unknown capability: {name}")
        if number not in caps:
            caps.append(number)
    if not caps:
        raise ValueError(f"{option} = {value}: empty capabilities mask")
    return caps


def describe(caps: list[int]) -> str:
    return ",".join(BY_NUMBER.get(c, str(c)) for c in caps)


def mask(caps: list[int]) -> int:
    out = 0
    for c in caps:
        out |= 1 << c
    return out


def drop_bounding(keep: list[int]) -> None:
    """Drop every capability but ``keep`` (and setpcap, needed to drop the others, as
    uWSGI keeps it) from the bounding set."""
    wanted = set(keep) | {SETPCAP}
    for cap in range(linux.last_cap() + 1):
        if cap in wanted:
            continue
        if linux.prctl(Prctl.CAPBSET_READ, cap) == 1:
            linux.prctl(Prctl.CAPBSET_DROP, cap)


def keep_across_setuid() -> None:
    linux.prctl(Prctl.SET_KEEPCAPS, 1)


def restore_after_setuid(caps: list[int]) -> None:
    """After setuid: exactly ``caps``, effective and inheritable, and ambient so that an
    exec keeps them. A capability the process no longer holds fails (EPERM)."""
    m = mask(caps)
    linux.capset(m, m, m)
    linux.prctl(Prctl.CAP_AMBIENT, Ambient.CLEAR_ALL)
    for cap in caps:
        linux.prctl(Prctl.CAP_AMBIENT, Ambient.RAISE, cap)
    linux.prctl(Prctl.SET_KEEPCAPS, 0)


def current() -> tuple[int, int, int]:
    """(effective, permitted, inheritable), for tests and logs."""
    return linux.capget()
