"""zoo:// — vassals are znodes of a ZooKeeper tree, shared by a fleet of emperors (kazoo).

``zoo://HOSTS/PATH`` (see monitors/zoo_source.py for credentials, chroot, TLS and the
session timeout): each child znode of PATH is a vassal, named by the znode, configured by
its data (an empty node: the file of that name), with the znode's modification time as its
mtime (a write reloads the vassal).

Every emperor on the tree is a *member* of its fleet: it keeps an ephemeral node under the
members path (PATH + ``.members`` by default) holding its labels. A vassal's config may
ask, in a ``fleet`` section, for ``replicas`` and label constraints; placement
(monitors/fleet.py) is computed alike by every member from the live member list, and this
monitor tells its emperor only about the vassals placed on its own member. So when a member
dies (its session expires) or leaves, its vassals start on the survivors; when it returns,
they move back and the other copies stop.

Watches make every change instant; a full read every ``emperor-freq`` seconds is the
safety net. Kazoo runs its own threads; its watch and state callbacks only mark work for
this monitor's thread, which reads ZooKeeper and hands events to the loop with
``emit_threadsafe`` (ARCHITECTURE rule 1).

Unknown is not empty: while the connection is lost, the path does not exist, the
credentials are refused or the member name is held by another emperor, the monitor
reports Unavailable and tells its emperor nothing, so no vassal stops. After a
reconnection (and after a session expiry, once it is a member again) it reads everything
and the emperor gets the whole placed set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emperor.events import Destroy, Event, Monitor, MonitorContext, Sync, Touch, printable
from monitors import fleet, zoo_member
from monitors.deps import require
from monitors.outage import Backoff, Outage
from monitors.threaded import run_blocking
from monitors.zoo_source import ZooSource, parse_zoo_arg, redact

#: a config the emperor can hand to a vassal fits one uwsgi packet (emperor/protocol.py)
MAX_CONFIG = 0xFFFF
#: a lost connection is reported after this long: an ensemble fails over to another
#: server within it, and a blip is not news
UNAVAILABLE_AFTER = 1.0
#: the thread looks at its stop flag at least this often
WAKE = 0.2
#: how long a cancelled monitor waits for its thread to close the session
CLOSE_WAIT = 1.0


@dataclass
class Vassal:
    """What one znode says: a Touch and a placement spec, or why it cannot be used."""

    touch: Touch | None
    spec: fleet.FleetSpec = fleet.DEFAULT
    error: str | None = None


@dataclass
class Work:
    """What the kazoo callbacks ask the monitor's thread to read (under ``cond``)."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    resync: bool = True
    children: bool = False
    members: bool = False
    data: set[str] = field(default_factory=set)

    def mark(self, *, resync: bool = False, children: bool = False, members: bool = False,
             data: str | None = None) -> None:
        with self.cond:
            self.resync |= resync
            self.children |= children
            self.members |= members
            if data is not None:
                self.data.add(data)
            self.cond.notify()

    def pending(self) -> bool:
        return self.resync or self.children or self.members or bool(self.data)

    def take(self, timeout: float) -> Work | None:
        """Wait up to ``timeout`` for work; hand it over and start afresh."""
        with self.cond:
            if not self.pending():
                self.cond.wait(timeout)
            if not self.pending():
                return None
            taken = Work(resync=self.resync, children=self.children, members=self.members,
                         data=self.data)
            self.resync = self.children = self.members = False
            self.data = set()
            return taken


class NotNow(Exception):
    """The tree cannot be read as it should (missing path, refused access): the reason."""


class GaveUp(Exception):
    """kazoo stopped trying to connect (authentication failed): a new client is needed."""


