"""Tyrant mode's check of a config file: opened once, judged on what was opened.

In tyrant mode a vassal runs as the owner of its config (uWSGI: ``stat()`` of the path, or
``lstat()`` with ``emperor-tyrant-nofollow``), and uWSGI's vassal then opens the path again
itself. Between the two, whoever can change the path can change what runs: point a symlink
owned by one user at another user's file, or swap the file for a moment. ``read_config``
closes that gap:

* the path is resolved one component at a time with ``O_PATH | O_NOFOLLOW`` descriptors:
  every symlink on the way is read from the link itself (a symlink cannot change; only a
  rename can replace it, and the walk never looks the name up again), and recorded;
* the file reached is opened once, from that descriptor, and every check is made on the
  open file (``fstat``); the bytes the vassal gets are read from that same open file and
  handed over the config fd (our own vassals read them instead of opening the path; see
  ``vassal.config.sources``), so a swap after the check changes nothing;
* the owner it runs as: the file's (default) or the config symlink's own
  (``emperor-tyrant-nofollow``); uid 0 or gid 0 is refused, as uWSGI does.

Rules uWSGI does not have, each closing a way for one user to choose what runs as another:

* a symlink on the way must belong to root or to the user the vassal runs as (a user's link
  to another user's file would run that file, whatever it holds, as its owner);
* with ``emperor-tyrant-nofollow`` the file must belong to root (an admin's template) or to
  the link's owner, and that owner must be able to read it (the emperor reads as root: it
  must not hand a user what the user could not read);
* a file anyone may write is refused (anyone could choose what runs as its owner);
* the file must be a regular file of at most 65535 bytes (what one config packet holds).

Group-writable files are accepted: the group members can already act as the group.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass

#: the largest config one config-fd packet carries (uwsgi packet: 16-bit size)
MAX_CONFIG = 0xFFFF
MAX_HOPS = 40
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

#: called between the checks and the read (tests use it to swap the file at that moment)
after_check: Callable[[str], None] | None = None


class Refused(Exception):
    """Why this config cannot run in tyrant mode (one line)."""


@dataclass(frozen=True)
class Verified:
    uid: int
    gid: int
    data: bytes
    dev: int
    ino: int


class _Walk:
    """Resolve a path through descriptors, recording every symlink met."""

    def __init__(self) -> None:
        self.links: list[tuple[str, os.stat_result]] = []
        self.final_link: os.stat_result | None = None  # the path's own last component
        self.fds: list[int] = []

    def open(self, dirfd: int, path: str, depth: int = 0) -> int:
        if path.startswith("/"):
            dirfd = self._keep(os.open("/", _PATH | os.O_DIRECTORY))
        parts = [p for p in path.split("/") if p and p != "."]
        cur = dirfd
        if not parts:
            return cur
        for i, part in enumerate(parts):
            fd = self._keep(os.open(part, _PATH, dir_fd=cur))
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                if len(self.links) >= MAX_HOPS:
                    raise Refused("too many levels of symbolic links")
                self.links.append((part, st))
                if depth == 0 and i == len(parts) - 1:
                    self.final_link = st
                target = os.readlink("", dir_fd=fd)
                fd = self.open(cur, target, depth + 1)
            cur = fd
        return cur

    def _keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _groups(uid: int, gid: int) -> set[int]:
    try:
        return set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        return {gid}


def can_read(st: os.stat_result, uid: int, gid: int) -> bool:
    """Whether ``uid`` (primary group ``gid``) may read a file with this stat (mode bits)."""
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in _groups(uid, gid):
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _reach(walk: _Walk, path: str, cwd: str | None) -> tuple[int, os.stat_result]:
    """The file ``path`` leads to, as an ``O_PATH`` descriptor, and its stat (a regular file)."""
    base = walk._keep(os.open(cwd or ".", _PATH | os.O_DIRECTORY))
    try:
        target = walk.open(base, path)
    except OSError as exc:
        raise Refused(f"cannot open {path}: {exc.strerror}") from None
    st = os.fstat(target)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{path} is not a regular file")
    return target, st


def _check_links(walk: _Walk, uid: int) -> None:
    for name, link in walk.links:
        if link.st_uid not in (0, uid):
            raise Refused(f"symlink {name} belongs to uid {link.st_uid}, not to root or to "
                          f"uid {uid} the vassal would run as")


def _read_checked(walk: _Walk, target: int, st: os.stat_result, path: str, limit: int,
                  whole: bool = True) -> bytes:
    """Open the file reached (once), make sure it is the one checked, read at most
    ``limit`` bytes (``Refused`` if there are more and the ``whole`` file is wanted)."""
    if after_check is not None:
        after_check(path)
    try:
        fd = os.open(f"/proc/self/fd/{target}", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK
                     | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"cannot open {path}: {exc.strerror}") from None
    walk.fds.append(fd)
    again = os.fstat(fd)
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
        raise Refused(f"{path} changed while it was being checked")
    chunks = []
    size = 0
    want = limit + 1 if whole else limit
    while size < want:
        chunk = os.read(fd, want - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise Refused(f"{path} grew past {limit} bytes while being read")
    return b"".join(chunks)


def read_config(path: str, *, nofollow: bool = False, cwd: str | None = None) -> Verified:
    """Open, check and read a tyrant vassal's config; ``Refused`` says why it may not run."""
    walk = _Walk()
    try:
        target, st = _reach(walk, path, cwd)
        if nofollow and walk.final_link is not None:
            uid, gid = walk.final_link.st_uid, walk.final_link.st_gid
        else:
            uid, gid = st.st_uid, st.st_gid
        if uid == 0 or gid == 0:
            raise Refused(f"invalid permissions: owner {uid}:{gid} (uid and gid must not be 0)")
        _check_links(walk, uid)
        if st.st_uid not in (0, uid):
            raise Refused(f"{path} leads to a file of uid {st.st_uid}, not of root or of "
                          f"uid {uid} the vassal would run as")
        if st.st_uid == 0 and not can_read(st, uid, gid):
            raise Refused(f"{path} leads to a file uid {uid} cannot read")
        if st.st_mode & stat.S_IWOTH:
            raise Refused(f"{path} is writable by everyone")
        if st.st_size > MAX_CONFIG:
            raise Refused(f"{path} is {st.st_size} bytes, more than a config packet holds "
                          f"({MAX_CONFIG})")
        data = _read_checked(walk, target, st, path, MAX_CONFIG)
        return Verified(uid, gid, data, st.st_dev, st.st_ino)
    finally:
        walk.close()


def read_companion(path: str, uid: int, gid: int, limit: int = 4096) -> bytes:
    """The first ``limit`` bytes of a file the emperor reads *for* a tyrant vassal (the
    socket file of ``emperor-on-demand-extension``), with the vassal owner's say only: the
    same walk as ``read_config``, every link and the file belonging to root or to ``uid``,
    readable by ``uid`` and not writable by everyone. Read as root without these checks,
    a tenant's link would make the emperor read (and log) any file of the host."""
    walk = _Walk()
    try:
        target, st = _reach(walk, path, None)
        _check_links(walk, uid)
        if st.st_uid not in (0, uid):
            raise Refused(f"{path} belongs to uid {st.st_uid}, not to root or to uid {uid} "
                          "the vassal runs as")
        if not can_read(st, uid, gid):
            raise Refused(f"{path} is a file uid {uid} cannot read")
        if st.st_mode & stat.S_IWOTH:
            raise Refused(f"{path} is writable by everyone")
        return _read_checked(walk, target, st, path, limit, whole=False)
    finally:
        walk.close()
