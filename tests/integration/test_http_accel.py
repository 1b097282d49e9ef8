"""The C request path against the Python one, end to end: two instances, one with the
accelerators (the default) and one with IMPERIUM_NO_ACCEL=1, answer the same requests with
the same bytes (the environ the app saw, in its order, and the response head)."""

from __future__ import annotations

import pytest

from tests.conftest import Procs, free_port
from tests.fixtures.instance_helpers import APPS, raw, start

ECHO = str(APPS / "echo_env.py")

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /a%20b/c?x=1&y=%2F HTTP/1.1\r\nHost: t:80\r\nUser-Agent: twin\r\nAccept: */*\r\n"
    b"X-Custom-Field: v\r\nCookie: a=b\r\nConnection: close\r\n\r\n",
    b"GET /q?only HTTP/1.0\r\nHost: t\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"DELETE /d HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-A: 2\r\nConnection: close\r\n\r\n",  # Python's
    b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",  # Python's
    b"GET /./x/../y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",  # Python's
]


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory):
    procs = Procs(tmp_path_factory.mktemp("accel"))
    try:
        ports = {}
        for name, env in (("c", {}), ("python", {"IMPERIUM_NO_ACCEL": "1"})):
            port = ports[name] = free_port()
            start(procs, "--wsgi-file", ECHO, "--processes", "2", "--master", port=port, env=env)
        yield ports
    finally:
        procs.kill_all()


@pytest.mark.parametrize("request_bytes", REQUESTS)
def test_c_and_python_paths_answer_alike(twins: dict[str, int], request_bytes: bytes) -> None:
    answers = {}
    for name, port in twins.items():
        answer = raw(port, request_bytes)
        answers[name] = answer.replace(str(port).encode(), b"PORT")
    assert answers["c"].startswith(b"HTTP/1."), answers["c"][:200]
    assert answers["c"] == answers["python"]
