"""The uwsgi cache API side by side with Debian's real uWSGI: same calls, same answers.

One app (tests/fixtures/apps/cache_app.py) drives ``uwsgi.cache_*`` from HTTP and answers
the repr and the type of what each call returned, so bytes vs str and None vs False are
compared, not only values. Both servers get the same ini.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests import procstat
from tests.conftest import Procs, free_port, port_open, read_json, wait_until
from tests.interop.helpers import backend_argv, http_request, need_uwsgi

KINDS = ("imperium", "uwsgi")
APP = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "cache_app.py"


def _ini(port: int, stats: int, extra: str = "") -> str:
    return (f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = %d/cache_app.py\nmaster = true\n"
            f"processes = 4\nstats = 127.0.0.1:{stats}\ncache-expire-freq = 1\n"
            "cache2 = name=a,items=10,blocksize=64\n"
            "cache2 = name=small,items=4,blocksize=16,keysize=8\n"
            "add-cache-item = a preset=from the config\nadd-cache-item = small tiny=1\n" + extra)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    need_uwsgi()
    base = tmp_path_factory.mktemp("cache-interop")
    procs = Procs(base)
    ports: dict[str, tuple[int, int]] = {}
    try:
        started = {}
        for kind in KINDS:
            d = base / kind
            d.mkdir()
            shutil.copy(APP, d / "cache_app.py")
            port, stats = free_port(), free_port()
            (d / "c.ini").write_text(_ini(port, stats))
            started[kind] = procs.start(backend_argv(kind, d / "c.ini"), cwd=d)
            ports[kind] = (port, stats)
        for kind, p in started.items():
            wait_until(lambda p=p, kind=kind: p.poll() is not None or port_open(ports[kind][0]), 20,
                       message=f"{kind} instance")
            assert p.poll() is None, f"{kind} exited:\n{procs.output(p)[-3000:]}"
        yield ports
    finally:
        procs.kill_all()


def call(port: int, path: str) -> dict:
    resp = http_request(port, path=path)
    assert resp.status == 200, resp
    return json.loads(resp.body)


def answer(port: int, path: str) -> tuple:
    doc = call(port, path)
    return (doc.get("r"), doc.get("t"), doc.get("err"))


# (request, comment): run in this order on both servers, answers compared one by one
SEQUENCE = [
    "/get?k=preset&c=a", "/get?k=tiny&c=small", "/get?k=preset&c=small", "/del?k=tiny&c=small",
    "/get?k=x", "/exists?k=x", "/set?k=x&v=1", "/get?k=x", "/exists?k=x",
    "/set?k=x&v=2", "/get?k=x",  # set does not replace a live key
    "/update?k=x&v=3", "/get?k=x", "/update?k=new&v=n", "/get?k=new",
    "/setbytes?k=b&v=bytes", "/get?k=b",
    "/set?k=&v=empty-key", "/set?k=ev&v=",  # empty key or value: refused
    "/set?k=x&v=1&c=small", "/get?k=x&c=small", "/get?k=x&c=a",
    "/set?k=toolongkey&v=1&c=small",  # longer than keysize 8
    "/set?k=big&v=" + "v" * 17 + "&c=small",  # larger than blocksize 16
    "/set?k=k1&v=1&c=small", "/set?k=k2&v=2&c=small", "/set?k=k3&v=3&c=small",  # items=4 holds 3
    "/keys?c=small", "/clear?c=small", "/keys?c=small",
    "/inc?k=n", "/num?k=n", "/inc?k=n&n=41", "/get?k=n", "/num?k=n",
    "/dec?k=n&n=2", "/num?k=n", "/mul?k=n&n=3", "/num?k=n", "/div?k=n&n=-4", "/num?k=n",
    "/div?k=n&n=0", "/num?k=n", "/mul?k=m", "/num?k=m", "/num?k=x", "/num?k=nothing",
    "/inc?k=x",  # a non-number value takes math as the raw 8 bytes it has
    "/del?k=x", "/del?k=x", "/get?k=x", "/exists?k=x",
    "/get?k=x&c=nosuchcache", "/set?k=x&v=1&c=nosuchcache", "/del?k=x&c=nosuchcache",
    "/keys?c=nosuchcache", "/keys",
    "/clear", "/keys", "/get?k=new",
]


def test_cache_calls_answer_as_uwsgi(servers) -> None:
    got = {kind: [answer(servers[kind][0], path) for path in SEQUENCE] for kind in KINDS}
    diffs = [(path, got["uwsgi"][i], got["imperium"][i]) for i, path in enumerate(SEQUENCE)
             if got["uwsgi"][i] != got["imperium"][i]]
    assert not diffs, "\n".join(f"{p}: uwsgi {u} imperium {m}" for p, u, m in diffs)


def test_values_are_seen_by_every_worker(servers) -> None:
    """Three requests that sleep hold three workers; the fourth worker sets the value; the
    sleepers read it when they wake: four workers, one value."""
    import threading

    for kind in KINDS:
        port = servers[kind][0]
        answer(port, "/del?k=shared")
        sleepers: list[dict] = []
        threads = [threading.Thread(target=lambda port=port, out=sleepers: out.append(call(port, "/sleepget?k=shared&s=2")))
                   for _ in range(3)]
        for t in threads:
            t.start()
        stats = servers[kind][1]
        wait_until(lambda stats=stats: [w["status"] for w in read_json(stats)["workers"]].count("busy") == 3,
                   10, message=f"{kind}: three workers asleep in a request")
        setter = call(port, "/update?k=shared&v=everywhere")
        for t in threads:
            t.join(30)
        wids = {d["wid"] for d in sleepers} | {setter["wid"]}
        assert len(wids) == 4, (kind, sleepers, setter)
        assert [d["r"] for d in sleepers] == ["b'everywhere'"] * 3, (kind, sleepers)


def test_expired_items_are_swept(servers) -> None:
    for kind in KINDS:
        port = servers[kind][0]
        assert answer(port, "/update?k=short&v=lived&e=1")[0] == "True"
        assert answer(port, "/set?k=long&v=lived&e=3600")[0] == "True"
        deadline = time.monotonic() + 15
        wait_until(lambda port=port: answer(port, "/get?k=short")[0] == "None", 15,
                   message=f"{kind}: the sweeper drops an expired item")
        assert time.monotonic() < deadline
        assert answer(port, "/get?k=long")[0] == "b'lived'"


def test_counters_from_concurrent_workers_add_up(servers) -> None:
    import concurrent.futures

    for kind in KINDS:
        port = servers[kind][0]
        answer(port, "/del?k=hits")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _, port=port: answer(port, "/hammer?k=hits&n=200"), range(8)))
        assert answer(port, "/num?k=hits")[0] == str(8 * 200), kind


def test_stats_show_the_caches_as_uwsgi(servers) -> None:
    docs = {kind: read_json(servers[kind][1]) for kind in KINDS}
    for kind in KINDS:
        caches = docs[kind]["caches"]
        assert [c["name"] for c in caches] == ["a", "small"], kind
    want = [sorted(c) for c in docs["uwsgi"]["caches"]]
    assert [sorted(c) for c in docs["imperium"]["caches"]] == want
    for a, b in zip(docs["uwsgi"]["caches"], docs["imperium"]["caches"], strict=True):
        for key in ("hash", "hashsize", "keysize", "max_items", "blocks", "blocksize"):
            assert a[key] == b[key], (a["name"], key)
    lock_names = {kind: [next(iter(d)) for d in docs[kind]["locks"]] for kind in KINDS}
    assert lock_names["imperium"] == lock_names["uwsgi"]


# keys of 1 to 11 bytes: murmur2's tail (length not a multiple of 4) is where uWSGI's hash
# departs from the textbook one, and an item hashed differently is looked for in another slot
ODD_KEYS = ["a", "ab", "abc", "odd-5", "odd-six", "odd-key-9", "odd-key-011"]


@pytest.mark.parametrize("hash_name", ["djb33x", "murmur2"])
@pytest.mark.parametrize("writer,reader", [("uwsgi", "imperium"), ("imperium", "uwsgi")])
def test_a_store_file_written_by_one_is_read_by_the_other(tmp_path: Path, writer: str, reader: str,
                                                          hash_name: str) -> None:
    """Same memory layout and hash: a persistent cache moves between uWSGI and Imperium."""
    need_uwsgi()
    procs = Procs(tmp_path)
    store = tmp_path / "shared.store"
    shutil.copy(APP, tmp_path / "cache_app.py")
    try:
        results = {}
        for kind in (writer, reader):
            port, stats = free_port(), free_port()
            ini = tmp_path / f"{kind}.ini"
            ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = %d/cache_app.py\nmaster = true\n"
                           f"processes = 2\nstats = 127.0.0.1:{stats}\n"
                           f"cache2 = name=st,items=32,blocksize=32,keysize=24,hash={hash_name},store={store}\n")
            p = procs.start(backend_argv(kind, ini), cwd=tmp_path)
            wait_until(lambda p=p, port=port: p.poll() is not None or port_open(port), 20, message=kind)
            assert p.poll() is None, procs.output(p)[-2000:]
            if kind == writer:
                for i in range(12):
                    assert answer(port, f"/update?k=key-{i}&v=value-{i}&c=st")[0] == "True"
                assert answer(port, "/inc?k=n&n=1234567&c=st")[0] == "True"
                assert answer(port, "/set?k=%C3%A9t%C3%A9&v=utf8&c=st")[0] == "True"  # bytes >= 0x80 in the hash
                assert answer(port, "/del?k=key-3&c=st")[0] == "True"
                for k in ODD_KEYS:
                    assert answer(port, f"/set?k={k}&v=v-{k}&c=st")[0] == "True"
            else:
                results = {i: answer(port, f"/get?k=key-{i}&c=st")[0] for i in range(12)}
                results["n"] = answer(port, "/num?k=n&c=st")[0]
                results["utf8"] = answer(port, "/get?k=%C3%A9t%C3%A9&c=st")[0]
                results["keys"] = answer(port, "/keys?c=st")[0]
                results["odd"] = [answer(port, f"/get?k={k}&c=st")[0] for k in ODD_KEYS]
                assert answer(port, "/update?k=key-3&v=again&c=st")[0] == "True"
                assert read_json(stats)["caches"][0]["items"] == 14 + len(ODD_KEYS)
            # the store is a shared file mapping: what was written is in the file whatever the
            # way the server ends, so end it the sure way (a loaded machine can make uWSGI
            # slow to stop)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(20)
            wait_until(lambda p=p: not any(c.ppid == p.pid for c in procstat.table().values()), 10,
                       message="the workers gone")
        want = {i: (None if i == 3 else f"b'value-{i}'") for i in range(12)}
        assert {i: results[i] for i in range(12)} == {i: str(v) if v else "None" for i, v in want.items()}
        assert results["n"] == "1234567"
        assert results["utf8"] == "b'utf8'"
        assert "b'key-11'" in results["keys"]
        assert results["odd"] == [f"b'v-{k}'" for k in ODD_KEYS]
    finally:
        procs.kill_all()
