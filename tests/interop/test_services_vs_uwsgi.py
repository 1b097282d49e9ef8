"""The master's services next to Debian's real uWSGI, each started from the same ini.

Hooks, attached daemons, cron, the master FIFO, touch-exec/chain reload, fs-reload,
reload-on-exception, py-autoreload, pyargv/pymodule-alias and ini-paste: every test runs
once against ``imperium`` and once against ``uwsgi-core --plugin python3`` and checks what
both must do (files written, processes started and gone, pids changed, log lines).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import (
    Procs,
    free_port,
    need_module,
    pid_alive,
    port_open,
    read_json,
    wait_until,
)
from tests.interop.helpers import backend_argv, copy_app, http_request, need_uwsgi, status_of

KINDS = ["imperium", "uwsgi"]


class Instance:
    def __init__(self, procs: Procs, proc: subprocess.Popen, d: Path, port: int, stats: int) -> None:
        self.procs, self.proc, self.dir, self.port, self.stats = procs, proc, d, port, stats

    def log(self) -> str:
        return self.procs.output(self.proc)

    def wait_log(self, text: str, timeout: float = 20) -> None:
        wait_until(lambda: text in self.log(), timeout, message=f"log line {text!r}\n{self.log()[-3000:]}")

    def workers(self) -> list[int]:
        return [w["pid"] for w in read_json(self.stats)["workers"]]

    def live_workers(self) -> list[int]:
        """Worker pids once every worker is up and accepting (signals sent earlier may find
        a uWSGI worker without its handlers: the reference then loses track of it)."""
        workers = read_json(self.stats)["workers"]
        ok = all(w["pid"] and w["accepting"] for w in workers)
        return [w["pid"] for w in workers] if ok else []

    def get(self, path: str) -> str:
        resp = http_request(self.port, path=path)
        assert resp.status == 200, (resp.status, resp.body)
        return resp.body.decode()

    def fifo(self, data: str, name: str = "fifo", last: bool = False) -> None:
        """Write to the master fifo once a master reads it (non-blocking open: ENXIO while
        no reader has the fifo open, e.g. while a reload makes a new one)."""
        path = self.dir / name

        def open_for_writing() -> int:
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return -1

        fd = wait_until(lambda: (f := open_for_writing()) >= 0 and f + 1, 20, message="a reader on the fifo")
        fd = int(fd) - 1  # type: ignore[arg-type]
        try:
            os.write(fd, data.encode())
            st = os.fstat(fd)
            node = (st.st_ino, st.st_ctime_ns)  # tmpfs may give the new fifo the same inode
        finally:
            os.close(fd)

        def recreated() -> bool:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return False
            return (st.st_ino, st.st_ctime_ns) != node

        # both masters make a new fifo once the writer is gone; a command written to the old
        # one in that moment would be lost (in uWSGI as here), so the next write waits
        if not last:
            wait_until(recreated, 20, message="the master made a new fifo")

    def exit_code(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            import glob
            info = ""
            for f in ["stack", "wchan", "stat"]:
                try:
                    info += f + ": " + open(f"/proc/{self.proc.pid}/{f}").read() + "\n"
                except OSError:
                    pass
            info += " ".join(os.readlink(x) for x in glob.glob(f"/proc/{self.proc.pid}/fd/*"))
            raise AssertionError(f"still running after {timeout}s:\n{info}\n{self.log()[-1000:]}") from None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        return self.exit_code(timeout)


def start(procs: Procs, tmp: Path, kind: str, body: str, *, processes: int = 1, wait: bool = True,
          app: str = "services_app.py") -> Instance:
    """An instance of ``kind`` on the services app; ``{d}`` in ``body`` is its directory."""
    d = tmp / kind
    copy_app(app, d)
    port, stats = free_port(), free_port()
    ini = d / "s.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {d}/{app}\nmaster = true\n"
                   f"processes = {processes}\nstats = 127.0.0.1:{stats}\n" + body.replace("{d}", str(d)))
    p = procs.start(backend_argv(kind, ini), cwd=d)
    inst = Instance(procs, p, d, port, stats)
    if wait:
        wait_until(lambda: p.poll() is not None or (port_open(port) and port_open(stats)), 20,
                   message=f"{kind} up")
        assert p.poll() is None, inst.log()[-3000:]
        wait_until(inst.live_workers, 20, message="workers up")
    return inst


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    if request.param == "uwsgi":
        need_uwsgi()
    return request.param


# --- hooks ------------------------------------------------------------------------------


def test_hook_phases(procs: Procs, tmp_path: Path, kind: str) -> None:
    inst = start(procs, tmp_path, kind, processes=2, body="""
