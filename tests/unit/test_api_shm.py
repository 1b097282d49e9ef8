"""The robust lock and the subsystems built on it: user locks, sharedarea."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from vassal.api import locks, sharedarea, shm
from vassal.api.context import ApiContext, ApiError
from vassal.config.model import Config, Entry
from vassal.config.origin import Origin


def config(*pairs: tuple[str, object]) -> Config:
    entries = []
    for name, value in pairs:
        e = Entry(key=name, name=name, value=str(value), origin=Origin("test.ini", 1))
        e.typed = value
        entries.append(e)
    return Config(entries)


def test_robust_mutex_survives_a_killed_holder() -> None:
    mem = shm.anonymous(shm.MUTEX_SIZE)
    lk = shm.RobustMutex(mem, 0, "t")
    pid = os.fork()
    if pid == 0:
        lk.acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert lk.holder() == pid  # the dead holder's pid is still recorded
    assert lk.acquire() is True  # the next taker learns its holder died
    assert lk.holder() == os.getpid()
    assert lk.release() and not lk.locked()


def test_errorcheck_and_recursive_kinds() -> None:
    mem = shm.anonymous(2 * shm.MUTEX_SIZE)
    plain = shm.RobustMutex(mem, 0, "plain")
    rec = shm.RobustMutex(mem, shm.MUTEX_SIZE, "rec", recursive=True)
    plain.acquire()
    with pytest.raises(RuntimeError, match="already held by this thread"):
        plain.acquire()
    assert plain.locked()  # held by this very thread counts as locked
    plain.release()
    assert not plain.release()  # not held: nothing happens
    rec.acquire()
    rec.acquire()
    rec.release()
    rec.release()
    assert not rec.locked()


def test_threads_of_one_process_exclude_each_other() -> None:
    mem = shm.anonymous(shm.MUTEX_SIZE)
    lk = shm.RobustMutex(mem, 0, "t")
    lk.acquire()
    got = threading.Event()

    def other() -> None:
        lk.acquire()
        got.set()
        lk.release()

    t = threading.Thread(target=other)
    t.start()
    assert not got.wait(0.2)
    lk.release()
    assert got.wait(10)
    t.join()


def test_user_locks_numbering_and_errors() -> None:
    ctx = ApiContext(config=config(("locks", 2)), version="2.0", numproc=1, masterpid=os.getpid(), board=None)
    locks.setup(ctx)
    f = locks.exports(ctx)
    assert f["is_locked"](2) is False
    f["lock"](2)
    assert f["is_locked"](2) is True
    assert f["unlock"](2) is None
    with pytest.raises(ValueError, match="Invalid lock number"):
        f["lock"](3)
    assert [n for n, _pid in locks.stats(ctx)["locks"]][:4] == ["user 0", "user 1", "user 2", "signal"]
    with pytest.raises(ApiError, match="locks -1"):
        locks.setup(ApiContext(config=config(("locks", -1)), version="", numproc=1, masterpid=0, board=None))


def test_sharedarea_specs() -> None:
    ctx = ApiContext(config=config(("sharedarea", "2"), ("sharedarea", "size=10")), version="", numproc=1,
                     masterpid=0, board=None)
    sharedarea.setup(ctx)
    f = sharedarea.exports(ctx)
    assert len(f["sharedarea_read"](0, 0)) == 2 * shm.mmap.PAGESIZE
    assert len(f["sharedarea_read"](1, 0)) == shm.mmap.PAGESIZE  # whole pages
    f["sharedarea_write64"](1, 8, -2)
    f["sharedarea_inc64"](1, 8, 5)
    assert f["sharedarea_read64"](1, 8) == 3
    with pytest.raises(ValueError):
        f["sharedarea_inc64"](1, shm.mmap.PAGESIZE - 4)  # uWSGI would write past the end
    for bad, fault in (("0", "positive"), ("x", "number"), ("fd=3", "not supported"), ("size=", "number"),
                       ("pages=1,what=2", "unknown key")):
        with pytest.raises(ApiError, match=fault):
            sharedarea.setup(ApiContext(config=config(("sharedarea", bad)), version="", numproc=1, masterpid=0,
                                        board=None))
