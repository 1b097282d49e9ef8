"""The gevent loop engine (``gevent = N``): the request path of the threaded loop, in greenlets.

Its concurrency against uWSGI's gevent plugin is in tests/interop/test_gevent_vs_uwsgi.py;
here what only concerns us: idle and slow connections hold no core, a graceful reload lets a
request in flight finish, bad combinations are refused by name.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

from tests.conftest import IMPERIUM, free_port, read_json, wait_until
from tests.fixtures.instance_helpers import APPS, get, start

HELLO = str(APPS / "hello.py")


def test_idle_and_drip_fed_connections_hold_no_core(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", HELLO, "--gevent", "1", "--http-headers-timeout", "2",
          "--gevent-monkey-patch", port=port)
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    idle.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert idle.recv(4096).endswith(b"Hello World")  # and now it idles, kept alive
    drip = socket.create_connection(("127.0.0.1", port), timeout=10)
    drip.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
    try:
        for _ in range(3):  # the one core is free for everyone else
            assert get(port, "/", timeout=3) == (200, b"Hello World")
        t0 = time.monotonic()
        answer = drip.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - t0 < 10
    finally:
        idle.close()
        drip.close()


def test_graceful_reload_lets_the_request_in_flight_finish(procs) -> None:
    port, stats = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--gevent", "10", "--gevent-monkey-patch", "--master",
              "--stats", f"127.0.0.1:{stats}", port=port)
    got: list = []
    slow = threading.Thread(target=lambda: got.append(get(port, "/sleep?1.5", timeout=20)))
    slow.start()
    wait_until(lambda: read_json(stats)["workers"][0]["status"] == "busy", 10,
               message="the slow request in the worker")
    os.kill(p.pid, signal.SIGHUP)
    slow.join(20)
    assert got == [(200, b"Hello World")]
    wait_until(lambda: get(port, "/", timeout=3)[0] == 200, 20, message="served after the reload")


def test_gevent_with_threads_is_refused(procs) -> None:
    p = procs.start([IMPERIUM, "--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", HELLO,
                     "--gevent", "10", "--threads", "4"])
    assert p.wait(20) != 0
    assert "gevent and threads cannot be combined" in procs.output(p)