hook-asap = write:{d}/asap yes
hook-pre-app = appendn:{d}/order pre-app
exec-post-app = echo post-app >> {d}/order
hook-post-fork = appendn:{d}/post-fork x
hook-accepting = appendn:{d}/accepting x
hook-accepting-once = appendn:{d}/accepting-once x
hook-accepting1 = appendn:{d}/accepting1 x
hook-accepting1-once = appendn:{d}/accepting1-once x
hook-master-start = write:{d}/master-start yes
hook-as-user-atexit = write:{d}/atexit bye
exec-as-user-atexit = echo exec >> {d}/atexit-exec
master-fifo = {d}/fifo
""")
    d = inst.dir
    assert (d / "asap").read_text() == "yes"
    assert (d / "order").read_text() == "pre-app\npost-app\n"
    wait_until(lambda: (d / "master-start").exists(), 10, message="master-start hook")
    lines = lambda name: (d / name).read_text().count("x") if (d / name).exists() else 0  # noqa: E731
    wait_until(lambda: lines("accepting") == 2 and lines("accepting1") == 1 and lines("post-fork") == 2, 10,
               message="accepting hooks of the first two workers")
    before = set(inst.workers())
    inst.fifo("w")  # reload the workers: the -once hooks do not run again
    wait_until(lambda: lines("accepting") == 4 and lines("accepting1") == 2, 20,
               message="accepting hooks of the respawned workers")
    assert not before & set(inst.workers())
    assert lines("accepting-once") == 2
    assert lines("accepting1-once") == 1
    assert inst.stop() == 0
    assert (d / "atexit").read_text() == "bye"
    assert (d / "atexit-exec").read_text() == "exec\n"


def test_sigterm_is_a_graceful_stop_with_the_docker_hook(procs: Procs, tmp_path: Path, kind: str) -> None:
    """``hook-master-start = unix_signal:15 gracefully_kill_them_all``: SIGTERM lets the
    request in flight finish, then the instance exits 0 (instead of reloading)."""
    inst = start(procs, tmp_path, kind, body="hook-master-start = unix_signal:15 gracefully_kill_them_all\n")
    inst.wait_log('running "unix_signal:15 gracefully_kill_them_all" (master-start)...')
    result: list[object] = []

    def in_flight() -> None:
        try:
            result.append(http_request(inst.port, path="/sleep/1.5", timeout=30))
        except Exception as exc:  # kept for the assertion's message (a thread's raise is lost)
            result.append(exc)

    t = threading.Thread(target=in_flight, daemon=True)
    t.start()
    wait_until(lambda: any(w["status"] == "busy" for w in read_json(inst.stats)["workers"]), 20,
               message="request in flight")
    inst.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: result, 40, message="the answer to the request in flight")
    assert getattr(result[0], "status", None) == 200 and result[0].body == b"slept", \
        (result[0], inst.log()[-2000:])  # type: ignore[attr-defined]
    assert inst.exit_code() == 0
    assert "graceful shutdown triggered..." in inst.log()
    assert "binary reloading" not in inst.log()
    # each worker says it goes gracefully (uWSGI's worker SIGHUP handler)
    assert re.search(r"^Gracefully killing worker 1 \(pid: \d+\)\.\.\.$", inst.log(), re.M), inst.log()


def test_unknown_hook_action_is_refused(procs: Procs, tmp_path: Path) -> None:
    inst = start(procs, tmp_path, "imperium", wait=False, body="hook-post-app = frobnicate:x\n")
    assert inst.exit_code() == 1
    assert "hook-post-app = frobnicate:x: hook action not found: frobnicate" in inst.log()


def test_failing_fatal_hook_stops_the_start(procs: Procs, tmp_path: Path, kind: str) -> None:
    inst = start(procs, tmp_path, kind, wait=False, body="exec-pre-app = exit 7\n")
    assert inst.exit_code() == 1
    assert 'command "exit 7" exited with non-zero code: 7' in inst.log()



def test_failing_master_start_hook_destroys_the_instance(procs: Procs, tmp_path: Path, kind: str) -> None:
    """A failing ``hook-master-start`` (a fatal phase, run once the workers exist): the log
    says so, the workers are killed, the instance exits 0 (uWSGI's kill_them_all path, not
    exit 1). uWSGI's Python workers idle in C ignore that SIGINT and wait out
    ``worker-reload-mercy`` (set low here); Imperium's die at once."""
    inst = start(procs, tmp_path, kind, wait=False, processes=2,
                 body="worker-reload-mercy = 2\nhook-master-start = exec:exit 3\n")
    assert inst.exit_code() == 0
    log = inst.log()
    lines = ['running "exec:exit 3" (master-start)...', 'command "exit 3" exited with non-zero code: 3',
             "FATAL hook failed, destroying instance", "SIGINT/SIGTERM received...killing workers...",
             "goodbye to uWSGI."]
    at = [log.find(line) for line in lines]
    assert -1 not in at and at == sorted(at), log[-3000:]
    assert "spawned uWSGI worker 2" in log


