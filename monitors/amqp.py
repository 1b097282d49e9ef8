"""amqp:// — deploys announced on the ``uwsgi.emperor`` fanout exchange (pika, own thread).

Syntax: ``amqp://[USER:PASS@]HOST[:PORT][/VHOST][?PARAMS]`` — uWSGI's form (``amqp://
192.168.0.1:5672``), read by pika (guest/guest and vhost ``/`` by default). PARAMS are pika's
URL parameters plus two of ours, removed before pika sees them:

- ``queue=NAME``: consume from a durable queue of that name instead of an exclusive,
  server-named one, so messages published while this emperor is away wait for it. Give
  each emperor its own name: emperors sharing a queue share out the messages instead of
  each seeing all of them.
- ``exchange=NAME``: another fanout exchange than ``uwsgi.emperor``.

Messages, as in uWSGI:

- with a routing key: the key is the vassal name and the body its config; an empty body
  stops the vassal;
- without one, the body is an absolute config path (the vassal reads the file; a missing
  file stops the vassal) or an http(s) URL, fetched here: a 200 answer's body becomes the
  config, any other status stops the vassal; a fetch that fails outright (timeout,
  refused) is logged and leaves the vassal alone.

Every message adds or reloads (its mtime is the arrival time). AMQP holds no listing, so
this monitor never sends ``Sync``: after an outage the emperor keeps what it has.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from emperor.events import Destroy, Event, Monitor, MonitorContext, Touch, as_name, printable
from monitors.deps import require
from monitors.outage import Backoff, Outage
from monitors.threaded import run_blocking

EXCHANGE = "uwsgi.emperor"
MAX_PATH = 254  # uWSGI drops path messages of 255 bytes or more
FETCH_TIMEOUT = 10.0
#: pika settings we add unless the URL sets them: notice a dead broker within seconds
PIKA_DEFAULTS = {"heartbeat": "30", "connection_attempts": "1", "socket_timeout": "5",
                 "blocked_connection_timeout": "30"}


class BadMessage(ValueError):
    """A message that cannot be obeyed; the text says why."""


@dataclass(frozen=True)
class AmqpSource:
    url: str  # what pika gets
    queue: str | None  # durable named queue, or None for an exclusive server-named one
    exchange: str = EXCHANGE


def parse_amqp_arg(arg: str) -> AmqpSource:
    parts = urlsplit(arg)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(f"{arg}: expected amqp://[user:pass@]host[:port][/vhost]")
    queue = None
    exchange = EXCHANGE
    kept: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "queue":
            queue = value or None
        elif key == "exchange":
            if not value:
                raise ValueError(f"{arg}: exchange needs a name")
            exchange = value
        else:
            kept[key] = value
    for key, value in PIKA_DEFAULTS.items():
        kept.setdefault(key, value)
    url = urlunsplit(parts._replace(query=urlencode(kept)))
    return AmqpSource(url=url, queue=queue, exchange=exchange)


def fetch_url(url: str, timeout: float = FETCH_TIMEOUT) -> tuple[int, bytes]:
    """(status, body) of a GET; redirects are followed. Network failures raise OSError."""
    request = urllib.request.Request(url, headers={"User-Agent": "imperium-emperor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def interpret(routing_key: str, body: bytes, *, tyrant: bool = False,
              fetch: Callable[[str], tuple[int, bytes]] = fetch_url,
              now: Callable[[], float] = time.time) -> Event:
    """One message → Touch or Destroy, or BadMessage saying why it is dropped."""
    if routing_key:
        if not body:
            return Destroy(routing_key)
        return Touch(name=routing_key, mtime=now(), config=body)
    if not body:
        raise BadMessage("empty message without a routing key")
    if len(body) > MAX_PATH:
        raise BadMessage(f"a {len(body)}-byte body without a routing key is too long for a path")
    # a path is bytes to the kernel: one that is not UTF-8 is carried as os.fsdecode() would
    target = body.decode("utf-8", "surrogateescape").strip()
    if "\0" in target:
        raise BadMessage("the body holds a NUL byte: not a path or URL")
    if re.match(r"^https?://", target, re.IGNORECASE):
        try:
            status, data = fetch(target)
        except (OSError, ValueError) as exc:
            raise BadMessage(f"cannot fetch {target}, vassal left as it is: {exc}") from None
        if status != 200:
            return Destroy(target)
        if not data:
            raise BadMessage(f"{target} answered 200 with an empty config")
        return Touch(name=target, mtime=now(), config=data)
    if not os.path.isabs(target):
        raise BadMessage(f"{target!r} is neither an absolute path nor an http(s) URL")
    try:
        st = os.stat(target)
    except OSError:
        return Destroy(target)
    if not os.path.isfile(target):
        return Destroy(target)
    uid, gid = (st.st_uid, st.st_gid) if tyrant else (None, None)  # the file's owner, as dir://
    return Touch(name=target, mtime=now(), path=target, uid=uid, gid=gid)


class AmqpMonitor(Monitor):
    scheme = "amqp"
    lists = False  # messages only: nothing to scan before the emperor is ready

    def __init__(self, arg: str, emit: Callable[[Monitor, Event], None], ctx: MonitorContext) -> None:
        super().__init__(arg, emit, ctx)
        require("pika", "amqp", "amqp")
        self.source = parse_amqp_arg(arg)
        self.prefix = "[emperor-amqp]"
        self.outage = Outage(self.emit_threadsafe, self.log, self.prefix)
        self.backoff = Backoff(maximum=10.0)
        self.consuming = threading.Event()  # set while subscribed, for tests and the bench
        self.queue_name: str | None = None
        self._stop = threading.Event()

    @property
    def id(self) -> str:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.arg)

    async def run(self) -> None:
        await run_blocking(self._consume_forever, name=f"amqp-monitor {self.id}")

    # --- the monitor's own thread -------------------------------------------------------------

    def _consume_forever(self, stop: threading.Event) -> None:
        import pika

        self._stop = stop
        params = pika.URLParameters(self.source.url)
        was_consuming = False
        while not stop.is_set():
            conn = None
            try:
                conn = pika.BlockingConnection(params)
                channel = self._subscribe(conn)
                self.outage.recovered()
                self.backoff.reset()
                self.consuming.set()
                was_consuming = True
                self.log.info("%s consuming %s from exchange %s", self.prefix,
                              self.queue_name, self.source.exchange)
                while not stop.is_set():
                    conn.process_data_events(time_limit=0.2)
                channel.close()
            except Exception as exc:  # pika raises many kinds; all mean "not now"
                self.consuming.clear()
                detail = str(exc).strip() or f"cannot reach {params.host}:{params.port}"
                reason = f"{type(exc).__name__}: {detail}"
                if was_consuming:
                    # a subscription that worked broke: try again at once; a failure of that
                    # attempt is what reports the outage
                    was_consuming = False
                    self.log.info("%s connection lost (%s), reconnecting", self.prefix, reason)
                else:
                    self.outage.failed(reason)
                    stop.wait(self.backoff.next())
            finally:
                self.consuming.clear()
                if conn is not None and conn.is_open:
                    try:
                        conn.close()
                    except Exception:  # closing a half-dead connection may fail; it is gone anyway
                        pass

    def _subscribe(self, conn: Any) -> Any:
        import pika

        channel = conn.channel()
        exchange = self.source.exchange
        try:
            # non-durable like uWSGI and the publishers in its docs, or the declarations clash
            channel.exchange_declare(exchange=exchange, exchange_type="fanout")
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406:
                raise
            self.log.warning("%s exchange %s exists with other settings; using it as it is: %s",
                             self.prefix, exchange, exc.reply_text)
            channel = conn.channel()
            channel.exchange_declare(exchange=exchange, passive=True)
        if self.source.queue:
            try:
                result = channel.queue_declare(queue=self.source.queue, durable=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 406:
                    raise
                channel = conn.channel()
                result = channel.queue_declare(queue=self.source.queue, passive=True)
        else:
            result = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        self.queue_name = result.method.queue
        channel.queue_bind(queue=self.queue_name, exchange=exchange, routing_key="")
        channel.basic_qos(prefetch_count=64)
        channel.basic_consume(queue=self.queue_name, on_message_callback=self._on_message)
        return channel

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if self._stop.is_set():
            # stopping: hand it back so that a durable queue keeps it for the next emperor
            channel.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
            return
        try:
            self.handle(method.routing_key or "", body)
        except RuntimeError:  # the emperor's loop is gone: we are shutting down
            channel.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
            self._stop.set()
            return
        except Exception:  # never let one message end the subscription
            self.log.exception("%s error handling a message", self.prefix)
        # acknowledged even when dropped: a poisoned message must not come back forever
        channel.basic_ack(delivery_tag=method.delivery_tag)

    def handle(self, routing_key: str | bytes, body: bytes) -> None:
        # pika hands a routing key that is not UTF-8 over as bytes
        key = as_name(routing_key) or ""
        try:
            event = interpret(key, body, tyrant=self.ctx.tyrant)
        except BadMessage as exc:
            self.log.warning("%s %s", self.prefix, exc)
            return
        name = event.name
        if not self.valid(name):
            self.log.warning("%s ignoring '%s': not a valid vassal name (needs a config extension)",
                             self.prefix, printable(name))
            return
        self.emit_threadsafe(event)
