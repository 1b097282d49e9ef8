"""The C response head (vassal/protocols/_headfast.c) against _Response.head's Python code.

The Python code is the reference: for any status, headers and flags, the C builder must give
the same head and leave the same state, or decline (None) so that the Python code runs and
raises what it raises. Each example is run twice, once with the C builder and once without.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import need_service
from vassal import worker
from vassal.worker import _Response

try:
    from vassal.protocols import _headfast
except ImportError:
    _headfast = None  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _built() -> None:
    if _headfast is None:  # a skip here, a failure under CI=true
        need_service("response head accelerator", False,
                     "the C accelerator (vassal/protocols/_headfast.c) was not compiled by the install")


_STATE = ("protocol", "status", "headers", "extra", "keep", "head_only", "auto_chunked", "http", "has_length",
          "chunked", "nheaders", "head_bytes", "head_sent", "route")


class _Str(str):
    """A str subclass: its lower() or str() could be anything; the C code leaves it to Python."""


def _outcome(use_c: bool, protocol: Any, status: Any, headers: Any, extra: Any, keep: Any, length: Any,
             auto_chunked: Any, head_only: Any, http: Any) -> tuple:
    """head()'s answer (or error) and every attribute of the response afterwards."""
    r = _Response(None, protocol, keep, extra, head_only, auto_chunked)  # type: ignore[arg-type]
    r.http = http
    r.status = status
    r.headers = headers
    with mock.patch.object(worker, "_build_head", worker._build_head if use_c else None):
        try:
            answer: Any = ("head", r.head(length))
        except Exception as exc:  # the same error either way, message included
            answer = ("error", type(exc), str(exc))
    # bools stay bools: True and 1 are equal, but a flag's type is part of the answer (the C
    # path stores chunked on the instance where Python may leave the class's False: same value)
    return answer, {k: (type(getattr(r, k)), getattr(r, k)) for k in _STATE}


_latin1 = st.characters(max_codepoint=255)
_names = st.sampled_from([
    "Content-Length", "content-length", "CONTENT-LENGTH", "Content-length", "Connection", "connection",
    "CONNECTION", "cOnNeCtIoN", "Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING",
    "Content-Type", "X-Extra", "Contént-Length", "Connectio\u00f1", "CONTENT-LENGTH\u00c9", "Content-Lengt",
    "Content-Lengthh", "Connectio", "",
]) | st.text(_latin1, max_size=20)
_values = st.sampled_from([
    "close", "Close", "CLOSE", "keep-alive", "Keep-Alive", "upgrade, close", "x-clOSe-y", "clos", "clos\u00e9",
    "closé", "cl\u00d3se", "chunked", "13", "", "caf\u00e9", "cclose", "closclose",
]) | st.text(_latin1, max_size=20)
_pair = st.tuples(_names, _values)
_codes = st.sampled_from(["200", "204", "304", "100", "101", "199", "1", "2", "20", "204x", "404", "500", "304 ",
                          "\u00e904"])
_reasons = st.sampled_from(["", " OK", " No Content", " Not Modified", " Caf\u00e9", " Continue"])
_protocol = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.1 ", "http/1.1", "HTTP/2", "", "HTTP/1.\u00e9"])
_extra = st.sampled_from(["", "X-Extra: 1\r\n", "X-\u00e9: y\r\n", "A: 1\r\nB: 2\r\n"])
_length = st.none() | st.integers(-3, 10**7) | st.sampled_from([0, 2**63 - 1, -2**63])


@settings(max_examples=1500, deadline=None)
@given(protocol=_protocol, status=st.builds(lambda c, r: c + r, _codes, _reasons) | st.text(_latin1, max_size=12),
       headers=st.lists(_pair, max_size=6), extra=_extra, keep=st.booleans(), length=_length,
       auto_chunked=st.booleans(), head_only=st.booleans(), http=st.booleans())
def test_c_head_is_the_python_head(protocol, status, headers, extra, keep, length, auto_chunked, head_only,
                                   http) -> None:
    """Latin-1 text, bool flags: mostly the C builder's own cases (an empty status declines)."""
    args = (protocol, status, headers, extra, keep, length, auto_chunked, head_only, http)
    assert _outcome(True, *args) == _outcome(False, *args)


# what the C builder leaves to Python: other types, str subclasses, characters above latin-1
_wide = st.characters(min_codepoint=256, max_codepoint=0x10FFFF)
_odd_names = _names | st.sampled_from(["X-\u20ac", "Conne\u0107tion", "Conn\u0130ection", "Content-Length\u212a"])
_odd_values = _values | st.sampled_from(["\u20ac", "\u0130close", "close\u20ac", "\ud800"]) | st.text(_wide, max_size=3)
_odd_item = st.one_of(
    st.tuples(_odd_names, _odd_values),
    st.tuples(_names, _values).map(list),  # a list, not a tuple: Python unpacks it, C declines
    st.tuples(_names, _values, _values),
    st.tuples(_names),
    st.tuples(_names, st.sampled_from([b"close", None, 5, 1.5])),
    st.tuples(st.sampled_from([b"Connection", None, 7]), _values),
    st.tuples(_names.map(_Str), _values),
    st.tuples(_names, _values.map(_Str)),
)
_odd_headers = st.lists(_pair | _odd_item, max_size=6)
_flag = st.booleans() | st.sampled_from([0, 1, None])


