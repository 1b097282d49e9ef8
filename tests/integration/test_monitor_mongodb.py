"""mongodb:// with mongomock standing in for the server, and against a real server when
MONGODB_URL is set (e.g. MONGODB_URL=mongodb://127.0.0.1:27017)."""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from emperor.events import Available, MonitorContext, Sync, Unavailable
from monitors.mongodb import MongoMonitor
from tests.conftest import free_port, need_module, optional_service
from tests.integration.monitor_harness import monitors_fixture  # noqa: F401  (fixture)

pymongo = need_module("pymongo")
mongomock = need_module("mongomock")

HOST = "mongo.imperium.test"


def when(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


@pytest.fixture
def mock_server() -> Iterator[object]:
    """pymongo.MongoClient replaced by mongomock for HOST; yields a client on it."""
    with mongomock.patch(servers=((HOST, 27017),)):
        client = pymongo.MongoClient(f"mongodb://{HOST}:27017")
        yield client
        client.drop_database("emperor")


def test_documents_added_changed_removed(mock_server, monitors) -> None:
    coll = mock_server["emperor"]["vassals"]
    coll.insert_one({"name": "on.ini", "config": "[uwsgi]\n# 1\n", "ts": when(1_700_000_000.9),
                     "enabled": 1})
    coll.insert_one({"name": "off.ini", "config": "[uwsgi]\n", "ts": when(1), "enabled": 0})
    run = monitors(MongoMonitor, f"mongodb://{HOST}:27017,emperor.vassals,{{enabled:1}}",
                   MonitorContext(freq=0.2))
    run.wait_sync({"on.ini"})
    t = run.touches(name="on.ini")[0]
    assert (t.config, t.mtime, t.uid, t.socket) == (b"[uwsgi]\n# 1\n", 1_700_000_000, None, None)
    assert run.monitor.change_streams is False  # mongomock offers none: polling

    mark = run.mark()
    coll.update_one({"name": "on.ini"}, {"$set": {"config": "[uwsgi]\n# 2\n", "ts": when(1_700_000_050)}})
    coll.update_one({"name": "off.ini"}, {"$set": {"enabled": 1, "socket": "/tmp/off.sock"}})
    run.wait_sync({"on.ini", "off.ini"}, mark)
    assert run.touches(mark, "on.ini")[0].mtime == 1_700_000_050
    assert run.touches(mark, "on.ini")[0].config == b"[uwsgi]\n# 2\n"
    assert run.touches(mark, "off.ini")[0].socket == "/tmp/off.sock"

    mark = run.mark()
    coll.delete_one({"name": "on.ini"})
    coll.update_one({"name": "off.ini"}, {"$set": {"enabled": 0}})
    run.wait_sync(set(), mark)
    assert not run.all(Unavailable)


def test_default_collection_and_missing_fields(mock_server, monitors) -> None:
    coll = mock_server["uwsgi"]["emperor.vassals"]
    coll.insert_one({"name": "bare.ini"})  # no config (the file of that name), no ts (0)
    run = monitors(MongoMonitor, f"mongodb://{HOST}:27017", MonitorContext(freq=0.2))
    run.wait_sync({"bare.ini"})
    t = run.touches(name="bare.ini")[0]
    assert (t.config, t.mtime) == (None, 0)
    mock_server.drop_database("uwsgi")


def test_bad_documents_are_logged_and_skipped(mock_server, monitors) -> None:
    coll = mock_server["emperor"]["vassals"]
    coll.insert_many([
        {"name": "good.ini", "config": "[uwsgi]\n", "ts": when(10), "uid": 1000, "gid": 1000},
        {"config": "[uwsgi]\n"},  # no name
        {"name": "intconfig.ini", "config": 42, "uid": 1, "gid": 1},
        {"name": "strts.ini", "config": "x", "ts": "yesterday", "uid": 1, "gid": 1},
        {"name": "noext", "config": "x", "uid": 1, "gid": 1},
        {"name": "nouid.ini", "config": "x"},  # tyrant mode needs uid and gid
    ])
    run = monitors(MongoMonitor, f"mongodb://{HOST}:27017,emperor.vassals",
                   MonitorContext(freq=0.2, tyrant=True))
    run.wait_sync({"good.ini", "intconfig.ini", "strts.ini", "noext", "nouid.ini"})
    good = run.touches()
    assert [(t.name, t.uid, t.gid) for t in good] == [("good.ini", 1000, 1000)]
    text = run.logs.text()
    for needle in ("has no name string", "is a int, not a string", "'yesterday' is not a date",
                   "'noext' is not a valid vassal name", "missing uid and gid for vassal nouid.ini"):
        assert needle in text
    mark = run.mark()
    run.wait(lambda ev: sum(isinstance(e, Sync) for e in ev) >= 2, mark, message="two more reads")
    assert run.logs.text().count("'yesterday' is not a date") == 1


def test_outage_is_unavailable_and_catches_up(mock_server, monitors, monkeypatch) -> None:
    coll = mock_server["emperor"]["vassals"]
    coll.insert_one({"name": "a.ini", "config": "[uwsgi]\n", "ts": when(100)})
    coll.insert_one({"name": "b.ini", "config": "[uwsgi]\n", "ts": when(100)})
    run = monitors(MongoMonitor, f"mongodb://{HOST}:27017,emperor.vassals", MonitorContext(freq=0.2))
    run.wait_sync({"a.ini", "b.ini"})

    # mongomock cannot be stopped: make every read fail the way a lost server does
    real_find = mongomock.collection.Collection.find

    def down(*args: object, **kwargs: object) -> object:
        if threading.current_thread().name.startswith("mongodb-monitor"):
            raise pymongo.errors.AutoReconnect("connection refused (simulated outage)")
        return real_find(*args, **kwargs)  # the test's own writes still work

    mark = run.mark()
    monkeypatch.setattr(mongomock.collection.Collection, "find", down)
    run.wait(lambda ev: any(isinstance(e, Unavailable) for e in ev), mark, message="Unavailable")
    coll_changes = [("a.ini", 200)]
    # the source changes while the monitor cannot read it
    coll.update_one({"name": "a.ini"}, {"$set": {"ts": when(200), "config": "[uwsgi]\n# new\n"}})
    coll.delete_one({"name": "b.ini"})
    assert not run.since(mark, Sync)
    monkeypatch.setattr(mongomock.collection.Collection, "find", real_find)
    sync = run.wait_sync({"a.ini"}, mark, timeout=15)
    after = run.since(mark)
    kinds = [type(e) for e in after]
    assert kinds.count(Unavailable) == 1
    assert kinds.index(Unavailable) < kinds.index(Available) < after.index(sync)
    assert [(t.name, t.mtime) for t in run.touches(mark)][:1] == [(n, float(s)) for n, s in coll_changes]


def test_unreachable_server_is_unavailable(monitors) -> None:
    arg = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300,emperor.vassals"
    run = monitors(MongoMonitor, arg, MonitorContext(freq=0.2))
    run.wait(lambda ev: any(isinstance(e, Unavailable) for e in ev), timeout=15, message="Unavailable")
    assert not run.all(Sync)


# --- a real server, when one is given ----------------------------------------------------------

@pytest.fixture
def real_collection() -> Iterator[tuple[str, object]]:
    url = os.environ.get("MONGODB_URL", "")
    # the documented exception: CI has no MongoDB server (mongomock covers the behaviour)
    optional_service("mongodb", bool(url), "set MONGODB_URL=mongodb://HOST:PORT to test a real "
                     "MongoDB server")
    parts = urlsplit(url)
    address = parts.netloc + (f"/?{parts.query}" if parts.query else "")
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=3000)
    name = f"vassals_{uuid.uuid4().hex[:10]}"
    coll = client["imperium_test"][name]
    try:
        yield f"mongodb://{address},imperium_test.{name}", coll
    finally:
        coll.drop()
        client.close()


