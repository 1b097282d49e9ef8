"""Static files: the pure parts (dates, ranges, mime.types, the inside-a-directory rule) and
the option errors; the twin tests in tests/interop check the answers against uWSGI."""

from __future__ import annotations

import calendar
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vassal.config import load_config
from vassal.protocols import static as S


def test_http_date_round_trip() -> None:
    t = calendar.timegm((2024, 2, 29, 13, 5, 9, 0, 0, 0))
    assert S.http_date(t) == "Thu, 29 Feb 2024 13:05:09 GMT"
    assert S.parse_http_date(S.http_date(t)) == t


@pytest.mark.parametrize("text", ["", "yesterday", "Thu, 29 Feb 2024 13:05:09", "Thu, 29 Foo 2024 13:05:09 GMT",
                                  "Thursday, 29-Feb-24 13:05:09 GMT", "Thu, 99 Feb 2024 13:05:09 GMT"])
def test_unreadable_dates_are_zero(text: str) -> None:
    assert S.parse_http_date(text) == 0


@given(st.text(max_size=40))
def test_parse_http_date_never_raises(text: str) -> None:
    assert S.parse_http_date(text) >= 0 or True


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=1-3", 10, (S.Range.VALID, 1, 3)),
    ("bytes=2-", 10, (S.Range.VALID, 2, 9)),
    ("bytes=-2", 10, (S.Range.VALID, 8, 9)),
    ("bytes=-20", 10, (S.Range.NOT_PARSED, 0, 9)),  # a suffix longer than the file: all of it
    ("bytes=0-", 10, (S.Range.NOT_PARSED, 0, 9)),
    ("bytes=0-99", 10, (S.Range.NOT_PARSED, 0, 9)),
    ("bytes=10-12", 10, (S.Range.INVALID, 0, 0)),
    ("bytes=5-2", 10, (S.Range.INVALID, 0, 0)),
    ("bytes=1-2,4-5", 10, (S.Range.VALID, 1, 2)),  # only the first range, as uWSGI
    ("pages=1-2", 10, (S.Range.INVALID, 0, 0)),
    ("bytes=-0", 10, (S.Range.INVALID, 0, 0)),
    ("bytes=a-b", 10, (S.Range.INVALID, 0, 0)),
])
def test_ranges(header: str, size: int, expected: tuple) -> None:
    assert S.fix_range(*S.parse_range(header), size) == expected


@given(st.text(max_size=30), st.integers(min_value=1, max_value=1 << 40))
def test_ranges_stay_inside_the_file(header: str, size: int) -> None:
    parsed, lo, hi = S.fix_range(*S.parse_range(header), size)
    if parsed == S.Range.VALID:
        assert 0 <= lo <= hi < size


def test_under_is_component_wise() -> None:
    assert S.under(b"/srv/pub/a", b"/srv/pub")
    assert S.under(b"/srv/pub", b"/srv/pub/")
    assert not S.under(b"/srv/pub-secret/a", b"/srv/pub")
    assert not S.under(b"/srv/pubx", b"/srv/pub")
    assert S.under(b"/anything", b"/")


def test_mime_types_as_uwsgi_reads_them(tmp_path: Path) -> None:
    f = tmp_path / "mime.types"
    f.write_text("# comment\ntext/plain\ttxt text\napplication/x-first\tdup\napplication/x-second dup\n"
                 "text/x-c c\ntext/x-h h hh\nimage/x-trail\tq \n")
    table = S.load_mime_types([str(f), str(tmp_path / "missing")])
    assert table[b"txt"] == "text/plain" and table[b"text"] == "text/plain"
    assert table[b"dup"] == "application/x-first"  # first wins
    assert b"c" not in table  # a one-letter last extension is skipped by uWSGI's reader
    assert table[b"h"] == "text/x-h" and table[b"hh"] == "text/x-h"
    assert table[b"q"] == "image/x-trail"  # ... unless a blank follows it
    assert S.mime_type(table, b"/x/a.TXT") is None and S.mime_type(table, b"/x/a.txt") == "text/plain"
    assert S.mime_type(table, b"/x/noext") is None


