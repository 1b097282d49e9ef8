"""Whose files may be quoted: the config's owner, and only what they could read themselves.

A vassal's config is read by a process that may run as root (the emperor's user) before
``uid``/``gid`` drop privileges. A config written by someone else (a user's file, or a
symlink a user planted in the vassal directory) can make that process read any file:
``include = /etc/shadow``, or the vassal config itself a symlink to a secret. The file is
read as uWSGI would read it, but messages (errors and notices, which end up in logs the
author can read) quote nothing from a file its author could not have read: they name the
file and the line only.

The author is the owner of the first config file (of the symlink itself when it is one),
or this process's user for configs that are no file (command line, ``emperor://``, stdin);
a file reached through a symlink must also be readable by the symlink's owner.
"""

from __future__ import annotations

import os
import pwd
import stat


class Author:
    """Who wrote the config, and what they may read."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self._groups: set[int] | None = None

    @classmethod
    def of_file(cls, path: str) -> Author:
        try:
            return cls(os.lstat(path).st_uid)
        except (OSError, ValueError):
            return cls(os.geteuid())

    def groups(self) -> set[int]:
        if self._groups is None:
            try:
                pw = pwd.getpwuid(self.uid)
                self._groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
            except (KeyError, OSError):
                self._groups = set()
        return self._groups

    def may_quote(self, path: str) -> bool:
        """True when messages may quote the text of ``path``: its author could read it, and
        so could the owner of the symlink that leads there, if it is one."""
        if not self.can_read(path):
            return False
        try:
            link_owner = os.lstat(path).st_uid
        except (OSError, ValueError):
            return True
        if link_owner == self.uid or not os.path.islink(path):
            return True
        return Author(link_owner).can_read(path)

    def can_read(self, path: str) -> bool:
        """True when the author could read ``path`` (the file a symlink leads to) themselves."""
        if self.uid == 0:
            return True
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return True  # nothing was read from it, so nothing can be quoted
        mode = st.st_mode
        if st.st_uid == self.uid:
            return bool(mode & stat.S_IRUSR)
        if st.st_gid in self.groups():
            return bool(mode & stat.S_IRGRP)
        return bool(mode & stat.S_IROTH)


#: shorter pieces of private text are left in messages: hiding every "1" or "on" would garble
#: them, and so short a piece says next to nothing about the file
MIN_HIDDEN = 4


def redact(message: str, texts: list[str]) -> str:
    """``message`` with every piece of ``texts`` (values read from files the config's author
    could not read) replaced by a stand-in: as written, as ``repr`` shows it, line by line.

    For the messages built after the config was read (a socket that cannot be bound, an
    option of the wrong shape), which quote option values without knowing their origin."""
    if not texts:
        return message
    pieces: set[str] = set()
    for text in texts:
        for form in (text, repr(text)[1:-1]):
            pieces.add(form.strip())
            pieces.update(line.strip() for line in form.splitlines())
    for piece in sorted((p for p in pieces if len(p) >= MIN_HIDDEN), key=len, reverse=True):
        message = message.replace(piece, "<private>")
    return message
