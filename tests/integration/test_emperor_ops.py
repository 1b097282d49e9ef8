"""Operating a running emperor: its Prometheus endpoint (checked against its stats JSON with
prometheus_client's parser), ``imperium ctl`` over its control socket, systemd's notify
protocol (read from a real datagram socket set as NOTIFY_SOCKET), the vassals' output
collected with a name prefix or into per-vassal files that rotate without losing a line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import IMPERIUM, free_port, need_root, port_open, wait_until
from tests.integration.emperor_harness import Emperor, bump_mtime, fake_launcher, stays


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} of every sample."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def per_vassal(samples: dict[str, dict[tuple, float]], name: str) -> dict[str, float]:
    return {k[0][1]: v for k, v in samples.get(name, {}).items()}


def ctl(sock: Path, *args: str, json_out: bool = False) -> subprocess.CompletedProcess:
    argv = [IMPERIUM, "ctl", *(["--json"] if json_out else []), str(sock), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


def test_prometheus_agrees_with_the_stats_json(procs, tmp_path) -> None:
    prom = free_port()
    em = Emperor(procs, tmp_path, "--emperor-prometheus", f"127.0.0.1:{prom}")
    wait_until(lambda: port_open(prom), 10, message="the prometheus endpoint")
    em.ini("a.ini")
    em.ini("b.ini", heartbeat=1, loyal=0)
    em.ini("bad.ini", broken=1)
    em.wait_vassal("a.ini", loyal=1)
    em.wait_vassal("b.ini", ready=1)
    wait_until(lambda: any(b["id"] == "bad.ini" for b in em.stats()["blacklist"]), 10,
               message="bad.ini blacklisted")
    bump_mtime(em.dir / "a.ini")
    wait_until(lambda: em.vassal("a.ini")["respawns"] == 1 and em.vassal("a.ini")["ready"] == 1, 10,
               message="a.ini reloaded")
    wait_until(lambda: scrape(prom)["imperium_vassal_reload_seconds_count"][()] >= 1, 10,
               message="the reload observed")
    samples = scrape(prom)
    doc = em.stats()
    for v in doc["vassals"]:
        for field in ("pid", "loyal", "ready", "accepting"):
            assert per_vassal(samples, f"imperium_vassal_{field}")[v["id"]] == v[field], (field, v)
        assert per_vassal(samples, "imperium_vassal_respawns_total")[v["id"]] == v["respawns"]
    states = {dict(k)["vassal"]: dict(k)["state"] for k in samples["imperium_vassal_state"]}
    assert states["a.ini"] == "loyal" and states["b.ini"] in ("ready", "accepting")
    assert set(per_vassal(samples, "imperium_vassal_heartbeat_age_seconds")) == {"b.ini"}
    for b in doc["blacklist"]:
        assert per_vassal(samples, "imperium_blacklist_attempts")[b["id"]] == b["attempt"]
        assert per_vassal(samples, "imperium_blacklist_throttle_seconds")[b["id"]] == \
            b["throttle_level"] / 1000
        assert per_vassal(samples, "imperium_blacklist_retry_seconds")[b["id"]] >= 0
    assert samples["imperium_emperor_throttle_seconds"][()] == doc["throttle_level"] / 1000
    assert samples["imperium_monitor_up"] == {(("monitor", str(em.dir)),): 1.0}
    assert samples["imperium_emperor_ready"][()] == 1
    assert samples["imperium_vassal_spawn_seconds_count"][()] >= 2
    assert sum(samples["imperium_emperor_vassals"].values()) == len(doc["vassals"])
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{prom}/other", timeout=5)
    assert info.value.code == 404
    em.stop()


def test_ctl_drives_a_running_emperor(procs, tmp_path) -> None:
    sock = tmp_path / "ctl.sock"
    em = Emperor(procs, tmp_path, "--emperor-control-socket", str(sock))
    em.ini("a.ini")
    em.ini("b.ini")
    em.ini("bad.ini", broken=1)
    em.wait_vassal("a.ini", loyal=1)
    em.wait_vassal("b.ini", loyal=1)
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    r = ctl(sock, "list")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] == ["NAME", "STATE", "PID"]
    listed = json.loads(ctl(sock, "list", json_out=True).stdout)
    assert {v["id"] for v in listed["vassals"]} >= {"a.ini", "b.ini"}
    pid = em.vassal("a.ini")["pid"]
    status = json.loads(ctl(sock, "status", "a.ini", json_out=True).stdout)
    assert status["vassal"]["pid"] == pid and status["vassal"]["state"] == "loyal"
    # reload: what a touch does
    assert ctl(sock, "reload", "a.ini").returncode == 0
    em.wait_records("a.ini", "reload")
    # pause: a touch waits; resume applies it
    assert ctl(sock, "pause", "b.ini").returncode == 0
    bump_mtime(em.dir / "b.ini")
    stays(lambda: em.records("b.ini", "reload") == [], 1.5,  # two monitor scans
          "b.ini reloaded while paused")
    assert json.loads(ctl(sock, "status", "b.ini", json_out=True).stdout)["vassal"]["hold"] == "paused"
    assert ctl(sock, "resume", "b.ini").returncode == 0
    em.wait_records("b.ini", "reload")
    # stop: down and kept down though its file is there; resume starts it again
    assert ctl(sock, "stop", "a.ini").returncode == 0
    em.wait_gone("a.ini")
    stays(lambda: em.vassal("a.ini") is None, 1.5, "a stopped vassal came back by itself")
    assert "stopped" in ctl(sock, "list").stdout
    assert ctl(sock, "resume", "a.ini").returncode == 0
    em.wait_vassal("a.ini", loyal=1)
    # blacklist and clear-blacklist
    wait_until(lambda: "bad.ini" in ctl(sock, "blacklist").stdout, 10, message="bad.ini blacklisted")
    cleared = json.loads(ctl(sock, "clear-blacklist", json_out=True).stdout)
    assert cleared["ok"] and cleared["cleared"] >= 1
    # bad input: unknown vassal, missing name, unknown socket
    r = ctl(sock, "status", "nosuch.ini")
    assert r.returncode == 1 and r.stderr.strip() == "imperium ctl: no vassal named nosuch.ini"
    for cmd in ("reload", "stop", "pause", "resume"):
        assert ctl(sock, cmd, "nosuch.ini").returncode == 1
    assert ctl(sock, "reload").returncode == 2
    r = ctl(tmp_path / "nowhere.sock", "list")
    assert r.returncode == 2 and "cannot talk to the emperor" in r.stderr
    # a raw client sending garbage gets an error, the emperor carries on
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b"\xff\xfe bogus \x00\n")
        assert json.loads(s.recv(65536))["ok"] is False
    assert em.vassal("b.ini")["loyal"] == 1
    em.stop()
    assert not sock.exists()


def test_a_stopped_vassal_stays_on_metrics(procs, tmp_path) -> None:
    """``ctl stop``: the vassal has no process (and leaves uWSGI's stats JSON) but /metrics
    still names it, state stopped, pid -1, until ``resume``."""
    prom = free_port()
    sock = tmp_path / "ctl.sock"
    em = Emperor(procs, tmp_path, "--emperor-prometheus", f"127.0.0.1:{prom}",
                 "--emperor-control-socket", str(sock))
    em.ini("a.ini")
    em.wait_vassal("a.ini", loyal=1)

    def samples() -> dict:
        text = urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=5).read().decode()
        out: dict = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out
    assert ctl(sock, "stop", "a.ini").returncode == 0
    em.wait_gone("a.ini")
    got = samples()
    assert got["imperium_vassal_state"] == {(("state", "stopped"), ("vassal", "a.ini")): 1}
    assert got["imperium_vassal_pid"] == {(("vassal", "a.ini"),): -1}
    assert got["imperium_vassal_loyal"] == {(("vassal", "a.ini"),): 0}
    assert got["imperium_emperor_vassals"] == {(("state", "stopped"),): 1}
    assert ctl(sock, "resume", "a.ini").returncode == 0
    em.wait_vassal("a.ini", loyal=1)
    assert (("state", "stopped"), ("vassal", "a.ini")) not in samples()["imperium_vassal_state"]
    em.stop()


def test_control_socket_path_that_exists(procs, tmp_path) -> None:
    sock = tmp_path / "ctl.sock"
    first = Emperor(procs, tmp_path, "--emperor-control-socket", str(sock))
    # a live socket: the second emperor refuses to start
    other = tmp_path / "other"
    other.mkdir()
    r = subprocess.run([IMPERIUM, "--emperor", str(other), "--emperor-control-socket", str(sock)],
                       capture_output=True, text=True, timeout=20, cwd=tmp_path)
    assert r.returncode == 1 and "a live process listens on it" in r.stderr
    assert ctl(sock, "list").returncode == 0  # the first one still answers
    first.stop()
    # a stale socket (its emperor was killed): replaced
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()
    second = Emperor(procs, tmp_path, "--emperor-control-socket", str(sock))
    assert ctl(sock, "list").returncode == 0
    second.stop()
    # anything else: refused, and left alone
    sock.write_text("precious")
    r = subprocess.run([IMPERIUM, "--emperor", str(other), "--emperor-control-socket", str(sock)],
                       capture_output=True, text=True, timeout=20, cwd=tmp_path)
    assert r.returncode == 1 and "exists and is not a socket" in r.stderr
    assert sock.read_text() == "precious"


def _connect_as_nobody(path: Path) -> int:
    """0 when user nobody can connect to the UNIX socket, else the errno (a forked child:
    the interpreter's own files need not be readable by nobody)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
            code = 0
        except OSError as exc:
            code = exc.errno or 1
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_control_socket_access_is_by_file_permissions(procs, tmp_path) -> None:
    """Mode 0600: another user (nobody) cannot connect; it can once the operator opens the
    socket's mode. The directory is world-readable, so the socket's own mode decides."""
    import errno
    import tempfile

    need_root("connects as user nobody")
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        os.chmod(d, 0o755)
        sock = Path(d) / "ctl.sock"
        em = Emperor(procs, tmp_path, "--emperor-control-socket", str(sock))
        assert _connect_as_nobody(sock) == errno.EACCES
        assert ctl(sock, "list").returncode == 0  # its owner may
        os.chmod(sock, 0o666)
        assert _connect_as_nobody(sock) == 0
        assert ctl(sock, "list").returncode == 0  # the emperor took the probe in its stride
        em.stop()


class NotifySocket:
    """systemd's side: a datagram socket reading what the emperor says."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def has(self, text: str, after: int = 0) -> bool:
        return any(text in m for m in self.poll()[after:])


def test_sd_notify(procs, tmp_path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    em = Emperor(procs, tmp_path, env=env)
    em.ini("a.ini")
    wait_until(lambda: notify.has("READY=1"), 10, message="READY=1")
    assert notify.messages[0] == "STATUS=initializing uWSGI\n"  # uWSGI's emperor says it first too
    ready = next(m for m in notify.messages if "READY=1" in m)
    assert "STATUS=The Emperor is governing" in ready
    wait_until(lambda: sum("WATCHDOG=1" in m for m in notify.poll()) >= 3, 10, message="watchdog pings")
    em.wait_vassal("a.ini", loyal=1)
    wait_until(lambda: notify.has("STATUS=The Emperor is governing 1 vassals (1 ready"), 10,
               message="a STATUS with the vassal counts")
    assert "NOTIFY_SOCKET" not in em.records("a.ini", "start")[0]["env"]
    mark = len(notify.poll())
    em.send_signal(signal.SIGHUP)
    wait_until(lambda: notify.has("RELOADING=1", mark), 10, message="RELOADING=1")
    reload_at = next(i for i, m in enumerate(notify.messages) if i >= mark and "RELOADING=1" in m)
    wait_until(lambda: notify.has("READY=1", reload_at + 1), 10, message="READY=1 after the reload")
    em.wait_records("a.ini", "reload")
    em.stop()
    assert notify.has("STOPPING=1") and notify.has("STATUS=The Emperor is buried.")


def test_log_prefix(procs, tmp_path) -> None:
    em = Emperor(procs, tmp_path, "--emperor-log-prefix")
    em.ini("a.ini", talk="0.05", talk_count=4)
    em.ini("b.ini", talk="0.05", talk_count=4)
    for name in ("a.ini", "b.ini"):
        for n in range(4):
            em.wait_log(f"[{name}] talk {n}\n")
    em.stop()


def test_vassal_logs_rotate_without_losing_a_line(procs, tmp_path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    sock = tmp_path / "ctl.sock"
    total = 3000
    em = Emperor(procs, tmp_path, "--emperor-vassal-logdir", str(logs),
                 "--emperor-control-socket", str(sock))
    em.ini("a.ini", talk="0.002", talk_count=total)
    current = logs / "a.ini.log"
    wait_until(lambda: current.exists() and current.stat().st_size > 0, 10, message="a.ini.log")
    rotated = []
    for i in range(3):
        # what logrotate does: rename, then ask for a reopen (ctl, then SIGUSR2)
        target = logs / f"a.ini.log.{i}"
        current.rename(target)
        rotated.append(target)
        if i % 2 == 0:
            assert ctl(sock, "reopen-logs").returncode == 0
        else:
            em.send_signal(signal.SIGUSR2)
        wait_until(lambda: current.exists() and current.stat().st_size > 0, 10,
                   message="lines in the new a.ini.log")
    wait_until(lambda: f"talk {total - 1}\n" in current.read_text(), 30, message="the last line")
    lines = [x for f in [*rotated, current] for x in f.read_text().splitlines()]
    assert lines == [f"talk {n}" for n in range(total)]
    assert all(f.stat().st_size > 0 for f in rotated)
    assert "talk" not in em.log()
    em.stop()


def test_vassal_logdir_never_writes_through_a_planted_link_or_fifo(procs, tmp_path) -> None:
    """The emperor writes a vassal's output as root: NAME.log planted as a link to another
    file (a vassal's lines appended to /etc/passwd) or as a FIFO (an open that would block
    the emperor) is refused with a line; the other vassals' logs go on."""
    logs = tmp_path / "logs"
    logs.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (logs / "a.ini.log").symlink_to(victim)
    os.mkfifo(logs / "f.ini.log")
    em = Emperor(procs, tmp_path, "--emperor-vassal-logdir", str(logs))
    for name in ("a.ini", "f.ini", "ok.ini"):
        em.ini(name, talk="0.01", talk_count=50)
    em.wait_log(f"[emperor] cannot open the log file of vassal a.ini: {logs}/a.ini.log: "
                "Too many levels of symbolic links")
    em.wait_log(f"[emperor] cannot open the log file of vassal f.ini: {logs}/f.ini.log: "
                "No such device or address")
    wait_until(lambda: "talk 49\n" in (logs / "ok.ini.log").read_text(), 20,
               message="ok.ini's lines in its log")
    assert victim.read_text() == "untouched\n"
    assert em.log().count("cannot open the log file of vassal a.ini") == 1  # not once a line
    assert em.stop() == 0


def test_a_fifo_in_the_log_dir_never_holds_the_emperor(procs, tmp_path) -> None:
    """a.ini.log is a FIFO nobody reads: its lines are lost (said once, not per line), the
    emperor goes on spawning and answering; b.ini's plain file gets every line."""
    logs = tmp_path / "logs"
    logs.mkdir()
    os.mkfifo(logs / "a.ini.log")
    em = Emperor(procs, tmp_path, "--emperor-vassal-logdir", str(logs))
    em.ini("a.ini", talk="0.05", talk_count=20)
    em.wait_log("cannot open the log file of vassal a.ini")
    em.ini("b.ini", talk="0.05", talk_count=5)
    em.wait_vassal("b.ini", loyal=1)
    wait_until(lambda: (logs / "b.ini.log").exists() and (logs / "b.ini.log").read_text().count("talk") == 5,
               10, message="b.ini's lines")
    assert em.vassal("a.ini") is not None
    assert em.log().count("cannot open the log file of vassal a.ini") == 1
    em.stop()


def test_emperor_logto_reopens_on_sigusr2(procs, tmp_path) -> None:
    logfile = tmp_path / "emperor.log"
    vdir = tmp_path / "vassals"
    vdir.mkdir()
    p = procs.start([IMPERIUM, "--emperor", str(vdir), "--binary-path", str(fake_launcher(tmp_path)),
                     "--logto", str(logfile), "--emperor-log-prefix"])
    wait_until(lambda: logfile.exists() and "starting uWSGI Emperor" in logfile.read_text(), 15,
               message="the emperor logging to its file")
    (vdir / "a.ini").write_text("[uwsgi]\nfake-talk = 0.05\nfake-talk-count = 2\n")
    wait_until(lambda: "[a.ini] talk 1" in logfile.read_text(), 10, message="lines in the log file")
    logfile.rename(tmp_path / "emperor.log.1")
    os.kill(p.pid, signal.SIGUSR2)
    wait_until(lambda: logfile.exists() and "log files reopened" in logfile.read_text(), 10,
               message="a new log file")
    (vdir / "b.ini").write_text("[uwsgi]\nfake-talk = 0.05\nfake-talk-count = 1\n")
    wait_until(lambda: "[b.ini] talk 0" in logfile.read_text(), 10, message="new lines go to it")
    assert "[a.ini] talk 1" in (tmp_path / "emperor.log.1").read_text()
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=15) == 0
