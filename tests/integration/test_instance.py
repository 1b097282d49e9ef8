"""`imperium app.ini` serving a WSGI app: HTTP, the uwsgi protocol, socket kinds, bad input."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess

import pytest

from tests.conftest import IMPERIUM, free_port, wait_until
from tests.fixtures.instance_helpers import APPS, get, raw, start
from vassal.protocols import uwsgi as U

HELLO = str(APPS / "hello.py")
ECHO = str(APPS / "echo_env.py")


def test_http_get_close_and_log_line(procs, tmp_path) -> None:
    port = free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "2", port=port)
    status, body = get(port, "/")
    assert (status, body) == (200, b"Hello World")
    wait_until(lambda: "GET / => generated 11 bytes" in procs.output(p), 5, message="request log line")
    line = next(x for x in procs.output(p).splitlines() if "GET / => generated" in x)
    # uWSGI's default request log format
    assert line.startswith("[pid: ") and "|app: 0|req: 1/1] 127.0.0.1 () {" in line
    assert "(HTTP/1.1 200) 1 headers in" in line and line.endswith("(1 switches on core 0)")


def test_keepalive_and_pipelining(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", HELLO, port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        # two requests in one write, then a third on the same connection
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while buf.count(b"Hello World") < 2:
            buf += s.recv(65536)
        assert buf.count(b"HTTP/1.1 200 OK") == 2 and b"Content-Length: 11" in buf
        s.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 200 OK") and rest.split(b"\r\n\r\n", 1)[1].isdigit()


def test_http10_and_streamed_body_close_the_connection(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", HELLO, port=port)
    out = raw(port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 200 OK\r\n") and out.endswith(b"Hello World")
    out = raw(port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")  # unknown length: closed after
    assert out.endswith(b"part0\npart1\npart2\n")


def test_post_bodies_content_length_and_chunked(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", ECHO, port=port)
    body = os.urandom(300_000).hex().encode()
    out = raw(port, b"POST /e?q=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    doc = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert doc["__body__"].encode() == body and doc["CONTENT_LENGTH"] == str(len(body))
    assert doc["QUERY_STRING"] == "q=1" and doc["wsgi.url_scheme"] == "http"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7000]), body[i:i + 7000])
                       for i in range(0, len(body), 7000)) + b"0\r\n\r\n"
    out = raw(port, b"POST /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
              + chunked)
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["__body__"].encode() == body


def test_app_exception_gives_500_and_worker_survives(procs) -> None:
    port = free_port()
    p = start(procs, "--wsgi-file", HELLO, port=port)
    assert get(port, "/error")[0] == 500
    assert get(port, "/")[0] == 200
    wait_until(lambda: "RuntimeError: boom" in procs.output(p), 5, message="traceback in the log")


def test_uwsgi_protocol_over_tcp(procs) -> None:
    port, uport = free_port(), free_port()
    start(procs, "--wsgi-file", ECHO, "--socket", f"127.0.0.1:{uport}", port=port)
    env = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/u?x=1", "PATH_INFO": "/u", "QUERY_STRING": "x=1",
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "n", "SERVER_PORT": "80", "REMOTE_ADDR": "1.2.3.4",
           "CONTENT_LENGTH": "4", "HTTP_HOST": "example", "HTTPS": "on"}
    out = raw(uport, U.encode_packet(env, b"data"))
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    doc = json.loads(body)
    assert doc["__body__"] == "data" and doc["REMOTE_ADDR"] == "1.2.3.4"
    assert doc["wsgi.url_scheme"] == "https" and doc["HTTP_HOST"] == "example"


def test_unix_and_abstract_sockets(procs, tmp_path) -> None:
    port = free_port()
    path = str(tmp_path / "app.sock")
    abstract = f"@imperium-test-{port}"
    start(procs, "--wsgi-file", HELLO, "--socket", path, "--http-socket", abstract, "--chmod-socket=660",
          port=port)
    wait_until(lambda: os.path.exists(path), 5, message="unix socket file")
    assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.0"}
    out = raw(path, U.encode_packet(env))
    assert out.startswith(b"HTTP/1.0 200 OK") and out.endswith(b"Hello World")
    out = raw("\0" + abstract[1:], b"GET / HTTP/1.0\r\n\r\n")
    assert out.endswith(b"Hello World")


def test_threads_module_loading_and_uwsgi_module(procs, tmp_path) -> None:
    port = free_port()
    start(procs, "--pythonpath", str(APPS), "--module", "uwsgi_api:application", "--master",
          "-p", "2", "--threads", "3", "--set", "custom=value", port=port)
    status, body = get(port, "/")
    doc = json.loads(body)
    assert status == 200 and doc["numproc"] == 2 and doc["worker_id"] in (1, 2)
    assert doc["opt"]["threads"] == "3" and doc["opt"]["master"] is True
    assert doc["total_requests"] >= 0 and doc["masterpid"] != 0


def test_ini_config_with_chdir_and_callable(procs, tmp_path) -> None:
    port = free_port()
    app_dir = tmp_path / "site"
    app_dir.mkdir()
    (app_dir / "myapp.py").write_text(
        "def app(e, sr):\n    sr('200 OK', [('X-Cwd', __import__('os').getcwd())])\n    return [b'ok']\n")
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nchdir = {app_dir}\nmodule = myapp\n"
                   "callable = app\nprocesses = 1\nmaster = true\n")
    p = procs.start([IMPERIUM, "--ini", str(ini)])
    wait_until(lambda: p.poll() is not None or get(port)[0] == 200, 15, message="ini app")
    out = raw(port, b"GET / HTTP/1.0\r\n\r\n")
    assert f"X-Cwd: {app_dir}".encode() in out


# --- bad input: one clear line, non-zero exit ------------------------------------------------

def _fails(procs, argv: list[str], expect: str, code: int | None = None) -> str:
    p = procs.start([IMPERIUM, *argv])
    rc = p.wait(timeout=20)
    out = procs.output(p)
    assert rc != 0, out
    if code is not None:
        assert rc == code, out
    lines = [x for x in out.splitlines() if expect in x]
    assert len(lines) == 1, out
    return lines[0]


def test_port_in_use(procs) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = _fails(procs, ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", HELLO], "cannot bind")
    assert line == f"imperium: cannot bind http-socket 127.0.0.1:{port}: address already in use"


def test_missing_app_file_with_need_app(procs, tmp_path) -> None:
    line = _fails(procs, ["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file",
                          str(tmp_path / "nope.py"), "--need-app"], "nope.py", code=22)
    assert line == f"imperium: cannot load wsgi-file {tmp_path / 'nope.py'}: no such file"


def test_app_raising_at_import_with_need_app(procs) -> None:
    line = _fails(procs, ["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file",
                          str(APPS / "broken_import.py"), "--need-app"], "ZeroDivisionError", code=22)
    assert "cannot load wsgi-file" in line and "broken_import.py, line 3" in line


def test_missing_module_with_need_app(procs) -> None:
    line = _fails(procs, ["--http-socket", f"127.0.0.1:{free_port()}", "--module", "no_such_mod:app",
                          "--need-app"], "no_such_mod", code=22)
    assert line == "imperium: cannot load module no_such_mod: no module named 'no_such_mod'"


def test_a_named_app_that_fails_stops_the_instance_by_default(procs, tmp_path) -> None:
    line = _fails(procs, ["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file",
                          str(tmp_path / "nope.py")], "nope.py", code=22)
    assert line == f"imperium: cannot load wsgi-file {tmp_path / 'nope.py'}: no such file"


def test_without_any_app_or_with_need_app_false_the_instance_keeps_running(procs) -> None:
    port = free_port()
    start(procs, "--master", port=port)
    assert get(port)[0] == 500
    port = free_port()
    p = start(procs, "--wsgi-file", str(APPS / "broken_import.py"), "--need-app=false", port=port)
    wait_until(lambda: "no app loaded. going in full dynamic mode" in procs.output(p), 10,
               message="the no-app notice")
    assert get(port)[0] == 500
    assert p.poll() is None


def test_no_socket_configured(procs) -> None:
    line = _fails(procs, ["--wsgi-file", HELLO], "no socket configured")
    assert line.startswith("imperium: ")


@pytest.mark.parametrize("bad", [b"NOT HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nbroken header\r\n\r\n"])
def test_malformed_request_gets_400(procs, bad: bytes) -> None:
    port = free_port()
    start(procs, "--wsgi-file", HELLO, port=port)
    assert raw(port, bad).startswith(b"HTTP/1.1 400 Bad Request")
    assert get(port)[0] == 200


def test_uwsgi_header_struct() -> None:
    assert struct.calcsize("<BHB") == 4


def test_daemonize_pidfile_and_vacuum(procs, tmp_path) -> None:
    port = free_port()
    log, pidfile, sock = tmp_path / "d.log", tmp_path / "d.pid", tmp_path / "d.sock"
    p = procs.start([IMPERIUM, "--http-socket", f"127.0.0.1:{port}", "--socket", str(sock), "--wsgi-file", HELLO,
                     "--master", "--daemonize", str(log), "--pidfile", str(pidfile), "--vacuum"])
    assert p.wait(timeout=10) == 0  # the foreground process returns at once
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, message="pidfile")
    master = int(pidfile.read_text())
    try:
        wait_until(lambda: get(port)[0] == 200, 10, message="daemon serving")
        wait_until(lambda: "GET / => generated" in log.read_text(), 5, message="request logged to the file")
    finally:
        os.kill(master, 2)
    wait_until(lambda: not pidfile.exists() and not sock.exists(), 10, message="vacuum")


def test_logto_log_date_and_disable_logging(procs, tmp_path) -> None:
    port, port2 = free_port(), free_port()
    log = tmp_path / "app.log"
    start(procs, "--wsgi-file", HELLO, "--logto", str(log), "--log-date=%Y", port=port)
    assert get(port)[0] == 200
    wait_until(lambda: "GET / => generated" in log.read_text(), 5, message="request log in logto file")
    lines = log.read_text().splitlines()
    # as uWSGI: log-date prefixes the instance's lines, not the request lines
    spawned = next(x for x in lines if "spawned uWSGI worker 1" in x)
    assert spawned[:4].isdigit() and spawned[4:7] == " - "
    assert next(x for x in lines if "GET / => generated" in x).startswith("[pid: ")
    p2 = start(procs, "--wsgi-file", HELLO, "--disable-logging", port=port2)
    assert get(port2)[0] == 200 and get(port2, "/error")[0] == 500
    wait_until(lambda: "RuntimeError: boom" in procs.output(p2), 5, message="traceback")
    assert "=> generated" not in procs.output(p2)


def test_mounts_with_manage_script_name_and_lazy_apps(procs, tmp_path) -> None:
    port = free_port()
    (tmp_path / "other.py").write_text(
        "def application(e, sr):\n    sr('200 OK', [])\n    return [('%s|%s' % (e['SCRIPT_NAME'], e['PATH_INFO'])).encode()]\n")
    start(procs, "--mount", f"/app={HELLO}", "--mount", f"/other={tmp_path / 'other.py'}",
          "--manage-script-name", "--lazy-apps", "--master", "-p", "2", port=port)
    assert get(port, "/app/x") == (200, b"Hello World")
    assert get(port, "/other/deep/path") == (200, b"/other|/deep/path")


def test_threads_serve_concurrently(procs) -> None:
    import threading
    import time

    port = free_port()
    start(procs, "--wsgi-file", HELLO, "--threads", "4", port=port)
    results: list[int] = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: results.append(get(port, "/sleep?1")[0])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4
    assert time.monotonic() - t0 < 3.5  # four 1-second requests at once in one process


def test_file_wrapper_head_and_204_keep_the_connection_usable(procs) -> None:
    port = free_port()
    start(procs, "--wsgi-file", str(APPS / "files.py"), port=port)
    source = (APPS / "files.py").read_bytes()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    # four answers in order on one connection: body, head only, no content, body
    assert data.count(b"HTTP/1.1 200 OK") == 3 and data.count(b"HTTP/1.1 204 No Content") == 1
    assert data.count(source) == 2
    assert f"Content-Length: {len(source)}".encode() in data
    assert data.endswith(source)


def test_shared_socket_referenced_by_index(procs) -> None:
    port, shared = free_port(), free_port()
    start(procs, "--shared-socket", f"127.0.0.1:{shared}", "--http-socket", "=0", "--wsgi-file", HELLO, port=port)
    wait_until(lambda: get(shared)[0] == 200, 10, message="app on the shared socket")


def test_lazy_apps_need_app_failure_stops_the_instance(procs) -> None:
    p = procs.start([IMPERIUM, "--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file",
                     str(APPS / "broken_import.py"), "--need-app", "--lazy-apps", "--master"])
    assert p.wait(timeout=20) == 22, procs.output(p)
    assert "ZeroDivisionError: division by zero at import" in procs.output(p)


def test_silent_client_on_unix_socket_times_out(procs, tmp_path) -> None:
    import time

    port = free_port()
    path = str(tmp_path / "t.sock")
    start(procs, "--wsgi-file", HELLO, "--http-socket", path, "--socket-timeout", "1", port=port)

    def connected() -> socket.socket | None:  # the path exists from bind(), before listen()
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            return None

    def accept_queue() -> str:
        out = subprocess.run(["ss", "-xlH", "src", path], capture_output=True, text=True, timeout=10).stdout
        return out.split()[2] if out.split() else "?"  # netid, state, Recv-Q: waiting connections

    with wait_until(connected, 20, message="unix socket") as silent:  # type: ignore[union-attr]
        silent.sendall(b"GET / HT")  # then nothing: the only worker must not stay stuck on it
        wait_until(lambda: accept_queue() == "0", 10, message="the worker took the silent connection")
        t0 = time.monotonic()
        assert raw(path, b"GET / HTTP/1.0\r\n\r\n").endswith(b"Hello World")
        assert time.monotonic() - t0 < 5
