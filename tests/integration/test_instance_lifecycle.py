"""The master at work: graceful reload without refused connections, respawn, recycling,
harakiri, shutdown signals."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time

from tests.conftest import free_port, need_root, pid_alive, read_json, wait_until
from tests.fixtures.instance_helpers import APPS, get, start, worker_pids

HELLO = str(APPS / "hello.py")


def test_graceful_reload_refuses_no_connection(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "2", "--stats", f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="workers up")
    before = set(worker_pids(sport))
    errors: list[str] = []
    done = threading.Event()
    count = [0]

    def hammer() -> None:
        while not done.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                if resp.status != 200 or resp.read() != b"Hello World":
                    errors.append(f"status {resp.status}")
                count[0] += 1
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
            finally:
                conn.close()

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: count[0] > 20, 10, message="requests flowing")
        for _ in range(2):
            os.kill(p.pid, signal.SIGHUP)
            wait_until(lambda old=before: (ws := set(worker_pids(sport))) and not (ws & old) and all(ws), 20,
                       message="new workers after SIGHUP")
            before = set(worker_pids(sport))
        n = count[0]
        wait_until(lambda: count[0] > n + 20, 10, message="requests after reload")
    finally:
        done.set()
        for t in threads:
            t.join()
    assert p.poll() is None
    assert "binary reloading uWSGI" in procs.output(p)
    assert errors == [], errors[:5]


def test_killed_worker_is_respawned(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "2", "--stats", f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="workers up")
    victim = worker_pids(sport)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: (w := read_json(sport)["workers"][0])["pid"] not in (0, victim) and w["respawn_count"] == 2,
               10, message="worker 1 respawned")
    for _ in range(4):
        assert get(port)[0] == 200
    out = procs.output(p)
    assert f"DAMN ! worker 1 (pid: {victim}) died, killed by signal 9 :( trying respawn ..." in out
    assert "Respawned uWSGI worker 1" in out


def test_max_requests_recycles_the_worker(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "1", "--max-requests", "3",
              "--stats", f"127.0.0.1:{sport}", port=port)
    first = int(get(port, "/pid")[1])
    pids = {first}
    for _ in range(6):
        pids.add(int(get(port, "/pid")[1]))
    assert len(pids) >= 2
    assert not pid_alive(first)
    wait_until(lambda: "The work of process" in procs.output(p), 5, message="Seeya line")


def test_harakiri_kills_a_stuck_request(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "1", "--harakiri", "1",
              "--stats", f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="worker up")
    victim = worker_pids(sport)[0]
    t0 = time.monotonic()
    try:
        status, _ = get(port, "/sleep?30", timeout=15)
    except OSError:
        status = None
    assert status != 200 and time.monotonic() - t0 < 10
    wait_until(lambda: read_json(sport)["workers"][0]["pid"] not in (0, victim), 10, message="respawn")
    assert read_json(sport)["workers"][0]["harakiri_count"] == 1
    assert "HARAKIRI ON WORKER 1" in procs.output(p)
    assert get(port)[0] == 200


def test_sigint_shuts_down_with_exit_0(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "2", "--stats", f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="workers up")
    workers = worker_pids(sport)
    os.kill(p.pid, signal.SIGINT)
    assert p.wait(timeout=10) == 0
    assert not any(pid_alive(w) for w in workers)
    assert "goodbye to uWSGI." in procs.output(p)


def test_sigterm_is_a_brutal_reload_unless_die_on_term(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "--stats", f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="worker up")
    old = worker_pids(sport)[0]
    os.kill(p.pid, signal.SIGTERM)
    wait_until(lambda: worker_pids(sport)[0] not in (0, old), 15, message="reloaded worker")
    assert p.poll() is None and get(port)[0] == 200
    port2 = free_port()
    q = start(procs, "--wsgi-file", HELLO, "--master", "--die-on-term", port=port2)
    # the port opens before the master sets its signal handlers: wait until it forked a worker
    wait_until(lambda: "spawned uWSGI worker 1" in procs.output(q), 10, message="master up")
    os.kill(q.pid, signal.SIGTERM)
    assert q.wait(timeout=10) == 0


def test_auto_procname_titles(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "2", "--auto-procname", "--stats",
              f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="workers up")

    def title(pid: int) -> str:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()

    wait_until(lambda: title(p.pid) == "uWSGI master", 5, message="master title")
    # a worker just forked still carries the master's title for a moment
    wait_until(lambda: sorted(title(w) for w in worker_pids(sport)) == ["uWSGI worker 1", "uWSGI worker 2"],
               5, message="worker titles")


def test_uwsgi_reload_from_the_app(procs, tmp_path) -> None:
    port, sport = free_port(), free_port()
    (tmp_path / "r.py").write_text(
        "import uwsgi\n\ndef application(e, sr):\n    if e['PATH_INFO'] == '/reload':\n        uwsgi.reload()\n"
        "    sr('200 OK', [])\n    return [b'ok']\n")
    p = start(procs, "--wsgi-file", str(tmp_path / "r.py"), "--master", "--stats", f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="worker up")
    old = worker_pids(sport)[0]
    assert get(port, "/reload")[0] == 200
    wait_until(lambda: worker_pids(sport)[0] not in (0, old), 15, message="reloaded")
    assert "binary reloading uWSGI" in procs.output(p)


def test_graceful_reload_lets_the_running_request_finish(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "--stats", f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="worker up")
    result: list = []
    t = threading.Thread(target=lambda: result.append(get(port, "/sleep?1")))
    t.start()
    wait_until(lambda: read_json(sport)["workers"][0]["status"] == "busy", 5, message="busy")
    os.kill(p.pid, signal.SIGHUP)
    t.join(15)
    assert result == [(200, b"Hello World")]


def test_uid_gid_drop(procs) -> None:
    import pwd

    need_root("--uid needs root to change uid")
    nobody = pwd.getpwnam("nobody")
    port, sport = free_port(), free_port()
    start(procs, "--wsgi-file", HELLO, "--master", "--uid", "nobody", "--gid", str(nobody.pw_gid),
          "--stats", f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="worker up")
    doc = read_json(sport)
    assert (doc["uid"], doc["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    assert get(port)[0] == 200


def test_idle_cheap_mode_wakes_on_a_connection(procs) -> None:
    port, sport = free_port(), free_port()
    p = start(procs, "--wsgi-file", HELLO, "--master", "-p", "2", "--idle", "1", "--stats", f"127.0.0.1:{sport}",
              port=port)
    wait_until(lambda: [w["status"] for w in read_json(sport)["workers"]] == ["cheap", "cheap"], 10,
               message="workers cheaped after 1 idle second")
    assert worker_pids(sport) == [0, 0]
    assert get(port) == (200, b"Hello World")  # the connection waits in the backlog, then is served
    assert all(worker_pids(sport))
    assert "workers have been inactive for more than 1 seconds" in procs.output(p)


def test_touch_reload(procs, tmp_path) -> None:
    port, sport = free_port(), free_port()
    trigger = tmp_path / "reload.trigger"
    trigger.write_text("")
    p = start(procs, "--wsgi-file", HELLO, "--master", "--touch-reload", str(trigger), "--stats",
              f"127.0.0.1:{sport}", port=port)
    wait_until(lambda: all(worker_pids(sport)), 10, message="worker up")
    old = worker_pids(sport)[0]
    os.utime(trigger, (time.time() + 5, time.time() + 5))
    wait_until(lambda: worker_pids(sport)[0] not in (0, old), 15, message="reload after touch")
    assert "has been touched... grace them all" in procs.output(p)
