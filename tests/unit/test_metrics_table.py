"""The metrics table, its collectors and the uwsgi.metric_* functions, in process."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vassal.api import metrics as api
from vassal.metrics import collectors
from vassal.metrics.service import MetricsService
from vassal.metrics.table import (
    MetricError,
    MetricTable,
    MetricType,
    add_custom,
    add_threshold,
    builtin_metrics,
)
from vassal.scoreboard import Scoreboard


def _table(*custom: str, nworkers: int = 2, ncores: int = 1, nsockets: int = 1) -> MetricTable:
    metrics = builtin_metrics(nworkers, ncores, nsockets, no_cores=False)
    for value in custom:
        add_custom(metrics, value)
    return MetricTable(metrics)


def test_builtin_names_order_and_count_are_uwsgis() -> None:
    t = _table(nworkers=1)
    names = [m.name for m in t]
    # uWSGI 2.0 with one worker, one core, one socket: 38 metrics (its "initialized" line)
    assert len(names) == 38
    assert names[:6] == ["core.routed_signals", "core.unrouted_signals", "core.busy_workers",
                         "core.idle_workers", "core.overloaded", "worker.0.requests"]
    assert names[-8:] == ["core.total_tx", "core.total_rss", "core.total_vsz", "core.avg_response_time",
                          "core.total_running_time", "socket.0.listen_queue", "rss_size", "vsz_size"]
    assert t.get("worker.1.core.0.read_errors").oid == "3.1.2.0.8"
    assert t.get("rss_size").type is MetricType.ALIAS and t.get("rss_size").oid == "5.101"
    assert len(_table(nworkers=4, ncores=3)) == 5 + 9 * 5 + 4 * 3 * 7 + 5 + 1 + 2


def test_custom_metrics_keyval_and_override() -> None:
    t = _table("foo", "name=g,type=gauge,oid=1.2,initial_value=-4,freq=3",
               "name=al,type=alias,alias=g", "name=worker.1.requests,type=gauge")
    assert t.get("foo").type is MetricType.COUNTER and t.get("foo").collector is None
    g = t.get("g")
    assert (g.type, g.oid, g.freq, t.value(g)) == (MetricType.GAUGE, "1.2", 3, -4)
    assert t.get("al").slot == g.slot and t.get("al").oid == "1.2"
    # same name as a built-in: replaced in place (still one entry, now a manual gauge)
    assert [m.name for m in t].count("worker.1.requests") == 1
    assert t.get("worker.1.requests").writable


@pytest.mark.parametrize("value, message", [
    ("name=", "specify a metric name"), ("a b", "invalid metric name"),
    ("name=x,oid=1.a", "invalid metric oid"), ("name=x,type=big", "type 'big'"),
    ("name=x,collector=ptr", "only built-in"), ("name=x,collector=magic", "unable to find metric collector"),
    ("name=x,children=nope", 'unable to find metric "nope"'), ("name=x,alias=nope", "unable to find"),
    ("name=x,type=alias", "requires a mapping"), ("name=x,collector=file", "arg1=FILENAME"),
    ("name=x,freq=soon", "freq='soon'"), ("name=x,bogus=1", "unknown key"), ("name=x,novalue", "key=value"),
])
def test_bad_custom_metric(value, message) -> None:
    with pytest.raises(MetricError, match=message if "(" not in message else None) as info:
        _table(value)
    assert message in str(info.value)


@given(st.text(max_size=60))
def test_metric_option_parser_fails_only_with_metric_error(text) -> None:
    metrics = builtin_metrics(1, 1, 1, no_cores=True)
    try:
        add_custom(metrics, text)
    except MetricError as exc:
        assert "\n" not in str(exc).strip() or "\n" in text


def _service(t: MetricTable, board: Scoreboard) -> MetricsService:
    collectors.bind_sources(t, board, [], None, memory=lambda pid: (1000 * pid, 2000 * pid))
    return MetricsService(t)


def test_collectors_ptr_sum_avg_accumulator_adder_multiplier(tmp_path) -> None:
    board = Scoreboard(2, 1)
    src = tmp_path / "f"
    src.write_text("  12.9 \t-7 x\n")
    t = _table("name=s,collector=sum,children=worker.1.requests;worker.2.requests",
               "name=avg,collector=avg,children=worker.1.requests;worker.2.requests",
               "name=acc,collector=accumulator,children=worker.1.requests,initial_value=1",
               "name=add,collector=adder,arg1n=100,children=worker.2.requests",
               "name=mul,collector=multiplier,arg1n=-3,children=s",
               f"name=f0,collector=file,arg1={src}", f"name=f1,collector=file,arg1={src},arg1n=1",
               f"name=f9,collector=file,arg1={src},arg1n=9",
               "name=slow,collector=sum,children=worker.1.requests,freq=5")
    svc = _service(t, board)
    board.workers[1].requests, board.workers[2].requests = 5, 2
    board.workers[1].pid, board.workers[1].busy_cores = 7, 1
    board.workers[1].avg_rt, board.workers[2].avg_rt = 100, 51
    svc.tick(1000.0)
    v = {m.name: t.value(m) for m in t}
    assert v["worker.0.requests"] == 7 and v["worker.1.requests"] == 5
    assert (v["s"], v["avg"], v["add"], v["mul"]) == (7, 3, 102, -21)
    assert v["acc"] == 1 + 1 + 5  # initial + its own value (the initial one) + children
    assert (v["f0"], v["f1"], v["f9"]) == (12, -7, 0)
    assert v["core.busy_workers"] == 1 and v["core.idle_workers"] == 1
    assert v["worker.1.rss_size"] == 7000 and v["rss_size"] == 7000 and v["core.total_vsz"] == 14000
    assert v["core.avg_response_time"] == 75 and v["slow"] == 5
    board.workers[1].requests = 6
    svc.tick(1000.5)  # within the period: nothing collected
    assert t.read("worker.1.requests") == 5
    svc.tick(1001.0)
    assert t.read("worker.1.requests") == 6 and t.read("acc") == 1 + 7 + 6 and t.read("slow") == 5
    svc.tick(1005.0)
    assert t.read("slow") == 6


def test_func_collector_python_and_c(tmp_path, monkeypatch) -> None:
    mod = tmp_path / "mycollector.py"
    mod.write_text("def value(name):\n    return len(name) * 10\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    t = _table("name=py,collector=func,arg1=mycollector:value", "name=c,collector=func,arg1=getpid",
               "name=missing,collector=func,arg1=nosuchmodule:x")
    _service(t, Scoreboard(2, 1)).tick(1.0)
    assert t.read("py") == 20 and t.read("c") == os.getpid() and t.read("missing") == 0


def test_threshold_resets(tmp_path) -> None:
    t = _table("hits")
    m, th = add_threshold(t, "key=hits,value=10,reset=2")
    assert (m.name, th.value, th.reset) == ("hits", 10, 2)
    svc = _service(t, Scoreboard(2, 1))
    t.update("hits", lambda v: 9)
    svc.tick(1.0)
    assert t.read("hits") == 9
    t.update("hits", lambda v: 12)
    svc.tick(2.0)
    assert t.read("hits") == 2
    for bad in ("key=hits", "value=3", "key=nope,value=1,reset=0", "key=hits,value=1",
                "key=hits,value=1,reset=0,alarm=x", "key=hits,value=1,reset=0,rate=3"):
        with pytest.raises(MetricError):
            add_threshold(t, bad)


def test_metrics_dir_files_and_restore(tmp_path) -> None:
    t = _table("hits", "name=g,type=gauge,initial_value=4")
    t.map_dir(str(tmp_path), restore=False)
    svc = _service(t, Scoreboard(2, 1))
    t.update("hits", lambda v: v + 41)
    svc.tick(1.0)
    page = (tmp_path / "hits").read_bytes()
    assert len(page) == os.sysconf("SC_PAGE_SIZE") and page.startswith(b"41\n\0")
    assert (tmp_path / "g").read_bytes().startswith(b"4\n\0")
    t.update("hits", lambda v: -3)
    svc.tick(2.0)
    assert (tmp_path / "hits").read_bytes().startswith(b"-3\n\0\0")
    t.close_maps()
    (tmp_path / "worker.1.requests").write_bytes(b"17\n")
    t2 = _table("hits", "name=g,type=gauge,initial_value=4")
    t2.map_dir(str(tmp_path), restore=True)
    svc2 = _service(t2, Scoreboard(2, 1))
    svc2.tick(1.0)
    assert t2.read("hits") == -3 and t2.read("worker.1.requests") == 17


def test_api_functions(monkeypatch) -> None:
    t = _table("c", "name=col,collector=sum,children=c", "name=al,type=alias,alias=c",
               "name=m,initial_value=10")
    monkeypatch.setattr(api, "_table", t)
    assert api.metric_get("nosuch") == 0 and api.metric_get("c") == 0
    ex = api.exports(None)  # type: ignore[arg-type]
    assert ex["metric_inc"]("c") is True and ex["metric_inc"]("c", 4) is True and t.read("c") == 5
    assert ex["metric_dec"]("c", 7) is True and t.read("c") == -2
    assert ex["metric_mul"]("c", 3) is True and ex["metric_div"]("c", 4) is True and t.read("c") == -1
    assert ex["metric_div"]("c", 0) is None
    assert ex["metric_set"]("c") is True and t.read("c") == 1  # metric_set's value defaults to 1
    for refused in ("col", "al", "nosuch"):
        assert ex["metric_inc"](refused) is None
    assert ex["metric_set_max"]("m", 3) is True and t.read("m") == 10
    assert ex["metric_set_max"]("m", 30) is True and t.read("m") == 30
    assert ex["metric_set_min"]("m", 5) is True and t.read("m") == 30  # not above initial_value
    assert ex["metric_set_min"]("m", 20) is True and t.read("m") == 20
    ex["metric_set"]("c", (1 << 63) - 1)
    ex["metric_inc"]("c")
    assert t.read("c") == -(1 << 63)  # int64 wraps as in C
    with pytest.raises(TypeError):
        ex["metric_inc"]("c", 1.5)
    with pytest.raises(TypeError):
        ex["metric_get"](b"c")
    monkeypatch.setattr(api, "_table", None)
    assert ex["metric_inc"]("c") is None and api.metric_get("c") == 0


@pytest.mark.parametrize("text,value", [
    ("5", 5), (" \t-12abc", -12), ("+7", 7), ("", 0), ("x1", 0), ("-", 0), ("1.9", 1),
    ("99999999999999999999", (1 << 63) - 1), ("-99999999999999999999", -(1 << 63)),
])
def test_strtol_reads_values_as_c_does(text: str, value: int) -> None:
    assert api.strtol(text) == value


def test_router_metrics_actions(monkeypatch) -> None:
    """router_metrics' NAME[,VALUE] (VALUE 1 when absent), as route and hook actions use it."""
    t = _table("c", "name=col,collector=sum,children=c")
    monkeypatch.setattr(api, "_table", t)
    assert api.split_action("c") == ("c", "1") and api.split_action("c,2,3") == ("c", "2,3")
    assert api.apply_action("metricinc", "c", "1") and t.read("c") == 1
    assert api.apply_action("metricmul", "c", "6") and api.apply_action("metricdec", "c", "2")
    assert api.apply_action("metricdiv", "c", "-2") and t.read("c") == -2
    assert api.apply_action("metricset", "c", "x") and t.read("c") == 0
    assert not api.apply_action("metricdiv", "c", "0")
    assert not api.apply_action("metricinc", "col", "1") and not api.apply_action("metricinc", "no", "1")
    hook = api.hook_action("metricinc")
    assert hook("c,4", None) == 0 and t.read("c") == 4
    assert hook("nosuch", None) == -1


