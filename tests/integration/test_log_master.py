"""The log master: rotation under load loses no line, app output reaches the log, fifo-style
rotate()/reopen(), syslog datagrams, lines longer than log-master-bufsize, logger-list.

(Side by side with uWSGI: tests/interop/test_logging_vs_uwsgi.py.)
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from pathlib import Path

from tests.conftest import Procs, free_port, wait_until
from tests.fixtures.instance_helpers import APPS, get, start

LINE = re.compile(r"^\[pid: \d+\|app: 0\|req: \d+/\d+\] 127\.0\.0\.1 \(\) \{\d+ vars in \d+ bytes\} \[[^\]]+\] "
                  r"GET /n/(\d+) => generated \d+ bytes in \d+ msecs \(HTTP/1\.1 200\) \d+ headers in \d+ bytes "
                  r"\(\d+ switches on core \d+\)$")


def _all_lines(tmp_path: Path) -> list[str]:
    out = []
    for f in sorted(tmp_path.glob("app.log*")):
        out += f.read_text(errors="replace").splitlines()
    return out


def test_rotation_under_load_loses_no_line(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    trigger = tmp_path / "rotate.trigger"
    start(procs, "--wsgi-file", str(APPS / "hello.py"), "--logto", str(tmp_path / "app.log"), "--master",
          "--processes", "2", "--threads", "2", "--log-maxsize", "30000", "--touch-logrotate", str(trigger),
          port=port)
    total, clients = 1600, 4
    errors: list[BaseException] = []

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            for i in range(k, total, clients):
                conn.request("GET", f"/n/{i}")
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for n in range(3):  # rotations by touch too, while the requests flow
        wait_until(lambda n=n: len(list(tmp_path.glob("app.log.*"))) > n, 20, message=f"rotation {n + 1}")
        trigger.write_text(str(n))
    for t in threads:
        t.join(60)
    assert not errors, errors
    seen: dict[int, int] = {}

    def all_logged() -> bool:
        seen.clear()
        for line in _all_lines(tmp_path):
            m = LINE.match(line)
            if m:
                seen[int(m.group(1))] = seen.get(int(m.group(1)), 0) + 1
            else:
                assert "GET /n/" not in line, f"a broken request line: {line!r}"
        return len(seen) == total

    wait_until(all_logged, 20, message="every request line in the log files")
    assert set(seen.values()) == {1}, "a line logged twice"
    rotated = sorted(tmp_path.glob("app.log.*"))
    assert len(rotated) >= 3
    for f in rotated:
        assert re.fullmatch(r"app\.log\.\d{10}", f.name)
        assert "triggering rotation to" in f.read_text().splitlines()[-1]


def test_app_output_and_long_lines_through_the_master(procs: Procs, tmp_path: Path) -> None:
    app = tmp_path / "talk.py"
    app.write_text("""
import sys
print("printed while loading", flush=True)

def application(env, start_response):
    n = int(env["QUERY_STRING"] or 0)
    sys.stderr.write("L" * n + "\\n")
    print("printed by worker", flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
""")
    port = free_port()
    log = tmp_path / "app.log"
    start(procs, "--wsgi-file", str(app), "--logto", str(log), "--log-master", "--log-master-bufsize", "1000",
          "--processes", "1", port=port)
    assert get(port, "/?500") == (200, b"ok")
    assert get(port, "/?5000") == (200, b"ok")
    wait_until(lambda: log.read_text().count("printed by worker") == 2, 10, message="worker prints")
    text = log.read_text()
    assert "printed while loading" in text
    lines = text.splitlines()
    assert "L" * 500 in lines
    # as uWSGI: a message longer than log-master-bufsize is cut to it
    assert any(x == "L" * 1000 for x in lines) and not any(len(x) > 1000 and x.startswith("L") for x in lines)


def test_syslog_datagrams(procs: Procs, tmp_path: Path) -> None:
    path = tmp_path / "syslog.sock"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(str(path))
    rx.settimeout(0.2)
    seen: list[bytes] = []
    done = threading.Event()

    def drain() -> None:
        # read as the lines come: a datagram socket queues only net.unix.max_dgram_qlen (10)
        # of them, and the logger drops lines rather than block the instance when it is full
        while not done.is_set():
            try:
                seen.append(rx.recv(65536))
            except TimeoutError:
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        port = free_port()
        start(procs, "--wsgi-file", str(APPS / "hello.py"), "--log-syslog=myapp,local3", "--processes", "1",
              env={"IMPERIUM_SYSLOG_SOCKET": str(path)}, port=port)
        get(port, "/via-syslog")
        wait_until(lambda: any(b"GET /via-syslog" in x for x in seen), 10, message="the request line")
        # local3 (19) * 8 + info (6) = 158; glibc's layout for a local socket
        assert all(re.match(rb"<158>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d myapp: ", x) for x in seen), seen[:3]
    finally:
        done.set()
        reader.join()
        rx.close()


def test_logger_list_and_unknown_logger(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    p = start(procs, "--wsgi-file", str(APPS / "hello.py"), "--logger-list", port=port)
    text = procs.output(p)
    listed = text[text.index("*** uWSGI loaded loggers ***"):text.index("--- end of loggers list ---")]
    assert set(listed.split()[5:]) == {"file", "fd", "stdio", "socket", "syslog"}
    bad = start(procs, "--wsgi-file", str(APPS / "hello.py"), "--logger", "redislog:127.0.0.1", port=free_port(),
                wait=False)
    assert bad.wait(20) != 0
    assert "unable to find logger redislog" in procs.output(bad)


def test_rotate_and_reopen_entry_points(tmp_path: Path) -> None:
    """vassal.log.rotate()/reopen() as the master FIFO calls them (no log master: fd 2)."""
    import os
    import subprocess
    import sys

    script = f"""
import os, time
from vassal import log
log.open_logfile({str(tmp_path / 'x.log')!r})
log.log("one")
first = log.rotate()
log.log("two")
os.rename({str(tmp_path / 'x.log')!r}, {str(tmp_path / 'moved.log')!r})
log.reopen()
log.log("three")
print(first, flush=True)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    rotated = Path(out.stdout.strip() or (tmp_path / "none"))
    if not rotated.exists():  # stdout went to the log file: fd 1 follows fd 2 there
        rotated = next(tmp_path.glob("x.log.*"))
    assert rotated.read_text().splitlines()[0] == "one"
    assert "two" in (tmp_path / "moved.log").read_text()
    assert (tmp_path / "moved.log").read_text().splitlines()[-1].endswith("triggering log-reopen...")
    new = (tmp_path / "x.log").read_text().splitlines()
    assert new[0].endswith(f"{tmp_path / 'x.log'} reopened.") and "three" in new
    assert os.path.exists(rotated)
    time.sleep(0)