def test_sd_notify_messages(procs: Procs, tmp_path: Path, kind: str) -> None:
    """Started by systemd (Type=notify): the same messages as uWSGI's, read from a real
    datagram socket, up to READY=1 and again as a SIGHUP's re-exec begins. (uWSGI 2.0.21
    never says READY=1 after that re-exec: its notify socket survives the exec already
    connected and sendmsg fails; Imperium does, after a RELOADING=1 of its own.)"""
    import socket as so

    path = tmp_path / f"notify-{kind}"
    sock = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    got: list[str] = []

    def messages() -> list[str]:
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except BlockingIOError:
                return got
    try:
        d = tmp_path / kind
        copy_app("services_app.py", d)
        port = free_port()
        ini = d / "s.ini"
        ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {d}/services_app.py\n"
                       "master = true\nprocesses = 2\nworker-reload-mercy = 2\n")
        p = procs.start(backend_argv(kind, ini), cwd=d, env={"NOTIFY_SOCKET": str(path)})
        wait_until(lambda: any("READY=1" in m for m in messages()), 20, message=f"{kind}: READY=1")
        assert got == ["STATUS=initializing uWSGI\n", "STATUS=uWSGI is ready\nREADY=1\n"]
        # READY=1 comes before the workers: a SIGHUP sent then may find uWSGI's master
        # without its handlers
        wait_until(lambda: status_of(port) == 200 and "spawned uWSGI worker 2" in procs.output(p), 20,
                   message=f"{kind}: serving")
        p.send_signal(signal.SIGHUP)
        wait_until(lambda: "STATUS=initializing uWSGI\n" in messages()[2:], 20, message=f"{kind}: re-exec")
        assert [m for m in got[2:] if m != "RELOADING=1\n"][0] == "STATUS=initializing uWSGI\n"
        if kind == "imperium":
            assert got[2] == "RELOADING=1\n"
            wait_until(lambda: messages()[-1] == "STATUS=uWSGI is ready\nREADY=1\n", 20,
                       message="READY=1 after the reload")
    finally:
        sock.close()

# --- daemons ----------------------------------------------------------------------------


def test_attach_daemon_respawn_stats_and_stop(procs: Procs, tmp_path: Path, kind: str) -> None:
    cmd = "sh -c 'echo $$ >> {d}/daemon.pids; exec sleep 1000'"
    inst = start(procs, tmp_path, kind, body=f"attach-daemon = {cmd}\n")
    pids_file = inst.dir / "daemon.pids"
    pids = lambda: [int(x) for x in pids_file.read_text().split()] if pids_file.exists() else []  # noqa: E731
    wait_until(pids, 10, message="the daemon started")
    first = pids()[0]
    doc = read_json(inst.stats)
    assert doc["daemons"][0]["cmd"] == cmd.replace("{d}", str(inst.dir))
    wait_until(lambda: read_json(inst.stats)["daemons"][0]["pid"] > 0, 10, message="daemon pid in stats")
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(pids()) == 2 and pid_alive(pids()[1]), 20, message="the daemon respawned")
    second = pids()[1]
    assert inst.stop() == 0
    wait_until(lambda: not pid_alive(second), 10, message="the daemon stopped with the instance")
    assert "[uwsgi-daemons] stopping daemon" in inst.log()


def test_smart_daemon_outlives_the_instance(procs: Procs, tmp_path: Path, kind: str) -> None:
    inst = start(procs, tmp_path, kind, body="smart-attach-daemon2 = {d}/smart.pid sleep 1000\n")
    pidfile = inst.dir / "smart.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, message="pidfile written")
    pid = int(pidfile.read_text())
    try:
        wait_until(lambda: pid_alive(pid), 10, message="the smart daemon runs")
        assert inst.stop() == 0
        assert pid_alive(pid), "uWSGI leaves smart daemons running (found again by their pidfile)"
    finally:
        try:  # the shell and its sleep: the daemon's whole process group
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_daemon_options_uwsgi_refuses_or_skips(procs: Procs, tmp_path: Path, kind: str) -> None:
    """attach-daemon2 without a command stops the start (both); a key neither knows is
    skipped (uWSGI silently, Imperium with a line)."""
    refused = start(procs, tmp_path / "refused", kind, wait=False, body="attach-daemon2 = freq=3\n")
    assert refused.exit_code() == 1
    assert "you need to specify a 'command' key" in refused.log()
    inst = start(procs, tmp_path / "skipped", kind, body="attach-daemon2 = cmd=touch {d}/ran,colour=red\n")
    wait_until(lambda: (inst.dir / "ran").exists(), 15, message="the daemon ran")
    if kind == "imperium":
        assert "attach-daemon2 = cmd=touch " in inst.log() and "unknown key 'colour' ignored" in inst.log()


