"""pg:// — vassals are rows of a PostgreSQL query (psycopg 3, native asyncio).

Syntax, as uWSGI's emperor_pg: ``pg://CONNINFO;QUERY``. CONNINFO is any libpq connection
string (``key=value ...`` or a ``postgresql://`` URI); the query is everything after the
first ``;`` and defaults to ``SELECT name,config,EXTRACT(epoch FROM ts) FROM vassals``.
Columns: name, config, mtime (epoch seconds, the fraction cut off), then uid and gid
(required in tyrant mode) and an optional on-demand socket name.

Beyond uWSGI: an ``imperium_notify=CHANNEL`` parameter in CONNINFO (removed before libpq
sees it) makes the monitor LISTEN on CHANNEL and re-read the table as soon as a
notification arrives; the read every ``emperor-freq`` seconds stays as the safety net.

Where uWSGI connects, queries and disconnects on every pass, we keep one connection
(needed for LISTEN anyway) and reconnect with backoff when it breaks. A failed read
reports ``Unavailable`` and never a ``Sync``: an outage stops no vassal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from emperor.events import Event, Monitor, MonitorContext, Touch, as_name
from monitors.deps import require
from monitors.outage import Backoff, Outage
from monitors.records import RecordScan

DEFAULT_QUERY = "SELECT name,config,EXTRACT(epoch FROM ts) FROM vassals"
NOTIFY_PARAM = "imperium_notify"
#: libpq defaults we add unless the conninfo sets them: a dead server must not hang a read
CONN_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "application_name": "imperium-emperor",
}

_KV_NOTIFY = re.compile(r"(?:^|\s)" + NOTIFY_PARAM + r"\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


class BadRow(ValueError):
    """A row that cannot become a vassal; the text says why."""


class BadQuery(ValueError):
    """The query ran but its result cannot describe vassals."""


@dataclass(frozen=True)
class PgSource:
    conninfo: str  # what libpq gets (the notify parameter removed)
    query: str
    channel: str | None  # LISTEN channel, or None for polling only


def _unquote_kv(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_pg_arg(arg: str) -> PgSource:
    """Split ``pg://CONNINFO;QUERY`` and take ``imperium_notify`` out of CONNINFO."""
    rest = arg[len("pg://"):] if arg.startswith("pg://") else arg
    conninfo, sep, query = rest.partition(";")
    query = query.strip() if sep else ""
    channel: str | None = None
    if re.match(r"^postgres(?:ql)?://", conninfo):
        parts = urlsplit(conninfo)
        kept = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == NOTIFY_PARAM:
                channel = value
            else:
                kept.append((key, value))
        conninfo = urlunsplit(parts._replace(query=urlencode(kept)))
    else:
        m = _KV_NOTIFY.search(conninfo)
        if m:
            channel = _unquote_kv(m.group(1))
            conninfo = (conninfo[:m.start()] + " " + conninfo[m.end():]).strip()
    if channel is not None and not channel:
        raise ValueError(f"{arg}: {NOTIFY_PARAM} needs a channel name")
    return PgSource(conninfo=conninfo.strip(), query=query or DEFAULT_QUERY, channel=channel)


def epoch_seconds(value: Any) -> int:
    """The mtime column as whole epoch seconds, as uWSGI reads its text up to the dot."""
    if value is None:
        return 0  # libpq hands uWSGI "" for NULL, which it reads as 0
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp())
    if isinstance(value, bool):
        raise BadRow(f"mtime {value!r} is not a number")
    if isinstance(value, int | float | Decimal):
        return int(value)
    text = str(value).strip().split(".", 1)[0]
    try:
        return int(text or "0")
    except ValueError:
        raise BadRow(f"mtime {value!r} is not a number") from None


def _config_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, dict | list):  # a json/jsonb column
        data = json.dumps(value).encode()
    else:
        data = str(value).encode()
    return data or None  # empty: the vassal loads the file of that name, as in uWSGI


