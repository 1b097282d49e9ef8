"""``zergpool`` against Debian's real uWSGI: a pool of each kind, zergs of each kind attached.

A zergpool instance binds the addresses, runs no worker and hands the sockets to every zerg
that connects to its UNIX socket; the zergs then serve the pool's addresses. The same test
runs with uWSGI's pool and ours, each with one uWSGI zerg and one Imperium zerg attached:
requests on both addresses are answered, by both zergs, and go on when one zerg leaves. A
reload of our pool keeps the addresses (the zergs hold the same sockets) and lets new zergs
attach.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, Procs, free_port, read_to_close, wait_until
from tests.interop.helpers import VASSAL_BINARY, backend_argv, children, copy_app, need_uwsgi
from vassal.protocols import uwsgi as U

KINDS = ("imperium", "uwsgi")


def _request(port: int, path: str = "/z") -> bytes:
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path, "QUERY_STRING": "",
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "t", "SERVER_PORT": "80", "REMOTE_ADDR": "10.1.2.3",
           "HTTP_HOST": "t", "SCRIPT_NAME": ""}
    return read_to_close(port, U.encode_packet(env), timeout=10)


def _pool(procs: Procs, base: Path, kind: str, ports: tuple[int, int]) -> tuple[object, Path]:
    d = base / f"pool-{kind}"
    d.mkdir()
    zsock = d / "zp.sock"
    (d / "pool.ini").write_text(f"""[uwsgi]
plugins = zergpool
master = true
zergpool = {zsock}:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}
""")
    p = procs.start(backend_argv(kind, d / "pool.ini"), cwd=d)
    wait_until(lambda: p.poll() is not None or zsock.exists(), 20, message=f"{kind} zergpool")
    assert p.poll() is None, procs.output(p)
    return p, zsock


def _zerg(procs: Procs, base: Path, kind: str, zsock: Path, name: str) -> object:
    d = base / name
    d.mkdir()
    (d / "zerg.ini").write_text(f"""[uwsgi]
master = true
zerg = {zsock}
wsgi-file = {base}/routed.py
""")
    p = procs.start(backend_argv(kind, d / "zerg.ini"), cwd=d)
    wait_until(lambda: p.poll() is not None or "attached" in procs.output(p), 20, message=f"{kind} zerg attached")
    assert p.poll() is None, procs.output(p)
    return p


@pytest.mark.parametrize("pool_kind", KINDS)
def test_zergs_of_both_kinds_serve_a_pool(tmp_path: Path, procs: Procs, pool_kind: str) -> None:
    need_uwsgi()
    copy_app("routed.py", tmp_path)
    ports = (free_port(), free_port())
    pool, zsock = _pool(procs, tmp_path, pool_kind, ports)
    # the pool itself serves nothing: a master and (uWSGI) its gateway, no worker
    if pool_kind == "imperium" and VASSAL_BINARY == IMPERIUM:
        assert children(pool.pid) == set()
    zergs = {kind: _zerg(procs, tmp_path, kind, zsock, f"zerg-{kind}") for kind in KINDS}
    for port in ports:
        for _ in range(3):
            assert _request(port).startswith(b"HTTP/1.1 200 OK"), port
    # both zergs take connections from the shared queue: keep asking until each one answered
    served = {kind: 0 for kind in KINDS}

    def both_served() -> bool:
        _request(ports[0])
        for kind, p in zergs.items():
            served[kind] = procs.output(p).count("GET /z")
        return all(served.values())
    wait_until(both_served, 20, message="both zergs serve the pool's address")
    # one zerg leaves: the other one goes on serving every address
    zergs["uwsgi"].send_signal(signal.SIGINT)
    zergs["uwsgi"].wait(timeout=30)
    for port in ports:
        for _ in range(3):
            assert _request(port).startswith(b"HTTP/1.1 200 OK")


def test_our_pool_keeps_its_addresses_across_a_reload(tmp_path: Path, procs: Procs) -> None:
    need_uwsgi()
    copy_app("routed.py", tmp_path)
    ports = (free_port(), free_port())
    pool, zsock = _pool(procs, tmp_path, "imperium", ports)
    first = _zerg(procs, tmp_path, "uwsgi", zsock, "zerg-before")
    assert _request(ports[0]).startswith(b"HTTP/1.1 200 OK")
    out = procs.output(pool)
    pool.send_signal(signal.SIGHUP)
    wait_until(lambda: procs.output(pool).count("no-workers") > out.count("no-workers") and zsock.exists(), 20,
               message="the pool reloaded")
    assert pool.poll() is None
    # the zerg attached before the reload still serves; a new one attaches after it
    assert _request(ports[1]).startswith(b"HTTP/1.1 200 OK")
    _zerg(procs, tmp_path, "imperium", zsock, "zerg-after")
    first.send_signal(signal.SIGINT)
    first.wait(timeout=30)
    for port in ports:
        assert _request(port).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("value,message", [
    ("no-colon", "invalid zergpool syntax"),
    ("/tmp/zp-test.sock:nohost.invalid:80", "cannot resolve host"),
    ("/nonexistent-dir/zp.sock:127.0.0.1:0", "cannot bind zergpool /nonexistent-dir/zp.sock"),
    ("/tmp/zp.sock:", "invalid zergpool syntax"),
])
def test_bad_zergpool_values(tmp_path: Path, procs: Procs, value: str, message: str) -> None:
    (tmp_path / "bad.ini").write_text(f"[uwsgi]\nmaster = true\nzergpool = {value}\n")
    p = procs.start([IMPERIUM, "--ini", str(tmp_path / "bad.ini")], cwd=tmp_path)
    assert p.wait(timeout=30) == 1
    out = procs.output(p)
    assert message in out and "bad.ini:3" in out, out


