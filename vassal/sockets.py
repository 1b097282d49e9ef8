"""Listening sockets: binding them from uWSGI addresses, and handing them over intact.

An address is written as uWSGI writes it: ``host:port``, ``:port`` (every IPv4 address),
``[::]:port``/``[::1]:port`` (IPv6), a filesystem path for a UNIX socket, ``@name`` for the
Linux abstract namespace, or ``=N`` to refer to the N-th ``shared-socket``.

Sockets must outlive a reload (uWSGI re-execs its binary and keeps listening so that no
connection is refused), so every socket can also be *adopted* from an already-open fd: one
inherited across exec (``IMPERIUM_SOCKETS`` names them) or received over a UNIX socket with
SCM_RIGHTS (the building block of zerg mode).
"""

from __future__ import annotations

import array
import errno
import grp
import os
import pwd
import socket
import stat
import struct
from dataclasses import dataclass, field

#: environment variable listing sockets kept open across a re-exec: ``proto|name|fd`` joined by ``;``
ENV_INHERITED = "IMPERIUM_SOCKETS"


class BindError(Exception):
    """A socket could not be created; the message is one line naming the socket and the cause."""


@dataclass
class ListenSocket:
    """One listening socket of the instance, as the stats server and the workers see it."""

    sock: socket.socket
    name: str  # the address as configured (what uWSGI shows in the stats "name")
    proto: str  # "http" or "uwsgi"
    shared: bool = False
    extra: dict = field(default_factory=dict)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def family(self) -> int:
        return self.sock.family

    @property
    def server_port(self) -> str:
        """SERVER_PORT as uWSGI derives it: the text after the last ':' of the name, else 80."""
        head, sep, tail = self.name.rpartition(":")
        return tail if sep else "80"


def parse_address(spec: str) -> tuple[int, object]:
    """(address family, bind address) for a uWSGI socket address."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty socket address")
    if spec.startswith("@"):
        return socket.AF_UNIX, "\0" + spec[1:]
    if spec.startswith("\0"):
        return socket.AF_UNIX, spec
    if "/" in spec or ":" not in spec:
        return socket.AF_UNIX, spec
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad IPv6 socket address {spec!r} (expected [addr]:port)")
        return socket.AF_INET6, (host, _port(port, spec))
    host, _, port = spec.rpartition(":")
    if host in ("", "*"):
        host = "0.0.0.0"
    return socket.AF_INET, (host, _port(port, spec))


def _port(text: str, spec: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"bad port in socket address {spec!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in socket address {spec!r}")
    return port


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def socket_owner(owner: str) -> tuple[int, int]:
    """``chown-socket``'s ``user[:group]`` (names or numbers) as (uid, gid); -1 keeps one."""
    user, sep, group = owner.partition(":")
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        gid = -1 if not sep else int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"unknown user or group in chown-socket {owner!r}") from None
    return uid, gid