def _ident(value: Any, what: str, name: str) -> int:
    if value is None:
        raise BadRow(f"missing uid and gid for vassal {name}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BadRow(f"{what} {value!r} of vassal {name} is not a number") from None
    if number < 0:
        raise BadRow(f"{what} {value!r} of vassal {name} is negative")
    return number


def parse_row(row: Sequence[Any], tyrant: bool) -> Touch:
    """One result row → a Touch, or BadRow saying why it is skipped."""
    if len(row) < 3:
        raise BadRow(f"row has {len(row)} columns, 3 are needed (name, config, mtime)")
    # a text column the client encoding cannot decode (SQL_ASCII) comes as bytes: names are
    # bytes to uWSGI, so it is carried as os.fsdecode() would
    name = as_name(row[0])
    if not name:
        raise BadRow(f"vassal name {row[0]!r} is not a non-empty string")
    mtime = epoch_seconds(row[2])
    uid = gid = None
    if tyrant:
        if len(row) < 5:
            raise BadRow(f"missing uid and gid for vassal {name}")
        uid = _ident(row[3], "uid", name)
        gid = _ident(row[4], "gid", name)
    socket = row[5] if len(row) > 5 and row[5] not in (None, "") else None
    return Touch(name=name, mtime=float(mtime), config=_config_bytes(row[1]), uid=uid, gid=gid,
                 socket=None if socket is None else (as_name(socket) or str(socket)))


class PgMonitor(Monitor):
    scheme = "pg"

    def __init__(self, arg: str, emit: Callable[[Monitor, Event], None], ctx: MonitorContext) -> None:
        super().__init__(arg, emit, ctx)
        require("psycopg", "pg", "pg")
        self.source = parse_pg_arg(arg)
        self.prefix = "[emperor-pg]"
        self._check_conninfo()
        self.outage = Outage(self.emit, self.log, self.prefix)
        self.backoff = Backoff(maximum=max(ctx.freq, 1.0) * 2)
        self.records: RecordScan[Sequence[Any]] = RecordScan(
            self.emit, self.log, self.prefix, "row", self.valid, name_of=lambda row: row[0],
            key_of=_row_key, parse=lambda row: parse_row(row, self.ctx.tyrant), bad=BadRow)

    @property
    def scans(self) -> int:
        """Successful full reads, for tests and stats."""
        return self.records.scans

    @property
    def id(self) -> str:
        # the argument as given, but a password in it never reaches logs or stats
        return _redact(self.arg)

    async def run(self) -> None:
        import psycopg

        self.log.info("%s watching %s%s", self.prefix, _redact(self.source.conninfo),
                      f" (LISTEN {self.source.channel})" if self.source.channel else "")
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo(), autocommit=True)
            except psycopg.Error as exc:
                await self._failed(_pg_reason(exc))
                continue
            scanned = False
            try:
                if self.source.channel:
                    await conn.execute(psycopg.sql.SQL("LISTEN {}").format(
                        psycopg.sql.Identifier(self.source.channel)))
                while True:
                    await self._scan(conn)
                    scanned = True
                    self.backoff.reset()
                    await self._wait_for_change(conn)
            except (psycopg.Error, BadQuery) as exc:
                reason = _pg_reason(exc) if isinstance(exc, psycopg.Error) else str(exc)
                if scanned and (conn.closed or conn.broken):
                    # a connection that worked broke (a server restart?): reconnect at once,
                    # Unavailable comes only if that fails
                    self.log.info("%s connection lost (%s), reconnecting", self.prefix, reason)
                else:
                    await self._failed(reason)
            except Exception as exc:  # a bug here must not end the monitor
                self.log.exception("%s unexpected error", self.prefix)
                await self._failed(f"{type(exc).__name__}: {exc}")
            finally:
                await conn.close()

    def _check_conninfo(self) -> None:
        """A conninfo libpq cannot parse is a mistake in the command line, not an outage."""
        try:
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:  # reported when the monitor runs
            return
        import psycopg

        try:
            conninfo_to_dict(self.source.conninfo)
        except psycopg.Error as exc:
            raise ValueError(f"{_redact(self.arg)}: bad connection string: "
                             f"{str(exc).strip()}") from None

    def _conninfo(self) -> str:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        given = conninfo_to_dict(self.source.conninfo)
        extra = {k: v for k, v in CONN_DEFAULTS.items() if k not in given}
        return make_conninfo(self.source.conninfo, **extra)

    async def _failed(self, reason: str) -> None:
        self.outage.failed(reason)
        await asyncio.sleep(self.backoff.next())

    async def _wait_for_change(self, conn: Any) -> None:
        """Until a notification arrives (if listening) or emperor-freq seconds pass."""
        if not self.source.channel:
            await asyncio.sleep(self.ctx.freq)
            return
        async for _ in conn.notifies(timeout=self.ctx.freq, stop_after=1):
            pass
        # a burst of changes is one read: drop what is already queued, the read covers it
        async for _ in conn.notifies(timeout=0):
            pass

    async def _scan(self, conn: Any) -> None:
        """One full read: a Touch per good row, then Sync with every name seen."""
        async with conn.cursor() as cur:
            await cur.execute(self.source.query)
            while cur.nextset():  # several statements: the last result counts, as with PQexec
                pass
            if cur.description is None:
                raise BadQuery("the query returns no rows (is it a SELECT?)")
            if len(cur.description) < 3:
                raise BadQuery(f"the query returns {len(cur.description)} columns, "
                               "3 are needed (name, config, mtime)")
            rows = await cur.fetchall()
        # the read succeeded: only now may the emperor hear anything
        self.outage.recovered()
        self.records.emit_all(rows)


def _row_key(row: Sequence[Any]) -> str:
    """How a skipped row is named in the log."""
    return as_name(row[0]) or repr(row[0]) if row else "(empty row)"


def _pg_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _redact(conninfo: str) -> str:
    conninfo = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", conninfo)
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", conninfo)
