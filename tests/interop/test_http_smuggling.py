"""Request smuggling: a table of known framing attacks against `http-socket`, and its twin on
real uWSGI.

Each vector is one write on a fresh connection: a request whose framing a front proxy and the
server could read differently, with a second request (``GET /smuggled``) hidden where one of
the readings would find it. Imperium must answer each with a single refusal (a 400, or the
status named in ``NOT_400``) and close the connection: none of them is RFC 9112 framing, and
the app must never see one.

The same table runs against Debian's uWSGI (``http-socket`` and ``http11-socket``) for
reference: what it does is recorded (printed, and summarised in docs/interop.md), not
asserted, since uWSGI 2.0 reads none of these as RFC 9112 asks.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import Procs, free_port, port_open, wait_until
from tests.interop.helpers import UWSGI_CORE, copy_app, need_uwsgi

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
POST = b"POST /front HTTP/1.1\r\nHost: h\r\n"


def _chunk_of(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


#: name -> raw bytes of one write
VECTORS: dict[str, bytes] = {
    # CL.TE: the front uses Content-Length (6 bytes: "0\r\n\r\nG"), the back chunked
    "cl-te": POST + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    # TE.CL: the front de-chunks, the back stops after Content-Length
    "te-cl": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-cl-uppercase": POST + b"TRANSFER-ENCODING: CHUNKED\r\nContent-Length: 4\r\n\r\n" + _chunk_of(SMUGGLED),
    # TE.TE: obfuscated Transfer-Encoding that one side honours and the other ignores
    "te-space-before-colon": POST + b"Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n"
    + _chunk_of(SMUGGLED),
    "te-tab-value": POST + b"Content-Length: 4\r\nTransfer-Encoding:\tchunked\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-vertical-tab": POST + b"Content-Length: 4\r\nTransfer-Encoding:\x0bchunked\r\n\r\n"
    + _chunk_of(SMUGGLED),
    "te-notchunked": POST + b"Transfer-Encoding: notchunked\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-xchunked": POST + b"Transfer-Encoding: xchunked\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-quoted": POST + b"Transfer-Encoding: \"chunked\"\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-chunked-not-last": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-gzip-chunked": POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-twice": POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-leading-comma-with-cl": POST + b"Content-Length: 4\r\nTransfer-Encoding: ,chunked\r\n\r\n"
    + _chunk_of(SMUGGLED),
    "te-obs-fold": POST + b"Content-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" + _chunk_of(SMUGGLED),
    "te-http10": b"POST /front HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunk_of(SMUGGLED),
    # Content-Length that one side reads as a number and the other refuses or reads otherwise
    "cl-twice-differing": POST + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
    + SMUGGLED,
    "cl-twice-same": POST + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n" + SMUGGLED,
    "cl-space-before-colon": POST + b"Content-Length : %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "cl-underscore": POST + b"Content-Length: 1_0\r\n\r\n" + SMUGGLED,
    "cl-plus": POST + b"Content-Length: +%d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "cl-hex": POST + b"Content-Length: 0x%x\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "cl-list": POST + b"Content-Length: 0, %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "cl-negative": POST + b"Content-Length: -1\r\n\r\n" + SMUGGLED,
    "cl-overflow": POST + b"Content-Length: 18446744073709551617\r\n\r\n" + SMUGGLED,
    # line endings and bytes that end a header early for one reader only
    "bare-lf-head": b"POST /front HTTP/1.1\nHost: h\nContent-Length: %d\n\n" % len(SMUGGLED) + SMUGGLED,
    "bare-cr-in-value": POST + b"X-A: a\rContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "nul-in-value": POST + b"X-A: a\x00b\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "obs-fold-hides-cl": POST + b"X-A: a\r\n Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "cl-underscore-name": POST + b"Content_Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "te-underscore-name": POST + b"Transfer_Encoding: chunked\r\n\r\n" + _chunk_of(SMUGGLED),
    "space-in-header-name": POST + b"Content Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "two-hosts": b"GET /front HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + SMUGGLED,
    # chunk sizes that overflow or are not hex digits
    "chunk-size-overflow": POST + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff1\r\nab\r\n0\r\n\r\n"
    + SMUGGLED,
    "chunk-size-negative": POST + b"Transfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n" + SMUGGLED,
    "chunk-size-0x": POST + b"Transfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n" + SMUGGLED,
    "chunk-size-space": POST + b"Transfer-Encoding: chunked\r\n\r\n2 \r\nab\r\n0\r\n\r\n" + SMUGGLED,
    "chunk-data-overrun": POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n" + SMUGGLED,
    "chunk-bare-lf": POST + b"Transfer-Encoding: chunked\r\n\r\n2\nab\n0\n\n" + SMUGGLED,
}

#: what Imperium answers to each vector: 400 unless named here (a coding it does not
#: implement is 501, RFC 9112 6.1); never the app's 200, since none of them is valid framing
NOT_400 = {"te-gzip-chunked": 501}

INI = """[uwsgi]
{kind} = 127.0.0.1:{port}
wsgi-file = %d/echo.py
master = true
processes = 4
socket-timeout = 2
"""


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in a byte stream (framed by Content-Length)."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            out.append((0, data))  # garbage or a truncated head
            break
        head, rest = data[:end], data[end + 4:]
        first = head.split(b"\r\n", 1)[0].split(b" ")
        try:
            status = int(first[1])
        except (IndexError, ValueError):
            status = 0
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            out.append((status, rest))
            break
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


def exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send one write and read until the server closes; (bytes, closed by the server in time)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return got, False
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
        return got, False


def start(procs: Procs, base, kind: str, argv_head: list[str]) -> int:
    d = base / kind
    copy_app("echo.py", d)
    port = free_port()
    option = "http11-socket" if kind == "uwsgi-http11" else "http-socket"
    (d / "s.ini").write_text(INI.format(kind=option, port=port))
    p = procs.start([*argv_head, "--ini", str(d / "s.ini")], cwd=d)
    wait_until(lambda: p.poll() is not None or port_open(port), 20, message=f"{kind} on {port}")
    assert p.poll() is None, procs.output(p)[-3000:]
    return port


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import IMPERIUM

    base = tmp_path_factory.mktemp("smuggling")
    procs = Procs(base)
    try:
        yield start(procs, base, "imperium", [IMPERIUM])
    finally:
        procs.kill_all()


def test_the_table_has_at_least_20_vectors() -> None:
    assert len(VECTORS) >= 20


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_smuggling_vector_gets_one_answer_and_a_close(ours: int, name: str) -> None:
    data, closed = exchange(ours, VECTORS[name])
    answers = responses(data)
    assert closed, f"{name}: the connection was left open after {answers}"
    assert len(answers) == 1, f"{name}: {len(answers)} responses: {data[:600]!r}"
    status, body = answers[0]
    assert b"/smuggled" not in body, f"{name}: the hidden request reached the app"
    assert status == NOT_400.get(name, 400), f"{name}: {data[:300]!r}"


def test_smuggling_refusals_are_400s_where_the_framing_is_bad(ours: int) -> None:
    # a few that llhttp + our checks must refuse outright, never pass to the app
    for name in ("cl-te", "te-cl", "te-space-before-colon", "cl-twice-differing", "cl-underscore",
                 "cl-space-before-colon", "te-notchunked", "obs-fold-hides-cl", "nul-in-value",
                 "bare-cr-in-value", "chunk-size-overflow", "two-hosts", "te-http10",
                 "cl-underscore-name", "te-underscore-name"):
        data, _ = exchange(ours, VECTORS[name])
        assert data.startswith(b"HTTP/1.1 400 "), f"{name}: {data[:200]!r}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    need_uwsgi()
    base = tmp_path_factory.mktemp("smuggling-uwsgi")
    procs = Procs(base)
    try:
        argv = [UWSGI_CORE, "--plugin", "python3"]
        yield {kind: start(procs, base, kind, argv) for kind in ("uwsgi", "uwsgi-http11")}
    finally:
        procs.kill_all()


def test_smuggling_table_against_uwsgi(reference: dict[str, int], capsys: pytest.CaptureFixture) -> None:
    """Record what real uWSGI does with each vector (the twin: ours is asserted above)."""
    import concurrent.futures

    jobs = [(kind, name) for kind in reference for name in sorted(VECTORS)]

    def run(job: tuple[str, str]) -> tuple[str, str, str]:
        kind, name = job
        data, closed = exchange(reference[kind], VECTORS[name], timeout=8)
        answers = responses(data)
        smuggled = any(b"/smuggled" in body for _s, body in answers)
        statuses = "+".join(str(s) for s, _b in answers) or "none"
        return kind, name, f"{statuses}{' SMUGGLED' if smuggled else ''}{'' if closed else ' open'}"

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(run, jobs))
    table = {(k, n): r for k, n, r in rows}
    with capsys.disabled():
        print("\nvector                        uwsgi http-socket      uwsgi http11-socket")
        for name in sorted(VECTORS):
            print(f"{name:<30}{table['uwsgi', name]:<23}{table['uwsgi-http11', name]}")
    assert len(table) == 2 * len(VECTORS)
