"""The metrics subsystem and the stats pushers of a running instance (real processes, real
UDP/TCP listeners): metrics-dir and its restore, the file and mongodb pushers, pushers whose
address cannot be reached (the master goes on), bad metric options (one line, exit 1).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, free_port, optional_service, port_open, read_json, wait_until
from tests.fixtures.instance_helpers import get, start
from tests.fixtures.listeners import TcpListener, UdpListener

APP = Path(__file__).resolve().parent.parent / "interop" / "apps" / "metrics.py"


def _instance(procs, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, int, int]:
    port, stats = free_port(), free_port()
    p = start(procs, "--wsgi-file", str(APP), "--master", "-p", "2", "--stats",
              f"127.0.0.1:{stats}", *extra, port=port, cwd=tmp_path)
    wait_until(lambda: port_open(stats), 10, message="the stats server")
    return p, port, stats


def _call(port: int, fn: str, name: str, *value: str) -> dict:
    return json.loads(get(port, "/" + "/".join(["call", fn, name, *value]))[1])


def _text(path: Path) -> str:
    return path.read_bytes().split(b"\0", 1)[0].decode()


def test_metrics_dir_follows_values_and_restores(procs, tmp_path) -> None:
    mdir = tmp_path / "m"
    mdir.mkdir()
    source = tmp_path / "source.txt"
    source.write_text("first 41 third\n")
    args = ["--metrics-dir", str(mdir), "--metric", "hits",
            "--metric", f"name=col,type=gauge,collector=file,arg1={source},arg1n=1"]
    p, port, stats = _instance(procs, tmp_path, *args)
    assert _call(port, "metric_inc", "hits", "5") == {"result": True}
    wait_until(lambda: _text(mdir / "hits") == "5\n", 5, message="hits written to its file")
    wait_until(lambda: _text(mdir / "col") == "41\n", 5, message="col collected from the file")
    source.write_text("first 42 third\n")
    wait_until(lambda: read_json(stats)["metrics"]["col"]["value"] == 42, 5, message="col again")
    wait_until(lambda: _text(mdir / "worker.0.requests") == "1\n", 5, message="requests counted")
    assert (mdir / "hits").stat().st_size == os.sysconf("SC_PAGE_SIZE")
    p.kill()
    p.wait()
    # a new instance starts from what the files hold
    p2, port2, stats2 = _instance(procs, tmp_path, *args, "--metrics-dir-restore")
    doc = read_json(stats2)["metrics"]
    assert doc["hits"]["value"] == 5
    wait_until(lambda: read_json(stats2)["metrics"]["worker.0.requests"]["value"] == 1, 5,
               message="worker.0.requests restored")
    get(port2)
    wait_until(lambda: read_json(stats2)["metrics"]["worker.0.requests"]["value"] == 2, 5,
               message="counted on from the restored value")


def test_file_pusher_appends_the_stats_json(procs, tmp_path) -> None:
    out = tmp_path / "pushed.json"
    _instance(procs, tmp_path, "--stats-push", f"file:path={out},freq=1,separator=@@")
    wait_until(lambda: out.exists() and out.read_text().count("@@") >= 2, 10, message="two pushes")
    docs = [json.loads(d) for d in out.read_text().split("@@") if d]
    assert len(docs) >= 2 and all(d["workers"] and "metrics" in d for d in docs)


def test_file_pusher_to_a_fifo_nobody_drains_never_holds_the_master(procs, tmp_path) -> None:
    import fcntl

    fifo = tmp_path / "stats.fifo"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # the pipe lives (one page) while we hold it
    try:
        fcntl.fcntl(keep, fcntl.F_SETPIPE_SZ, 4096)
        p, port, stats = _instance(procs, tmp_path, "--stats-push", f"file:path={fifo},freq=1")
        wait_until(lambda: "write(): Resource temporarily unavailable" in procs.output(p), 15,
                   message="a push that found the pipe full")
        for _ in range(3):  # the master still serves: stats server, requests
            assert read_json(stats, timeout=3)["workers"]
            assert get(port, timeout=3)[0] == 200
    finally:
        os.close(keep)


def _mongo_answer(data: bytes) -> bytes | None:
    """A MongoDB server's answer to one whole OP_MSG insert (None: read on)."""
    import bson

    if len(data) < 4 or len(data) < struct.unpack("<i", data[:4])[0]:
        return None
    _length, rid, _to, opcode = struct.unpack("<iiii", data[:16])
    assert opcode == 2013 and data[20] == 0
    payload = struct.pack("<I", 0) + b"\0" + bson.encode({"n": 1, "ok": 1.0})
    return struct.pack("<iiii", 16 + len(payload), 1, rid, 2013) + payload


def _inserts(sessions: list[bytes]) -> list[dict]:
    import bson

    return [bson.decode(d[21:struct.unpack("<i", d[:4])[0]]) for d in sessions]


