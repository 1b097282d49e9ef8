"""The ``zoo://`` URI and the kazoo client it describes.

Syntax::

    zoo://[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/PATH[?PARAMS]

Each child znode of PATH is a vassal. USER:PASSWORD is a ZooKeeper *digest* identity (the
scheme ``addauth digest user:password`` uses); nodes this emperor creates are then
readable and writable by that identity only. PARAMS:

- ``timeout=SECONDS``: the session timeout asked for (default 10; the server clamps it to
  between 2 and 20 of its ticks, 4-40 s with Debian's tickTime of 2000 ms). It is how long
  a dead emperor keeps its vassals before the fleet moves them.
- ``chroot=/PATH``: every path, PATH and the member path included, is inside this one.
- ``members=/PATH``: where the fleet's member nodes live (default: PATH + ``.members``,
  a sibling of PATH, so that PATH holds vassals only).
- ``tls=1``, ``ca=FILE``, ``certfile=FILE``, ``keyfile=FILE``, ``keyfile_password=...``,
  ``verify=0``, ``check_hostname=1``: TLS as kazoo offers it (``ca``, ``certfile`` or
  ``keyfile`` imply ``tls=1``).

An unknown parameter is an error: an option accepted without effect would be a lie.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

DEFAULT_PORT = 2181
DEFAULT_HOSTS = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_TIMEOUT = 10.0
MEMBERS_SUFFIX = ".members"
#: kazoo reconnects with this as its longest pause: a server that comes back is found quickly
RECONNECT_MAX_DELAY = 2.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_PARAMS = ("timeout", "chroot", "members", "tls", "ssl", "ca", "certfile", "keyfile",
           "keyfile_password", "verify", "check_hostname")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?$")


@dataclass(frozen=True)
class ZooSource:
    hosts: str  # "h1:2181,h2:2181", as kazoo takes them (without the chroot)
    path: str  # parent of the vassal znodes (inside the chroot)
    members: str  # parent of the member znodes (inside the chroot)
    chroot: str = ""
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    tls: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """How logs name the source: hosts, chroot and path, never the password."""
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.hosts}{self.chroot}{self.path}"

    def client(self, logger: logging.Logger | None = None) -> Any:
        """A kazoo client for this source (not started)."""
        from kazoo.client import KazooClient
        from kazoo.security import CREATOR_ALL_ACL

        auth = [("digest", f"{self.user}:{self.password}")] if self.user else None
        return KazooClient(
            hosts=self.hosts + self.chroot, timeout=self.timeout, auth_data=auth,
            # with an identity, what we create is that identity's alone (the world sees nothing)
            default_acl=CREATOR_ALL_ACL if self.user else None,
            connection_retry={"max_tries": -1, "delay": 0.1, "backoff": 2,
                              "max_delay": RECONNECT_MAX_DELAY},
            logger=logger, **self.tls)


def check_path(path: str, what: str, arg: str) -> str:
    """An absolute znode path, normalised (no trailing slash); the root itself is refused."""
    if not path.startswith("/"):
        raise ValueError(f"{arg}: the {what} must be an absolute path, not {path!r}")
    parts = path.rstrip("/").split("/")[1:]
    if not parts:
        raise ValueError(f"{arg}: the {what} cannot be the root: zoo://HOST/PATH")
    for part in parts:
        if part in ("", ".", "..") or not part.isprintable():
            raise ValueError(f"{arg}: the {what} {path!r} has an empty, '.', '..' or "
                             "unprintable component")
    return "/" + "/".join(parts)


def _hosts(text: str, arg: str) -> str:
    if not text:
        return DEFAULT_HOSTS
    out = []
    for item in text.split(","):
        m = _HOST.match(item.strip())
        if not m:
            raise ValueError(f"{arg}: bad ZooKeeper host {item.strip()!r} (HOST[:PORT])")
        port = int(m.group(2) or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise ValueError(f"{arg}: bad port {port} in {item.strip()!r}")
        out.append(f"{m.group(1)}:{port}")
    return ",".join(out)


def _flag(key: str, value: str, arg: str) -> bool:
    if value.lower() in _TRUE or value == "":
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{arg}: {key}={value!r} is neither 1 nor 0")


def parse_zoo_arg(arg: str) -> ZooSource:
    if not arg.startswith("zoo://"):
        raise ValueError(f"{arg}: expected zoo://[user:password@]host[:port][,...]/path")
    rest, _, query = arg[len("zoo://"):].partition("?")
    netloc, slash, path = rest.partition("/")
    if not slash:
        raise ValueError(f"{arg}: zoo:// needs a path: zoo://HOST/PATH")
    user = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        name, colon, secret = userinfo.partition(":")
        if not name or not colon:
            raise ValueError(f"{redact(arg)}: credentials must be USER:PASSWORD (ZooKeeper digest)")
        user, password = unquote(name), unquote(secret)
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _PARAMS:
            raise ValueError(f"{redact(arg)}: unknown parameter {key!r} "
                             f"(known: {', '.join(p for p in _PARAMS if p != 'ssl')})")
        params[key] = value
    vassals = check_path(unquote("/" + path), "path", redact(arg))
    members = check_path(params["members"], "members path", redact(arg)) \
        if "members" in params else vassals + MEMBERS_SUFFIX
    if members == vassals or members.startswith(vassals + "/") or vassals.startswith(members + "/"):
        raise ValueError(f"{redact(arg)}: the members path {members} must lie outside {vassals} "
                         "(every child of the path is a vassal)")
    chroot = check_path(params["chroot"], "chroot", redact(arg)) if params.get("chroot") else ""
    timeout = DEFAULT_TIMEOUT
    if "timeout" in params:
        try:
            timeout = float(params["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 600:
            raise ValueError(f"{redact(arg)}: timeout={params['timeout']!r} must be seconds "
                             "(0 < timeout <= 600)")
    tls: dict[str, Any] = {}
    for key in ("ca", "certfile", "keyfile", "keyfile_password"):
        if params.get(key):
            tls[key] = params[key]
    use_tls = bool({"ca", "certfile", "keyfile"} & tls.keys())
    for key in ("tls", "ssl"):
        if key in params:
            use_tls = _flag(key, params[key], redact(arg))
    if use_tls:
        tls["use_ssl"] = True
        if "verify" in params:
            tls["verify_certs"] = _flag("verify", params["verify"], redact(arg))
        if "check_hostname" in params:
            tls["check_hostname"] = _flag("check_hostname", params["check_hostname"], redact(arg))
    elif tls or "verify" in params or "check_hostname" in params:
        raise ValueError(f"{redact(arg)}: TLS parameters given with tls=0")
    try:
        hosts = _hosts(netloc, redact(arg))
    except ValueError:
        if "@" in rest:  # USER:PASS/WORD@HOST: the "host" would show a piece of the password
            raise ValueError(f"{redact(arg)}: bad ZooKeeper host, or a password holding '/' "
                             "(percent-encode '/', '@' and ':' in credentials)") from None
        raise
    return ZooSource(hosts=hosts, path=vassals, members=members, chroot=chroot,
                     user=user, password=password, timeout=timeout, tls=tls)


def redact(arg: str) -> str:
    """The URI without its password (and without a keyfile password).

    Everything from ``zoo://USER:`` to the last ``@`` before the query is hidden: a password
    holding a raw ``@`` or ``/`` (which should be percent-encoded) is hidden whole too.
    """
    m = re.match(r"zoo://[^:/@?]*:", arg)
    if m:
        head, q, query = arg[m.end():].partition("?")
        at = head.rfind("@")
        if at >= 0:
            arg = m.group(0) + "***" + head[at:] + q + query
    return re.sub(r"(keyfile_password=)[^&]*", r"\1***", arg)
