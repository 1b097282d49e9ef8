"""The master's services where Imperium is checked on its own: the FIFO commands whose uWSGI
side is not deterministic enough for a twin (pause, cheap, chain, refork, pidfiles),
harakiri's graceful form, daemon throttle/control/touch, cron harakiri, the memory limits,
max-fd, stdin, daemonize2, signal mapping, fatal worker hooks, bad input."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import IMPERIUM, Procs, free_port, pid_alive, port_open, read_json, wait_until
from tests.fixtures.instance_helpers import get

APP = Path(__file__).resolve().parents[1] / "interop" / "apps" / "services_app.py"


class Inst:
    def __init__(self, procs: Procs, tmp: Path, body: str, *, processes: int = 1, wait: bool = True,
                 app: Path = APP, stdin: int | None = None) -> None:
        self.procs = procs
        self.dir = tmp
        self.port, self.stats = free_port(), free_port()
        ini = tmp / "s.ini"
        ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{self.port}\nwsgi-file = {app}\nmaster = true\n"
                       f"processes = {processes}\nstats = 127.0.0.1:{self.stats}\n"
                       + body.replace("{d}", str(tmp)))
        kw = {"stdin": stdin} if stdin is not None else {}
        self.proc = procs.start([IMPERIUM, "--ini", str(ini)], cwd=tmp, **kw)
        if wait:
            wait_until(lambda: self.proc.poll() is not None or port_open(self.stats), 20, message="up")
            assert self.proc.poll() is None, self.log()[-3000:]
            wait_until(self.workers, 20, message="workers accepting")

    def log(self) -> str:
        return self.procs.output(self.proc)

    def wait_log(self, text: str, timeout: float = 20) -> None:
        wait_until(lambda: text in self.log(), timeout, message=f"{text!r} in\n{self.log()[-3000:]}")

    def workers(self) -> list[int]:
        ws = read_json(self.stats)["workers"]
        return [w["pid"] for w in ws] if all(w["pid"] and w["accepting"] for w in ws) else []

    def fifo(self, data: str) -> None:
        path = self.dir / "fifo"

        def opened() -> int:
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK) + 1
            except OSError:
                return 0

        fd = int(wait_until(opened, 20, message="fifo reader")) - 1  # type: ignore[arg-type]
        os.write(fd, data.encode())
        os.close(fd)

    def exit_code(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running:\n{self.log()[-3000:]}") from None


def replaced(inst: Inst, before: list[int]) -> bool:
    now = inst.workers()
    return bool(now) and not set(now) & set(before)


# --- master FIFO ------------------------------------------------------------------------


def test_fifo_chain_reload_brutal_reload_and_stats(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "master-fifo = {d}/fifo\n", processes=2)
    master = inst.proc.pid
    before = inst.workers()
    inst.fifo("c")
    wait_until(lambda: replaced(inst, before), 20, message="chain reloaded")
    inst.wait_log("chain reloading complete")
    log = inst.log()
    assert log.index("chain next victim is worker 1") < log.index("chain next victim is worker 2")
    before = inst.workers()
    inst.fifo("W")
    wait_until(lambda: replaced(inst, before), 20, message="workers killed and respawned")
    assert f"killing worker 1 (pid: {before[0]})" in inst.log()
    inst.fifo("sBE+")
    inst.wait_log("workers total requests:")
    inst.wait_log("[broodlord] instance not governed by an Emperor !!!")
    inst.wait_log("emperor_rescan: this instance runs no emperor")
    inst.wait_log("uwsgi_cheaper_increase: cheaper mode is off (no cheaper = N): the number of workers is fixed")
    assert inst.proc.pid == master and inst.proc.poll() is None
    inst.fifo("Q")
    assert inst.exit_code() == 0


def test_fifo_pause_and_resume(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "master-fifo = {d}/fifo\n")
    inst.fifo("p")
    inst.wait_log("*** worker 1 suspended ***")
    assert read_json(inst.stats)["workers"][0]["status"] == "pause"
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(get(inst.port, "/paused")[0]))
    t.start()
    t.join(1.0)
    assert t.is_alive() and not got  # waits in the backlog while paused
    inst.fifo("p")
    t.join(10)
    assert got == [200]
    inst.wait_log("*** worker 1 resumed ***")


def test_fifo_cheap_mode_and_pidfiles(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "master-fifo = {d}/fifo\npidfile = {d}/pid\n", processes=2)
    (tmp_path / "pid").write_text("stale")
    inst.fifo("P")
    wait_until(lambda: (tmp_path / "pid").read_text() == f"{inst.proc.pid}\n", 10, message="pidfile rewritten")
    inst.fifo("C")
    inst.wait_log("cheap mode enabled: waiting for socket connection...")
    wait_until(lambda: all(w["pid"] == 0 for w in read_json(inst.stats)["workers"]), 10, message="no workers")
    assert get(inst.port)[0] == 200  # a connection brings the workers back
    wait_until(inst.workers, 10, message="workers back")


def test_fifo_refork(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    ini = tmp_path / "r.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {APP}\nmaster-fifo = {tmp_path}/fifo\n")
    p = procs.start([IMPERIUM, "--ini", str(ini)], cwd=tmp_path)
    wait_until(lambda: port_open(port), 20, message="up")
    inst = Inst.__new__(Inst)
    inst.procs, inst.proc, inst.dir = procs, p, tmp_path
    inst.fifo("f")
    inst.wait_log("new master copy spawned with pid ")
    child = int(re.search(r"new master copy spawned with pid (\d+)", inst.log()).group(1))  # type: ignore[union-attr]
    try:
        inst.wait_log(f"spawned uWSGI master process (pid: {child})")
        assert pid_alive(p.pid) and get(port)[0] == 200
    finally:
        os.kill(child, signal.SIGINT)
    wait_until(lambda: not pid_alive(child), 20, message="the copy stopped")


# --- harakiri ---------------------------------------------------------------------------


def test_graceful_harakiri(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "harakiri = 1\nharakiri-graceful-timeout = 5\nharakiri-verbose = true\n")
    first = inst.workers()
    try:
        get(inst.port, "/sleep/30", timeout=20)
    except (OSError, ConnectionError, http.client.HTTPException):
        pass
    inst.wait_log("graceful: yes")
    inst.wait_log("HARAKIRI: graceful termination attempt on worker 1 with signal 15")
    assert "HARAKIRI: -- wchan>" in inst.log() or "HARAKIRI: -- syscall>" in inst.log()
    wait_until(lambda: replaced(inst, first), 20, message="worker replaced")
    assert read_json(inst.stats)["workers"][0]["harakiri_count"] == 1


# --- daemons ----------------------------------------------------------------------------


def test_daemon_throttle_control_and_touch(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, """
attach-daemon = sh -c 'echo x >> {d}/fails; exit 1'
attach-daemon2 = cmd=sh -c 'echo $$ >> {d}/touched.pids; exec sleep 1000',touch={d}/restart
""")
    wait_until(lambda: "[uwsgi-daemons] throttling" in inst.log(), 20, message="the failing daemon throttled")
    starts = (tmp_path / "fails").read_text().count("x")
    assert starts < 10  # no tight respawn loop
    pids = lambda: (tmp_path / "touched.pids").read_text().split() if (tmp_path / "touched.pids").exists() else []  # noqa: E731
    wait_until(pids, 10, message="second daemon up")
    (tmp_path / "restart").write_text("now")
    wait_until(lambda: len(pids()) == 2, 20, message="touched daemon restarted")
    doc = read_json(inst.stats)["daemons"]
    assert [d["cmd"] for d in doc][0] == f"sh -c 'echo x >> {tmp_path}/fails; exit 1'"
    assert doc[1]["respawns"] >= 1


def test_control_daemon_stops_the_instance(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "attach-control-daemon = sh -c 'sleep 0.5'\n")
    assert inst.exit_code() == 0
    assert "graceful shutdown triggered..." in inst.log()


def test_cron_harakiri(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "cron2 = harakiri=1 sleep 30\n")
    inst.wait_log('*** HARAKIRI ON CRON "sleep 30"')
    inst.wait_log('[uwsgi-cron] command "sleep 30" running with pid')


# --- memory, limits, process setup ------------------------------------------------------


def test_evil_reload_on_as(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "evil-reload-on-as = 1\n", wait=False)
    inst.wait_log("*** EVIL RELOAD ON WORKER 1 ADDRESS SPACE:")


def test_reload_on_as_and_exception_type(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "reload-on-exception-type = ZeroDivisionError\n")
    first = inst.workers()
    try:
        get(inst.port, "/boom")
    except (OSError, ConnectionError):
        pass
    wait_until(lambda: replaced(inst, first), 20, message="worker respawned after the exception")
    inst.wait_log("... monitored exception detected, respawning worker 1")
    (tmp_path / "as").mkdir()
    other = Inst(procs, tmp_path / "as", "reload-on-as = 1\n")
    before = other.workers()
    assert get(other.port)[0] == 200
    wait_until(lambda: replaced(other, before), 20, message="recycled after the request")
    other.wait_log("address space above reload-on-as")


def test_max_fd_and_stdin(procs: Procs, tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        inst = Inst(procs, tmp_path, "max-fd = 4096\n", stdin=r)
        inst.wait_log("detected max file descriptor number: 4096")
        limits = Path(f"/proc/{inst.proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+4096\s+4096", limits)
        assert os.readlink(f"/proc/{inst.proc.pid}/fd/0") == "/dev/null"
        (tmp_path / "h").mkdir()
        honour = Inst(procs, tmp_path / "h", "honour-stdin = true\n", stdin=r)
        assert os.readlink(f"/proc/{honour.proc.pid}/fd/0").startswith("pipe:")
    finally:
        os.close(r)
        os.close(w)


def test_daemonize2(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "d.log"
    ini = tmp_path / "d.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {APP}\n"
                   f"daemonize2 = {log}\npidfile = {tmp_path}/pid\n")
    p = procs.start([IMPERIUM, "--ini", str(ini)], cwd=tmp_path)
    assert p.wait(20) == 0
    def daemon_pid() -> int:
        text = (tmp_path / "pid").read_text().strip() if (tmp_path / "pid").exists() else ""
        pid = int(text) if text.isdigit() else 0
        return pid if pid not in (0, p.pid) and pid_alive(pid) else 0

    # the pidfile is written before the apps load, and again by the detached master
    pid = int(wait_until(daemon_pid, 10, message="pidfile of the detached master"))  # type: ignore[arg-type]
    try:
        wait_until(lambda: port_open(port), 20, message="daemon serving")
        assert get(port)[0] == 200
        text = log.read_text()
        assert "*** daemonizing uWSGI ***" not in text and "WSGI app 0" not in text  # before detaching
        assert f"spawned uWSGI master process (pid: {pid})" in text
    finally:
        os.kill(pid, signal.SIGINT)
    wait_until(lambda: not pid_alive(pid), 20, message="daemon stopped")


def test_unix_signal_maps_any_master_signal(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "hook-master-start = unix_signal:28 uwsgi_reload_workers\n", processes=2)
    inst.wait_log("(master-start)...")
    before = inst.workers()
    os.kill(inst.proc.pid, signal.SIGWINCH)
    wait_until(lambda: replaced(inst, before), 20, message="SIGWINCH reloaded the workers")


def test_hook_touch(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "hook-touch = {d}/trigger write:{d}/touched yes\n")
    inst.wait_log("unable to stat()")
    (tmp_path / "trigger").write_text("x")
    wait_until(lambda: (tmp_path / "touched").exists(), 15, message="hook-touch ran")
    inst.wait_log(f'running "write:{tmp_path}/touched yes" (touch)...')


def test_fatal_worker_hook_stops_the_instance(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "hook-accepting = exec:exit 4\n", wait=False)
    assert inst.exit_code() == 0  # the worker asks the master to stop (SIGINT), as uWSGI
    assert "FATAL hook failed, destroying instance" in inst.log()


def test_bad_input_is_one_line(procs: Procs, tmp_path: Path) -> None:
    for body, line in (("cron = 1 2 3 ls\n", "cron = 1 2 3 ls: invalid cron syntax"),
                       ("master-fifo = {d}/missing/fifo\n", "master-fifo {d}/missing/fifo: No such file"),
                       ("legion-attach-daemon = l1 sleep 1\n", "legions are not available in Imperium"),
                       ("attach-daemon2 = freq=3\n", "attach-daemon2: you need to specify a 'command' key"),
                       ("pymodule-alias = x=no_such_module_zz\n", "pymodule-alias x=no_such_module_zz: cannot")):
        d = tmp_path / str(abs(hash(body)))
        d.mkdir()
        inst = Inst(procs, d, body, wait=False)
        assert inst.exit_code() == 1, body
        errors = [x for x in inst.log().splitlines() if x.startswith("imperium: ")]
        assert len(errors) == 1 and line.replace("{d}", str(d)) in errors[0], inst.log()[-2000:]
        assert errors[0].endswith(f"({d}/s.ini:7)"), errors[0]  # the file and line of the value


def test_lifetime_delta_per_worker() -> None:
    from vassal.scoreboard import Scoreboard
    from vassal.worker import Worker, WorkerSettings
    from vassal.wsgi import AppTable

    s = WorkerSettings(max_worker_lifetime=60, max_worker_lifetime_delta=30)
    board = Scoreboard(3, 1)
    assert [Worker(w, [], AppTable(), board, s).lifetime for w in (1, 2, 3)] == [60, 90, 120]
    assert Worker(2, [], AppTable(), board, WorkerSettings(max_worker_lifetime_delta=30)).lifetime == 0
    assert time.time() > 0


def test_touch_workers_reload(procs: Procs, tmp_path: Path) -> None:
    (tmp_path / "trigger").write_text("x")
    inst = Inst(procs, tmp_path, "touch-workers-reload = {d}/trigger\n", processes=2)
    master, before = inst.proc.pid, inst.workers()
    os.utime(tmp_path / "trigger", (1, 1))
    wait_until(lambda: replaced(inst, before), 20, message="workers reloaded")
    assert inst.proc.pid == master and "has been touched... workers reload !!!" in inst.log()


def test_fs_brutal_reload_and_ini_paste_logged(procs: Procs, tmp_path: Path) -> None:
    watched = tmp_path / "code.txt"
    watched.write_text("v1")
    inst = Inst(procs, tmp_path, "fs-brutal-reload = {d}/code.txt\n")
    inst.wait_log('[uwsgi-fsmon] registered monitor for "')
    before = inst.workers()
    watched.write_text("v2")
    wait_until(lambda: replaced(inst, before), 20, message="brutally reloaded")
    assert "...brutally killing workers..." in inst.log()
    # ini-paste-logged: the paste file's [loggers] configure python's logging too
    (tmp_path / "p").mkdir()
    d = tmp_path / "p"
    (d / "factory.py").write_text(
        "import logging\n"
        "def make_app(global_conf, **kw):\n"
        "    logging.getLogger('pasted').warning('configured by the paste file')\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [('Content-Length', '2')])\n"
        "        return [b'ok']\n"
        "    return app\n")
    port = free_port()
    (d / "app.ini").write_text(
        f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\npythonpath = {d}\n\n"
        "[app:main]\npaste.app_factory = factory:make_app\n\n"
        "[loggers]\nkeys = root\n[handlers]\nkeys = err\n[formatters]\nkeys = plain\n"
        "[logger_root]\nlevel = INFO\nhandlers = err\n"
        "[handler_err]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = plain\n"
        "[formatter_plain]\nformat = PASTELOG %(name)s %(message)s\n")
    p = procs.start([IMPERIUM, "--ini-paste-logged", str(d / "app.ini")], cwd=d)
    wait_until(lambda: p.poll() is not None or port_open(port), 20, message="paste app up")
    assert p.poll() is None, procs.output(p)[-2000:]
    assert get(port)[1] == b"ok"
    assert "PASTELOG pasted configured by the paste file" in procs.output(p)


def test_hook_as_mule(procs: Procs, tmp_path: Path) -> None:
    inst = Inst(procs, tmp_path, "mules = 2\nhook-as-mule = appendn:{d}/mules x\n")
    wait_until(lambda: (tmp_path / "mules").exists() and (tmp_path / "mules").read_text().count("x") == 2, 20,
               message="the hook ran in both mules")
    inst.wait_log('running "appendn:')