# --- cron -------------------------------------------------------------------------------


def test_cron_every_minute_runs_at_start(procs: Procs, tmp_path: Path, kind: str) -> None:
    inst = start(procs, tmp_path, kind, body="""
cron = -1 -1 -1 -1 -1 echo cron >> {d}/cron.out
cron2 = unique=1 echo cron2 >> {d}/cron.out
""")
    out = inst.dir / "cron.out"
    wait_until(lambda: out.exists() and sorted(out.read_text().split()) == ["cron", "cron2"], 15,
               message="both cron tasks ran")
    inst.wait_log("[uwsgi-cron] running \"echo cron >> ")
    inst.wait_log("exited after")


# --- master fifo, touch, fs-reload ------------------------------------------------------


def test_master_fifo_commands(procs: Procs, tmp_path: Path, kind: str) -> None:
    inst = start(procs, tmp_path, kind, processes=2, body="master-fifo = {d}/fifo\n")
    master = inst.proc.pid

    def command(cmd: str, done, what: str) -> None:
        # uWSGI now and then loses a command written while it remakes its fifo: try again
        for _ in range(3):
            inst.fifo(cmd)
            try:
                wait_until(done, 10, message=what)
                return
            except AssertionError:
                continue
        raise AssertionError(f"{what} after three '{cmd}' commands\n{inst.log()[-3000:]}")

    before = set(wait_until(inst.live_workers, 20, message="workers accepting"))
    command("w", lambda: (w := inst.live_workers()) and not set(w) & before, "workers reloaded")
    inst.fifo("%")  # not a command: the instance goes on
    assert status_of(inst.port) == 200
    before = set(wait_until(inst.live_workers, 20, message="workers accepting"))
    command("r", lambda: (w := inst.live_workers()) and not set(w) & before, "instance reloaded")
    assert inst.proc.pid == master and inst.proc.poll() is None
    if kind == "uwsgi":
        # uWSGI 2.0.21 now and then hangs on "q" (gracefully_kill_them_all reaps a worker
        # with a blocking waitpid the master loop then waits for), and after a fifo reload
        # even on "Q" or SIGINT (a worker never "buried"): the reference's stop is not tested
        return
    inst.fifo("q", last=True)
    assert inst.exit_code() == 0
    assert "graceful shutdown triggered..." in inst.log()


def test_touch_exec_and_chain_reload(procs: Procs, tmp_path: Path, kind: str) -> None:
    inst = start(procs, tmp_path, kind, processes=2, body="""
lazy-apps = true
touch-exec = {d}/exec.trigger touch {d}/exec.ran
touch-chain-reload = {d}/chain.trigger
""")
    before = inst.workers()
    (inst.dir / "exec.trigger").write_text("x")
    wait_until(lambda: (inst.dir / "exec.ran").exists(), 15, message="touch-exec ran its command")
    (inst.dir / "chain.trigger").write_text("x")
    wait_until(lambda: (w := inst.live_workers()) and not set(w) & set(before), 30,
               message="every worker reloaded")
    inst.wait_log("chain reloading complete")
    log = inst.log()
    assert log.index("chain next victim is worker 1") < log.index("chain next victim is worker 2")


def test_fs_reload(procs: Procs, tmp_path: Path, kind: str) -> None:
    (tmp_path / kind / "watched").mkdir(parents=True)
    inst = start(procs, tmp_path, kind, body="fs-reload = {d}/watched\n")
    inst.wait_log('[uwsgi-fsmon] registered monitor for "')
    before = inst.live_workers()
    (inst.dir / "watched" / "new-file").write_text("x")
    wait_until(lambda: (w := inst.live_workers()) and not set(w) & set(before), 30, message="reloaded")
    assert inst.proc.poll() is None


# --- python side ------------------------------------------------------------------------


def test_reload_on_exception(procs: Procs, tmp_path: Path, kind: str) -> None:
    inst = start(procs, tmp_path, kind, body="reload-on-exception = true\n")
    first = int(inst.get("/pid"))
    try:
        http_request(inst.port, path="/boom")
    except Exception:  # noqa: BLE001 - the worker ends without answering, as uWSGI's does
        pass
    wait_until(lambda: status_of(inst.port, "/pid") == 200 and int(inst.get("/pid")) != first, 20,
               message="a new worker")
    inst.wait_log("... monitored exception detected, respawning worker 1")


