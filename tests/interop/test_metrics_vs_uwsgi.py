"""The metrics subsystem side by side with Debian's real uWSGI: the same options and calls
give the same ``metrics`` section of the stats document (names, order, types, oids, text
layout), the same ``uwsgi.metric_*`` answers, the same effect of router_metrics' route
actions and ``${metric[...]}``, and the same statsd, socket and carbon lines on the wire
(received by real UDP and TCP listeners).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import (
    UWSGI_CORE,
    Procs,
    free_port,
    port_open,
    read_json,
    read_to_close,
    wait_until,
)
from tests.fixtures.listeners import TcpListener, UdpListener
from tests.interop.helpers import VASSAL_BINARY, http_request, need_uwsgi

APP = Path(__file__).resolve().parent / "apps" / "metrics.py"
KINDS = ("imperium", "uwsgi")
PLUGINS = "python3,carbon,stats_pusher_statsd,stats_pusher_socket"

CUSTOM = ["--metric", "name=foo,type=gauge,initial_value=5", "--metric", "bar",
          "--metric", "name=al,type=alias,alias=foo",
          "--metric", "name=s,collector=sum,children=worker.1.requests;worker.2.requests",
          "--metric", "name=m,collector=multiplier,arg1n=3,children=foo",
          "--metric", "name=abs1,type=absolute,oid=100.1",
          "--metric-threshold", "key=bar,value=100,reset=7"]


def _start(procs: Procs, kind: str, *extra: str) -> tuple[int, int]:
    port, stats = free_port(), free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(APP), "--master",
            "--processes", "2", "--stats", f"127.0.0.1:{stats}", *extra]
    argv = [VASSAL_BINARY, *args] if kind == "imperium" else [UWSGI_CORE, "--plugin", PLUGINS, *args]
    p = procs.start(argv)
    wait_until(lambda: p.poll() is not None or (port_open(port) and port_open(stats)), 20,
               message=f"{kind} up")
    assert p.poll() is None, procs.output(p)[-3000:]
    return port, stats


def _call(port: int, fn: str, name: str, *value: str) -> dict:
    path = "/".join(["", "call", fn, name, *value])
    return json.loads(http_request(port, path=path).body)


def _layout(text: str) -> str:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '"S"', text)
    return re.sub(r"-?\d+", "0", text)


def _metrics_text(doc: str) -> str:
    start = doc.index('"metrics":')
    return doc[start: doc.index('"sockets":')]


CALLS = [
    ("metric_inc", "bar", "4"), ("metric_get", "bar"), ("metric_inc", "foo", "2"),
    ("metric_get", "al"), ("metric_set", "al", "3"), ("metric_inc", "s"), ("metric_div", "bar", "0"),
    ("metric_inc", "nosuch"), ("metric_get", "nosuch"), ("metric_inc", "bar", "f1.5"),
    ("metric_mul", "bar", "3"), ("metric_get", "bar"), ("metric_dec", "bar", "-8"),
    ("metric_div", "bar", "-7"), ("metric_get", "bar"), ("metric_set_max", "foo", "2"),
    ("metric_set_max", "foo", "50"), ("metric_set_min", "foo", "1"), ("metric_set_min", "foo", "9"),
    ("metric_get", "foo"), ("metric_set", "abs1"), ("metric_get", "abs1"),
    ("metric_inc", "worker.1.requests"), ("metric_set", "core.busy_workers", "3"),
]


def test_api_and_stats_section_match(procs) -> None:
    need_uwsgi()
    answers: dict[str, list] = {}
    docs: dict[str, str] = {}
    for kind in KINDS:
        port, stats = _start(procs, kind, *CUSTOM)
        answers[kind] = [_call(port, *c) for c in CALLS]
        # collected metrics follow within a collector round (1 s); the threshold too
        wait_until(lambda stats=stats: (m := read_json(stats)["metrics"])["m"]["value"]
                   == 3 * m["foo"]["value"] == 27, 5, message=f"{kind}: m collected")
        wait_until(lambda stats=stats: read_json(stats)["metrics"]["s"]["value"]
                   == read_json(stats)["metrics"]["worker.0.requests"]["value"] > 0, 5,
                   message=f"{kind}: s = total requests")
        docs[kind] = read_to_close(stats).decode()
    assert answers["imperium"] == answers["uwsgi"]
    ours, theirs = json.loads(docs["imperium"]), json.loads(docs["uwsgi"])
    assert list(ours) == list(theirs)
    assert [(k, v["type"], v["oid"]) for k, v in ours["metrics"].items()] == \
        [(k, v["type"], v["oid"]) for k, v in theirs["metrics"].items()]
    assert _layout(_metrics_text(docs["imperium"])) == _layout(_metrics_text(docs["uwsgi"]))
    assert [list(lk) for lk in ours["locks"]] == [list(lk) for lk in theirs["locks"]]
    for name in ("foo", "bar", "al", "m", "abs1", "core.idle_workers", "core.busy_workers"):
        assert ours["metrics"][name]["value"] == theirs["metrics"][name]["value"], name


def test_threshold_resets_like_uwsgi(procs) -> None:
    need_uwsgi()
    for kind in KINDS:
        port, stats = _start(procs, kind, *CUSTOM)
        assert _call(port, "metric_inc", "bar", "150") == {"result": True}
        wait_until(lambda stats=stats: read_json(stats)["metrics"]["bar"]["value"] == 7, 5,
                   message=f"{kind}: bar reset by its threshold")


# router_metrics' route actions: each path to both servers, what it answered (None: the
# request ended unanswered) and the metrics it left
ROUTES = ["--route", "^/r/inc$ metricinc:bar", "--route", "^/r/inc5$ metricinc:bar,5",
          "--route", "^/r/dec$ metricdec:foo,${qs[n]}", "--route", "^/r/mul$ metricmul:foo,3",
          "--route", "^/r/div0$ metricdiv:foo,0", "--route", "^/r/div$ metricdiv:foo,-4",
          "--route", "^/r/set$ metricset:abs1, -7x", "--route", "^/r/bad$ metricinc:nosuch",
          "--route", "^/r/col$ metricinc:s", "--route", "^/r/alias$ metricset:al,1",
          "--route", "^/r/(big)$ metricset:$1,99999999999999999999",
          "--route", "^/r/show$ addheader:X-M: ${metric[bar]} ${metric[nosuch]} ${metric[foo]}"]
ROUTED = ["/r/inc", "/r/inc5", "/r/inc5", "/r/dec?n=4", "/r/mul", "/r/div0", "/r/div", "/r/set",
          "/r/bad", "/r/col", "/r/alias", "/r/big", "/r/show"]


def _routed(port: int, path: str) -> tuple[int, str | None] | None:
    try:
        r = http_request(port, path=path, timeout=5)
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return None
    return r.status, r.header("X-M")


def test_route_actions_match(procs) -> None:
    need_uwsgi()
    answers, values = {}, {}
    for kind in KINDS:
        extra = [*CUSTOM, "--metric", "name=big,type=gauge", *ROUTES]
        if kind == "uwsgi":
            extra = ["--plugin", "router_metrics", *extra]
        port, stats = _start(procs, kind, *extra)
        answers[kind] = [_routed(port, path) for path in ROUTED]
        values[kind] = {k: v["value"] for k, v in read_json(stats)["metrics"].items()
                        if k in ("foo", "bar", "abs1", "big")}
    assert answers["imperium"] == answers["uwsgi"]
    assert values["imperium"] == values["uwsgi"]
    # (s and al are collected: they follow a collector round later.) What the rules mean:
    # bar 1 + 5 + 5, foo (5 - 4) * 3 / -4 (C truncates), set " -7x" is -7; the
    # division by zero, an unknown, a collected metric, an alias: ended unanswered
    assert values["imperium"]["bar"] == 11 and values["imperium"]["abs1"] == -7
    assert values["imperium"]["big"] == (1 << 63) - 1
    for path in ("/r/div0", "/r/bad", "/r/col", "/r/alias"):
        assert answers["imperium"][ROUTED.index(path)] is None, path
    assert answers["imperium"][-1] == (200, "11 0 0")


@pytest.fixture
def listeners():
    made: list = []

    def make(cls):
        obj = cls()
        made.append(obj)
        return obj
    yield make
    for obj in made:
        obj.close()


def _round(lines: list[bytes], first: bytes) -> list[bytes]:
    """One push round: from the first occurrence of ``first`` to the next."""
    start = lines.index(next(x for x in lines if x.startswith(first)))
    rest = lines[start + 1:]
    end = next((i for i, x in enumerate(rest) if x.startswith(first)), len(rest))
    return lines[start: start + 1 + end]


@pytest.mark.parametrize("pusher", ["statsd", "socket"])
def test_datagram_pushers_match(procs, listeners, pusher) -> None:
    need_uwsgi()
    rounds = {}
    for kind in KINDS:
        udp = listeners(UdpListener)
        _start(procs, kind, "--stats-push", f"{pusher}:127.0.0.1:{udp.port},twin", *CUSTOM)
        wait_until(lambda udp=udp: sum(1 for x in udp.got if x.startswith(b"twin.core.routed_signals"))
                   >= 2, 10, message=f"{kind}: two {pusher} rounds")
        rounds[kind] = _round(list(udp.got), b"twin.core.routed_signals")
    if pusher == "statsd":
        def shape(x: bytes) -> tuple:
            name, _, rest = x.partition(b":")
            return name, rest.rpartition(b"|")[2]
    else:
        def shape(x: bytes) -> tuple:
            name, type_, _value = x.split(b" ")
            return name, type_
    assert [shape(x) for x in rounds["imperium"]] == [shape(x) for x in rounds["uwsgi"]]
    values = {k: {shape(x)[0]: x for x in r} for k, r in rounds.items()}
    for name in (b"twin.foo", b"twin.al", b"twin.m", b"twin.bar"):
        assert values["imperium"][name] == values["uwsgi"][name]


@pytest.mark.parametrize("kind", KINDS)
def test_a_statsd_host_that_does_not_resolve_stops_nothing(procs, listeners, kind) -> None:
    """A DNS outage at boot: both start, serve, and push to the pusher that does resolve."""
    need_uwsgi()
    udp = listeners(UdpListener)
    port, _ = _start(procs, kind, "--stats-push", "statsd:no-such-host.invalid:8125",
                     "--stats-push", f"statsd:127.0.0.1:{udp.port},ok", *CUSTOM)
    assert http_request(port, path="/").status == 200
    wait_until(lambda: any(x.startswith(b"ok.foo:") for x in udp.got), 10,
               message=f"{kind}: the resolvable pusher's datagrams")


@pytest.mark.parametrize("use_metrics", [False, True])
def test_carbon_lines_match(procs, listeners, use_metrics) -> None:
    need_uwsgi()
    sessions = {}
    for kind in KINDS:
        tcp = listeners(TcpListener)
        extra = ["--carbon", f"127.0.0.1:{tcp.port}", "--carbon-id", "twin", "--carbon-freq", "1"]
        if use_metrics:
            extra += ["--carbon-use-metrics", "--enable-metrics"]
        port, _ = _start(procs, kind, *extra)
        http_request(port, path="/")
        wait_until(lambda tcp=tcp: len(tcp.sessions) >= 2, 10, message=f"{kind}: two carbon pushes")
        sessions[kind] = tcp.sessions[1].decode()
    now = time.time()
    shapes = {}
    for kind, text in sessions.items():
        lines = text.splitlines()
        assert lines and all(len(x.split(" ")) == 3 for x in lines), text
        for x in lines:
            assert abs(int(x.split(" ")[2]) - now) < 60
        shapes[kind] = [x.split(" ")[0] for x in lines]
    assert shapes["imperium"] == shapes["uwsgi"]
    host = socket.gethostname()
    assert shapes["imperium"][0].startswith(f"uwsgi.{host}.twin.")