class ZooMonitor(Monitor):
    scheme = "zoo"

    def __init__(self, arg: str, emit: Callable[[Monitor, Event], None], ctx: MonitorContext) -> None:
        super().__init__(arg, emit, ctx)
        require("kazoo", "zoo", "zoo")
        self.source: ZooSource = parse_zoo_arg(arg)
        self.prefix = "[emperor-zoo]"
        try:
            self.member = fleet.check_member_name(ctx.fleet_member or zoo_member.default_name())
        except fleet.BadSpec as exc:
            raise ValueError(f"emperor-fleet-member: {exc}") from None
        try:
            self.labels = fleet.parse_member_labels(ctx.fleet_labels)
        except fleet.BadSpec as exc:
            raise ValueError(f"emperor-fleet-labels: {exc}") from None
        self.outage = Outage(self.emit_threadsafe, self.log, self.prefix)
        self.backoff = Backoff(maximum=max(ctx.freq, 1.0) * 2)
        self.kazoo_log = logging.getLogger("imperium.zoo.kazoo")
        self.kazoo_log.setLevel(logging.ERROR)  # its retry chatter is summed up by Outage
        self.up = threading.Event()  # the session is connected (set by kazoo's state listener)
        self.ready = threading.Event()  # the tree was read since the last reconnection (tests, bench)
        self.scans = 0  # successful full reads
        self.client: Any = None  # the current kazoo client (tests force a session expiry with it)
        self._thread: threading.Thread | None = None
        self._reset()

    @property
    def id(self) -> str:
        return redact(self.arg)

    def _reset(self) -> None:
        self.work = Work()
        self.vassals: dict[str, Vassal] = {}
        self.members: dict[str, zoo_member.MemberInfo] = {}
        self.emitted: dict[str, float] = {}  # what the emperor was told runs here, by mtime
        self.registered_session: int | None = None  # the session our member node belongs to
        self.since = time.time()
        self.published: bytes | None = None
        self.path_missing = False
        self.problem: str | None = None  # why the tree cannot be used now (member name, ACL)
        self._warned: dict[str, str] = {}
        self._mtimes: dict[str, tuple[int, float]] = {}  # name -> (mzxid, mtime given)

    async def run(self) -> None:
        self._reset()
        self.log.info("%s watching %s as fleet member %s%s", self.prefix, self.source.where,
                      self.member, f" (labels {_show_labels(self.labels)})" if self.labels else "")
        try:
            await run_blocking(self._watch_forever, name=f"zoo-monitor {self.id}")
        finally:
            # the emperor may exit right after cancelling us, killing the (daemon) thread: wait
            # a moment for it to close the session, so that our member node goes now and the
            # fleet takes our vassals over without waiting for the session to expire
            thread = self._thread
            if thread is not None and thread.is_alive():
                self.work.mark()  # wake it: its stop flag is set
                thread.join(CLOSE_WAIT)

    # --- kazoo's threads: only mark work ----------------------------------------------------------

    def _on_state(self, state: str) -> bool:
        if state == "CONNECTED":
            self.up.set()
            self.work.mark(resync=True)
        else:
            self.up.clear()
            self.ready.clear()
            self.work.mark()
        return False  # keep listening

    def _on_children(self, event: Any) -> None:
        self.work.mark(children=True, resync=event.path is None)

    def _on_data(self, event: Any) -> None:
        if event.path is None:  # the connection dropped: every watch is gone
            self.work.mark(resync=True)
            return
        self.work.mark(data=event.path.rsplit("/", 1)[1])

    def _on_members(self, event: Any) -> None:
        self.work.mark(members=True, resync=event.path is None)

    # --- the monitor's own thread ---------------------------------------------------------------------

    def _watch_forever(self, stop: threading.Event) -> None:
        self._thread = threading.current_thread()
        while not stop.is_set():
            client = self.client = self.source.client(self.kazoo_log)
            client.add_listener(self._on_state)
            try:
                client.start_async()
                self._serve(client, stop)
            except GaveUp as exc:
                self.outage.failed(str(exc))
                stop.wait(self.backoff.next())
            except Exception as exc:  # a bug here must not end the monitor: start over
                self.log.exception("%s unexpected error, reconnecting", self.prefix)
                self.outage.failed(f"{type(exc).__name__}: {exc}")
                stop.wait(self.backoff.next())
            finally:
                self.up.clear()
                self.ready.clear()
                try:
                    client.stop()  # closes the session: our member node goes at once
                    client.close()
                except Exception:  # a half-dead client may fail to stop; it is dropped anyway
                    pass

    def _serve(self, client: Any, stop: threading.Event) -> None:
        from kazoo.exceptions import KazooException, NoAuthError
        from kazoo.handlers.threading import KazooTimeoutError
        from kazoo.protocol.states import KeeperState

        next_scan = 0.0
        lost_at: float | None = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            work = self.work.take(min(WAKE, max(0.0, next_scan - now)))
            now = time.monotonic()
            if not client.connected:
                if client.client_state == KeeperState.AUTH_FAILED:
                    raise GaveUp(f"ZooKeeper at {self.source.hosts} refused the authentication")
                lost_at = lost_at or now
                if now - lost_at >= UNAVAILABLE_AFTER:
                    self.outage.failed(f"no connection to ZooKeeper at {self.source.hosts}")
                self.work.mark(resync=True)  # whatever was asked is read in full once back
                self.up.wait(WAKE)
                continue
            lost_at = None
            if work is None and now < next_scan:
                continue
            full = work is None or work.resync or now >= next_scan
            try:
                if full:
                    self._full_read(client)
                    next_scan = time.monotonic() + self.ctx.freq
                else:
                    assert work is not None
                    if work.members:
                        self._read_members(client, full=False)
                    if work.children:
                        self._read_children(client)
                    for name in sorted(work.data):
                        self._read_vassal(client, name)
                self._publish(client, sync=full)
            except NotNow as exc:
                self.outage.failed(str(exc))
                next_scan = time.monotonic() + min(self.backoff.next(), self.ctx.freq)
                continue
            except NoAuthError:  # our own member node, made unwritable for us
                self.outage.failed(f"ZooKeeper refuses to let this emperor write its member node "
                                   f"under {self.source.members}: wrong or missing credentials")
                next_scan = time.monotonic() + self.backoff.next()
                continue
            except (KazooException, KazooTimeoutError) as exc:
                self.work.mark(resync=True)
                if client.connected:  # not a lost connection (kazoo says so first): do not spin
                    self.outage.failed(f"reading {self.source.where}: {type(exc).__name__} {exc}")
                    stop.wait(self.backoff.next())
                continue
            self.ready.set()
            if self.problem:
                self.outage.failed(self.problem)
            elif not self.path_missing:  # a round that did not read the path proves nothing
                self.outage.recovered()
                self.backoff.reset()

    # --- reading the tree -------------------------------------------------------------------------------

    def _full_read(self, client: Any) -> None:
        self._read_members(client, full=True)
        self._read_children(client, full=True)
        self.scans += 1

    def _read_members(self, client: Any, full: bool) -> None:
        from kazoo.exceptions import NoAuthError, NoNodeError

        path = self.source.members
        try:
            try:
                names = self._wait(client.get_children_async(path, watch=self._on_members))
            except NoNodeError:
                self._wait(client.ensure_path_async(path))
                names = self._wait(client.get_children_async(path, watch=self._on_members))
        except NoAuthError:
            raise NotNow(f"ZooKeeper refuses access to the members path {path}: wrong or missing "
                         "credentials (zoo://USER:PASSWORD@...)") from None
        session = client.client_id[0] if client.client_id else None
        if self.member not in names or self.registered_session != session:
            if not self._register(client, session):
                self.registered_session = None
            names = self._wait(client.get_children_async(path, watch=self._on_members))
        wanted = names if full else [n for n in names if n not in self.members]
        fetched = self._fetch(client, path, wanted, watch=None)
        members = {n: self.members[n] for n in names if n in self.members and n not in fetched}
        for name, got in fetched.items():
            if got is None:
                continue  # left between the two reads
            if got[1] is not None and not got[1].ephemeralOwner:
                # no session holds it (made by hand, or restored from a backup): it would
                # draw vassals to a member that runs nothing, for ever
                self._warn(f"member:{name}", f"ignoring {path}/{printable(name)}: not an "
                                             f"ephemeral node, so no emperor's; delete it")
                continue
            info = zoo_member.decode(got[0]) if got[0] is not None else zoo_member.MemberInfo(
                error="ZooKeeper refuses to read its node")
            if info.error:
                self._warn(f"member:{name}", f"fleet member {printable(name)}: {info.error}; it "
                                             "is left out of placement until its data reads")
            members[name] = info
        if set(members) != set(self.members):
            joined = sorted(set(members) - set(self.members))
            left = sorted(set(self.members) - set(members))
            if self.members or joined != [self.member]:
                self.log.info("%s fleet members: %s%s%s", self.prefix,
                              ", ".join(map(printable, sorted(members))) or "none",
                              f"; joined: {', '.join(map(printable, joined))}" if joined else "",
                              f"; left: {', '.join(map(printable, left))}" if left else "")
        self.members = members

    def _register(self, client: Any, session: int | None) -> bool:
        """Create our ephemeral member node, or learn why we cannot (sets ``problem``)."""
        from kazoo.exceptions import NoAuthError, NodeExistsError, NoNodeError

        path = f"{self.source.members}/{self.member}"
        data = zoo_member.encode(self.labels, self.emitted, self.since)
        info = zoo_member.MemberInfo()
        for _ in range(3):
            try:
                self._wait(client.create_async(path, data, ephemeral=True, makepath=True))
                self._registered(session, data)
                return True
            except NoAuthError:
                self.problem = (f"not allowed to create the member node {path}: wrong or missing "
                                "credentials")
                return False
            except NodeExistsError:
                pass
            try:
                held, stat = self._wait(client.get_async(path))
            except NoNodeError:
                continue  # it just went away: try again
            if stat.ephemeralOwner == session:  # ours: an earlier create whose answer was lost
                self._registered(session, None)
                return True
            if not stat.ephemeralOwner:
                self.problem = (f"the member node {path} is not ephemeral (no emperor's session "
                                "holds it, it was made by hand or restored): delete it")
                return False
            info = zoo_member.decode(held)
            if zoo_member.left_by_dead_local_emperor(info):
                self.log.info("%s member node %s was left by a dead emperor of this machine "
                              "(pid %d): taking it over", self.prefix, path, info.pid)
                try:
                    self._wait(client.delete_async(path, version=stat.version))
                except (NoNodeError, NodeExistsError):
                    pass
                except Exception as exc:  # BadVersion: it changed meanwhile, so it lives
                    self.log.debug("%s cannot remove %s: %r", self.prefix, path, exc)
                    break
                continue
            break
        holder = f"{info.host or '?'} pid {info.pid or '?'}"
        self.problem = (f"fleet member name {self.member!r} is held by another emperor ({holder}); "
                        "this one joins the fleet when that session ends (give each emperor its "
                        "own emperor-fleet-member)")
        return False

    def _registered(self, session: int | None, data: bytes | None) -> None:
        if self.registered_session is None:
            self.log.info("%s joined the fleet at %s as %s", self.prefix, self.source.members,
                          self.member)
        self.registered_session = session
        self.problem = None
        self.published = data

    def _read_children(self, client: Any, full: bool = False) -> None:
        from kazoo.exceptions import NoAuthError, NoNodeError

        path = self.source.path
        try:
            names = self._wait(client.get_children_async(path, watch=self._on_children))
        except NoAuthError:
            raise NotNow(f"ZooKeeper refuses access to {self.source.where}: wrong or missing "
                         "credentials (zoo://USER:PASSWORD@...)") from None
        except NoNodeError:
            # watched for: its creation wakes us at once
            if self._wait(client.exists_async(path, watch=self._on_children)) is None:
                self.path_missing = True
                raise NotNow(f"the path {self.source.where} does not exist (yet): no vassal is "
                             "started or stopped until it does") from None
            names = self._wait(client.get_children_async(path, watch=self._on_children))
        if self.path_missing:
            self.log.info("%s the path %s exists now", self.prefix, path)
            self.path_missing = False
        wanted = names if full else [n for n in names if n not in self.vassals]
        fetched = self._fetch(client, path, wanted, watch=self._on_data)
        vassals = {n: self.vassals[n] for n in names if n in self.vassals and n not in fetched}
        for name, got in fetched.items():
            if got is None:
                continue
            if got[0] is None:
                vassals[name] = self._skip(name, "ZooKeeper refuses to read it (its ACL does not "
                                                 "allow this emperor's credentials)")
            else:
                vassals[name] = self._vassal(name, *got)
        for name in set(self.vassals) - set(vassals):
            self._mtimes.pop(name, None)
            self._warned.pop(name, None)
        self.vassals = vassals

    def _read_vassal(self, client: Any, name: str) -> None:
        got = self._fetch(client, self.source.path, [name], watch=self._on_data)[name]
        if got is None:
            self.vassals.pop(name, None)
        elif got[0] is None:
            self.vassals[name] = self._skip(name, "ZooKeeper refuses to read it (its ACL does not "
                                                  "allow this emperor's credentials)")
        else:
            self.vassals[name] = self._vassal(name, *got)

    def _wait(self, result: Any) -> Any:
        """A request's answer, within the session timeout. kazoo queues a request made while
        it reconnects and answers it only once connected again: waiting for that would hold
        this thread, and with it the outage report, for as long as the network stays cut
        (a KazooTimeoutError goes to _serve, which marks a resync and checks the connection)."""
        return result.get(timeout=self.source.timeout)

    def _fetch(self, client: Any, parent: str, names: list[str], watch: Callable[[Any], None] | None
               ) -> dict[str, tuple[bytes | None, Any] | None]:
        """Data and stat of many nodes in one round trip's time: None for a node gone
        meanwhile, ``(None, None)`` for one whose ACL refuses us."""
        from kazoo.exceptions import NoAuthError, NoNodeError

        pending = {n: client.get_async(f"{parent}/{n}", watch=watch) for n in names}
        out: dict[str, tuple[bytes | None, Any] | None] = {}
        for name, result in pending.items():
            try:
                out[name] = result.get(timeout=self.source.timeout)
            except NoNodeError:
                out[name] = None
            except NoAuthError:
                out[name] = (None, None)
        return out

    def _vassal(self, name: str, data: bytes | None, stat: Any) -> Vassal:
        data = data or b""
        if not self.valid(name):
            return self._skip(name, "not a valid vassal name (needs a config extension)")
        if len(data) > MAX_CONFIG:
            return self._skip(name, f"its config is {len(data)} bytes, more than the "
                                    f"{MAX_CONFIG} the emperor can hand to a vassal")
        try:
            spec = fleet.spec_from_config(name, data)
        except fleet.BadSpec as exc:
            return self._skip(name, str(exc))
        if self._warned.pop(name, None) is not None:
            self.log.info("%s znode %s is usable again", self.prefix, printable(name))
        return Vassal(Touch(name=name, mtime=self._mtime(name, stat), config=data or None), spec)

    def _mtime(self, name: str, stat: Any) -> float:
        """The znode's mtime, kept rising: a write whose server clock lags still reloads."""
        mtime = stat.mtime / 1000.0
        last = self._mtimes.get(name)
        if last is not None:
            if last[0] == stat.mzxid:
                return last[1]
            mtime = max(mtime, last[1] + 0.001)
        self._mtimes[name] = (stat.mzxid, mtime)
        return mtime

    def _skip(self, name: str, reason: str) -> Vassal:
        self._warn(name, f"skipping znode {printable(name)}: {reason}")
        return Vassal(None, error=reason)

    def _warn(self, key: str, message: str) -> None:
        if self._warned.get(key) != message:
            self._warned[key] = message
            self.log.warning("%s %s", self.prefix, message)

    # --- placement and what the emperor is told ---------------------------------------------------------

    def _publish(self, client: Any, sync: bool) -> None:
        if self.registered_session is None:
            return  # not a member: which vassals are ours is unknown, so nothing is said
        labels = zoo_member.placement_members(self.members)
        placed: dict[str, Touch] = {}
        kept: dict[str, float] = {}
        for name, v in self.vassals.items():
            if v.touch is None:
                if name in self.emitted:  # unreadable, not gone: a running copy stays
                    kept[name] = self.emitted[name]
                continue
            if self.member in fleet.place(name, v.spec, labels):
                placed[name] = v.touch
        for name, touch in placed.items():
            if self.emitted.get(name) != touch.mtime:
                self.emit_threadsafe(touch)
        for name in self.emitted:
            if name not in placed and name not in kept:
                self.emit_threadsafe(Destroy(name))
        self.emitted = {n: t.mtime for n, t in placed.items()} | kept
        if sync:
            self.emit_threadsafe(Sync(frozenset(self.emitted)))
        self._publish_runs(client)

    def _publish_runs(self, client: Any) -> None:
        """Keep ``runs`` in our member node up to date, for ``--fleet-status``."""
        data = zoo_member.encode(self.labels, self.emitted, self.since)
        if data == self.published:
            return
        self._wait(client.set_async(f"{self.source.members}/{self.member}", data))
        self.published = data


def _show_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" if v else k for k, v in sorted(labels.items()))
