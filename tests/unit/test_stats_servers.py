"""The stats servers in-process: non-blocking writes, deadlines, a cap on clients."""

from __future__ import annotations

import asyncio
import socket
import time

from emperor.stats import StatsServer
from vassal.services.stats_server import StatsService

BIG = "x" * (8 << 20)  # more than any socket buffer holds


def _connect(addr: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(addr, timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    return s


def _pump(service: StatsService, seconds: float) -> None:
    """What the master's loop does for this service, for a while."""
    import select

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = time.monotonic()
        wish = service.timeout(now)
        wait = min(0.05, wish if wish is not None else 0.05)
        t0 = time.monotonic()
        r, w, _ = select.select(service.fds(), service.wfds(), [], wait)
        for fd in r:
            service.on_ready(fd)
        for fd in w:
            t1 = time.monotonic()
            service.on_writable(fd)
            assert time.monotonic() - t1 < 0.5, "a write blocked the loop"
        service.tick(time.monotonic())
        assert time.monotonic() - t0 < 1.0


def test_vassal_stats_never_blocks_on_a_client_that_does_not_read() -> None:
    service = StatsService("127.0.0.1:0", http=False, minified=False, make_doc=lambda m: BIG,
                           timeout=0.5)
    addr = service.sock.getsockname()  # type: ignore[union-attr]
    stuck = _connect(addr)
    _pump(service, 0.2)
    assert len(service.clients) == 1  # still being written, the loop goes on
    _pump(service, 0.6)
    assert not service.clients  # dropped at its deadline
    stuck.close()
    service.close()


def test_vassal_stats_http_idle_clients_are_capped_and_expire() -> None:
    service = StatsService("127.0.0.1:0", http=True, minified=False, make_doc=lambda m: "{}",
                           timeout=0.5, max_clients=4)
    addr = service.sock.getsockname()  # type: ignore[union-attr]
    idle = [_connect(addr) for _ in range(10)]
    _pump(service, 0.2)
    assert len(service.clients) == 4  # the newest four
    real = socket.create_connection(addr, timeout=5)
    real.sendall(b"GET / HTTP/1.0\r\n\r\n")
    _pump(service, 0.2)
    answer = real.recv(65536)
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b"\r\n\r\n{}")
    _pump(service, 0.6)
    assert not service.clients
    for s in [*idle, real]:
        s.close()
    service.in_worker(1)  # a worker holds nothing of it
    assert service.sock is None and service.fds() == []


def test_emperor_stats_never_blocks_its_loop() -> None:
    async def main() -> None:
        server = StatsServer("127.0.0.1:0", lambda: BIG.encode(), timeout=0.5, max_clients=4)
        await server.start()
        addr = server.sock.getsockname()  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        stuck = [await loop.run_in_executor(None, _connect, addr) for _ in range(10)]
        # the loop keeps turning while clients do not read: a blocked loop would never get
        # through these sleeps (the bound is a deadline for a loaded box, not a measurement)
        t0 = time.monotonic()
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert time.monotonic() - t0 < 5.0
        assert len(server.clients) <= 4
        deadline = time.monotonic() + 10
        while server.clients and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not server.clients  # all dropped at the deadline
        for s in stuck:
            s.close()
        await server.close()

    asyncio.run(main())


def _idle_then_one_real(port: int, idle_count: int, request: bytes) -> tuple[list[socket.socket], bytes]:
    """``idle_count`` connections that never send, then one that asks and reads its answer."""
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(idle_count)]
    real = socket.create_connection(("127.0.0.1", port), timeout=5)
    real.sendall(request)
    answer = b""
    while chunk := real.recv(65536):
        answer += chunk
    real.close()
    return idle, answer


def test_emperor_servers_make_room_for_a_newcomer() -> None:
    """Idle clients in every slot (their deadline far away): a newcomer ends the oldest and
    is answered at once; the ended ones are closed, those never run too (no descriptor kept)."""
    import os

    from emperor.control import MAX_CLIENTS, Control

    async def main(tmp: str) -> None:
        loop = asyncio.get_running_loop()
        prom = StatsServer("127.0.0.1:0", lambda: b"", timeout=60, max_clients=4, what="prometheus",
                           respond=lambda req: b"HTTP/1.0 200 OK\r\n\r\nok")
        await prom.start()
        control = Control(None, f"{tmp}/ctl.sock")  # type: ignore[arg-type]
        control.start(loop)
        fds_before = len(os.listdir("/proc/self/fd"))
        port = prom.sock.getsockname()[1]  # type: ignore[union-attr]
        t0 = time.monotonic()
        idle, answer = await asyncio.wait_for(loop.run_in_executor(
            None, _idle_then_one_real, port, 10, b"GET /metrics HTTP/1.0\r\n\r\n"), 30)
        assert answer == b"HTTP/1.0 200 OK\r\n\r\nok"
        assert time.monotonic() - t0 < 30  # not after the idle ones' 60 s deadline
        assert len(prom.clients) <= 4
        assert await loop.run_in_executor(None, idle[0].recv, 10) == b""  # ended: EOF
        for s in idle:
            s.close()

        def control_client() -> bytes:
            idle = []
            for _ in range(MAX_CLIENTS + 5):
                s = socket.socket(socket.AF_UNIX)
                s.connect(f"{tmp}/ctl.sock")
                idle.append(s)
            real = socket.socket(socket.AF_UNIX)
            real.connect(f"{tmp}/ctl.sock")  # blocking: waits for room in the backlog
            real.settimeout(5)
            real.sendall(b"bogus\n")
            answer = real.recv(65536)
            for s in [*idle, real]:
                s.close()
            return answer
        answer = await asyncio.wait_for(loop.run_in_executor(None, control_client), 30)
        assert json.loads(answer)["ok"] is False and "unknown command" in json.loads(answer)["error"]
        await asyncio.sleep(0.1)
        # nothing leaked: the ended clients' sockets (run or not) are closed
        assert len(os.listdir("/proc/self/fd")) - fds_before <= len(prom.clients) + len(control.clients) + 2
        await prom.close()
        control.close()

    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(tmp))
