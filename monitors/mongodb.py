"""mongodb:// — vassals are documents of a MongoDB collection (pymongo, own thread).

Syntax, as uWSGI's emperor_mongodb: ``mongodb://ADDR,DB.COLLECTION[,FILTER]``, e.g.
``mongodb://127.0.0.1:27017,emperor.vassals,{enabled:1}``. Defaults: ADDR
``127.0.0.1:27017``, collection ``uwsgi.emperor.vassals`` (database ``uwsgi``, collection
``emperor.vassals``: the database is the part before the first dot), no filter. FILTER is
MongoDB's relaxed JSON (bare keys allowed). ADDR may carry credentials and URI options:
``user:pass@host:27017/?authSource=admin``.

Documents: ``name`` (string, with a config extension), ``config`` (string; empty or missing:
the vassal loads the file of that name), ``ts`` (a date; whole seconds count), and in tyrant
mode ``uid`` and ``gid``; ``socket`` names an on-demand socket.

The collection is read in full every ``emperor-freq`` seconds; where the server offers change
streams (replica sets, sharded clusters) any change triggers a read at once, the periodic
read staying as the safety net. A failed read reports ``Unavailable`` and never a ``Sync``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emperor.events import Event, Monitor, MonitorContext, Touch
from monitors import relaxed_json
from monitors.deps import require
from monitors.outage import Backoff, Outage
from monitors.records import RecordScan
from monitors.threaded import run_blocking

DEFAULT_ADDRESS = "127.0.0.1:27017"
DEFAULT_COLLECTION = "uwsgi.emperor.vassals"
PROJECTION = {"name": 1, "config": 1, "ts": 1, "uid": 1, "gid": 1, "socket": 1}
#: client settings we add unless ADDR sets them: a dead server must not hang a read for 30 s
CLIENT_DEFAULTS = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000,
                   "socketTimeoutMS": 30000, "appname": "imperium-emperor"}
#: how often a change-stream wait wakes up to notice that the monitor is stopping
WAKE_MS = 250


class BadDocument(ValueError):
    """A document that cannot become a vassal; the text says why."""


@dataclass(frozen=True)
class MongoSource:
    uri: str  # what pymongo gets
    database: str
    collection: str
    filter: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.uri.split("://", 1)[1]


def parse_mongodb_arg(arg: str) -> MongoSource:
    rest = arg[len("mongodb://"):] if arg.startswith("mongodb://") else arg
    address, _, tail = rest.partition(",")
    namespace, _, filter_text = tail.partition(",")
    address = address.strip() or DEFAULT_ADDRESS
    namespace = namespace.strip() or DEFAULT_COLLECTION
    database, dot, collection = namespace.partition(".")
    if not dot or not database or not collection:
        raise ValueError(f"{arg}: the collection must be DB.COLLECTION, not {namespace!r}")
    try:
        query = relaxed_json.loads(filter_text)
    except relaxed_json.RelaxedJSONError as exc:
        raise ValueError(f"{arg}: bad filter: {exc}") from None
    if not isinstance(query, dict):
        raise ValueError(f"{arg}: the filter must be an object, like {{enabled:1}}")
    uri = address if "://" in address else "mongodb://" + address
    return MongoSource(uri=uri, database=database, collection=collection, filter=query)


def ts_seconds(value: Any) -> int:
    """``ts`` as whole epoch seconds: uWSGI divides the BSON date's milliseconds by 1000."""
    if value is None:
        return 0  # uWSGI takes a missing or non-date ts as 0
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # pymongo hands out naive UTC
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)  # beyond uWSGI: a plain number is taken as epoch seconds
    raise BadDocument(f"ts {value!r} is not a date")


def _ident(doc: Mapping[str, Any], key: str, name: str) -> int:
    value = doc.get(key)
    if value is None:
        raise BadDocument(f"missing uid and gid for vassal {name}")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise BadDocument(f"{key} {value!r} of vassal {name} is not an integer")
    if value < 0:
        raise BadDocument(f"{key} {value!r} of vassal {name} is negative")
    return int(value)


def parse_document(doc: Mapping[str, Any], tyrant: bool) -> Touch:
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise BadDocument(f"document {doc.get('_id')!r} has no name string")
    config = doc.get("config")
    if config is not None and not isinstance(config, str | bytes):
        raise BadDocument(f"config of vassal {name} is a {type(config).__name__}, not a string")
    data = (config.encode() if isinstance(config, str) else config) or None
    uid = gid = None
    if tyrant:
        uid = _ident(doc, "uid", name)
        gid = _ident(doc, "gid", name)
    socket = doc.get("socket")
    return Touch(name=name, mtime=float(ts_seconds(doc.get("ts"))), config=data, uid=uid, gid=gid,
                 socket=socket if isinstance(socket, str) and socket else None)