def test_prometheus_worker_status_is_the_stats_status() -> None:
    """A cheaped worker (never spawned, or told to go while it finishes a request) is "cheap"
    on /metrics as in the stats JSON, not "idle" or "busy"."""
    from vassal.metrics.prometheus import InstanceCollector

    board = Scoreboard(3, 1)
    board.workers[2].cheaped = 1
    board.workers[3].busy_cores = 1
    statuses = {s.labels["worker"]: s.labels["status"]
                for fam in InstanceCollector(board, []).collect() if fam.name == "uwsgi_worker_status"
                for s in fam.samples}
    assert statuses == {str(i): board.status_name(i) for i in (1, 2, 3)} == \
        {"1": "idle", "2": "cheap", "3": "busy"}
    board.workers[3].cheaped = 1  # cheaped while in its last request
    assert [s.labels["status"] for fam in InstanceCollector(board, []).collect()
            if fam.name == "uwsgi_worker_status" for s in fam.samples][2] == "cheap"


def test_file_collector_never_waits_on_a_fifo(tmp_path) -> None:
    """The master reads ``collector=file`` sources in its loop: a FIFO without a writer, or
    with a writer and no data, reads as 0 at once."""
    import threading

    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    results: list[int] = []
    reader = threading.Thread(target=lambda: results.append(collectors.read_file_field(str(fifo), 0)),
                              daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive() and results == [0]
    writer = os.open(fifo, os.O_RDWR)  # a writer that says nothing yet, then something
    try:
        assert collectors.read_file_field(str(fifo), 0) == 0
        os.write(writer, b"17 x\n")
        assert collectors.read_file_field(str(fifo), 0) == 17
    finally:
        os.close(writer)
    (tmp_path / "plain").write_text("a 42\n")
    assert collectors.read_file_field(str(tmp_path / "plain"), 1) == 42
