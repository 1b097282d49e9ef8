"""The worker's request path in one process: CPU per keep-alive request, without the network.

One hello-world request at a time goes over a socketpair through ``Worker._readable`` (the
read, the head, llhttp, the environ, the app, the answer, the scoreboard, the request log's
bookkeeping) as it does on a kept-alive connection; the client's send and recv are included.
With ``--close``, each request comes on a new TCP connection to a real listening socket with
``Connection: close`` (wrk -H 'Connection: close'): the worker's accept, its connection
object, the request, and the close, as the accept loop does them for a connection served at
once; the client's socket, connect, send and recv are included.
There is no peer to compare with in-process: run it on two commits and compare them. CPU time
moves with the load of a shared box; instruction counts do not:

    python -m bench reqpath                         # us of CPU per request, best of rounds
    valgrind --tool=callgrind --toggle-collect=list_sort_impl \\
        .venv/bin/python -m bench reqpath -- --callgrind 5000   # instructions: Ir / 5000
    python -m bench reqpath -- --close              # the same, one connection per request

Not in ``python -m bench``'s default list: it measures ours only.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"  # what wrk sends
HEAD_CLOSE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"


def _application(environ, start_response):
    body = b"Hello, World!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_reqpath", description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="only serve N requests inside list.sort (callgrind's --toggle-collect)")
    ap.add_argument("--close", action="store_true",
                    help="a new connection per request, closed after it (Connection: close)")
    args = ap.parse_args(argv)

    from vassal.logs.request import RequestLog
    from vassal.scoreboard import Scoreboard
    from vassal.sockets import ListenSocket
    from vassal.worker import CLOSE, Worker, WorkerSettings, _Conn
    from vassal.wsgi import AppTable

    apps = AppTable()
    apps.add("", _application, time.time())
    settings = WorkerSettings(reqlog=RequestLog(enabled=False))  # disable-logging, as bench_vassal
    ours, client = socket.socketpair()
    with socket.socket() as lsock, ours, client:
        lsock.bind(("127.0.0.1", 0))
        ls = ListenSocket(lsock, "127.0.0.1:8080", "http")
        worker = Worker(1, [ls], apps, Scoreboard(1, 1), settings)
        conn = _Conn(ours, ls, ("127.0.0.1", 40000), settings.hostname)

        def serve_kept(n: int) -> None:
            send, recv, readable = client.send, client.recv, worker._readable
            for _ in range(n):
                send(HEAD)
                readable(conn, 0)
                recv(4096)

        def serve_closed(n: int) -> None:  # the accept loop's path for a connection served at once
            accept, readable = worker._accept, worker._readable
            listener = worker.listeners[lsock.fileno()]
            for _ in range(n):
                with socket.socket() as c:  # not create_connection: no getaddrinfo
                    c.connect(where)
                    c.send(HEAD_CLOSE)
                    new = accept(listener)
                    if readable(new, 0) != CLOSE:
                        raise SystemExit("the connection stayed open after a Connection: close request")
                    new.sock.close()
                    c.recv(4096)

        if args.close:
            lsock.listen(1024)
            where = lsock.getsockname()
        serve = serve_closed if args.close else serve_kept
        serve(2000)  # warm-up
        if args.callgrind:
            sorted(range(args.callgrind), key=lambda _: serve(1) or 0)
            return 0
        per = []
        for _ in range(args.rounds):
            t0 = time.process_time()
            serve(args.requests)
            per.append((time.process_time() - t0) / args.requests * 1e6)
    per.sort()
    kind = "one-connection" if args.close else "keep-alive"
    print(f"bench_reqpath: {per[0]:.2f} us of CPU per {kind} request at best, "
          f"median {per[len(per) // 2]:.2f} ({args.rounds} rounds of {args.requests})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
