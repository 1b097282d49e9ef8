"""The stats server: same document as a live uWSGI 2.0 (keys, order, types, text layout)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import pytest

from tests.conftest import (
    IMPERIUM,
    UWSGI_CORE,
    free_port,
    need_service,
    port_open,
    read_json,
    read_to_close,
    wait_until,
)
from tests.fixtures.instance_helpers import APPS, get, start

HELLO = str(APPS / "hello.py")
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"


def _shape(value):
    """Keys in order and value types, recursively (lists: the shape of each item)."""
    if isinstance(value, dict):
        return [(k, _shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def _done(doc: dict) -> bool:
    """One request counted and no core still in it."""
    workers = doc["workers"]
    return (sum(w["requests"] for w in workers) == 1
            and not any(c["in_request"] for w in workers for c in w["cores"]))


def _layout(text: str) -> str:
    """The text with every value blanked: what is left is uWSGI's whitespace and punctuation."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '"S"', text)
    return re.sub(r"-?\d+", "0", text)


def test_document_matches_live_uwsgi(procs, tmp_path) -> None:
    need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(PLUGIN), "Debian uwsgi-core")
    ours_port, ours_stats, ref_port, ref_stats = free_port(), free_port(), free_port(), free_port()
    start(procs, "--wsgi-file", HELLO, "--master", "-p", "2", "--stats", f"127.0.0.1:{ours_stats}",
          port=ours_port)
    ref = procs.start([UWSGI_CORE, "--plugin", "python3", "--http-socket", f"127.0.0.1:{ref_port}",
                       "--wsgi-file", HELLO, "--master", "-p", "2", "--stats", f"127.0.0.1:{ref_stats}"])
    wait_until(lambda: ref.poll() is not None or (port_open(ref_port) and port_open(ref_stats)), 20,
               message="uWSGI up")
    assert ref.poll() is None, procs.output(ref)
    for port in (ours_port, ref_port):
        assert get(port)[0] == 200
    wait_until(lambda: _done(read_json(ref_stats)), 5, message="uWSGI counted the request")
    # a worker counts the request a moment before it marks its core idle: wait for both
    wait_until(lambda: _done(read_json(ours_stats)), 5, message="we counted the request")
    ours_text, ref_text = read_to_close(ours_stats).decode(), read_to_close(ref_stats).decode()
    ours, theirs = json.loads(ours_text), json.loads(ref_text)
    assert _shape(ours) == _shape(theirs)
    assert list(ours) == list(theirs)
    assert _layout(ours_text) == _layout(ref_text)
    assert [w["status"] for w in ours["workers"]] == ["idle", "idle"]
    assert ours["sockets"][0]["name"] == f"127.0.0.1:{ours_port}" and ours["sockets"][0]["proto"] == "http"
    assert ours["sockets"][0]["max_queue"] == 100  # uWSGI fills its value in on a later master cycle
    assert [list(lock) for lock in ours["locks"]] == [list(lock) for lock in theirs["locks"]]
    w = ours["workers"][0] if ours["workers"][0]["requests"] else ours["workers"][1]
    assert w["requests"] == 1 and w["apps"][0]["requests"] == 1 and w["tx"] > 0 and w["respawn_count"] == 1, w
    assert w["cores"][0]["requests"] == 1 and w["pid"] > 0 and w["accepting"] == 1


def test_busy_worker_shows_in_request(procs) -> None:
    port, sport = free_port(), free_port()
    start(procs, "--wsgi-file", HELLO, "--master", "--stats", f"127.0.0.1:{sport}", port=port)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /sleep?2 HTTP/1.1\r\nHost: x\r\n\r\n")
        # load is read before the workers in one document: wait for a document where both
        # show the request (a request starting mid-document shows in one only)
        doc = wait_until(lambda: (d := read_json(sport))["workers"][0]["status"] == "busy" and d["load"] and d,
                         5, message="busy worker")
        core = doc["workers"][0]["cores"][0]
        assert core["in_request"] == 1 and core["req_info"]["request_start"] > 0
        assert doc["load"] == 1
        assert "PATH_INFO=/sleep" in core["vars"] and core["vars"][-1] == ""
        # the only worker is busy: new connections wait in the backlog, which the stats show
        # (a connection that sent nothing is not queued: TCP_DEFER_ACCEPT, as in uWSGI)
        waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for c in waiting:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            wait_until(lambda: read_json(sport)["listen_queue"] == 3, 5, message="listen_queue 3")
            assert read_json(sport)["sockets"][0]["queue"] == 3
        finally:
            for c in waiting:
                c.close()


def test_stats_http_unix_and_connect_and_read(procs, tmp_path) -> None:
    port, hport = free_port(), free_port()
    path = str(tmp_path / "stats.sock")
    start(procs, "--wsgi-file", HELLO, "--stats", path, port=port)
    # the file exists from bind(), before listen(): poll the document itself, not the path
    doc = wait_until(lambda: read_json(path), 20, message="stats socket")
    assert doc["workers"][0]["id"] == 1  # type: ignore[index]
    out = subprocess.run([IMPERIUM, "--connect-and-read", path], capture_output=True, timeout=20)
    assert out.returncode == 0 and json.loads(out.stdout)["version"]
    port2 = free_port()
    start(procs, "--wsgi-file", HELLO, "--stats", f"127.0.0.1:{hport}", "--stats-http", port=port2)
    data = wait_until(lambda: read_to_close(hport, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 20,
                      message="stats-http port")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [b"HTTP/1.0 200 OK", b"Connection: close", b"Access-Control-Allow-Origin: *",
                                   b"Content-Type: application/json"]
    assert json.loads(body)["sockets"][0]["proto"] == "http"


def test_connect_and_read_refused_is_one_line(tmp_path) -> None:
    out = subprocess.run([IMPERIUM, "--connect-and-read", f"127.0.0.1:{free_port()}"], capture_output=True,
                         timeout=20, text=True)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "connection refused" in out.stderr


@pytest.mark.parametrize("minified", [True])
def test_minified(procs, minified: bool) -> None:
    port, sport = free_port(), free_port()
    start(procs, "--wsgi-file", HELLO, "--stats", f"127.0.0.1:{sport}", "--stats-minified", port=port)
    wait_until(lambda: port_open(sport), 10, message="stats port")
    text = read_to_close(sport).decode()
    assert "\n" not in text and "\t" not in text and json.loads(text)["workers"]