def test_mongodb_pusher_inserts_the_stats_document(procs, tmp_path) -> None:
    server = TcpListener(_mongo_answer)
    try:
        p, _, _ = _instance(procs, tmp_path, "--stats-push",
                            f"mongodb:addr=127.0.0.1:{server.port},collection=app.stats,freq=1")
        wait_until(lambda: len(server.sessions) >= 2, 10, message="two inserts")
        cmd = _inserts(server.sessions)[0]
        assert cmd["insert"] == "stats" and cmd["$db"] == "app"
        doc = cmd["documents"][0]
        assert doc["workers"] and doc["pid"] == p.pid
        assert "[stats-pusher-mongodb] ERROR" not in procs.output(p)
    finally:
        server.close()


def test_mongodb_pusher_against_a_real_server(procs, tmp_path) -> None:
    url = os.environ.get("MONGODB_URL")
    optional_service("mongodb", bool(url), "set MONGODB_URL=mongodb://HOST:PORT")
    import pymongo

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=3000)
    host, port = client.address
    coll = client["imperium_test"][f"stats_{os.getpid()}"]
    try:
        _instance(procs, tmp_path, "--stats-push",
                  f"mongodb:addr={host}:{port},collection=imperium_test.{coll.name},freq=1")
        wait_until(lambda: coll.count_documents({}) >= 1, 15, message="a document inserted")
        assert coll.find_one()["workers"]
    finally:
        coll.drop()


