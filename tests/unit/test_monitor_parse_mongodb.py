"""mongodb:// argument, filter and document parsing (no server)."""

from __future__ import annotations

import datetime as dt

import pytest

from monitors import relaxed_json
from monitors.mongodb import BadDocument, parse_document, parse_mongodb_arg, ts_seconds


def test_uwsgi_docs_example() -> None:
    src = parse_mongodb_arg("mongodb://127.0.0.1:27107,emperor.vassals,{enabled:1}")
    assert (src.uri, src.database, src.collection, src.filter) == (
        "mongodb://127.0.0.1:27107", "emperor", "vassals", {"enabled": 1})


def test_defaults() -> None:
    src = parse_mongodb_arg("mongodb://")
    assert (src.uri, src.database, src.collection, src.filter) == (
        "mongodb://127.0.0.1:27017", "uwsgi", "emperor.vassals", {})
    assert parse_mongodb_arg("mongodb://10.0.0.1").collection == "emperor.vassals"


def test_filter_may_hold_commas_and_credentials_in_address() -> None:
    src = parse_mongodb_arg("mongodb://u:p@db:27017/?authSource=admin,e.v,{enabled:1, ts:{$gt:0}}")
    assert src.uri == "mongodb://u:p@db:27017/?authSource=admin"
    assert src.filter == {"enabled": 1, "ts": {"$gt": 0}}


@pytest.mark.parametrize(("arg", "why"), [
    ("mongodb://h,nodot", "DB.COLLECTION"),
    ("mongodb://h,e.v,{enabled:", "bad filter"),
    ("mongodb://h,e.v,[1]", "must be an object"),
])
def test_bad_arguments(arg: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_mongodb_arg(arg)


@pytest.mark.parametrize(("text", "value"), [
    ("{enabled:1}", {"enabled": 1}),
    ('{"enabled": true}', {"enabled": True}),
    ("{'name': 'a,b.ini', n: null, f: -1.5e2}", {"name": "a,b.ini", "n": None, "f": -150.0}),
    ("{a.b: [1, 'two', {c: false}],}", {"a.b": [1, "two", {"c": False}]}),
    ("{$or: [{x:1},{y:2}]}", {"$or": [{"x": 1}, {"y": 2}]}),
    (r"{s: 'it\'s\n'}", {"s": "it's\n"}),
    ("  ", {}),
])
def test_relaxed_json(text: str, value: object) -> None:
    assert relaxed_json.loads(text) == value


@pytest.mark.parametrize("text", ["{a:}", "{a:1", "{a:1} x", "{1:2}", "{a:'x}", "{a: undefined}"])
def test_relaxed_json_errors(text: str) -> None:
    with pytest.raises(relaxed_json.RelaxedJSONError):
        relaxed_json.loads(text)


def test_ts_is_whole_seconds() -> None:
    assert ts_seconds(dt.datetime(2023, 11, 14, 22, 13, 20, 999000)) == 1_700_000_000
    assert ts_seconds(dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)) == 1_700_000_000
    assert ts_seconds(None) == 0
    assert ts_seconds(1_700_000_000.7) == 1_700_000_000
    with pytest.raises(BadDocument, match="not a date"):
        ts_seconds("2023-11-14")


def test_document_to_touch() -> None:
    t = parse_document({"name": "a.ini", "config": "[uwsgi]\n", "ts": dt.datetime(1970, 1, 1, 0, 0, 5),
                        "socket": "/tmp/a.sock", "uid": 5}, tyrant=False)
    assert (t.name, t.config, t.mtime, t.socket, t.uid) == ("a.ini", b"[uwsgi]\n", 5, "/tmp/a.sock", None)
    assert parse_document({"name": "a.ini", "config": ""}, False).config is None
    assert parse_document({"name": "a.ini"}, False).mtime == 0


def test_document_in_tyrant_mode() -> None:
    t = parse_document({"name": "a.ini", "uid": 1000, "gid": 1000.0}, tyrant=True)
    assert (t.uid, t.gid) == (1000, 1000)
    for doc, why in [({"name": "a.ini"}, "missing uid and gid for vassal a.ini"),
                     ({"name": "a.ini", "uid": "x", "gid": 1}, "uid 'x' of vassal a.ini is not an integer"),
                     ({"name": "a.ini", "uid": 1, "gid": -1}, "is negative")]:
        with pytest.raises(BadDocument, match=why):
            parse_document(doc, tyrant=True)


def test_documents_that_cannot_be_vassals() -> None:
    with pytest.raises(BadDocument, match="no name string"):
        parse_document({"_id": 1, "config": "x"}, False)
    with pytest.raises(BadDocument, match="not a string"):
        parse_document({"name": "a.ini", "config": ["x"]}, False)