def test_real_server_add_change_remove(real_collection, monitors) -> None:
    arg, coll = real_collection
    coll.insert_one({"name": "r1.ini", "config": "[uwsgi]\n", "ts": when(1000), "enabled": 1})
    run = monitors(MongoMonitor, arg + ",{enabled:1}", MonitorContext(freq=1.0))
    run.wait_sync({"r1.ini"})
    mark = run.mark()
    coll.update_one({"name": "r1.ini"}, {"$set": {"ts": when(2000)}})
    coll.insert_one({"name": "r2.ini", "config": "[uwsgi]\n", "ts": when(1000), "enabled": 1})
    run.wait_sync({"r1.ini", "r2.ini"}, mark)
    assert run.touches(mark, "r1.ini")[0].mtime == 2000
    mark = run.mark()
    coll.delete_one({"name": "r1.ini"})
    run.wait_sync({"r2.ini"}, mark)


def test_real_server_end_to_end(real_collection, procs, tmp_path) -> None:
    """With MONGODB_URL: documents spawn, reload and stop vassals of a real emperor."""
    from tests.integration.monitor_e2e import Emperor, need_emperor

    need_emperor()
    arg, coll = real_collection
    coll.insert_one({"name": "e1.ini", "config": "[uwsgi]\n# 1\n", "ts": when(1000)})
    emp = Emperor(procs, tmp_path, arg)
    first = emp.wait_line("e1.ini", "start", "[uwsgi]\n# 1\n")
    coll.update_one({"name": "e1.ini"}, {"$set": {"config": "[uwsgi]\n# 2\n", "ts": when(2000)}})
    assert emp.wait_line("e1.ini", "reload", "[uwsgi]\n# 2\n").pid == first.pid
    coll.delete_one({"name": "e1.ini"})
    emp.wait_line("e1.ini", "stop")


