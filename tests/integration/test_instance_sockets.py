"""Socket addresses as uWSGI writes them, and sockets handed over as fds (exec, SCM_RIGHTS)."""

from __future__ import annotations

import os
import socket

import pytest

from tests.conftest import need_service
from vassal import sockets as S


@pytest.mark.parametrize(("spec", "family", "addr"), [
    ("127.0.0.1:8080", socket.AF_INET, ("127.0.0.1", 8080)),
    (":8080", socket.AF_INET, ("0.0.0.0", 8080)),
    ("0.0.0.0:9", socket.AF_INET, ("0.0.0.0", 9)),
    ("[::]:8080", socket.AF_INET6, ("::", 8080)),
    ("[::1]:80", socket.AF_INET6, ("::1", 80)),
    ("/tmp/app.sock", socket.AF_UNIX, "/tmp/app.sock"),
    ("app.sock", socket.AF_UNIX, "app.sock"),
    ("@abstract", socket.AF_UNIX, "\0abstract"),
])
def test_parse_address(spec: str, family: int, addr: object) -> None:
    assert S.parse_address(spec) == (family, addr)


@pytest.mark.parametrize("spec", ["host:port", "[::1]8080", "1.2.3.4:70000"])
def test_bad_addresses(spec: str) -> None:
    with pytest.raises(ValueError):
        S.parse_address(spec)


def test_bind_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(S.BindError) as info:
        S.bind_socket(str(tmp_path / "missing-dir" / "x.sock"), "uwsgi")
    assert str(info.value) == f"cannot bind socket {tmp_path / 'missing-dir' / 'x.sock'}: no such file or directory"


def test_stale_unix_socket_file_is_replaced_but_live_one_is_not(tmp_path) -> None:
    path = str(tmp_path / "s.sock")
    first = S.bind_socket(path, "uwsgi")
    with pytest.raises(S.BindError, match="address already in use"):
        S.bind_socket(path, "uwsgi")  # a live server owns it
    first.sock.close()  # the file stays behind, nobody listens: it may be reused
    second = S.bind_socket(path, "uwsgi")
    second.sock.close()


def test_ipv6_dual_stack(tmp_path) -> None:
    need_service("ipv6", socket.has_ipv6, "Python built without IPv6")
    try:
        ls = S.bind_socket("[::]:0", "http")
    except S.BindError as exc:
        need_service("ipv6", False, str(exc))
        raise
    with ls.sock:
        port = ls.sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_fds_survive_exec_description_and_scm_rights() -> None:
    ls = S.bind_socket("127.0.0.1:0", "http")
    env = {S.ENV_INHERITED: S.export_for_exec([ls])}
    assert os.get_inheritable(ls.fileno())
    got = S.inherited_from_env(env)
    assert got == {("http", "127.0.0.1:0"): ls.fileno()} and S.ENV_INHERITED not in env
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        S.send_fds(a, [ls.fileno()])
        (fd,) = S.recv_fds(b)
    adopted = S.adopt_fd(fd, "127.0.0.1:0", "http")
    assert adopted.sock.getsockname() == ls.sock.getsockname()
    adopted.sock.close()
    ls.sock.close()