def _static(tmp_path: Path, *lines: str) -> S.StaticFiles | None:
    ini = tmp_path / "s.ini"
    ini.write_text("[uwsgi]\n" + "\n".join(lines) + "\n")
    return S.from_config(load_config([str(ini)]))


def test_no_static_option_no_static_files(tmp_path: Path) -> None:
    assert _static(tmp_path, "static-index = index.html") is None


@pytest.mark.parametrize(("line", "needle"), [
    ("static-map = /s", "mountpoint=docroot"),
    ("static-expires = .* soon", "not a number"),
    ("static-expires = [ 10", "bad regular expression"),
    ("static-expires-type = text/css", "CONTENT_TYPE=SECONDS"),
])
def test_bad_values_are_named(tmp_path: Path, line: str, needle: str) -> None:
    with pytest.raises(S.StaticConfigError) as err:
        _static(tmp_path, "static-map = /x=/tmp", line)
    msg = str(err.value)
    assert needle in msg and line.split(" =")[0] in msg and "s.ini" in msg
    assert "\n" not in msg


def test_an_unknown_file_serve_mode_keeps_the_mode(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """uWSGI's option handler changes the mode only for a name it knows."""
    sf = _static(tmp_path, "static-map = /x=/tmp", "file-serve-mode = nginx", "file-serve-mode = offloading")
    assert sf is not None and sf.mode == S.ServeMode.X_ACCEL_REDIRECT
    out = capfd.readouterr()
    assert "file-serve-mode 'offloading' (" in out.out + out.err and "s.ini:" in out.out + out.err


def test_a_missing_docroot_is_retried(tmp_path: Path) -> None:
    sf = _static(tmp_path, f"static-map = /s={tmp_path}/later")
    assert sf is not None
    root = sf.roots[0]
    assert root.resolve() is None
    (tmp_path / "later").mkdir()
    assert root.resolve() == os.fsencode(os.path.realpath(tmp_path / "later"))


_TREE: dict[str, Path] = {}


def _tree() -> Path:
    """One tree for every example (hypothesis runs the test body many times)."""
    if "t" not in _TREE:
        import tempfile

        from tests.interop.static_tree import make_tree

        _TREE["t"] = make_tree(Path(tempfile.mkdtemp(prefix="static-fuzz-")))
    return _TREE["t"]


_PIECES = st.sampled_from(["..", ".", "", "pub", "pub-secret", "s.txt", "a.txt", "sub", "index.html",
                           "link-prefix.txt", "link-out.txt", "link-safe.txt", "%2e%2e", "\x00", "//", "shared",
                           "x.txt", "chk", "robots.txt"])


@settings(deadline=None)  # the first example builds the tree
@given(st.lists(_PIECES, max_size=8), st.sampled_from(["GET", "HEAD", "POST"]))
def test_nothing_outside_the_directory_is_ever_served(parts: list[str], method: str) -> None:
    import socket

    t = _tree()
    sf = S.StaticFiles(roots=[S._Root(b"/s", os.fsencode(t / "pub"), strip=True)], index=[b"index.html"],
                       safe=[os.fsencode(t / "shared")])
    path = "/s/" + "/".join(parts)
    a, b = socket.socketpair()
    try:
        a.settimeout(5)  # the files served here fit the socket buffer; never hang on a surprise
        b.setblocking(False)
        reply = sf.serve({"PATH_INFO": path, "REQUEST_METHOD": method, "SERVER_PROTOCOL": "HTTP/1.1"}, a, True, "")
        if reply is None:
            return
        data = b""
        while True:
            try:
                chunk = b.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        body = data.partition(b"\r\n\r\n")[2]
        assert b"secret" not in body
        allowed = {p.read_bytes() for p in (t / "pub").rglob("*") if p.is_file() and not p.is_symlink()}
        allowed.add((t / "shared" / "x.txt").read_bytes())
        assert method == "HEAD" or body in allowed
    finally:
        a.close()
        b.close()
