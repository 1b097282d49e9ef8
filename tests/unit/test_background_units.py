"""Pure parts of signals, the spooler and mules: cron matching, targets and routing over real
socketpairs, the spool file format (fuzzed), option parsing."""

from __future__ import annotations

import os
import re
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vassal.api import role
from vassal.api.mules import MuleError
from vassal.api.mules import parse as parse_mules
from vassal.api.signals import SignalError, SignalHub
from vassal.api.spooler import (
    Modifier1,
    SpoolError,
    Spoolers,
    SpoolerSettings,
    pack_job,
    unpack_job,
)
from vassal.services.signals import SignalOptionError, Touch, cron_matches, parse_options


class FakeConfig:
    def __init__(self, **opts: list[str]) -> None:
        self.opts = {k.replace("_", "-"): v for k, v in opts.items()}

    def getlist(self, name: str) -> list[str]:
        return self.opts.get(name, [])

    def get(self, name: str, default=None):
        v = self.opts.get(name)
        return v[-1] if v else default

    def items(self):
        return [(k, v) for k, vs in self.opts.items() for v in vs]


def tm(year=2026, month=3, day=2, hour=10, minute=30) -> time.struct_time:
    return time.localtime(time.mktime((year, month, day, hour, minute, 0, 0, 0, -1)))


def test_cron_fields_like_uwsgi() -> None:
    t = tm()  # Monday 2 March 2026, 10:30
    assert cron_matches(t, -1, -1, -1, -1, -1)
    assert cron_matches(t, 30, 10, -1, -1, -1)
    assert not cron_matches(t, 31, 10, -1, -1, -1)
    assert cron_matches(t, -15, -5, -1, -3, -1)  # */15 min, */5 hours, */3 months (March)
    assert not cron_matches(t, -7, -1, -1, -1, -1)
    assert cron_matches(t, 30, 10, -1, -1, 1)  # weekday: Monday is 1
    assert not cron_matches(t, 30, 10, -1, -1, 0)
    assert cron_matches(tm(day=1), 30, 10, -1, -1, 7)  # 1 March 2026 is a Sunday: 7 is Sunday too
    # day and weekday given: ORed as in crontab
    assert cron_matches(t, 30, 10, 2, -1, 5)
    assert cron_matches(t, 30, 10, 9, -1, 1)
    assert not cron_matches(t, 30, 10, 9, -1, 5)


def test_signal_options() -> None:
    timers, rbtimers, touches = parse_options(FakeConfig(timer=["5 2"], rbtimer=["6   10"],
                                                         touch_signal=["/tmp/x 7"]))
    assert (timers, rbtimers) == ([(5, 2)], [(6, 10)])
    assert [(t.path, t.sig) for t in touches] == [("/tmp/x", 7)]
    with pytest.raises(SignalOptionError, match="timer: signal number 256 is out of range"):
        parse_options(FakeConfig(timer=["256 1"]))


def test_touch_like_uwsgi_check_touches(tmp_path) -> None:
    f = tmp_path / "f"
    t = Touch(str(f), 1)
    assert not t.touched()  # missing at start: wait for it
    f.write_text("x")
    assert t.touched()  # created
    assert not t.touched()
    os.utime(f, (time.time() + 10,) * 2)
    assert t.touched()
    f.unlink()
    assert t.touched()  # removed


@pytest.fixture
def hub():
    h = SignalHub(nworkers=2, nmules=2, farms=["pool"], spooler=True)
    yield h
    role.become(role.Role.MASTER)


def _read(sock: socket.socket) -> bytes:
    try:
        return sock.recv(100)
    except BlockingIOError:
        return b""


@pytest.mark.parametrize("target,readers", [
    ("", ["shared"]), ("worker", ["shared"]), ("workers", ["w1", "w2"]), ("worker2", ["w2"]),
    ("mule", ["mules"]), ("mules", ["m1", "m2"]), ("mule1", ["m1"]), ("farm_pool", ["pool"]),
    ("farm1", ["pool"]), ("spooler", ["spooler"]),
])
def test_route_writes_to_the_target_pipes(hub, target, readers) -> None:
    hub.register_signal(9, target, print)
    hub.route(9)
    ends = {"shared": hub.workers_pipe[1], "w1": hub.worker_pipes[1][1], "w2": hub.worker_pipes[2][1],
            "mules": hub.mules_pipe[1], "m1": hub.mule_pipes[0][1], "m2": hub.mule_pipes[1][1],
            "pool": hub.farm_pipes["pool"][1], "spooler": hub.spooler_pipe[1]}
    got = {name for name, sock in ends.items() if _read(sock) == b"\x09"}
    assert got == set(readers)


