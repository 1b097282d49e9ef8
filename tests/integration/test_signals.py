"""uWSGI signals in a real instance: bad calls and options, signal_wait, rb timers,
touch-signal, file monitors, lazy apps, the counters in the stats."""

from __future__ import annotations

import os
import time
from urllib.parse import quote

import pytest

from tests.conftest import IMPERIUM, free_port, read_json, wait_until
from tests.fixtures.background import APP, Backend


def ev(b: Backend, expr: str) -> tuple[int, str]:
    return b.get("/eval?" + quote(expr))


@pytest.mark.parametrize("expr,message", [
    ("uwsgi.signal(300)", "uwsgi.signal: signal number 300 is out of range (0-255)"),
    ("uwsgi.signal(-1)", "uwsgi.signal: signal number -1 is out of range (0-255)"),
    ("uwsgi.register_signal(256, '', print)", "uwsgi.register_signal: signal number 256 is out of range"),
    ("uwsgi.register_signal(30, 'worker9', print)", "invalid target 'worker9' (this instance has 2 workers)"),
    ("uwsgi.register_signal(30, 'mules', print)", "target 'mules' but this instance has no mules"),
    ("uwsgi.register_signal(30, 'spooler', print)", "target 'spooler' but this instance has no spooler"),
    ("uwsgi.register_signal(30, 'nowhere', print)", "invalid target 'nowhere'"),
    ("uwsgi.register_signal(30, '', 5)", "the handler is not callable"),
    ("uwsgi.add_timer(30, 0)", "uwsgi.add_timer: seconds must be at least 1"),
    ("uwsgi.add_rb_timer(30, 1, -2)", "iterations must be an integer >= 0"),
    ("uwsgi.add_cron(30, 'x', -1, -1, -1, -1)", "uwsgi.add_cron: minute must be an integer"),
    ("uwsgi.add_file_monitor(30, '/no/such/file')", "/no/such/file: no such file or directory"),
    ("uwsgi.signal_wait(999)", "uwsgi.signal_wait: signal number 999 is out of range"),
])
def test_bad_calls_raise_errors_that_name_the_call(procs, tmp_path, expr, message) -> None:
    b = Backend(procs, "imperium", tmp_path, [], "")
    status, body = ev(b, expr)
    assert status == 500 and message in body, body
    assert body.startswith(("SignalError", "ValueError"))
    assert b.proc.poll() is None


@pytest.mark.parametrize("option,message", [
    ("timer = 20", "timer = '20': expected 'SIGNAL SECONDS'"),
    ("timer = 300 1", "timer: signal number 300 is out of range (0-255)"),
    ("rbtimer = 5 0", "rbtimer = '5 0': seconds must be at least 1"),
    ("timer = x 2", "timer: 'x' is not a signal number"),
    ("touch-signal = /tmp/file", "touch-signal = '/tmp/file': expected 'FILE SIGNAL'"),
])
def test_bad_signal_options_stop_the_start_with_one_line(procs, tmp_path, option, message) -> None:
    port = free_port()
    p = procs.start([IMPERIUM, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(APP),
                     "--" + option.split(" = ")[0], option.split(" = ")[1]],
                    env={"EVENTS": str(tmp_path / "ev"), "FEATURES": ""})
    assert p.wait(timeout=20) == 1
    assert f"imperium: {message}" in procs.output(p)


def test_option_timer_and_rbtimer_iterations(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, ["timer = 10 1"], "workers", processes=1)
    b.wait_events("signal", 2)
    write = "lambda s: open(os.environ['EVENTS'], 'a').write(f'rb w{uwsgi.worker_id()} {s}\\n')"
    assert ev(b, f"uwsgi.register_signal(13, 'worker', {write})") == (200, "None")
    assert ev(b, "uwsgi.add_rb_timer(13, 1, 2)") == (200, "None")
    b.wait_events("rb", 2)
    rounds = len(b.events("signal"))
    b.wait_events("signal", rounds + 3)  # three more seconds: the rb timer stayed at two
    assert [e[1:] for e in b.events("rb")] == [["w1", "13"], ["w1", "13"]]


def test_signal_wait_returns_on_the_signal(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, ["threads = 2"], "", processes=1)
    import threading

    got: dict = {}
    t = threading.Thread(target=lambda: got.update(r=ev(b, "(uwsgi.signal_wait(40), uwsgi.signal_received())")))
    t.start()
    # the other core raises the signal (unregistered: it goes to a worker, where signal_wait sees it)
    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        ev(b, "uwsgi.signal(40)")
        t.join(0.2)
    assert not t.is_alive()
    assert got["r"] == (200, "(b'', 40)")


def test_touch_signal_and_file_monitor(procs, tmp_path) -> None:
    touched = tmp_path / "touch-me"
    touched.write_text("x")
    watched = tmp_path / "watched"
    watched.mkdir()
    b = Backend(procs, "imperium", tmp_path, [f"touch-signal = {touched} 10"], "workers")
    t = time.time() + 5
    os.utime(touched, (t, t))
    wait_until(lambda: len(b.events("signal")) >= 2, 10, message="touch-signal to both workers")
    assert "[uwsgi-touch-signal] raising 10" in b.output()
    assert ev(b, f"uwsgi.add_file_monitor(10, {str(watched)!r})")[0] == 200
    deadline = time.monotonic() + 10
    while len(b.events("signal")) < 4 and time.monotonic() < deadline:
        (watched / f"f{time.monotonic()}").write_text("new")  # the monitor is set up asynchronously
        time.sleep(0.2)
    assert len(b.events("signal")) >= 4


def test_lazy_apps_register_in_workers_and_the_target_holds(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, ["lazy-apps = true"], "workers,timer")
    # every worker registered signal 20 (target 'worker') and asked for the same timer: one timer
    wait_until(lambda: len(b.events("signal")) >= 3, 15, message="timer in lazy mode")
    b.get("/signal/10")
    wait_until(lambda: {e[1] for e in b.events("signal") if e[2] == "10"} == {"w1", "w2"}, 10,
               message="signal 10 to every worker (target 'workers' registered in the workers)")


def test_signals_counted_in_the_stats(procs, tmp_path) -> None:
    stats = free_port()
    b = Backend(procs, "imperium", tmp_path, [f"stats = 127.0.0.1:{stats}"], "workers")
    b.get("/signal/10")
    b.wait_events("signal", 2)
    wait_until(lambda: [w["signals"] for w in read_json(stats)["workers"]] == [1, 1], 10,
               message="signals counted per worker")
    doc = read_json(stats)
    assert doc["signal_queue"] == 0 and all(w["signal_queue"] == 0 for w in doc["workers"])


def test_a_handler_that_raises_is_logged_and_the_worker_goes_on(procs, tmp_path) -> None:
    b = Backend(procs, "imperium", tmp_path, [], "", processes=1)
    assert ev(b, "uwsgi.register_signal(50, 'worker', lambda s: 1 / 0)")[0] == 200
    b.get("/signal/50")
    wait_until(lambda: "error managing signal 50 on worker 1" in b.output(), 10, message="error logged")
    assert "ZeroDivisionError" in b.output()
    assert b.get("/info")[0] == 200
