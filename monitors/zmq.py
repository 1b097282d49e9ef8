"""zmq:// — vassals pushed as commands to a ZeroMQ PULL socket (pyzmq, zmq.asyncio).

Syntax, as uWSGI's emperor_zeromq: ``zmq://ENDPOINT``, e.g. ``zmq://tcp://127.0.0.1:5252``
or ``zmq://ipc:///run/emperor.sock``; the emperor binds a PULL socket there.

A message is multipart: command, vassal name, then optional config, uid, gid and on-demand
socket name. ``touch`` adds or reloads the vassal (an empty or missing config means the
file of that name in the emperor's directory); ``destroy`` stops it. Anything else is
logged and dropped. ZeroMQ holds no state to list, so this monitor never sends ``Sync``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from emperor.events import Destroy, Event, Monitor, MonitorContext, Touch, printable
from monitors.deps import require
from monitors.outage import Backoff, Outage


class BadMessage(ValueError):
    """A message that cannot be obeyed; the text says why."""


def parse_zmq_arg(arg: str) -> str:
    endpoint = arg[len("zmq://"):] if arg.startswith("zmq://") else arg
    if "://" not in endpoint:
        raise ValueError(f"{arg}: expected zmq://TRANSPORT://ADDRESS, e.g. zmq://tcp://127.0.0.1:5252")
    return endpoint


def _text(part: bytes, what: str) -> str:
    try:
        return part.decode()
    except UnicodeDecodeError:
        raise BadMessage(f"{what} is not UTF-8") from None


def _name(part: bytes) -> str:
    # names are bytes to uWSGI: one that is not UTF-8 is carried as os.fsdecode() would
    return part.decode("utf-8", "surrogateescape")


def _number(part: bytes, what: str, name: str) -> int | None:
    if not part:
        return None
    text = _text(part, what).strip()
    if not text.isdigit():
        raise BadMessage(f"{what} {text!r} of vassal {name} is not a number")
    return int(text)


def parse_message(parts: Sequence[bytes], now: float | None = None) -> Event:
    """A multipart command → Touch or Destroy, or BadMessage saying why it is dropped."""
    if len(parts) < 2:
        raise BadMessage("bad message received (command and instance name required)")
    command = _text(parts[0], "command")
    name = _name(parts[1])
    if not name:
        raise BadMessage("empty vassal name")
    if command == "touch":
        config = parts[2] if len(parts) > 2 and parts[2] else None
        uid = _number(parts[3], "uid", name) if len(parts) > 3 else None
        gid = _number(parts[4], "gid", name) if len(parts) > 4 else None
        socket = _name(parts[5]) or None if len(parts) > 5 else None
        # every touch reloads a known vassal, so its mtime is "now"
        return Touch(name=name, mtime=time.time() if now is None else now, config=config,
                     uid=uid, gid=gid, socket=socket)
    if command == "destroy":
        return Destroy(name)
    raise BadMessage(f"unknown command {command!r}")


class ZmqMonitor(Monitor):
    scheme = "zmq"
    lists = False  # messages only: nothing to scan before the emperor is ready

    def __init__(self, arg: str, emit: Callable[[Monitor, Event], None], ctx: MonitorContext) -> None:
        super().__init__(arg, emit, ctx)
        require("zmq", "zmq", "zmq")
        self.endpoint = parse_zmq_arg(arg)
        self.prefix = "[emperor-zeromq]"
        self.outage = Outage(self.emit, self.log, self.prefix)
        self.backoff = Backoff(maximum=10.0)
        self.bound = asyncio.Event()  # set once listening, for tests and the bench

    async def run(self) -> None:
        import zmq
        import zmq.asyncio

        context = zmq.asyncio.Context()
        try:
            await self._serve(context)
        finally:
            context.destroy(linger=0)

    async def _serve(self, context: object) -> None:
        import zmq

        while True:
            sock = context.socket(zmq.PULL)  # type: ignore[attr-defined]
            sock.setsockopt(zmq.LINGER, 0)
            try:
                sock.bind(self.endpoint)
            except zmq.ZMQError as exc:
                # e.g. the address is still held by a previous emperor: retry, do not die
                sock.close()
                self.outage.failed(f"cannot bind {self.endpoint}: {exc}")
                await asyncio.sleep(self.backoff.next())
                continue
            self.outage.recovered()
            self.backoff.reset()
            self.log.info("%s listening on %s", self.prefix, self.endpoint)
            self.bound.set()
            try:
                while True:
                    parts = await sock.recv_multipart()
                    self.handle(parts)
            except zmq.ZMQError as exc:
                self.log.warning("%s socket error, binding again: %s", self.prefix, exc)
            finally:
                self.bound.clear()
                sock.close()

    def handle(self, parts: Sequence[bytes]) -> None:
        try:
            event = parse_message(parts)
        except BadMessage as exc:
            self.log.warning("%s %s", self.prefix, exc)
            return
        if isinstance(event, Touch) and not self.valid(event.name):
            self.log.warning("%s ignoring '%s': not a valid vassal name (needs a config extension)",
                             self.prefix, printable(event.name))
            return
        self.emit(event)
