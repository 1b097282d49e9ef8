"""What a worker's request path leaves in the scoreboard, request by request (the counters
it writes in one go, the vars of the request in progress) and what a kept-alive connection's
next heads become once its parser goes on from the last one."""

from __future__ import annotations

import socket
import time

from vassal.logs.request import RequestLog
from vassal.scoreboard import STATUS_IDLE, Scoreboard
from vassal.sockets import ListenSocket
from vassal.worker import IDLE, Worker, WorkerSettings, _Conn
from vassal.wsgi import AppTable


def _app(environ, start_response):
    body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ.get('HTTP_X_A', '-')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _answer(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith((b"-", b"1", b"2")):
        chunk = client.recv(4096)
        assert chunk, "the worker closed the connection"
        data += chunk
    return data.split(b"\r\n\r\n", 1)[1]


def test_counters_and_kept_parser_over_a_connection() -> None:
    apps = AppTable()
    apps.add("", _app, time.time())
    board = Scoreboard(2, 1)
    board.workers[2].requests = 40  # a previous life of the slot: the counters go on from it
    worker_settings = WorkerSettings(reqlog=RequestLog(enabled=False))
    ours, client = socket.socketpair()
    with socket.socket() as lsock, ours, client:
        lsock.bind(("127.0.0.1", 0))
        ls = ListenSocket(lsock, "127.0.0.1:8080", "http")
        worker = Worker(2, [ls], apps, board, worker_settings)
        conn = _Conn(ours, ls, ("10.1.2.3", 40000), "node")
        heads = [b"GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n",
                 b"POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",  # a body: a new parser next
                 b"GET /c HTTP/1.1\r\n\r\n",
                 b"GET /d HTTP/1.1\r\nX-A: 2\r\n\r\n"]
        answers = []
        for head in heads:
            client.sendall(head)
            assert worker._readable(conn, 0) == IDLE
            answers.append(_answer(client))
    assert answers == [b"GET /a 1", b"POST /b -", b"GET /c -", b"GET /d 2"]
    slot = board.workers[2]
    assert (slot.requests, slot.delta_requests, slot.app_requests) == (44, 4, 4)
    assert slot.cores[0].requests == 4 and slot.cores[0].in_request == 0.0
    assert slot.busy_cores == 0 and slot.status == STATUS_IDLE
    assert slot.avg_rt == slot.running_time // 44
    assert slot.tx > 4 * len("HTTP/1.1 200 OK\r\n")
    assert slot.last_request_end > 0 and board.instance.last_request_end == slot.last_request_end
    assert board.workers[1].requests == 0  # the neighbour's slot is untouched
    # the last request's vars stay readable for the stats server
    assert "PATH_INFO=/d" in board.get_vars(2, 0) and "REMOTE_ADDR=10.1.2.3" in board.get_vars(2, 0)


def test_accepted_connections_from_a_listener() -> None:
    """What the accept path works out once per listening socket and once per client host:
    SERVER_PORT, REMOTE_ADDR (IPv4-mapped addresses as IPv4) and the vars prefix; the table of
    client hosts starts again when full; a Connection: close request closes the connection."""
    from vassal.worker import CLOSE, _Listener

    apps = AppTable()
    apps.add("", _app, time.time())
    board = Scoreboard(1, 1)
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        ls = ListenSocket(lsock, "127.0.0.1:9090", "http")
        worker = Worker(1, [ls], apps, board, WorkerSettings(reqlog=RequestLog(enabled=False)))
        listener = worker.listeners[lsock.fileno()]
        assert (listener.port, listener.unix) == ("9090", False)
        for path in ("/x", "/y"):
            with socket.create_connection(lsock.getsockname()) as client:
                client.sendall(f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
                conn = worker._accept(listener)
                assert conn is not None and conn.addr == "127.0.0.1" and conn.port == "9090"
                assert conn.vars_prefix == f"{worker.s.hostname}\0009090\000127.0.0.1\0".encode()
                assert worker._readable(conn, 0) == CLOSE
                conn.sock.close()
                assert _answer(client) == f"GET {path} -".encode()
            assert f"PATH_INFO={path}" in board.get_vars(1, 0) and "REMOTE_ADDR=127.0.0.1" in board.get_vars(1, 0)
        assert list(listener.known) == ["127.0.0.1"]  # one host: worked out once
        mapped = _Listener(ls, "node")
        assert mapped.learn(("::ffff:10.0.0.1", 1, 0, 0)) == ("10.0.0.1", b"node\0009090\00010.0.0.1\0")
        assert mapped.learn("") == ("", b"node\0009090\000\0")  # AF_UNIX: no address
        fresh = _Listener(ls, "node")
        for i in range(_Listener.KNOWN_MAX + 1):
            fresh.learn((f"10.1.{i // 256}.{i % 256}", 1))
        assert list(fresh.known) == [f"10.1.{_Listener.KNOWN_MAX // 256}.0"]  # was full: started again