def test_registration_rules(hub) -> None:
    hub.register_signal(1, "workers", print)
    with pytest.raises(SignalError, match="already registered in the master"):
        hub.register_signal(1, "", print)
    assert hub.signal_registered(1) is True and hub.signal_registered(2) is None
    # a worker starts with the master's table, then registers its own
    role.become(role.Role.WORKER, worker_id=2)
    hub.reset_worker_area(2)
    assert hub.signal_registered(1) is True
    hub.register_signal(3, "worker2", print)
    assert hub.target_of(3) == "worker2"
    role.become(role.Role.MULE, mule_id=1)
    with pytest.raises(SignalError, match="only the master and the workers can register"):
        hub.register_signal(4, "", print)
    for target in ("worker3", "mule3", "farm2", "farm_nope", "subscribed"):
        with pytest.raises(SignalError, match=f"invalid target '{target}'"):
            hub.check_target("register_signal", target)
    with pytest.raises(SignalError, match="longer than 63 characters"):
        hub.register_signal(5, "x" * 64, print)


@pytest.mark.parametrize("fields,message", [
    ((60, -1, -1, -1, -1), "minute 60 never matches (0-59"), ((-1, 24, -1, -1, -1), "hour 24 never"),
    ((-1, -1, 0, -1, -1), "day 0 never matches (1-31"), ((-1, -1, 32, -1, -1), "day 32 never"),
    ((-1, -1, -1, 13, -1), "month 13 never matches (1-12"), ((-1, -1, -1, -1, 8), "week 8 never"),
])
def test_cron_fields_that_never_match_are_refused(hub, fields, message) -> None:
    """uWSGI takes them and the signal never comes; weekday 7 (Sunday) and -N are valid."""
    with pytest.raises(SignalError, match=re.escape(f"uwsgi.add_cron: {message}")):
        hub.add_cron(9, *fields)


def test_handle_runs_the_handler_and_counts(hub) -> None:
    seen = []
    hub.register_signal(7, "", seen.append)
    counted = []
    hub.on_signal = counted.append
    assert hub.handle(7) == 0 and seen == [7] and counted == [7]
    assert hub.handle(8) == -1  # no handler


def test_spool_packet_round_trip() -> None:
    pairs = [(b"a", b"1"), (b"key", b"\x00\xff" * 10)]
    data = pack_job(pairs, b"BODY")
    assert data[0] == Modifier1.SPOOLER and data[3] == 0
    assert int.from_bytes(data[1:3], "little") == len(data) - 4 - 4
    assert unpack_job(data) == (dict(pairs), b"BODY")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_unpack_job_fuzz_never_crashes(data: bytes) -> None:
    try:
        env, body = unpack_job(data)
    except ValueError:
        return
    assert isinstance(env, dict) and isinstance(body, bytes)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=20), st.binary(max_size=50), max_size=8),
       st.binary(max_size=100))
def test_pack_unpack_any_vars(env: dict, body: bytes) -> None:
    assert unpack_job(pack_job(list(env.items()), body)) == (env, body)


def test_spool_writes_uwsgi_files(tmp_path) -> None:
    settings_ = SpoolerSettings(dirs=[str(tmp_path)])
    sp = Spoolers(settings_, "host")
    path = sp.spool({b"a": b"1", "b": "x", b"body": b"payload"}, priority=b"3").decode()
    assert os.path.dirname(path) == str(tmp_path / "3")
    name = os.path.basename(path)
    assert name.startswith(f"uwsgi_spoolfile_on_host_{os.getpid()}_1_")
    assert len(name.split("_")) == 9
    env, body = unpack_job(open(path, "rb").read())
    assert env == {b"a": b"1", b"b": b"x", b"priority": b"3"} and body == b"payload"
    assert sp.spooler_get_task(path) == {"spooler_task_name": path.encode(), **env, "body": b"payload"}
    with pytest.raises(SpoolError, match="priority must be a number"):
        sp.spool({b"priority": b"../x"})


def test_mule_and_farm_options() -> None:
    mules, farms = parse_mules(FakeConfig(mule=["true", "prog.py"], mules=["2"], farm=["a:1,3", "b:4"]))
    assert [(m.id, m.program) for m in mules] == [(1, ""), (2, "prog.py"), (3, ""), (4, "")]
    assert [(f.name, f.mules) for f in farms] == [("a", [1, 3]), ("b", [4])]
    with pytest.raises(MuleError, match="invalid mule id '5'"):
        parse_mules(FakeConfig(mules=["4"], farm=["a:5"]))


def test_child_phases_only_move_as_the_table_says() -> None:
    from vassal.services.children import MOVES, Child, Phase

    c = Child(0)
    for to in (Phase.RUNNING, Phase.CURSED, Phase.RUNNING, Phase.STOPPING, Phase.GONE):
        c.move(to)
    with pytest.raises(RuntimeError, match="gone -> running is not a move"):
        c.move(Phase.RUNNING)
    assert all(Phase.NEW not in targets for targets in MOVES.values())  # nothing goes back to new
