"""sharedarea, user locks, RPC and the instance functions of the uwsgi module, side by side
with Debian's real uWSGI: same calls, same answers (values, types, errors).

Also lists the names real uWSGI's module has that ours has not: each must be in NOT_OFFERED
(vassal/api/not_built.py) with the reason, so a name lost (or one added without updating this
list) fails the test, and touching one must raise AttributeError naming it and the reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import Procs, free_port, port_open, read_json, wait_until
from tests.interop.helpers import backend_argv, http_request, need_uwsgi
from vassal.api.not_built import NOT_BUILT

KINDS = ("imperium", "uwsgi")
APP = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "api_app.py"

#: names of uWSGI 2.0's module we do not offer, and why (refused by name, with the reason)
NOT_OFFERED = NOT_BUILT


STATS: dict[int, int] = {}  # http port -> stats port


def _ini(port: int, processes: int) -> str:
    STATS[port] = free_port()
    return (f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = %d/api_app.py\nmaster = true\n"
            f"processes = {processes}\nlocks = 3\nsharedarea = 2\nsharedarea = size=100\n"
            f"stats = 127.0.0.1:{STATS[port]}\ncache2 = name=c,items=5\n")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    """One worker each: a sequence of lock calls must reach the process that holds the lock."""
    yield from _servers(tmp_path_factory, 1)


@pytest.fixture(scope="module")
def servers2(tmp_path_factory: pytest.TempPathFactory):
    yield from _servers(tmp_path_factory, 2)


def _servers(tmp_path_factory: pytest.TempPathFactory, processes: int):
    need_uwsgi()
    base = tmp_path_factory.mktemp(f"api-interop-{processes}")
    procs = Procs(base)
    ports: dict[str, int] = {}
    try:
        started = {}
        for kind in KINDS:
            d = base / kind
            d.mkdir()
            shutil.copy(APP, d / "api_app.py")
            port = free_port()
            (d / "a.ini").write_text(_ini(port, processes))
            started[kind] = procs.start(backend_argv(kind, d / "a.ini"), cwd=d)
            ports[kind] = port
        for kind, p in started.items():
            wait_until(lambda p=p, kind=kind: p.poll() is not None or port_open(ports[kind]), 20,
                       message=f"{kind} instance")
            assert p.poll() is None, f"{kind} exited:\n{procs.output(p)[-3000:]}"
        yield ports
    finally:
        procs.kill_all()


def call(port: int, name: str, *args) -> dict:
    path = f"/{name}" + (f"?a={quote(json.dumps(list(args)))}" if args else "")
    resp = http_request(port, path=path)
    assert resp.status == 200, resp
    return json.loads(resp.body)


def answer(port: int, name: str, *args) -> tuple:
    d = call(port, name, *args)
    return d.get("r"), d.get("t"), d.get("err")


SEQUENCE = [
    ("sharedarea_read", 0, 0, 4), ("sharedarea_write", 0, 0, "b:abcd"), ("sharedarea_read", 0, 0, 4),
    ("sharedarea_read", 0, 2, 2), ("sharedarea_write", 0, 8190, "b:xyz"), ("sharedarea_read", 5, 0, 1),
    ("sharedarea_write64", 0, 16, -5), ("sharedarea_read64", 0, 16), ("sharedarea_inc64", 0, 16),
    ("sharedarea_inc64", 0, 16, 10), ("sharedarea_read64", 0, 16), ("sharedarea_dec64", 0, 16, 3),
    ("sharedarea_readlong", 0, 16), ("sharedarea_write32", 0, 32, 70000), ("sharedarea_read32", 0, 32),
    ("sharedarea_inc32", 0, 32, 5), ("sharedarea_read32", 0, 32), ("sharedarea_dec32", 0, 32),
    ("sharedarea_read32", 0, 32), ("sharedarea_write16", 0, 40, 300), ("sharedarea_read16", 0, 40),
    ("sharedarea_write8", 0, 48, 200), ("sharedarea_read8", 0, 48), ("sharedarea_readbyte", 0, 48),
    ("sharedarea_writebyte", 0, 49, 7), ("sharedarea_read8", 0, 49), ("sharedarea_write8", 0, 48, -1),
    ("sharedarea_read", 1, 0, 3), ("sharedarea_write", 1, 98, "b:zz"), ("sharedarea_read", 1, 98, 2),
    ("sharedarea_write", 1, 99, "b:zz"), ("sharedarea_read", 1, 0, 200),
    ("sharedarea_memoryview", 0), ("sharedarea_memoryview", 9),
    ("sharedarea_wlock", 0), ("sharedarea_write", 0, 60, "b:L"), ("sharedarea_unlock", 0),
    ("sharedarea_read", 0, 60, 1),
    ("is_locked", 0), ("lock", 2), ("is_locked", 2), ("unlock", 2), ("is_locked", 2), ("lock", 4),
    ("unlock", 9), ("is_locked", -1),
    ("rpc", None, "b:hello", "b:a", "b:b"), ("rpc", "", "b:hello"), ("rpc", None, "hello"),
    ("rpc", None, "b:hello", "x"), ("rpc", None, "b:nothere"), ("rpc", None, "b:strret"),
    ("call", "b:hello", "b:z"), ("call", "hello"), ("rpc_list",),
    ("attr", "numproc"), ("attr", "buffer_size"), ("attr", "cores"), ("attr", "unbit"), ("attr", "loop"),
    ("attr", "applications"), ("attr", "is_a_reload"), ("attr", "SPOOL_OK"), ("attr", "SPOOL_RETRY"),
    ("attr", "SPOOL_IGNORE"), ("i_am_the_spooler",), ("accepting",), ("is_connected", 9999),
    ("listen_queue",), ("listen_queue", 99), ("listen_queue", -1),
]


def test_calls_answer_as_uwsgi(servers) -> None:
    got = {kind: [answer(servers[kind], *req) for req in SEQUENCE] for kind in KINDS}
    diffs = [(req, got["uwsgi"][i], got["imperium"][i]) for i, req in enumerate(SEQUENCE)
             if got["uwsgi"][i] != got["imperium"][i]]
    assert not diffs, "\n".join(f"{r}: uwsgi {u} imperium {m}" for r, u, m in diffs)


def test_types_of_the_instance_values(servers) -> None:
    for name in ("version", "hostname", "started_on", "opt", "magic_table", "version_info", "sockets"):
        want = call(servers["uwsgi"], "attr", name)["t"]
        got = call(servers["imperium"], "attr", name)["t"]
        assert got == want, name
    for fn in ("masterpid", "worker_id", "total_requests", "request_id", "mem", "mule_id"):
        assert call(servers["imperium"], fn)["t"] == call(servers["uwsgi"], fn)["t"], fn


def test_an_rpc_registered_in_one_worker_is_that_worker_s(servers2) -> None:
    import threading

    for kind in KINDS:
        port = servers2[kind]
        owner: dict = {}
        t = threading.Thread(target=lambda port=port, owner=owner: owner.update(call(port, "regmine", 2.0)))
        t.start()
        # the registering worker is busy for 2 s: the next request goes to the other one
        wait_until(lambda port=port: any(w["status"] == "busy" for w in read_json(STATS[port])["workers"]),
                   10, message=f"{kind}: the registering worker busy")
        other = call(port, "rpc", None, "b:mine")
        t.join(30)
        assert owner["r"] == "b'mine'", (kind, owner)
        assert other["wid"] != owner["wid"], (kind, owner, other)
        assert other["r"] == "None", (kind, other)
        assert call(port, "rpc", None, "b:hello", "b:x")["r"] == "b'hello x'"  # from the master: everywhere


def test_names_uwsgi_offers_that_we_do_not_are_listed(servers) -> None:
    real = set(eval(call(servers["uwsgi"], "dir")["r"]))  # noqa: S307 - our own test app's repr
    ours = set(eval(call(servers["imperium"], "dir")["r"]))  # noqa: S307
    missing = real - ours
    assert missing <= set(NOT_OFFERED), sorted(missing - set(NOT_OFFERED))
    stale = {n for n in NOT_OFFERED if n in ours}
    assert not stale, f"offered now, remove from NOT_OFFERED: {sorted(stale)}"
    # each is refused by name, with its reason, and stays absent for hasattr()
    for name in sorted(NOT_OFFERED):
        d = call(servers["imperium"], "attr", name)
        assert d.get("err") == "AttributeError", (name, d)
        assert d["msg"] == (f"module 'uwsgi' has no attribute {name!r}: not offered by Imperium "
                            f"({NOT_OFFERED[name]})"), d
    assert call(servers["imperium"], "attr", "no_such_name")["msg"] == \
        "module 'uwsgi' has no attribute 'no_such_name'"


def test_sendfile_sends_the_file_after_the_headers(servers, tmp_path: Path) -> None:
    data = bytes(range(256)) * 300
    path = tmp_path / "blob"
    path.write_bytes(data)
    for kind in KINDS:
        resp = http_request(servers[kind], path=f"/sendfile?f={quote(str(path))}")
        assert resp.status == 200, kind
        assert resp.body == data + data + b"|end", (kind, len(resp.body))


def test_stats_list_the_same_locks_in_the_same_order(servers) -> None:
    names = {}
    for kind in KINDS:
        port = servers[kind]
        doc = read_json(STATS[port])
        names[kind] = [next(iter(d)) for d in doc["locks"]]
    assert names["imperium"] == names["uwsgi"], str(names)
    assert "user 3" in names["uwsgi"] and "sharedarea1" in names["uwsgi"] and "cache_c" in names["uwsgi"]


def test_opt_shows_the_options_as_uwsgi(servers) -> None:
    """Same keys and values (bytes; a repeated key keeps its last value, as uWSGI's python 3
    plugin does), leaving out what differs by construction (ports, paths, --plugin)."""
    differ = {"http-socket", "wsgi-file", "stats", "ini", "plugin"}
    opts = {}
    for kind in KINDS:
        d = call(servers[kind], "attr", "opt")
        assert d["t"] == "dict"
        opts[kind] = {k: v for k, v in eval(d["r"]).items() if k not in differ}  # noqa: S307 - our app's repr
    assert opts["imperium"] == opts["uwsgi"]
    assert opts["uwsgi"]["sharedarea"] == b"size=100"


def test_sharedarea_is_shared_by_the_workers(servers2) -> None:
    import threading

    for kind in KINDS:
        port = servers2[kind]
        assert answer(port, "sharedarea_write", 1, 10, "b:shared!")[2] is None
        busy: dict = {}
        t = threading.Thread(target=lambda port=port, busy=busy: busy.update(call(port, "sleepread", 1.5, 1, 10, 7)))
        t.start()
        # one worker sleeps: this read is the other's
        wait_until(lambda port=port: any(w["status"] == "busy" for w in read_json(STATS[port])["workers"]),
                   10, message=f"{kind}: one worker busy")
        other = call(port, "sharedarea_read", 1, 10, 7)
        t.join(30)
        assert busy["wid"] != other["wid"], (kind, busy, other)
        assert busy["r"] == other["r"] == "b'shared!'", (kind, busy, other)