def test_py_autoreload(procs: Procs, tmp_path: Path, kind: str) -> None:
    inst = start(procs, tmp_path, kind, body="py-autoreload = 1\n")
    app = inst.dir / "services_app.py"
    before = inst.workers()
    stamp = [int(time.time())]

    def touch_and_check() -> bool:
        stamp[0] += 1  # a new mtime each poll: the first one the reloader has seen may be any
        os.utime(app, (stamp[0], stamp[0]))
        return "[uwsgi-python-reloader] module/file" in inst.log()

    wait_until(touch_and_check, 30, interval=0.5, message="the reloader noticed")
    wait_until(lambda: (w := inst.live_workers()) and not set(w) & set(before), 30, message="reloaded")


def test_pyargv_and_pymodule_alias(procs: Procs, tmp_path: Path, kind: str) -> None:
    (tmp_path / kind).mkdir()
    (tmp_path / kind / "real_module.py").write_text("NAME = 'the real one'\n")
    inst = start(procs, tmp_path, kind, body="""
pythonpath = {d}
pyargv = one  two\tthree
pymodule-alias = imperium_alias=real_module
""")
    assert json.loads(inst.get("/argv")) == ["uwsgi", "one", "two", "three"]
    assert inst.get("/alias") == "the real one"
    inst.wait_log('mapped virtual pymodule "imperium_alias" to real pymodule "real_module"')


def test_ini_paste(procs: Procs, tmp_path: Path, kind: str) -> None:
    need_module("paste.deploy")
    d = tmp_path / kind
    copy_app("services_app.py", d)
    port = free_port()
    site = sysconfig.get_paths()["purelib"]  # PasteDeploy for the real uWSGI's python too
    (d / "paste_factory.py").write_text(
        "def make_app(global_conf, **settings):\n"
        "    def app(environ, start_response):\n"
        "        body = ('paste ' + settings.get('greeting', '?')).encode()\n"
        "        start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "        return [body]\n"
        "    return app\n")
    (d / "app.ini").write_text(
        f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nmaster = true\npythonpath = {d}\n\n"
        "[app:main]\npaste.app_factory = paste_factory:make_app\ngreeting = hello\n")
    argv = backend_argv(kind, d / "app.ini")
    argv[argv.index("--ini")] = "--ini-paste"
    # paste's ini reader refuses repeated keys: PasteDeploy comes through PYTHONPATH
    p = procs.start(argv, cwd=d, env={"PYTHONPATH": site})
    wait_until(lambda: p.poll() is not None or port_open(port), 20, message="paste app up")
    assert p.poll() is None, procs.output(p)[-3000:]
    resp = http_request(port)
    assert (resp.status, resp.body) == (200, b"paste hello")
    assert "Loading paste environment: config:" in procs.output(p)


def test_emperor_message_hooks(procs: Procs, tmp_path: Path, kind: str) -> None:
    """hook-emperor-reload and hook-emperor-stop run on the emperor's bytes 1 and 0 (the
    test plays the emperor on a socketpair)."""
    import socket

    d = tmp_path / kind
    copy_app("services_app.py", d)
    port = free_port()
    ini = d / "e.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {d}/services_app.py\nmaster = true\n"
                   f"hook-emperor-reload = appendn:{d}/reload x\nhook-emperor-stop = write:{d}/stop yes\n")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        p = procs.start(backend_argv(kind, ini), cwd=d, env={"UWSGI_EMPEROR_FD": str(theirs.fileno())},
                        pass_fds=(theirs.fileno(),))
        theirs.close()
        ours.settimeout(20)
        got = b""
        while 5 not in got:  # spawned (1), then accepting (5)
            chunk = ours.recv(16)
            assert chunk, procs.output(p)[-3000:]
            got += chunk
        ours.sendall(bytes([1]))  # reload
        wait_until(lambda: (d / "reload").exists(), 20, message="emperor-reload hook")
        got = b""
        while 5 not in got:  # the new incarnation accepts again
            chunk = ours.recv(16)
            assert chunk, procs.output(p)[-3000:]
            got += chunk
        ours.sendall(bytes([0]))  # stop
        wait_until(lambda: (d / "stop").exists(), 20, message="emperor-stop hook")
        code = p.wait(20)  # both stop; the exit status is the emperor's business
        assert code in (0, 30), (code, procs.output(p)[-2000:])
    finally:
        ours.close()