def bind_socket(spec: str, proto: str, *, backlog: int = 100, chmod: str | None = None,
                kind: str | None = None, so_keepalive: bool = False, reuse_port: bool = False,
                defer_accept: int = 0, chown: str | None = None) -> ListenSocket:
    """Create, bind and listen. ``kind`` is the option name used in error messages.

    TCP sockets get SO_REUSEPORT with ``reuse_port`` and TCP_DEFER_ACCEPT (``defer_accept``
    seconds: accept() returns once the client has sent something) as uWSGI sets them.
    """
    label = kind or ("http-socket" if proto == "http" else "socket")
    try:
        family, addr = parse_address(spec)
        owner = socket_owner(chown) if chown else None
    except ValueError as exc:
        raise BindError(f"cannot bind {label} {spec}: {exc}") from None
    if family == socket.AF_INET:
        try:
            # resolve names such as "localhost" once, here, for a clear error
            addr = (socket.gethostbyname(addr[0]), addr[1])  # type: ignore[index]
        except OSError as exc:
            raise BindError(f"cannot bind {label} {spec}: cannot resolve host: {exc}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if so_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if defer_accept > 0:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer_accept)
        elif isinstance(addr, str) and not addr.startswith("\0"):
            _remove_stale_unix(addr)
        sock.bind(addr)
        if family == socket.AF_UNIX and chmod and isinstance(addr, str) and not addr.startswith("\0"):
            os.chmod(addr, int(chmod, 8))
        if family == socket.AF_UNIX and owner and isinstance(addr, str) and not addr.startswith("\0"):
            os.chown(addr, *owner)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {label} {spec}: {_reason(exc)}") from None
    except ValueError as exc:  # bad chmod
        sock.close()
        raise BindError(f"cannot bind {label} {spec}: bad chmod-socket value {chmod!r}: {exc}") from None
    return ListenSocket(sock, spec, proto)


#: the socket options, and the protocol each speaks (``socket`` follows ``protocol``)
SOCKET_OPTIONS = {"socket": "uwsgi", "http-socket": "http", "http11-socket": "http", "http": "http"}
#: values of ``protocol``/``socket-protocol`` and what they mean here
PROTOCOLS = {"uwsgi": "uwsgi", "http": "http", "http11": "http"}


def socket_specs(items, protocol: str | None = None) -> list[tuple[str, str, str]]:
    """(address, proto, option name) for every socket option among ``items`` (the config's
    (name, value) pairs), in order, as uWSGI binds them. ValueError names a bad protocol."""
    default = "uwsgi"
    if protocol:
        default = PROTOCOLS.get(protocol.strip().lower(), "")
        if not default:
            raise ValueError(f"protocol {protocol}: not supported here (uwsgi or http)")
    return [(value, default if name == "socket" else SOCKET_OPTIONS[name], name)
            for name, value in items if name in SOCKET_OPTIONS]


def _remove_stale_unix(path: str) -> None:
    """Remove a leftover socket file, but never a live socket or anything else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        return  # bind() then fails with "address already in use": right
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


def adopt_fd(fd: int, name: str, proto: str) -> ListenSocket:
    """A ListenSocket over an fd we already own (inherited or received)."""
    return ListenSocket(socket.socket(fileno=fd), name, proto)


def inherited_from_env(environ: dict[str, str] | None = None) -> dict[tuple[str, str], int]:
    """Sockets left open for us by the previous incarnation: (proto, name) -> fd."""
    env = os.environ if environ is None else environ
    raw = env.pop(ENV_INHERITED, "")
    out: dict[tuple[str, str], int] = {}
    for item in raw.split(";"):
        if not item:
            continue
        proto, _, rest = item.partition("|")
        name, _, fd = rest.rpartition("|")
        try:
            fdn = int(fd)
            os.fstat(fdn)
        except (ValueError, OSError):
            continue
        out[(proto, name)] = fdn
    return out


def export_for_exec(sockets: list[ListenSocket]) -> str:
    """Make the sockets survive exec and describe them for ``inherited_from_env``."""
    parts = []
    for ls in sockets:
        os.set_inheritable(ls.fileno(), True)
        parts.append(f"{ls.proto}|{ls.name}|{ls.fileno()}")
    return ";".join(parts)


def close_unused_inherited(inherited: dict[tuple[str, str], int], used: set[int]) -> None:
    """Close inherited sockets the new config no longer mentions."""
    for fd in inherited.values():
        if fd not in used:
            try:
                os.close(fd)
            except OSError:
                pass


ZERG_MAGIC = b"uwsgi-zerg"


def socket_name(sock: socket.socket) -> str:
    """The address of a bound socket written as uWSGI names it ("127.0.0.1:8080", "/path", "@name")."""
    addr = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(addr, bytes):
            addr = addr.decode("utf-8", "replace")
        return "@" + addr[1:] if addr.startswith("\0") else addr
    if sock.family == socket.AF_INET6:
        return f"[{addr[0]}]:{addr[1]}"
    return f"{addr[0]}:{addr[1]}"


def stdin_listener() -> socket.socket | None:
    """fd 0 when it is a listening stream socket (an on-demand vassal's, handed over by the
    emperor; uWSGI always checks fd 0), else None. The fd stays open either way."""
    try:
        probe = socket.socket(fileno=os.dup(0))
    except OSError:
        return None
    try:
        if probe.type != socket.SOCK_STREAM or not probe.getsockopt(socket.SOL_SOCKET,
                                                                    socket.SO_ACCEPTCONN):
            return None
    except OSError:
        return None
    finally:
        probe.close()
    return socket.socket(fileno=0)


def zerg_send(conn: socket.socket, fds: list[int]) -> None:
    """The zerg server's answer, as uWSGI sends it: "uwsgi-zerg", a native int count, the fds."""
    conn.sendmsg([ZERG_MAGIC, struct.pack("i", len(fds))],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def zerg_attach(path: str, timeout: float = 30.0) -> list[int]:
    """Connect to a zerg server (a UNIX socket) and receive its listening sockets."""
    family, addr = parse_address(path)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(addr)
        fds = array.array("i")
        msg, ancdata, _flags, _addr = sock.recvmsg(len(ZERG_MAGIC) + 4, socket.CMSG_SPACE(64 * fds.itemsize))
    finally:
        sock.close()
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not msg.startswith(ZERG_MAGIC):
        for fd in fds:
            os.close(fd)
        raise ValueError("invalid data received from zerg-server")
    return list(fds)


def send_fds(sock: socket.socket, fds: list[int], payload: bytes = ZERG_MAGIC) -> None:
    """Send fds over a connected UNIX socket with SCM_RIGHTS."""
    socket.send_fds(sock, [payload], fds)


def recv_fds(sock: socket.socket, maxfds: int = 8) -> list[int]:
    """Receive fds sent with SCM_RIGHTS (the zerg side of fd passing)."""
    fds = array.array("i")
    msg, ancdata, _flags, _addr = sock.recvmsg(1024, socket.CMSG_SPACE(maxfds * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return list(fds)


def listen_queue(ls: ListenSocket) -> int:
    """Connections waiting in the accept queue of a TCP listening socket (0 if unknown).

    Linux reports a listening socket's current backlog in ``tcpi_unacked`` of TCP_INFO, which
    is what uWSGI reads for ``listen_queue``.
    """
    if ls.family not in (socket.AF_INET, socket.AF_INET6):
        return _unix_queue(ls)
    try:
        info = ls.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0
    # struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, ...
    return int.from_bytes(info[24:28], "little") if len(info) >= 28 else 0


def _unix_queue(ls: ListenSocket) -> int:
    """Backlog of a UNIX listening socket, from /proc/net/unix (RefCount column is not it;
    uWSGI does not report UNIX queues on Linux either), so 0."""
    return 0


def is_addr_in_use(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
