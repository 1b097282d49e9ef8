"""Logging side by side with Debian's real uWSGI: the same files, names and lines.

Each test starts both servers on the same ini (each in its own directory, so file names can
be compared), sends the same requests and compares what lands on disk or on a socket:
rotation by size and by touch (the rotated names), reopen, log-format variables, request
loggers, routes, encoders, log-x-forwarded-for, log-date/log-prefix and file modes.
uWSGI needs its logger plugins loaded (Debian ships them apart): the ini asks for them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

from tests.conftest import Procs, free_port, need_root, port_open, read_to_close, wait_until
from tests.interop.helpers import backend_argv, copy_app, need_uwsgi

KINDS = ("imperium", "uwsgi")
REQUEST_LINE = re.compile(r"^\[pid: \d+\|app: -?\d+\|req: -?\d+/\d+\] .*? \(\S*\) \{\d+ vars in \d+ bytes\} "
                          r"\[[^\]]+\] [A-Z]+ \S+ => generated \d+ bytes in \d+ msecs( via \w+\(\))? "
                          r"\(HTTP/1\.[01] \d+\) \d+ headers in \d+ bytes \(\d+ switches on core \d+\)$")


def start_both(procs: Procs, tmp_path: Path, extra: str | dict[str, str]) -> dict[str, tuple[int, Path]]:
    """Both servers on ``extra`` (``{d}`` is each server's own directory; a dict gives each its
    own text)."""
    need_uwsgi()
    out: dict[str, tuple[int, Path]] = {}
    started = {}
    for kind in KINDS:
        d = tmp_path / kind
        d.mkdir()
        copy_app("fallback.py", d)
        port = free_port()
        (d / "l.ini").write_text(f"[uwsgi]\nplugins = logfile,logsocket\nhttp-socket = 127.0.0.1:{port}\n"
                                 f"wsgi-file = {d}/fallback.py\nmaster = true\nprocesses = 2\n"
                                 + (extra[kind] if isinstance(extra, dict) else extra.format(d=d)))
        started[kind] = procs.start(backend_argv(kind, d / "l.ini"), cwd=d)
        out[kind] = (port, d)
    for kind, p in started.items():
        wait_until(lambda p=p, kind=kind: p.poll() is not None or port_open(out[kind][0]), 20,
                   message=f"{kind} listening")
        assert p.poll() is None, f"{kind} exited:\n{procs.output(p)[-3000:]}"
    return out


def touch_later(trigger: Path) -> None:
    """Make ``trigger`` appear with an mtime 2 s ahead: masters compare whole-second mtimes,
    so a touch within the second they started in could go unseen. Renamed into place, so
    that a scan sees the file once, already with that time."""
    later = time.time() + 2
    tmp = trigger.with_name(trigger.name + ".new")
    tmp.write_text("now")
    os.utime(tmp, (later, later))
    tmp.rename(trigger)


def get(port: int, path: str, headers: str = "") -> bytes:
    return read_to_close(port, f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n".encode())


def lines_of(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def request_lines(path: Path, marker: str) -> list[str]:
    return [x for x in lines_of(path) if marker in x]


def test_rotation_by_size_names_and_notice(procs: Procs, tmp_path: Path) -> None:
    servers = start_both(procs, tmp_path, "logto = {d}/app.log\nlog-maxsize = 4000\n")
    for kind, (port, d) in servers.items():
        def rotated(port=port, d=d) -> list[Path]:
            get(port, "/fill-the-log-" + "x" * 200)
            return sorted(d.glob("app.log.*"))
        files = wait_until(rotated, 30, interval=0.1, message=f"{kind} rotating its log")
        name = files[0].name
        assert re.fullmatch(r"app\.log\.\d{10}", name), (kind, name)
        last = lines_of(files[0])[-1]
        assert re.fullmatch(rf".{{24}} - logsize: \d+, triggering rotation to {re.escape(str(files[0]))}\.\.\.",
                            last), (kind, last)
        assert (d / "app.log").exists()


def test_rotation_to_backupname_by_touch(procs: Procs, tmp_path: Path) -> None:
    servers = start_both(procs, tmp_path, "logto = {d}/app.log\nlog-backupname = {d}/app.old\n"
                                          "touch-logrotate = {d}/rotate.trigger\n")
    for kind, (port, d) in servers.items():
        assert b" 200 OK" in get(port, "/before-rotation")
        wait_until(lambda d=d: request_lines(d / "app.log", "/before-rotation"), 10, message=f"{kind} logged")
        touch_later(d / "rotate.trigger")
        wait_until(lambda d=d: (d / "app.old").exists(), 15, message=f"{kind} rotated to the backup name")
        assert request_lines(d / "app.old", "/before-rotation")
        assert b" 200 OK" in get(port, "/after-rotation")
        wait_until(lambda d=d: request_lines(d / "app.log", "/after-rotation"), 10, message=f"{kind} new file")
        assert not request_lines(d / "app.log", "/before-rotation")


def test_touch_logreopen_after_an_external_move(procs: Procs, tmp_path: Path) -> None:
    servers = start_both(procs, tmp_path, "logto = {d}/app.log\ntouch-logreopen = {d}/reopen.trigger\n")
    for kind, (port, d) in servers.items():
        get(port, "/first")
        wait_until(lambda d=d: request_lines(d / "app.log", "/first"), 10, message=f"{kind} logged")
        os.rename(d / "app.log", d / "moved.log")  # what logrotate does
        touch_later(d / "reopen.trigger")
        wait_until(lambda d=d: (d / "app.log").exists(), 15, message=f"{kind} reopened its log")
        get(port, "/second")
        wait_until(lambda d=d: request_lines(d / "app.log", "/second"), 10, message=f"{kind} logs to the new file")
        assert any(re.fullmatch(r"\[\d+\] logsize: \d+, triggering log-reopen\.\.\.", x)
                   for x in lines_of(d / "moved.log")), kind
        assert any(x.endswith(f"{d / 'app.log'} reopened.") for x in lines_of(d / "app.log")), kind


def test_log_format_variables(procs: Procs, tmp_path: Path) -> None:
    fmt = ("FMT %(method) %(uri) %(proto) %(status) %(rsize) %(addr) %(host) %(uagent) %(referer) "
           "%(var.HTTP_X_CUSTOM) %(cl) %(user) %(who) %(nothing) %(core) [%(msecs)|%(micros)|%(pid)|%(wid)]")
    servers = start_both(procs, tmp_path, f"log-format = {fmt}\nlogto = {{d}}/app.log\n")
    lines = {}
    for kind, (port, d) in servers.items():
        assert b" 200 OK" in get(port, "/logvar?q=1", "User-Agent: tester/1\r\nReferer: http://r/\r\n"
                                                    "X-Custom: hello\r\n")
        lines[kind] = wait_until(lambda d=d: request_lines(d / "app.log", "FMT "), 10, message=f"{kind} line")[0]
    for kind, line in lines.items():
        fixed, _, varying = line.partition("[")
        assert fixed == ("FMT GET /logvar?q=1 HTTP/1.1 200 6 127.0.0.1 t tester/1 http://r/ hello 0 - tester - 0 "), \
            (kind, line)
        msecs, micros, pid, wid = varying.rstrip("]").split("|")
        assert msecs.isdigit() and micros.isdigit() and pid.isdigit() and wid in ("1", "2"), (kind, line)


def test_log_format_quirks_as_uwsgi_parses(procs: Procs, tmp_path: Path) -> None:
    fmt = "Q %%(method) 100%% (x) %()y) %(uri"
    servers = start_both(procs, tmp_path, f"log-format = {fmt}\nlogto = {{d}}/app.log\n")
    lines = {}
    for kind, (port, d) in servers.items():
        get(port, "/q")
        lines[kind] = wait_until(lambda d=d: request_lines(d / "app.log", "Q "), 10, message=f"{kind} line")
    assert lines["imperium"] == lines["uwsgi"]


def test_x_forwarded_for_in_the_default_line(procs: Procs, tmp_path: Path) -> None:
    servers = start_both(procs, tmp_path, "log-x-forwarded-for = true\nlogto = {d}/app.log\n")
    for kind, (port, d) in servers.items():
        get(port, "/xff", "X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n")
        line = wait_until(lambda d=d: request_lines(d / "app.log", "GET /xff"), 10, message=f"{kind} line")[0]
        assert "] 203.0.113.9, 10.0.0.1 () {" in line, (kind, line)
        assert REQUEST_LINE.match(line), (kind, line)


def test_request_and_general_loggers_to_files(procs: Procs, tmp_path: Path) -> None:
    servers = start_both(procs, tmp_path, "logto = {d}/app.log\nreq-logger = file:{d}/req.log\n"
                                          "logger = file:{d}/all.log\n")
    for kind, (port, d) in servers.items():
        get(port, "/to-req-logger")
        line = wait_until(lambda d=d: request_lines(d / "req.log", "/to-req-logger"), 10,
                          message=f"{kind} request line in req.log")[0]
        assert REQUEST_LINE.match(line), (kind, line)
        wait_until(lambda d=d: any("spawned uWSGI worker 2" in x for x in lines_of(d / "all.log")), 10,
                   message=f"{kind} instance lines in all.log")
        assert not request_lines(d / "all.log", "/to-req-logger"), kind
        assert not request_lines(d / "app.log", "/to-req-logger"), kind


def test_routes_drain_and_encoders(procs: Procs, tmp_path: Path) -> None:
    servers = start_both(procs, tmp_path, "logto = {d}/app.log\nlogger = spawns file:{d}/spawns.log\n"
                                          "logger = file:{d}/rest.log\nlog-route = spawns spawned uWSGI worker\n"
                                          "log-drain = ^your\nlog-encoder = format:spawns [S] ${{msgnl}}\n"
                                          "req-logger = file:{d}/req.log\nlog-req-encoder = prefix REQ>\n")
    for kind, (port, d) in servers.items():
        wait_until(lambda d=d: len([x for x in lines_of(d / "spawns.log") if x.startswith("[S] spawned")]) == 2,
                   10, message=f"{kind} routed lines")
        rest = lines_of(d / "rest.log")
        assert any("Starting uWSGI" in x for x in rest), kind  # from the very first line
        assert not any("spawned uWSGI worker" in x for x in rest), kind  # routed lines go only there
        assert not any(x.startswith("your ") for x in rest), kind  # drained
        get(port, "/encoded")
        line = wait_until(lambda d=d: request_lines(d / "req.log", "/encoded"), 10, message=f"{kind} req line")[0]
        assert line.startswith("REQ>[pid: "), (kind, line)
        assert not lines_of(d / "app.log"), kind  # the loggers took everything, to the last line
    for kind, (_port, d) in servers.items():
        procs_stop = [p for p in procs.procs if str(d) in " ".join(p.args)]
        for p in procs_stop:
            p.send_signal(2)
            p.wait(10)
        assert lines_of(d / "rest.log")[-1] == "goodbye to uWSGI.", kind


def test_socket_logger_datagrams(procs: Procs, tmp_path: Path) -> None:
    receivers = {}
    for kind in KINDS:
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.bind(("127.0.0.1", 0))
        r.settimeout(10)
        receivers[kind] = r
    try:
        ports = {k: r.getsockname()[1] for k, r in receivers.items()}
        servers = start_both(procs, tmp_path, {k: f"log-socket = 127.0.0.1:{p},<tag> \nreq-logger = stdio\n"
                                               for k, p in ports.items()})
        for kind, r in receivers.items():
            get(servers[kind][0], "/not-on-the-socket")
            seen = b""
            while b"spawned uWSGI worker 2" not in seen:
                seen += r.recv(65536) + b"\0"
            first = seen.split(b"\0")[0]
            assert first.startswith(b"<tag>*** Starting uWSGI 2.0.21"), (kind, first)
            assert b"/not-on-the-socket" not in seen, kind
    finally:
        for r in receivers.values():
            r.close()


def test_log_date_and_log_prefix(procs: Procs, tmp_path: Path) -> None:
    servers = start_both(procs, tmp_path, "logto = {d}/app.log\nlog-prefix = [%%Y] LP\n")
    year = time.strftime("%Y")
    for kind, (port, d) in servers.items():
        get(port, "/prefixed")
        req = wait_until(lambda d=d: request_lines(d / "app.log", "/prefixed"), 10, message=f"{kind} line")[0]
        assert req.startswith("[pid: "), (kind, req)  # request lines carry no prefix
        spawned = next(x for x in lines_of(d / "app.log") if "spawned uWSGI worker 1" in x)
        assert spawned.startswith(f"[{year}] LP - spawned"), (kind, spawned)


def test_logfile_chmod_and_truncate(procs: Procs, tmp_path: Path) -> None:
    for kind in KINDS:
        (tmp_path / f"{kind}.log").write_text("old line that log-truncate removes\n")
    start_both(procs, tmp_path, "logto = {d}.log\nlogfile-chmod = 604\nlog-truncate = true\n")
    for kind in KINDS:
        log = tmp_path / f"{kind}.log"
        wait_until(lambda log=log: "spawned uWSGI worker" in log.read_text(), 10, message=f"{kind} log")
        assert stat.S_IMODE(log.stat().st_mode) == 0o604, kind
        assert "old line" not in log.read_text(), kind


@pytest.mark.parametrize("reopen", [False, True])
def test_reload_keeps_or_reopens_the_log(procs: Procs, tmp_path: Path, reopen: bool) -> None:
    """After logrotate moved the file, a reload writes on to the moved file — unless
    log-reopen, which opens the path anew (with and without a log master alike)."""
    servers = start_both(procs, tmp_path, "logto = {d}/app.log\nlog-master = true\n"
                         + ("log-reopen = true\n" if reopen else ""))
    masters = {kind: next(p for p in procs.procs if str(d) in " ".join(p.args))
               for kind, (_port, d) in servers.items()}
    for kind, (port, d) in servers.items():
        wait_until(lambda d=d: any("spawned uWSGI worker 2" in x for x in lines_of(d / "app.log")), 10,
                   message=f"{kind} started")
        os.rename(d / "app.log", d / "moved.log")
        masters[kind].send_signal(signal.SIGHUP)
        # the new incarnation announces itself in the file it logs to
        where = d / ("app.log" if reopen else "moved.log")
        wait_until(lambda where=where: sum("spawned uWSGI worker 2" in x for x in lines_of(where))
                   == (1 if reopen else 2), 20, interval=0.2, message=f"{kind} reloaded, logging to {where.name}")
        assert b" 200 OK" in get(port, "/after-reload")
        wait_until(lambda where=where: request_lines(where, "/after-reload"), 10,
                   message=f"{kind} logging requests to {where.name}")
        assert (d / "app.log").exists() == reopen, kind


def test_logfile_chown_before_dropping_privileges(procs: Procs) -> None:
    need_root("logfile-chown needs root to give the file away")
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="logchown-"))  # outside pytest's 0700 tree: nobody reads the app
    try:
        base.chmod(0o755)
        servers = start_both(procs, base, f"logto = {{d}}/app.log\nlogfile-chown = true\nuid = {nobody.pw_uid}\n"
                                          f"gid = {nobody.pw_gid}\n")
        for kind, (port, d) in servers.items():
            wait_until(lambda port=port: b" 200 OK" in get(port, "/as-nobody"), 10, message=f"{kind} serving")
            st = (d / "app.log").stat()
            assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), kind
    finally:
        procs.kill_all()
        shutil.rmtree(base, ignore_errors=True)
