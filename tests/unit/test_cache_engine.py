"""The cache engine and the cache2 parser, in one process (and a few forks).

The engine is checked against a model (a dict with uWSGI's rules: N-1 items, set does not
replace, update does, size limits) under random operation sequences on a tiny hash table
(long chains), with rebuilds in between; the parser is fuzzed: any text gives a spec or one
ApiError line naming cache2, never another exception.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import need_service
from vassal.api import cache as C
from vassal.api.caches import parse_cache2
from vassal.api.context import ApiError

UPDATE = int(C.CacheFlag.UPDATE)
MATH = int(C.CacheFlag.UPDATE | C.CacheFlag.MATH | C.CacheFlag.FIXEXPIRE)


@pytest.fixture(autouse=True, params=["accel", "python"])
def accel(request, monkeypatch):
    """Every test runs with the C fast paths (when compiled) and with Python alone."""
    if request.param == "python":
        monkeypatch.setattr(C, "_accel", None)
    elif C._accel is None:
        need_service("cache accelerator", False,
                     "the C accelerator (vassal/api/_cachefast.c) was not compiled by the install")
    return request.param


def new(**kw) -> C.Cache:
    spec = C.CacheSpec(name=kw.pop("name", "t"), max_items=kw.pop("max_items", 8), **kw)
    return C.Cache(spec, lambda line: None)


def test_set_update_delete_and_capacity() -> None:
    c = new(max_items=4, blocksize=16)
    assert c.set(b"a", b"1") and c.get(b"a") == b"1"
    assert not c.set(b"a", b"2")  # set never replaces a live key
    assert c.set(b"a", b"2", 0, UPDATE) and c.get(b"a") == b"2"
    assert c.set(b"b", b"x") and c.set(b"c", b"y")
    assert not c.set(b"d", b"z")  # items=4 holds 3
    assert c.stats()["full"] == 1
    assert not c.set(b"e" * 3000, b"v") and not c.set(b"k", b"v" * 17) and not c.set(b"", b"v")
    assert c.delete(b"b") and not c.delete(b"b") and c.set(b"d", b"z")
    assert sorted(c.keys()) == [b"a", b"c", b"d"]
    c.clear()
    assert c.keys() == [] and c.stats()["items"] == 0


def test_math_wraps_and_truncates_like_c() -> None:
    c = new()

    def op(flag: C.CacheFlag, n: int) -> None:
        assert c.set(b"n", n.to_bytes(8, "little", signed=True), 0, MATH | int(flag))

    op(C.CacheFlag.INC, 2 ** 63 - 1)
    op(C.CacheFlag.INC, 1)
    assert c.num(b"n") == -(2 ** 63)
    op(C.CacheFlag.DEC, 1)
    assert c.num(b"n") == 2 ** 63 - 1
    c.delete(b"n")
    op(C.CacheFlag.DEC, 7)
    op(C.CacheFlag.DIV, 2)
    assert c.num(b"n") == -3  # C truncates toward zero
    op(C.CacheFlag.DIV, 0)
    assert c.num(b"n") == 0


def test_expiry_is_swept_and_lazy_expire_drops_on_read() -> None:
    c = new()
    c.set(b"old", b"v", 1)
    c.set(b"keep", b"v", 1000)
    now = int(time.time())
    assert c.get(b"old") == b"v"  # expired items answer until swept (uWSGI's behaviour)
    assert c.sweep(now + 5) == 1
    assert c.get(b"old") is None and c.get(b"keep") == b"v"
    lazy = new(lazy_expire=True)
    lazy.set(b"k", b"v", 1, C.CacheFlag.ABSEXPIRE)  # expired since 1970
    assert lazy.get(b"k") is None and lazy.stats()["items"] == 0


def test_purge_lru_drops_the_least_recently_used() -> None:
    c = new(max_items=4, purge_lru=True)
    for k in (b"a", b"b", b"c"):
        assert c.set(k, b"v")
    assert c.get(b"a") == b"v"  # a is now the most recent
    assert c.set(b"d", b"v")
    assert sorted(c.keys()) == [b"a", b"c", b"d"]


def test_bitmap_mode_spans_blocks_and_rebuild_keeps_them() -> None:
    c = new(max_items=6, blocksize=8, blocks=20, bitmap=True)
    assert c.set(b"big", b"x" * 30)  # four blocks
    assert c.set(b"small", b"y")
    assert c.set(b"big", b"z" * 60, 0, UPDATE)  # moves to eight free blocks
    assert not c.set(b"huge", b"h" * 161)
    before = {k: c.get(k) for k in c.keys()}
    assert c.rebuild() == 2
    assert {k: c.get(k) for k in c.keys()} == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["set", "update", "del", "get", "rebuild", "clear"]),
                          st.sampled_from([b"a", b"b", b"c", b"dd", b"e\xff", b"f", b"g", b"h"]),
                          st.binary(min_size=0, max_size=20)), max_size=60))
def test_engine_behaves_as_the_model(ops) -> None:
    c = new(max_items=6, blocksize=16, hashsize=3)
    model: dict[bytes, bytes] = {}
    for op, key, value in ops:
        ok_size = 0 < len(value) <= 16
        if op == "set":
            want = ok_size and key not in model and len(model) < 5
            assert c.set(key, value) == want
            if want:
                model[key] = value
        elif op == "update":
            want = ok_size and (key in model or len(model) < 5)
            assert c.update(key, value) == want
            if want:
                model[key] = value
        elif op == "del":
            assert c.delete(key) == (key in model)
            model.pop(key, None)
        elif op == "rebuild":
            assert c.rebuild() == len(model)
        elif op == "clear":
            c.clear()
            model.clear()
        assert c.get(key) == model.get(key)
    assert sorted(c.keys()) == sorted(model)
    assert c.stats()["items"] == len(model)


def test_store_round_trip_and_damaged_items_are_dropped(tmp_path) -> None:
    path = str(tmp_path / "s")
    c = new(store=path, max_items=5, blocksize=16)
    c.set(b"k1", b"v1")
    c.set(b"k2", b"v2")
    c.sync()
    # damage item 2's key: its hash no longer matches, the next load drops it
    i = next(i for i in range(1, 5) if c._key(i, 2) == b"k2")
    c.store[i * c.isz + C.ITEM_HEADER] = ord("X")
    c.sync()
    again = new(store=path, max_items=5, blocksize=16)
    assert again.get(b"k1") == b"v1" and again.get(b"k2") is None and again.stats()["items"] == 1
    with pytest.raises(C.StoreError, match="invalid cache store file"):
        new(store=path, max_items=6, blocksize=16)


def test_a_process_killed_holding_the_lock_is_repaired_by_the_next() -> None:
    c = new(max_items=50, blocksize=16)
    c.set(b"stay", b"here")
    pid = os.fork()
    if pid == 0:
        c._enter()  # and die holding it, half way through a change
        c.m[C.M_ITEMS] = 999
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    # EOWNERDEAD (seen by the C fast path or by Python): rebuilt, then the change is made
    assert c.update(b"stay", b"again")
    assert c.set(b"next", b"one")
    assert c.get(b"stay") == b"again" and c.stats()["items"] == 2
    assert c.m[C.M_REPAIRS] == 1


@pytest.mark.parametrize("text,fault", [
    ("name=x,items=abc", "items must be a number"), ("items=3", "needs a name"),
    ("name=x", "maximum number of items"), ("name=x,items=0", "positive"),
    ("name=x,items=3,blocksize=0", "blocksize must be a positive number"),
    ("name=x,items=3,keysize=70000", "keysize must be below"), ("name=x,items=3,oops", "not key=value"),
    ("name=x,items=3,udp=1.2.3.4:5", "not supported"), ("name=x,items=3,hash=random", "hash 'random'"),
])
def test_bad_cache2_specs(text: str, fault: str) -> None:
    with pytest.raises(ApiError, match=fault) as info:
        parse_cache2(text, "x.ini line 3")
    assert str(info.value).startswith(f"cache2 {text!r} (x.ini line 3): ")


def test_cache2_keys_and_aliases() -> None:
    s = parse_cache2("name=a,maxitems=10,blocksize=32,blocks=20,bitmap=1,hash=murmur2,hash_size=99,key_size=40,"
                     "store=/tmp/x,storesync=5,lru=1,math_initial=-3,ignore_full=1")
    assert (s.max_items, s.blocksize, s.blocks, s.bitmap, s.hash, s.hashsize, s.keysize, s.store, s.store_sync,
            s.purge_lru, s.math_initial, s.ignore_full) == (10, 32, 20, True, "murmur2", 99, 40, "/tmp/x", 5,
                                                              True, -3, True)
    assert s.max_item_size == 32 * 20


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_cache2_parser_never_crashes(text: str) -> None:
    try:
        spec = parse_cache2(text)
    except ApiError as exc:
        assert str(exc).startswith("cache2 ") and "\n" not in str(exc)
    else:
        assert spec.name and spec.max_items > 0 and spec.blocksize > 0


def test_readers_never_see_a_torn_value_while_writers_write() -> None:
    """Writers in other processes rewrite values (their length says their letter), add and
    delete keys (chains move) while this process reads without the lock: every value read
    is one that was written whole, and no read fails. (Tearing needs two processes inside a
    sub-microsecond window at once, so this is a net, not a proof, of the seqlock.)"""
    c = new(max_items=64, blocksize=65536, hashsize=16)  # long copies: overlaps are likely
    keys = [b"k%d" % i for i in range(4)]
    for k in keys:
        assert c.set(k, b"a" * 10)
    pids = []
    for w in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                for n in range(4000):
                    k = keys[(n * 7 + w) % len(keys)]
                    length = 20000 + (n * 37) % 40000
                    c.update(k, bytes([97 + length % 26]) * length)
                    if n % 50 == 0:  # new keys and deletes move chains around
                        c.set(b"tmp%d-%d" % (w, n), b"x")
                        c.delete(b"tmp%d-%d" % (w, n - 50))
            finally:
                os._exit(0)
        pids.append(pid)
    bad = []
    reads = 0
    alive = set(pids)
    while alive and reads < 400000:
        for k in keys:
            v = c.get(k)
            reads += 1
            if v is None or (len(v) > 10 and (len(set(v)) != 1 or v[0] != 97 + len(v) % 26)):
                bad.append((k, v[:20] if v else v))
        alive = {p for p in alive if os.waitpid(p, os.WNOHANG) == (0, 0)}
    for p in alive:
        os.kill(p, signal.SIGKILL)
        os.waitpid(p, 0)
    assert not bad, bad[:5]
    assert reads > 0
