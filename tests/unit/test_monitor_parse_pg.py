"""pg:// argument and row parsing (no server needed)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from monitors.pg import DEFAULT_QUERY, BadRow, epoch_seconds, parse_pg_arg, parse_row
from tests.conftest import need_module


def test_uwsgi_syntax_kept() -> None:
    src = parse_pg_arg("pg://host=127.0.0.1 user=foobar dbname=emperor;SELECT name,conf")
    assert (src.conninfo, src.query, src.channel) == (
        "host=127.0.0.1 user=foobar dbname=emperor", "SELECT name,conf", None)


def test_default_query_without_semicolon() -> None:
    src = parse_pg_arg("pg://dbname=emperor")
    assert src.query == DEFAULT_QUERY == "SELECT name,config,EXTRACT(epoch FROM ts) FROM vassals"


def test_query_keeps_later_semicolons() -> None:
    src = parse_pg_arg("pg://dbname=x;SET search_path TO e; SELECT name,config,1 FROM v")
    assert src.query == "SET search_path TO e; SELECT name,config,1 FROM v"


@pytest.mark.parametrize("arg", [
    "pg://host=h imperium_notify=vassals dbname=e;SELECT 1",
    "pg://imperium_notify=vassals host=h dbname=e;SELECT 1",
    "pg://host=h dbname=e imperium_notify = 'vassals';SELECT 1",
])
def test_notify_parameter_is_taken_out_of_a_kv_conninfo(arg: str) -> None:
    src = parse_pg_arg(arg)
    assert src.channel == "vassals"
    assert "imperium_notify" not in src.conninfo
    assert src.conninfo.split() == ["host=h", "dbname=e"]


def test_notify_channel_quoted_with_spaces() -> None:
    assert parse_pg_arg(r"pg://dbname=e imperium_notify='my chan\'s';Q").channel == "my chan's"


def test_notify_parameter_in_a_uri_conninfo() -> None:
    src = parse_pg_arg("pg://postgresql://u@h:5433/e?imperium_notify=ch&sslmode=disable;SELECT 1")
    assert src.channel == "ch"
    assert src.conninfo == "postgresql://u@h:5433/e?sslmode=disable"


def test_empty_notify_channel_is_an_error() -> None:
    with pytest.raises(ValueError, match="imperium_notify needs a channel"):
        parse_pg_arg("pg://dbname=e imperium_notify='';Q")


@pytest.mark.parametrize(("value", "seconds"), [
    (Decimal("1700000000.987654"), 1_700_000_000),
    (1700000000.5, 1_700_000_000),
    (1700000000, 1_700_000_000),
    ("1700000000.999", 1_700_000_000),
    (None, 0),
    (dt.datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=dt.UTC), 1_700_000_000),
    (dt.datetime(2023, 11, 14, 22, 13, 20), 1_700_000_000),  # naive: taken as UTC
])
def test_mtime_is_cut_at_the_dot(value: object, seconds: int) -> None:
    assert epoch_seconds(value) == seconds


def test_bad_mtime() -> None:
    with pytest.raises(BadRow, match="not a number"):
        epoch_seconds("yesterday")


def test_row_to_touch() -> None:
    t = parse_row(("a.ini", "[uwsgi]\n", Decimal("12.5")), tyrant=False)
    assert (t.name, t.config, t.mtime, t.uid, t.gid, t.socket) == ("a.ini", b"[uwsgi]\n", 12, None, None, None)
    assert parse_row(("a.ini", None, 1), False).config is None
    assert parse_row(("a.ini", "", 1), False).config is None
    assert parse_row(("a.json", {"uwsgi": {"processes": 2}}, 1), False).config == b'{"uwsgi": {"processes": 2}}'
    assert parse_row(("a.ini", b"raw", 1), False).config == b"raw"


def test_row_in_tyrant_mode() -> None:
    t = parse_row(("a.ini", "c", 1, 1000, "1001", "/tmp/s.sock"), tyrant=True)
    assert (t.uid, t.gid, t.socket) == (1000, 1001, "/tmp/s.sock")
    with pytest.raises(BadRow, match="missing uid and gid for vassal a.ini"):
        parse_row(("a.ini", "c", 1), tyrant=True)
    with pytest.raises(BadRow, match="missing uid and gid"):
        parse_row(("a.ini", "c", 1, None, None), tyrant=True)
    with pytest.raises(BadRow, match="uid 'www' of vassal a.ini is not a number"):
        parse_row(("a.ini", "c", 1, "www", 1), tyrant=True)
    # outside tyrant mode uid and gid are not used, so they cannot be wrong
    assert parse_row(("a.ini", "c", 1, "www", 1), tyrant=False).uid is None


def test_rows_that_cannot_be_vassals() -> None:
    with pytest.raises(BadRow, match="3 are needed"):
        parse_row(("a.ini", "c"), False)
    with pytest.raises(BadRow, match="not a non-empty string"):
        parse_row((None, "c", 1), False)
    with pytest.raises(BadRow, match="not a non-empty string"):
        parse_row(("", "c", 1), False)


def test_a_conninfo_libpq_refuses_is_a_command_line_error() -> None:
    need_module("psycopg")
    from emperor.events import MonitorContext
    from monitors.pg import PgMonitor

    with pytest.raises(ValueError, match=r'bad connection string: invalid connection option "colour"'):
        PgMonitor("pg://host=h colour=blue password=secret;SELECT 1", lambda m, e: None, MonitorContext())
    with pytest.raises(ValueError) as err:
        PgMonitor("pg://host=h password=secret nonsense;SELECT 1", lambda m, e: None, MonitorContext())
    assert "secret" not in str(err.value) and "password=***" in str(err.value)


def test_the_monitor_id_hides_passwords() -> None:
    need_module("psycopg")
    from emperor.events import MonitorContext
    from monitors.pg import PgMonitor

    kv = PgMonitor("pg://host=h password='s3 cret' dbname=e;SELECT 1", lambda m, e: None, MonitorContext())
    assert "s3" not in kv.id and kv.id.endswith(";SELECT 1")
    uri = PgMonitor("pg://postgresql://u:s3cret@h/e;SELECT 1", lambda m, e: None, MonitorContext())
    assert "s3cret" not in uri.id