class MongoMonitor(Monitor):
    scheme = "mongodb"

    def __init__(self, arg: str, emit: Callable[[Monitor, Event], None], ctx: MonitorContext) -> None:
        super().__init__(arg, emit, ctx)
        require("pymongo", "mongodb", "mongodb")
        self.source = parse_mongodb_arg(arg)
        self.prefix = "[emperor-mongodb]"
        self.outage = Outage(self.emit_threadsafe, self.log, self.prefix)
        self.backoff = Backoff(maximum=max(ctx.freq, 1.0) * 2)
        self.records: RecordScan[Mapping[str, Any]] = RecordScan(
            self.emit_threadsafe, self.log, self.prefix, "document", self.valid,
            name_of=lambda doc: doc.get("name"), key_of=_document_key,
            parse=lambda doc: parse_document(doc, self.ctx.tyrant), bad=BadDocument)
        self.change_streams: bool | None = None  # None: not tried yet

    @property
    def scans(self) -> int:
        """Successful full reads, for tests and stats."""
        return self.records.scans

    @property
    def id(self) -> str:
        import re

        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.arg)

    async def run(self) -> None:
        self.log.info("%s watching %s on collection %s.%s", self.prefix, self.id,
                      self.source.database, self.source.collection)
        await run_blocking(self._watch_forever, name=f"mongodb-monitor {self.id}")

    # --- the monitor's own thread -------------------------------------------------------------

    def _client(self) -> Any:
        import pymongo  # looked up at call time so that mongomock.patch can stand in

        lowered = self.source.uri.lower()
        extra = {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() + "=" not in lowered}
        return pymongo.MongoClient(self.source.uri, **extra)

    def _watch_forever(self, stop: threading.Event) -> None:
        client = None
        while not stop.is_set():
            scanned = False
            try:
                if client is None:
                    client = self._client()
                coll = _lenient(client[self.source.database][self.source.collection])
                stream = self._open_stream(coll)
                try:
                    while not stop.is_set():
                        self._scan(coll)
                        scanned = True
                        self.backoff.reset()
                        self._wait_for_change(stream, stop)
                finally:
                    if stream is not None:
                        stream.close()
            except Exception as exc:  # pymongo errors, and whatever a stand-in raises
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if client is not None:
                    client.close()
                    client = None
                if scanned:
                    # it worked a moment ago: retry before calling it an outage
                    self.log.info("%s read failed after working (%s), retrying", self.prefix, reason)
                else:
                    self.outage.failed(reason)
                stop.wait(self.backoff.next())
        if client is not None:
            client.close()

    def _open_stream(self, coll: Any) -> Any:
        """A change stream on the collection, or None where the server offers none."""
        if self.change_streams is False:
            return None
        from pymongo.errors import OperationFailure

        if not hasattr(type(coll), "watch"):  # a stand-in without change streams (mongomock)
            self._no_streams("the client has no change streams")
            return None
        try:
            stream = coll.watch(max_await_time_ms=WAKE_MS)
        except OperationFailure as exc:
            # standalone servers answer 40573 ("only supported on replica sets")
            self._no_streams(str(exc).splitlines()[0])
            return None
        if self.change_streams is None:
            self.log.info("%s change streams on: changes are seen at once", self.prefix)
        self.change_streams = True
        return stream

    def _no_streams(self, why: str) -> None:
        self.change_streams = False
        self.log.info("%s no change streams (%s): reading every %gs", self.prefix, why, self.ctx.freq)

    def _wait_for_change(self, stream: Any, stop: threading.Event) -> None:
        if stream is None:
            stop.wait(self.ctx.freq)
            return
        deadline = time.monotonic() + self.ctx.freq
        while not stop.is_set() and time.monotonic() < deadline:
            # no draining of a burst here: an empty try_next() blocks for WAKE_MS, and the
            # read that follows sees every change anyway
            if stream.try_next() is not None:
                return

    def _scan(self, coll: Any) -> None:
        docs = list(coll.find(self.source.filter, PROJECTION))
        self.outage.recovered()  # only a read that worked may say so
        self.records.emit_all(docs)


def _lenient(coll: Any) -> Any:
    """The collection, reading strings that are not UTF-8 with ``surrogateescape``.

    Otherwise one such document makes pymongo fail the whole read (InvalidBSON), and no
    vassal of the collection could be started, reloaded or stopped until it is fixed.
    """
    try:
        options = coll.codec_options.with_options(unicode_decode_error_handler="surrogateescape")
        return coll.with_options(codec_options=options)
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return coll  # a stand-in (mongomock) without that option


def _document_key(doc: Mapping[str, Any]) -> str:
    """How a skipped document is named in the log: its name, or its _id without one."""
    name = doc.get("name")
    return name if isinstance(name, str) and name else repr(doc.get("_id"))
