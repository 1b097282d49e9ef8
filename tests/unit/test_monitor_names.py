"""Monitors are bytes-safe: odd names never stop a scan, a partial scan never stops vassals."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from emperor.events import (
    Event,
    MonitorContext,
    Sync,
    Touch,
    as_name,
    is_valid_name,
    name_bytes,
    printable,
)
from monitors.dir import DirMonitor
from monitors.glob import GlobMonitor
from monitors.pg import BadRow, parse_row
from monitors.records import RecordScan

BAD = os.fsdecode(b"\xff\xfe.ini")  # a file name that is not UTF-8, as os.listdir gives it


def _make(directory: Path, raw: bytes) -> None:
    with open(os.fsencode(directory) + b"/" + raw, "w") as f:
        f.write("[uwsgi]\n")


def _dir_monitor(directory: Path, events: list[Event]) -> DirMonitor:
    return DirMonitor(str(directory), lambda m, e: events.append(e), MonitorContext())


def _syncs(events: list[Event]) -> list[frozenset[str]]:
    return [e.names for e in events if isinstance(e, Sync)]


def test_names_are_bytes_as_in_uwsgi() -> None:
    assert is_valid_name(BAD)  # uWSGI starts it: its names are C strings, any bytes
    assert name_bytes(BAD) == b"\xff\xfe.ini"
    assert not is_valid_name("a\0.ini")  # no C string holds it, execve() refuses it
    assert not is_valid_name("\ud800.ini")  # a lone surrogate no byte string decodes to
    assert is_valid_name("é" * 125 + ".ini")  # 254 bytes
    assert not is_valid_name("é" * 126 + ".ini")  # 256 bytes, though 130 characters
    assert as_name(b"\xff.ini") == "\udcff.ini" and as_name("x") == "x" and as_name(3) is None
    assert printable(BAD) == "\\xff\\xfe.ini"
    assert printable("a\nb\t.ini") == "a\\nb\\t.ini"  # one log line stays one line
    assert printable("\ud800.ini") == "\\ud800.ini"


def test_dir_rescan_survives_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    """On main, the rescan raised UnicodeEncodeError on the odd name: no Sync ever again."""
    _make(tmp_path, b"a.ini")
    _make(tmp_path, b"\xff\xfe.ini")
    events: list[Event] = []
    m = _dir_monitor(tmp_path, events)
    m.rescan()
    assert _syncs(events) == [frozenset({"a.ini", BAD})]
    touched = {e.name: e for e in events if isinstance(e, Touch)}
    assert os.fsencode(touched[BAD].path or "") == os.fsencode(tmp_path) + b"/\xff\xfe.ini"
    # a deleted vassal is dropped and a new one is seen, whatever sorts around them
    (tmp_path / "a.ini").unlink()
    _make(tmp_path, b"\xff\xff-z.ini")
    events.clear()
    m.rescan()
    assert _syncs(events) == [frozenset({BAD, os.fsdecode(b"\xff\xff-z.ini")})]


def test_glob_rescan_survives_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    for sub in (b"one", b"tw\xffo"):
        os.mkdir(os.fsencode(tmp_path) + b"/" + sub)
        _make(tmp_path, sub + b"/uwsgi.ini")
    events: list[Event] = []
    m = GlobMonitor(f"glob://{tmp_path}/*/uwsgi.ini", lambda mon, e: events.append(e),
                    MonitorContext())
    m.rescan()
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/tw\xffo/uwsgi.ini")
    assert _syncs(events) == [frozenset({f"{tmp_path}/one/uwsgi.ini", odd})]
    os.unlink(os.fsencode(odd))
    events.clear()
    m.rescan()
    assert _syncs(events) == [frozenset({f"{tmp_path}/one/uwsgi.ini"})]


def test_one_bad_entry_is_skipped_with_one_line_and_keeps_its_vassal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a.ini", "b.ini", "c.ini"):
        (tmp_path / name).write_text("[uwsgi]\n")
    events: list[Event] = []
    m = _dir_monitor(tmp_path, events)
    m.rescan()
    real_look = m.look

    def look(path: str, name: str):  # type: ignore[no-untyped-def]
        if name == "b.ini":
            raise RuntimeError("something odd about b")
        return real_look(path, name)
    m.look = look  # type: ignore[method-assign]
    (tmp_path / "c.ini").unlink()
    events.clear()
    with caplog.at_level(logging.WARNING, logger="imperium.emperor"):
        m.rescan()
        m.rescan()
    # b is kept (its vassal keeps running), c is gone, and the scan finished both times
    assert _syncs(events) == [frozenset({"a.ini", "b.ini"})] * 2
    lines = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(lines) == 1 and "b.ini" in lines[0] and "something odd about b" in lines[0]


def test_a_listing_that_fails_part_way_sends_no_sync(tmp_path: Path) -> None:
    (tmp_path / "a.ini").write_text("[uwsgi]\n")
    events: list[Event] = []
    m = _dir_monitor(tmp_path, events)
    m.rescan()
    assert _syncs(events) == [frozenset({"a.ini"})]

    def broken():  # type: ignore[no-untyped-def]
        yield str(tmp_path / "x.ini"), "x.ini"
        raise OSError(5, "Input/output error")
    m.listing = broken  # type: ignore[method-assign]
    events.clear()
    m.rescan()
    assert _syncs(events) == []  # unknown is not empty: nothing may be stopped


def test_a_listing_that_misses_an_existing_file_does_not_stop_it(tmp_path: Path) -> None:
    """glob() skips what it cannot read; a vassal stops only when its file is really gone."""
    (tmp_path / "a.ini").write_text("[uwsgi]\n")
    (tmp_path / "b.ini").write_text("[uwsgi]\n")
    events: list[Event] = []
    m = _dir_monitor(tmp_path, events)
    m.rescan()
    real = m.listing
    m.listing = lambda: [e for e in real() or [] if e[1] != "b.ini"]  # type: ignore[method-assign]
    events.clear()
    m.rescan()
    assert _syncs(events) == [frozenset({"a.ini", "b.ini"})]
    (tmp_path / "b.ini").unlink()
    events.clear()
    m.rescan()
    assert _syncs(events) == [frozenset({"a.ini"})]


def test_record_scan_names_from_bytes_and_odd_records(caplog: pytest.LogCaptureFixture) -> None:
    """A pg row whose name came as bytes (SQL_ASCII) still counts; an odd row is skipped."""
    events: list[Event] = []
    scan: RecordScan[tuple] = RecordScan(
        events.append, logging.getLogger("imperium.emperor"), "[emperor-pg]", "row",
        is_valid_name, name_of=lambda r: r[0], key_of=lambda r: as_name(r[0]) or repr(r[0]),
        parse=lambda r: parse_row(r, False) if r[1] != "boom" else 1 / 0, bad=BadRow)
    with caplog.at_level(logging.WARNING, logger="imperium.emperor"):
        scan.emit_all([(b"\xff.ini", "[uwsgi]", 1), ("x.ini", "boom", 1), ("y.ini", "c", 2)])
    names = {e.name for e in events if isinstance(e, Touch)}
    assert names == {"\udcff.ini", "y.ini"}
    assert _syncs(events) == [frozenset({"\udcff.ini", "x.ini", "y.ini"})]
    assert any("x.ini" in r.getMessage() and "ZeroDivisionError" in r.getMessage()
               for r in caplog.records)


def test_pg_row_name_from_bytes() -> None:
    assert parse_row((b"\xff.ini", "[uwsgi]", 3), False).name == "\udcff.ini"
    with pytest.raises(BadRow):
        parse_row((b"", "[uwsgi]", 3), False)