def _hanging_address() -> tuple[socket.socket, list[socket.socket], int]:
    """A TCP port whose accept queue is full: a connect to it never completes."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)

    def queue_full() -> bool:  # a filler connected means the one-slot accept queue holds it
        for c in fillers:
            try:
                c.getpeername()
                return True
            except OSError:
                pass
        return False

    wait_until(queue_full, 10, message="the accept queue filled")
    return lsock, fillers, port


def test_unreachable_pushers_never_hold_the_master(procs, tmp_path) -> None:
    lsock, fillers, hang = _hanging_address()
    try:
        p, port, stats = _instance(
            procs, tmp_path, "--carbon", f"127.0.0.1:{hang}", "--carbon-timeout", "60",
            "--stats-push", f"mongodb:addr=127.0.0.1:{hang},freq=1",
            "--stats-push", "statsd:192.0.2.1:8125", "--stats-push", "socket:127.0.0.1:9,x",
            "--stats-pusher-default-freq", "1")
        # the carbon push (60 s deadline) and the mongodb one are pending on a connect that
        # never completes: the master still answers the stats server and respawns workers
        for _ in range(5):
            doc = read_json(stats, timeout=3)
            assert doc["metrics"]["worker.0.requests"]["value"] >= 0
            assert get(port, timeout=3)[0] == 200
        pid = doc["workers"][0]["pid"]
        os.kill(pid, 9)
        wait_until(lambda: read_json(stats, timeout=3)["workers"][0]["pid"] not in (0, pid), 10,
                   message="worker respawned while the pushes hang")
        wait_until(lambda: "[stats-pusher-mongodb] ERROR" in procs.output(p), 10,
                   message="the mongodb push timed out")
        assert "Could not connect to carbon server" not in procs.output(p)  # still within 60 s
        assert p.poll() is None
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def test_a_pusher_host_that_does_not_resolve_stops_nothing(procs, tmp_path) -> None:
    """A DNS outage at boot: as with uWSGI, the instance starts and serves, the pusher says
    once that its name does not resolve, and the other pushers push."""
    udp = UdpListener()
    try:
        p, port, stats = _instance(
            procs, tmp_path, "--stats-push", "statsd:no-such-host.invalid:8125",
            "--stats-push", "mongodb:addr=no-such-host.invalid:27017,freq=1",
            "--stats-push", f"statsd:localhost:{udp.port},ok", "--stats-pusher-default-freq", "1")
        assert get(port, timeout=3)[0] == 200
        wait_until(lambda: any(d.startswith(b"ok.worker.0.requests:") for d in udp.got), 10,
                   message="the resolvable pusher's datagrams")
        out = procs.output(p)
        for what in ("statsd:no-such-host.invalid:8125", "mongodb:addr=no-such-host.invalid:27017,freq=1"):
            assert out.count(f"[stats-push] stats-push {what}: cannot resolve no-such-host.invalid") == 1, out
        assert read_json(stats, timeout=3)["workers"][0]["pid"] > 0
        assert p.poll() is None
    finally:
        udp.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_unreachable_pushers_never_hold_a_stop_or_reload(procs, tmp_path, sig) -> None:
    """Pushes every second to an address that never answers: a stop (or a reload) waits for
    the pushes in flight and carbon's last one (carbon-timeout) but starts no new one. (They
    used to be rescheduled while the master waited for them: the instance never exited.)"""
    lsock, fillers, hang = _hanging_address()
    try:
        p, port, stats = _instance(
            procs, tmp_path, "--carbon", f"127.0.0.1:{hang}", "--carbon-timeout", "2", "--carbon-freq", "1",
            "--stats-push", f"mongodb:addr=127.0.0.1:{hang},freq=1")
        wait_until(lambda: "Could not connect to carbon server" in procs.output(p), 10,
                   message="a carbon push timed out")
        p.send_signal(sig)
        if sig == signal.SIGINT:
            assert p.wait(timeout=20) == 0
            assert procs.output(p).rstrip().endswith("goodbye to uWSGI.")
        else:  # the re-exec'd instance serves again (and pushes again)
            wait_until(lambda: procs.output(p).count("spawned uWSGI master process") == 2, 20,
                       message="the reload re-exec'd the master")
            wait_until(lambda: port_open(stats) and get(port, timeout=3)[0] == 200, 20,
                       message="serving after the reload")
    finally:
        for c in fillers:
            c.close()
        lsock.close()


@pytest.mark.parametrize("args, message", [
    (["--metric", "name=bad name"], "invalid metric name"),
    (["--metric", "name=x,type=bogus"], "type 'bogus'"),
    (["--metric", "name=x,collector=ptr"], "only built-in"),
    (["--metric", "name=x,collector=sum,children=nosuch"], 'unable to find metric "nosuch"'),
    (["--metric", "name=x,colour=red"], "unknown key 'colour'"),
    (["--enable-metrics", "--metric-threshold", "key=worker.0.requests,value=5,alarm=a"], "alarm"),
    (["--enable-metrics", "--metric-threshold", "key=nosuch,value=5,reset=0"], "unable to find metric"),
    (["--metrics-dir", "/nonexistent/dir"], "no such directory"),
    (["--stats-push", "zabbix:127.0.0.1:1"], 'unable to find "zabbix" stats_pusher'),
    (["--stats-push", "statsd:nohostport"], "invalid address"),
    (["--carbon", "localhost:2003"], "carbon-name-resolve"),
    (["--carbon", "127.0.0.1:2003", "--carbon-idle-avg", "sometimes"], "carbon-idle-avg"),
])
def test_bad_metric_options_are_one_line_errors(tmp_path, args, message) -> None:
    port = free_port()
    r = subprocess.run([IMPERIUM, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(APP),
                        "--master", *args], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("imperium: ")]
    assert len(errors) == 1 and message in errors[0], r.stderr[-2000:]


def test_prometheus_endpoint_agrees_with_the_stats_json(procs, tmp_path) -> None:
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    prom = free_port()
    _, port, stats = _instance(procs, tmp_path, "--prometheus", f"127.0.0.1:{prom}",
                               "--metric", "name=foo,type=gauge")
    wait_until(lambda: port_open(prom), 10, message="the prometheus endpoint")
    for _ in range(6):
        get(port)
    assert _call(port, "metric_set", "foo", "42") == {"result": True}
    wait_until(lambda: sum(w["requests"] for w in read_json(stats)["workers"]) == 7
               and not any(c["in_request"] for w in read_json(stats)["workers"] for c in w["cores"]),
               5, message="7 requests counted")
    text = urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=5).read().decode()
    doc = read_json(stats)
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    assert samples["uwsgi_workers"][()] == len(doc["workers"]) == 2
    for w in doc["workers"]:
        key = (("worker", str(w["id"])),)
        assert samples["uwsgi_worker_requests_total"][key] == w["requests"]
        assert samples["uwsgi_worker_exceptions_total"][key] == w["exceptions"]
        assert samples["uwsgi_worker_harakiri_total"][key] == w["harakiri_count"]
        assert samples["uwsgi_worker_respawns_total"][key] == w["respawn_count"]
        assert samples["uwsgi_worker_transmitted_bytes_total"][key] == w["tx"]
        assert samples["uwsgi_worker_avg_response_time_seconds"][key] == w["avg_rt"] / 1e6
        assert samples["uwsgi_worker_status"][(("status", w["status"]), ("worker", str(w["id"])))] == 1
        assert abs(samples["uwsgi_worker_rss_bytes"][key] - w["rss"]) <= max(w["rss"] // 10, 1 << 20)
    assert samples["uwsgi_listen_queue"][(("socket", f"127.0.0.1:{port}"),)] == doc["listen_queue"]
    metric = samples["uwsgi_metric"]
    assert metric[(("metric", "foo"), ("type", "gauge"))] == doc["metrics"]["foo"]["value"] == 42
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{prom}/", timeout=5)
    assert info.value.code == 404
    # a client that connects and never sends its request does not hold the master
    with socket.create_connection(("127.0.0.1", prom)):
        assert read_json(stats, timeout=3)["workers"]


def test_metric_hook_actions(procs, tmp_path) -> None:
    # uWSGI's router_metrics actions (NAME[,VALUE]) as hooks: master-start in the master,
    # accepting once in each of the two workers
    _, _, stats = _instance(procs, tmp_path, "--metric", "deploys",
                            "--hook-master-start", "metricinc:deploys,5",
                            "--hook-accepting", "metricinc:deploys,2",
                            "--hook-accepting", "metricmul:deploys")
    wait_until(lambda: read_json(stats)["metrics"]["deploys"]["value"] == 9, 10,
               message="5, then +2 in each worker")
    # a hook that cannot change its metric fails like any failing hook (a fatal phase: the
    # instance is destroyed)
    port = free_port()
    r = subprocess.run([IMPERIUM, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(APP),
                        "--master", "--metric", "c", "--hook-master-start", "metricinc:nosuch"],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert "cannot change metric 'nosuch'" in out and "goodbye to uWSGI." in out
