"""The Linux calls the isolation code needs and Python 3.11 does not offer, through ctypes.

``unshare``, ``setns``, ``mount``/``umount2``, ``pivot_root``, ``prctl`` and
``capget``/``capset`` are libc calls (``syscall`` for the two libc does not wrap); each
raises ``OSError`` with the call's name, as ``os`` functions do. The flag values are the
kernel's (include/uapi/linux/sched.h, mount.h, prctl.h, capability.h), named so that no bare
number appears in the logic.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from enum import IntEnum, IntFlag


class Clone(IntFlag):
    """Namespace flags of clone()/unshare()/setns() (and the two uWSGI also accepts)."""

    FILES = 0x00000400
    NEWNS = 0x00020000
    SYSVSEM = 0x00040000
    PARENT = 0x00008000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000
    IO = 0x80000000


class Mount(IntFlag):
    RDONLY = 1
    NOSUID = 2
    NODEV = 4
    NOEXEC = 8
    REMOUNT = 32
    BIND = 4096
    REC = 16384
    PRIVATE = 1 << 18


MNT_DETACH = 2


class Prctl(IntEnum):
    SET_PDEATHSIG = 1
    SET_KEEPCAPS = 8
    CAPBSET_READ = 23
    CAPBSET_DROP = 24
    SET_NO_NEW_PRIVS = 38
    CAP_AMBIENT = 47


class Ambient(IntEnum):
    IS_SET = 1
    RAISE = 2
    LOWER = 3
    CLEAR_ALL = 4


_CAP_VERSION_3 = 0x20080522
#: (pivot_root, capget, capset) system call numbers: libc wraps none of them
_SYSCALLS = {"x86_64": (155, 125, 126), "aarch64": (41, 90, 91)}
_SYS_PIVOT_ROOT, _SYS_CAPGET, _SYS_CAPSET = _SYSCALLS.get(os.uname().machine, _SYSCALLS["x86_64"])

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


def _check(ret: int, what: str, path: str | None = None) -> int:
    """``OSError`` as ``os`` raises it (strerror alone: callers name the step); ``what``
    is kept in the exception's notes for a traceback."""
    if ret < 0:
        err = ctypes.get_errno()
        exc = OSError(err, os.strerror(err), path)
        exc.add_note(what)
        raise exc
    return ret


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(int(flags))), "unshare()")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(int(nstype))), "setns()")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(int(flags)),
                       _b(data)), "mount()", target)


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), "umount()", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT), _b(new_root), _b(put_old)),
           "pivot_root()", new_root)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(int(option), arg2, arg3, arg4, arg5), f"prctl({int(option)})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capget() -> tuple[int, int, int]:
    """This process's (effective, permitted, inheritable) capability masks."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(ctypes.c_long(_SYS_CAPGET), ctypes.byref(header), data), "capget()")
    return (data[0].effective | (data[1].effective << 32),
            data[0].permitted | (data[1].permitted << 32),
            data[0].inheritable | (data[1].inheritable << 32))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(ctypes.c_long(_SYS_CAPSET), ctypes.byref(header), data), "capset()")


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def set_loopback_up() -> None:
    """Bring ``lo`` up (a new network namespace starts with it down): SIOCSIFFLAGS."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