class ChangeFeed:
    """Change streams for mongomock, which has none: ``watch()`` hands out a stream that
    yields one change per ``changed()`` call. Stands in for a replica set's streams."""

    def __init__(self) -> None:
        import queue

        self.changes: queue.Queue[dict] = queue.Queue()
        self.opened = 0

    def changed(self) -> None:
        self.changes.put({"operationType": "insert"})

    def watch(self, *args: object, max_await_time_ms: int = 1000, **kwargs: object) -> object:
        import queue

        feed = self
        feed.opened += 1

        class Stream:
            def try_next(self) -> dict | None:
                try:
                    return feed.changes.get(timeout=max_await_time_ms / 1000)
                except queue.Empty:
                    return None

            def close(self) -> None:
                pass

        return Stream()


def test_change_streams_see_a_change_long_before_the_safety_net(mock_server, monitors,
                                                                monkeypatch) -> None:
    feed = ChangeFeed()
    monkeypatch.setattr(mongomock.collection.Collection, "watch",
                        lambda self, *a, **kw: feed.watch(*a, **kw), raising=False)
    coll = mock_server["emperor"]["vassals"]
    # freq 60: without the stream nothing would be read again within the deadline
    run = monitors(MongoMonitor, f"mongodb://{HOST}:27017,emperor.vassals", MonitorContext(freq=60))
    run.wait_sync(set())
    assert run.monitor.change_streams is True and feed.opened == 1
    for i in range(3):
        mark = run.mark()
        coll.insert_one({"name": f"cs{i}.ini", "config": "[uwsgi]\n", "ts": when(i)})
        feed.changed()
        run.wait_sync({f"cs{j}.ini" for j in range(i + 1)}, mark, timeout=5)


def test_a_server_without_change_streams_is_polled(mock_server, monitors, monkeypatch) -> None:
    def refuse(self, *args: object, **kwargs: object) -> object:
        raise pymongo.errors.OperationFailure(
            "The $changeStream stage is only supported on replica sets", code=40573)

    monkeypatch.setattr(mongomock.collection.Collection, "watch", refuse, raising=False)
    coll = mock_server["emperor"]["vassals"]
    run = monitors(MongoMonitor, f"mongodb://{HOST}:27017,emperor.vassals", MonitorContext(freq=0.2))
    run.wait_sync(set())
    assert run.monitor.change_streams is False
    assert "only supported on replica sets" in run.logs.text()
    mark = run.mark()
    coll.insert_one({"name": "polled.ini", "config": "[uwsgi]\n"})
    run.wait_sync({"polled.ini"}, mark)