@settings(max_examples=1500, deadline=None)
@given(protocol=_protocol | st.sampled_from(["HTTP/1.\u20ac", _Str("HTTP/1.1")]),
       status=st.builds(lambda c, r: c + r, _codes | st.just("\u20ac04"), _reasons | st.just(" \u20ac"))
       | st.text(max_size=12) | st.sampled_from([None, "", b"200 OK", _Str("200 OK")]),
       headers=_odd_headers | _odd_headers.map(tuple), extra=_extra | st.sampled_from(["X-\u20ac: y\r\n", _Str("X: 1\r\n")]),
       keep=_flag, length=_length | st.sampled_from([2**63, 2**70, True, 5.0, "5"]), auto_chunked=_flag,
       head_only=_flag, http=_flag)
def test_odd_inputs_give_the_python_answer(protocol, status, headers, extra, keep, length, auto_chunked, head_only,
                                           http) -> None:
    """Whatever the C builder declines ends as the Python code says: same head, or same error."""
    args = (protocol, status, headers, extra, keep, length, auto_chunked, head_only, http)
    assert _outcome(True, *args) == _outcome(False, *args)


@settings(max_examples=500, deadline=None)
@given(protocol=st.sampled_from(["HTTP/1.1", "HTTP/1.0"]), code=_codes,
       headers=st.lists(_pair, max_size=6),
       keep=st.booleans(), length=st.none() | st.integers(0, 10**9), auto_chunked=st.booleans(),
       head_only=st.booleans(), http=st.booleans())
def test_plain_latin1_answers_are_built_in_c(protocol, code, headers, keep, length, auto_chunked, head_only,
                                             http) -> None:
    """Exact str, latin-1, a list of pairs, bool flags: the C builder answers (no fallback),
    and its answer is the Python one."""
    status = code + " OK"
    built = _headfast.build(protocol, status, headers, "X-Extra: 1\r\n", keep, length, auto_chunked, head_only,
                            http, False)
    assert built is not None
    args = (protocol, status, headers, "X-Extra: 1\r\n", keep, length, auto_chunked, head_only, http)
    answer, state = _outcome(False, *args)
    assert answer == ("head", built[0])
    assert (built[1], built[2], built[3], built[4], built[5]) == (
        state["keep"][1], state["has_length"][1], state["chunked"][1], state["nheaders"][1], state["head_bytes"][1])


def test_hello_world_head() -> None:
    """The benchmark's answer, through head() with the C builder in place."""
    assert worker._build_head is not None
    r = _Response(None, "HTTP/1.1", True, "")  # type: ignore[arg-type]
    r.http = True
    r.start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    assert r.head(13) == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
    assert (r.keep, r.has_length, r.chunked, r.nheaders, r.head_bytes) == (True, True, False, 2, 65)


@pytest.mark.parametrize("case", [
    ("HTTP/1.1", "200 OK", [("A", "\u20ac")], ""),
    ("HTTP/1.1", "200 OK", [("A", "b", "c")], ""),
    ("HTTP/1.1", "200 OK", [["A", "b"]], ""),
    ("HTTP/1.1", "200 OK", (("A", "b"),), ""),
    ("HTTP/1.1", _Str("200 OK"), [], ""),
    ("HTTP/1.1", "", [], ""),
    ("HTTP/1.1", "200 OK", [], "X-\u20ac: 1\r\n"),
])
def test_odd_inputs_fall_back(case) -> None:
    protocol, status, headers, extra = case
    assert _headfast.build(protocol, status, headers, extra, True, 5, False, False, True, False) is None


def test_non_latin1_header_raises_the_python_error() -> None:
    r = _Response(None, "HTTP/1.1", True, "")  # type: ignore[arg-type]
    r.start_response("200 OK", [("X-Name", "\u20ac")])
    with pytest.raises(TypeError, match="invalid response status or header"):
        r.head(1)


def test_every_flag_combination() -> None:
    """The branches of the head, all of them: protocols, bodiless statuses, lengths, the app's
    own framing and Connection headers, and the four flags."""
    header_sets = [[], [("Content-Length", "3")], [("transfer-encoding", "chunked")], [("CONNECTION", "Close")],
                   [("Connection", "keep-alive")], [("X-A", "1"), ("connection", "upgrade, CLOSE")]]
    n = 0
    for protocol in ("HTTP/1.1", "HTTP/1.0"):
        for status in ("200 OK", "204 No Content", "304 Not Modified", "101 Switching", "1", "404 Not Found"):
            for length in (None, 0, 7):
                for headers in header_sets:
                    for bits in range(16):
                        flags = [bool(bits & (1 << i)) for i in range(4)]  # keep, auto_chunked, head_only, http
                        args = (protocol, status, headers, "X-Extra: 1\r\n", flags[0], length, *flags[1:])
                        assert _outcome(True, *args) == _outcome(False, *args), args
                        n += 1
    assert n == 2 * 6 * 3 * 6 * 16
