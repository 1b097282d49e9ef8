"""Request log lines (log-format, conditions), logger specs and encoders, log variables.

What uWSGI writes for the same formats is checked in tests/interop/test_logging_vs_uwsgi.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vassal import log as logmod
from vassal.logs import loggers as L
from vassal.logs.request import Done, RequestLog, compile_format


def done(**kw) -> Done:
    base = dict(env={"REQUEST_METHOD": "GET", "REQUEST_URI": "/x?y=1", "REMOTE_ADDR": "10.0.0.1",
                     "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_X_FORWARDED_FOR": "203.0.113.1"},
                status=200, body_bytes=12, head_bytes=40, nheaders=2, switches=1, via="", protocol="HTTP/1.1",
                t0=1_700_000_000.25, t1=1_700_000_000.5, app_id=0, app_requests=3, total_requests=9, nvars=20,
                pktsize=300, core=0, wid=2)
    base.update(kw)
    return Done(**base)


def render(fmt: str, d: Done) -> bytes:
    return b"".join(p if type(p) is bytes else (p(d) or b"-") for p in compile_format(fmt))


def test_variables() -> None:
    d = done(logvars={b"who": b"me"})
    line = render("%(method) %(uri) %(status) %(rsize) %(hsize) %(size) %(msecs) %(micros) %(wid) %(who) "
                  "%(missing) %(var.HTTP_X_FORWARDED_FOR) %(time) %(tmsecs) %(cl) %(metric.x)", d)
    assert line == b"GET /x?y=1 200 12 40 52 250 250000 2 me - 203.0.113.1 1700000000 1700000000250 0 0\n"
    assert render("%(secs)", d) == b"0.250000\n"
    assert render("%(ctime)", d) == time.ctime(1_700_000_000).encode() + b"\n"


@pytest.mark.parametrize(("fmt", "pieces"), [
    ("plain", [b"plain", b"\n"]),
    ("%(uri)", ["v", b"\n"]),
    ("a %(uri) b", [b"a ", "v", b" b", b"\n"]),
    ("100%% (x)", [b"100%% (x)", b"\n"]),  # no variable without a name after "%("
    ("%()y)", [b"%", "v", b"\n"]),  # uWSGI's state machine: the ")" leaves "%(" open
    ("a %(uri", [b"a ", b"a %(uri", b"\n"]),  # unterminated: the text comes again
])
def test_format_is_cut_as_uwsgi_cuts_it(fmt: str, pieces: list) -> None:
    got = ["v" if callable(p) else p for p in compile_format(fmt)]
    assert got == pieces


@given(st.text(max_size=60))
def test_any_format_compiles_to_one_line(fmt: str) -> None:
    line = render(fmt, done())
    assert line.endswith(b"\n")


def test_conditions_when_logging_is_disabled() -> None:
    quiet = RequestLog(enabled=False, log_4xx=True, slow=200, big=100, zero=True, sendfile=True)
    assert not quiet.wanted(done(status=200, body_bytes=12, t1=1_700_000_000.3))
    assert quiet.wanted(done(status=404))
    assert quiet.wanted(done(t1=1_700_000_000.45))  # 200 ms: at least log-slow
    assert quiet.wanted(done(body_bytes=100))  # at least log-big
    assert quiet.wanted(done(body_bytes=0))  # log-zero
    assert quiet.wanted(done(via="sendfile"))
    assert not quiet.wanted(done(status=500, t1=1_700_000_000.3))


def test_default_line_via_micros_and_xff() -> None:
    log = RequestLog(micros=True, xff=True)
    d = done(via="offload")
    line = log.line(d.env, d.status, d.body_bytes, d.head_bytes, d.nheaders, d.switches, d.via, d.protocol, d.t0,
                    d.t1, d.app_id, d.app_requests, d.total_requests, d.nvars, d.pktsize, d.core, 4242).decode()
    assert line.startswith("[pid: 4242") and "|app: 0|req: 3/9] 203.0.113.1 () {20 vars in 300 bytes}" in line
    assert "GET /x?y=1 => generated 12 bytes in 250000 micros via offload() (HTTP/1.1 200) 2 headers in 40 " \
           "bytes (1 switches on core 0)\n" in line


def test_logvars_are_per_request_and_bounded() -> None:
    logmod.take_logvars()
    logmod.set_logvar("k", "v" * 300)
    assert logmod.get_logvar(b"k") == b"v" * 255
    assert logmod.take_logvars() == {b"k": b"v" * 255}
    assert logmod.get_logvar("k") is None


@pytest.mark.parametrize(("spec", "needle"), [
    ("file", "needs a path"),
    ("file:a=b", "missing logfile key"),
    ("file:logfile=/tmp/x,maxsize=big", "not a number"),
    ("fd:x", "file descriptor"),
    ("socket", "needs an address"),
    ("redislog:127.0.0.1", "unable to find logger redislog"),
])
def test_bad_logger_specs(spec: str, needle: str) -> None:
    with pytest.raises(L.LoggerError, match=needle):
        L.make_logger(spec)


def test_logger_specs(tmp_path: Path) -> None:
    lg = L.make_logger(f"errs file:{tmp_path}/e.log")
    assert isinstance(lg, L.FileLogger) and lg.id == "errs" and lg.path == f"{tmp_path}/e.log"
    lg.write(b"one\n")
    lg.close()
    assert (tmp_path / "e.log").read_bytes() == b"one\n"
    sl = L.make_logger("syslog:app,local7")
    assert (sl.ident, sl.facility) == ("app", 23) and sl.id is None
    assert L.make_logger("syslog").ident == "uwsgi"
    so = L.make_logger("socket:127.0.0.1:9,pfx ")
    assert so.addr == ("127.0.0.1", 9) and so.prefix == b"pfx "


def test_file_logger_rotates_itself(tmp_path: Path) -> None:
    lg = L.make_logger(f"file:logfile={tmp_path}/f.log,maxsize=10,backupname={tmp_path}/f.old")
    lg.write(b"0123456789abc\n")
    lg.write(b"next\n")
    assert (tmp_path / "f.old").read_bytes() == b"0123456789abc\n"
    assert (tmp_path / "f.log").read_bytes() == b"next\n"


def test_encoders() -> None:
    assert L.make_encoder("prefix >> ").fn(b"x\n") == b">> x\n"
    assert L.make_encoder("suffix <<").fn(b"x") == b"x<<"
    assert L.make_encoder("nl").fn(b"x") == b"x\n"
    assert L.make_encoder("format [${msg}]").fn(b"x\n") == b"[x]"
    doc = L.make_encoder('json {"m": "${msg}", "t": ${unix}}').fn(b'say "hi"\n')
    assert json.loads(doc)["m"] == 'say "hi"'
    only = L.make_encoder("prefix:errs E ")
    assert only.use_for == "errs" and not only.applies(None)
    with pytest.raises(L.LoggerError, match="not found"):
        L.make_encoder("rot13")
