"""The Emperor: one asyncio loop owns every vassal.

Monitors report what their sources hold (``Touch``/``Destroy``/``Sync``); the emperor keeps,
per vassal name, the *claims* of every monitor naming it, in the order they arrived. The
first claim owns the vassal; ``reconcile(name)`` compares that claim with the running
vassal and acts as uWSGI's ``uwsgi_emperor_simple_do``/``emperor_add`` would: start it
(blacklist and tyrant checks), reload it on a newer mtime, stop it when no monitor names it
any more. A second monitor naming the same vassal is a standby: it takes over (restarting
the vassal if its file is another one) when the owner drops the name.

Vassals are made by the fork server (``emperor.forkserver``) without the loop ever waiting:
a vassal is ``STARTING`` until its pid comes back. Process exits come from the fork server
(or pidfds, for the thread spawner); vassal messages from the emperor fd. Each vassal's state
is its ``Lifecycle`` (emperor.lifecycle). A periodic tick applies heartbeat and curse
tolerance and the royal-death mercy. Every interval is measured on the monotonic clock
(emperor.clock); wall time is kept only for what the stats server shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from typing import Any

from emperor import broodlord, ondemand, systemd, tyrant
from emperor import spawn as spawning
from emperor.clock import Clock
from emperor.control import Control, ControlError, Hold
from emperor.events import (
    Available,
    Destroy,
    Event,
    Monitor,
    MonitorContext,
    Sync,
    Touch,
    Unavailable,
    is_valid_name,
    name_bytes,
    printable,
)
from emperor.forkserver import ForkServer, own_interpreter
from emperor.isolation.cgroups import CgroupError
from emperor.isolation.jail import JailSpec
from emperor.isolation.limits import VassalCgroups
from emperor.lifecycle import Kind, Phase
from emperor.logs import log, log_verbose, set_output, setup_logging
from emperor.output import VassalOutput
from emperor.policy import Blacklist, Throttle
from emperor.protocol import EXILE_CODE, ToEmperor, ToVassal, VassalLink
from emperor.settings import EmperorSettings, default_binary
from emperor.stats import StatsServer, render
from emperor.vassal import VassalHandle, describe_status
from emperor.view import Latencies, snapshot
from vassal.config.sources import ENV_FILE_FROM_EMPEROR

TICK = 0.25  # seconds between heartbeat / curse / mercy checks (of vassals that need them)
PENDING = object()  # an on-demand socket name still being looked up


class Emperor:
    def __init__(self, settings: EmperorSettings, *, clock: Clock | None = None,
                 forkserver: ForkServer | None = None) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        #: started by run_emperor before any thread; None: Popen in a thread instead
        self.forkserver = forkserver
        self.spawner: ForkServer | spawning.ThreadSpawner | None = None
        self.by_pid: dict[int, VassalHandle] = {}
        self.log = setup_logging()
        self.ctx = MonitorContext(freq=float(settings.freq), tyrant=settings.tyrant,
                                  tyrant_nofollow=settings.tyrant_nofollow,
                                  follow_symlinks=not settings.nofollow,
                                  extra_extensions=settings.extra_extensions,
                                  fleet_member=settings.fleet_member,
                                  fleet_labels=tuple(settings.fleet_labels), log=self.log)
        self.monitors: list[Monitor] = []
        self.monitor_tasks: dict[Monitor, asyncio.Task] = {}
        self.claims: dict[str, dict[Monitor, Touch]] = {}
        self.vassals: dict[str, VassalHandle] = {}
        self.blacklist = Blacklist(settings.throttle_ms, settings.max_throttle_ms)
        self.throttle = Throttle(settings.throttle_ms, settings.max_throttle_ms)
        self.retry: dict[str, asyncio.TimerHandle] = {}
        self.exiled: dict[str, float] = {}
        self.refused: dict[str, tuple[Any, ...]] = {}  # last refusal logged, to log it once
        self.royal_death_at: float | None = None  # monotonic
        self.hooks: set[asyncio.Future] = set()
        self.stats: StatsServer | None = None
        self.home = os.getcwd()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.done: asyncio.Future | None = None
        self.broodlord_num = 0
        self.attention: set[VassalHandle] = set()
        #: emperor-on-demand-exec answers: (name, mtime) -> socket name (None: no socket)
        self.od_exec: dict[tuple[str, float], str | None] = {}
        self.od_pending: set[tuple[str, float]] = set()
        self.parent: VassalLink | None = None
        self._own_binary: bool | None = None
        self.cgroups = VassalCgroups(settings.vassals_cgroup_opts, os.getpid(), log)
        #: observability (emperor.view): monitors' availability, spawn/reload latencies,
        #: whether every monitor has done its first scan; the control socket (its holds)
        self.monitor_up: dict[str, bool] = {}  # monitor id -> available
        self.latencies = Latencies()
        self.settled = False
        self.unsettled: set[str] = set()  # monitors whose first scan is still to come
        self.control = Control(self, settings.control_socket)
        self.output = VassalOutput(settings.log_prefix, settings.vassal_logdir)
        self.notifier: systemd.Notifier | None = None
        self.prometheus: StatsServer | None = None

    # --- setup ---------------------------------------------------------------------------------

    def build_monitors(self) -> None:
        from monitors import monitor_class, split_uri

        for arg in self.settings.monitors:
            scheme, _ = split_uri(arg)
            cls = monitor_class(scheme)
            monitor = cls(arg, self.on_event, self.ctx)
            self.monitors.append(monitor)

    def vassal_dir(self) -> str | None:
        """The directory of the first dir:// monitor: the emperor's cwd, as uWSGI's."""
        for m in self.monitors:
            directory = getattr(m, "directory", None)
            if directory:
                return directory
        return None

    async def main(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        if self.forkserver is not None:
            self.forkserver.attach(self.loop, self.on_process_exit)
            self.spawner = self.forkserver
        else:
            self.spawner = spawning.ThreadSpawner(self.loop, self.on_process_exit)
        try:
            self.build_monitors()
        except Exception as exc:
            log(f"[emperor] {exc}")
            return 1
        if not self.monitors:
            log("[emperor] no imperial monitor given")
            return 1
        vdir = self.vassal_dir()
        if vdir:
            try:
                os.chdir(vdir)
            except OSError as exc:
                log(f"[emperor] chdir() to the vassal directory {vdir}: {exc.strerror}")
                return 1
        self.home = os.getcwd()
        if self.settings.pidfile:
            with open(self.settings.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
        try:
            self.control.start(self.loop)
        except ControlError as exc:
            log(f"[emperor] emperor-control-socket: {exc}")
            return 1
        self.output.attach(self.loop)
        for sig, handler in ((signal.SIGINT, self.royal_death), (signal.SIGTERM, self.royal_death),
                             (signal.SIGQUIT, self.royal_death), (signal.SIGHUP, self.massive_reload),
                             (signal.SIGUSR1, self.log_status), (signal.SIGURG, self.cleanup_blacklist),
                             (signal.SIGUSR2, self.reopen_logs)):
            self.loop.add_signal_handler(sig, handler)
        self.loop.add_signal_handler(signal.SIGPIPE, lambda: None)
        # an emperor can itself be a vassal (of a uWSGI or an Imperium emperor)
        self.parent = VassalLink.from_environ(pop=True)
        log("*** starting uWSGI sub-Emperor ***" if self.parent else "*** starting uWSGI Emperor ***")
        if self.settings.stats:
            self.stats = StatsServer(self.settings.stats,
                                     lambda: render(snapshot(self), self.settings.stats_minified),
                                     http=self.settings.stats_http)
            try:
                await self.stats.start()
            except OSError as exc:
                log(f"[emperor] cannot bind the stats server on {self.settings.stats}: {exc}")
                self.stats = None
        if self.settings.prometheus:
            await self.start_prometheus(self.settings.prometheus)
        self.notifier = systemd.Notifier.from_environ()
        if self.notifier is not None:
            self.notifier.start(self.loop)
        self.unsettled = {m.id for m in self.monitors if m.lists}
        for m in self.monitors:
            self.start_monitor(m)
        if not self.unsettled:
            self.loop.call_soon(self.mark_settled)
        self.loop.call_later(systemd.SETTLE_LIMIT, self.settle_anyway)
        if self.parent is not None:
            self.loop.add_reader(self.parent.fileno(), self.on_parent)
            self.parent.spawned()
            log("announcing my loyalty to the Emperor...")
            self.parent.loyal()
        ticker = asyncio.ensure_future(self.tick_forever())
        try:
            return await self.done
        finally:
            ticker.cancel()

    async def start_prometheus(self, address: str) -> None:
        from emperor import prometheus
        from emperor.protocol import scrape_answer

        registry = prometheus.registry(lambda: snapshot(self))
        self.prometheus = StatsServer(address, lambda: b"", respond=lambda req: scrape_answer(req, registry),
                                      what="prometheus")
        try:
            await self.prometheus.start()
        except OSError as exc:
            log(f"[emperor] cannot bind the prometheus server on {address}: {exc}")
            self.prometheus = None

    # --- first scan (systemd's READY=1) ------------------------------------------------------

    def monitor_scanned(self, monitor: Monitor) -> None:
        if monitor.id in self.unsettled:
            self.unsettled.discard(monitor.id)
            if not self.unsettled:
                self.mark_settled()

    def mark_settled(self) -> None:
        if self.settled or self.royal_death_at is not None:
            return
        self.settled = True
        if self.notifier is not None:
            self.notifier.settled(self.status_line())

    def settle_anyway(self) -> None:
        if not self.settled and self.unsettled:
            systemd.log_not_settled(sorted(self.unsettled))
            self.unsettled.clear()
            self.mark_settled()

    def status_line(self) -> str:
        return systemd.status_line(list(self.vassals.values()), len(self.blacklist))

    def start_monitor(self, monitor: Monitor) -> None:
        task = asyncio.ensure_future(monitor.start())
        self.monitor_tasks[monitor] = task
        task.add_done_callback(lambda t, m=monitor: self.monitor_ended(m, t))

    def monitor_ended(self, monitor: Monitor, task: asyncio.Task) -> None:
        if task.cancelled() or self.royal_death_at is not None:
            return
        exc = task.exception()
        why = f"{type(exc).__name__}: {exc}" if exc else "it returned"
        log(f"[emperor] imperial monitor {monitor.id} stopped ({why}); its vassals are left "
            f"running, restarting it in {self.settings.freq}s")
        assert self.loop is not None
        self.loop.call_later(self.settings.freq,
                             lambda: None if self.royal_death_at is not None else self.start_monitor(monitor))

    # --- monitor events --------------------------------------------------------------------------

    def on_event(self, monitor: Monitor, event: Event) -> None:
        try:
            self._on_event(monitor, event)
        except Exception as exc:  # a bad event must never take the emperor down
            log(f"[emperor] error handling {event!r} from {monitor.id}: {type(exc).__name__}: {exc}")

    def _on_event(self, monitor: Monitor, event: Event) -> None:
        if self.royal_death_at is not None:
            return
        if isinstance(event, Touch):
            if not is_valid_name(event.name, self.settings.extra_extensions):
                if len(name_bytes(event.name) or b"") > 254:
                    log(f"[emperor] invalid vassal name: {printable(event.name)}")
                return
            claims = self.claims.setdefault(event.name, {})
            if claims and monitor not in claims:
                owner = next(iter(claims))
                log(f"[emperor] vassal {event.name} is also named by {monitor.id}; "
                    f"{owner.id} keeps it (the other takes over if it drops it)")
            claims[monitor] = event
            self.reconcile(event.name)
        elif isinstance(event, Destroy):
            claims = self.claims.get(event.name)
            if claims and monitor in claims:
                del claims[monitor]
                if not claims:
                    del self.claims[event.name]
                self.reconcile(event.name)
        elif isinstance(event, Sync):
            self.monitor_up[monitor.id] = True
            self.monitor_scanned(monitor)
            for name in [n for n, c in self.claims.items() if monitor in c and n not in event.names]:
                claims = self.claims[name]
                del claims[monitor]
                if not claims:
                    del self.claims[name]
                self.reconcile(name)
        elif isinstance(event, Unavailable):
            self.monitor_up[monitor.id] = False
            self.monitor_scanned(monitor)
            log(f"[emperor] monitor {monitor.id} unavailable ({event.reason}): its vassals are left alone")
        elif isinstance(event, Available):
            self.monitor_up[monitor.id] = True
            self.monitor_scanned(monitor)
            log(f"[emperor] monitor {monitor.id} available again")

    def owner_claim(self, name: str) -> tuple[Monitor, Touch] | None:
        claims = self.claims.get(name)
        if not claims:
            return None
        return next(iter(claims.items()))

    def launch_params(self, t: Touch, monitor: Monitor) -> tuple[str, str, str | None]:
        """(cwd, config argument, UWSGI_VASSALS_DIR) for a claim."""
        base_dir = getattr(monitor, "base_dir", None) or self.home
        if t.config is None and t.path:
            suffix = os.sep + t.name
            if t.path.endswith(suffix):
                return (t.path[: -len(suffix)] or os.sep, t.name, base_dir)
            return (self.home, t.path, base_dir)
        return (self.home, t.name, base_dir)

    # --- reconcile -----------------------------------------------------------------------------

    def reconcile(self, name: str) -> None:
        if self.royal_death_at is not None:
            return
        claim = self.owner_claim(name)
        v = self.vassals.get(name)
        hold = self.control.holds.get(name)
        if hold is Hold.PAUSED:
            return  # the operator holds it as it is (emperor.control): applied on resume
        if hold is Hold.STOPPED:
            self.cancel_retry(name)
            if v is not None and v.status == 0:
                self.retire(v)
            return
        if claim is None:
            self.cancel_retry(name)
            self.exiled.pop(name, None)
            self.refused.pop(name, None)
            if v is not None and v.status == 0:
                self.retire(v)
            elif v is None:
                # no source names it any more: its back-off goes with it
                self.blacklist.remove(name)
                self.blacklist.remove(broodlord.blacklist_key(name))
                self.stop_zergs(name)
            return
        monitor, t = claim
        if v is None:
            if name in self.exiled:
                if t.mtime <= self.exiled[name]:
                    return
                del self.exiled[name]
            if name in self.retry:
                return  # blacklisted: the retry timer will start it
            self.add_from_claim(name, monitor, t)
            return
        if v.status > 0:
            return  # going down; reconciled again when it is gone
        cwd, arg, vdir = self.launch_params(t, monitor)
        if (cwd, arg, t.config is not None) != v.launch_key():
            # another file (or a config instead of a file): a reload cannot switch to it
            log(f"[emperor] vassal {name} now comes from {monitor.id}: restarting it")
            self.retire(v)
            return
        if t.mtime > v.last_mod:
            sock_name = self.on_demand_socket(name, t)
            if sock_name is PENDING:
                return
            if sock_name != v.socket_name:
                # into or out of on-demand mode, or another socket: uWSGI stops the instance
                log(f'[uwsgi-emperor] {name} -> on-demand socket changed '
                    f'("{v.socket_name or ""}" -> "{sock_name or ""}"): restarting it')
                self.retire(v)
                return
        if v.monitor is not monitor:
            log(f"[emperor] vassal {name} is now governed by {monitor.id}")
            v.monitor = monitor
        if self.settings.tyrant and (t.uid != v.uid or t.gid != v.gid):
            log(f"[emperor-tyrant] !!! permissions of vassal {name} changed. stopping the instance... !!!")
            self.retire(v)
            return
        if t.mtime > v.last_mod:
            if t.config is not None:
                v.config = t.config
            elif not self.tyrant_refresh(v):
                return
            if not v.reload(t.mtime):
                v.curse()

    def add_from_claim(self, name: str, monitor: Monitor, t: Touch) -> None:
        sock_name = self.on_demand_socket(name, t)
        if sock_name is PENDING:
            return  # reconciled again when emperor-on-demand-exec has answered
        cwd, arg, vdir = self.launch_params(t, monitor)
        self.add(name, monitor, mtime=t.mtime, config=t.config, uid=t.uid, gid=t.gid, cwd=cwd,
                 config_arg=arg, vassals_dir=vdir, socket_name=sock_name)

    def retire(self, v: VassalHandle) -> None:
        """No longer wanted as it is: stop it (and its zergs), or, waiting on demand, just
        remove it."""
        if v.life.kind is Kind.PLAIN:
            self.stop_zergs(v.name)
        if v.life.phase is Phase.WAITING:
            v.life.exited()
            self.remove(v)
            self.reconcile(v.name)
        else:
            v.stop(self.settings.graceful_shutdown)

    # --- on demand -----------------------------------------------------------------------------

    def on_demand_socket(self, name: str, t: Touch) -> str | None | object:
        """The socket this claim waits on (None: start now), or PENDING while the
        emperor-on-demand-exec command runs in a thread."""
        if t.socket:
            return t.socket
        s = self.settings
        if not s.on_demand_exec or s.on_demand_extension or s.on_demand_directory:
            if s.tyrant and s.on_demand_extension and t.config is None:
                return self.tyrant_socket_file(name, t)
            return ondemand.from_options(s, name, t.path)
        key = (name, t.mtime)
        if key in self.od_exec:
            return self.od_exec[key]
        if key not in self.od_pending:
            assert self.loop is not None
            self.od_pending.add(key)
            fut = self.loop.run_in_executor(None, ondemand.run_exec, s.on_demand_exec, t.path or name)

            def done(f: asyncio.Future, key: tuple[str, float] = key) -> None:
                self.od_pending.discard(key)
                self.od_exec = {k: v for k, v in self.od_exec.items() if k[0] != key[0]}
                self.od_exec[key] = None if f.cancelled() or f.exception() else f.result()
                self.reconcile(key[0])
            fut.add_done_callback(done)
        return PENDING

    def tyrant_socket_file(self, name: str, t: Touch) -> str | None:
        """The extension file's socket, read with the config owner's say only (a refused
        file is logged once and counts as no file: the vassal starts without it)."""
        claim = self.owner_claim(name)
        if claim is None:
            return None
        cwd, arg, _ = self.launch_params(t, claim[0])
        verified = self.tyrant_verify(name, cwd, arg, t.mtime)
        if verified is None:
            return None  # add() refuses the vassal itself
        try:
            return ondemand.from_options(self.settings, name, t.path, read=lambda path: (
                tyrant.read_companion(path, verified.uid, verified.gid)))
        except tyrant.Refused as exc:
            key = ("tyrant-socket", t.mtime, str(exc))
            if self.refused.get(name) != key:
                self.refused[name] = key
                log(f"[emperor-tyrant] on-demand socket file of vassal {name} ignored: {exc}")
            return None

    def _rearm(self, v: VassalHandle) -> None:
        if self.vassals.get(v.name) is v and v.life.phase is Phase.WAITING and v.listener:
            self.wait_on_demand(v)

    def wait_on_demand(self, v: VassalHandle) -> None:
        assert self.loop is not None and v.listener is not None
        self.loop.add_reader(v.listener.fileno(), self.on_demand_ready, v)

    def on_demand_ready(self, v: VassalHandle) -> None:
        """A connection waits on the socket of a vassal without a process: start it."""
        assert self.loop is not None and v.listener is not None
        self.loop.remove_reader(v.listener.fileno())
        if self.vassals.get(v.name) is not v or v.life.phase is not Phase.WAITING:
            return
        v.life.to(Phase.STARTING)
        v.first_run = v.last_run = self.clock.now()
        self.start(v)

    def keep_socket(self, v: VassalHandle, asked_to_stop: bool) -> socket.socket | None:
        """The socket of an on-demand vassal that died on its own, taken from it when its
        claim still names that socket: the connections queued on it wait for the next
        process instead of being reset (uWSGI closes it and binds a new one)."""
        if v.listener is None or asked_to_stop or self.royal_death_at is not None:
            return None
        claim = self.owner_claim(v.name)
        if claim is None or self.on_demand_socket(v.name, claim[1]) != v.socket_name:
            return None
        kept, v.listener = v.listener, None
        return kept

    def wait_again(self, name: str, listener: socket.socket, sock_name: str | None,
                   back_off: bool = True) -> None:
        """A new on-demand handle on a kept socket, armed once the blacklist allows (at once
        without ``back_off``). ``sock_name`` is what ``keep_socket`` found the claim names
        (not read again: the file may have changed since, and the socket is that one)."""
        claim = self.owner_claim(name)
        assert claim is not None and self.loop is not None and sock_name is not None
        monitor, t = claim
        cwd, arg, vdir = self.launch_params(t, monitor)
        v = self.add(name, monitor, mtime=t.mtime, config=t.config, uid=t.uid, gid=t.gid, cwd=cwd,
                     config_arg=arg, vassals_dir=vdir, skip_blacklist=True, socket_name=sock_name,
                     listener=listener)
        if v is None:
            listener.close()
            return
        now = self.clock.mono()
        until = self.blacklist.refused_until(name, now) if back_off else None
        if until is not None:  # back off first: a connection meanwhile waits in the backlog
            self.loop.remove_reader(listener.fileno())
            self.loop.call_later(until - now + 0.0005, self._rearm, v)

    def add(self, name: str, monitor: Monitor | None, *, mtime: float, config: bytes | None,
            uid: int | None, gid: int | None, cwd: str | None, config_arg: str,
            vassals_dir: str | None, skip_blacklist: bool = False, socket_name: str | None = None,
            listener: socket.socket | None = None) -> VassalHandle | None:
        """emperor_add: blacklist, throttle, tyrant checks, then start the vassal (or, on
        demand, bind its socket and wait: ``listener`` is a socket already bound for it)."""
        if len(name_bytes(name) or b"") > 254:
            log(f"[emperor] invalid vassal name: {printable(name)}")
            return None
        now = self.clock.mono()
        if not skip_blacklist:
            until = self.blacklist.refused_until(name, now)
            if until is not None:
                self.schedule_retry(name, until)
                return None
        self.throttle.spawned(now)
        tyrant_file = False
        if self.settings.tyrant and config is None:
            verified = self.tyrant_verify(name, cwd, config_arg, mtime)
            if verified is None:
                return None
            uid, gid = verified.uid, verified.gid
            if self.own_binary():  # ours read the checked bytes; a foreign one opens the path
                config, tyrant_file = verified.data, True
        if self.settings.tyrant and (not uid or not gid):
            key = ("tyrant", mtime, uid, gid)
            if self.refused.get(name) != key:
                self.refused[name] = key
                log(f"[emperor-tyrant] invalid permissions for vassal {name}")
            return None
        self.refused.pop(name, None)
        if socket_name and listener is None:
            try:
                listener = self.bind_on_demand(socket_name, uid, gid)
            except (OSError, ValueError) as exc:
                log(f"[emperor] cannot bind the on-demand socket {socket_name} of vassal {name}: "
                    f"{getattr(exc, 'strerror', None) or exc}")
                # as uWSGI (emperor_del of a never-loyal vassal): blacklisted, tried again later
                if not self.settings.no_blacklist:
                    self.blacklist.add(name, self.clock.mono(), self.clock.wall())
                item = self.blacklist.check(name)
                self.schedule_retry(name, item.retry_at() if item else now + self.settings.freq)
                return None
        v = VassalHandle(name, monitor, mtime=mtime, config=config, uid=uid, gid=gid, cwd=cwd,
                         config_arg=config_arg, vassals_dir=vassals_dir, attention=self.attention,
                         clock=self.clock, kind=Kind.ON_DEMAND if listener else Kind.PLAIN,
                         socket_name=socket_name if listener else None, tyrant_file=tyrant_file)
        self.vassals[name] = v
        if listener is not None:
            assert self.loop is not None
            v.listener = listener
            v._loop = self.loop
            log(f'[uwsgi-emperor] {name} -> "on demand" instance detected, waiting for '
                f'connections on socket "{socket_name}" ...')
            self.wait_on_demand(v)
            return v
        self.start(v)
        return v

    def bind_on_demand(self, socket_name: str, uid: int | None, gid: int | None) -> socket.socket:
        """A tyrant vassal's on-demand socket is bound with its owner's rights when the
        owner chose it (the extension's file); an admin's (monitor column, directory, exec)
        as root, as uWSGI binds them all."""
        s = self.settings
        if s.tyrant and s.on_demand_extension and uid and gid:
            return ondemand.bind_as(socket_name, uid, gid,
                                    spawning.owner_groups(uid, gid, s.tyrant_initgroups),
                                    s.vassals_cap)
        return ondemand.bind(socket_name)

    # --- tyrant mode (emperor.tyrant) -------------------------------------------------------

    def own_binary(self) -> bool:
        """Whether vassals run our own instance (which reads the checked config bytes)."""
        if self._own_binary is None:
            self._own_binary = own_interpreter(self.settings.binary()) is not None
        return self._own_binary

    @staticmethod
    def file_arg(v: VassalHandle) -> str:
        """The config file argument without a zerg's section suffix."""
        if v.parent and v.config_arg.endswith(broodlord.SUFFIX):
            return v.config_arg[: -len(broodlord.SUFFIX)]
        return v.config_arg

    def tyrant_verify(self, name: str, cwd: str | None, config_arg: str,
                      mtime: float) -> tyrant.Verified | None:
        """The config opened once and checked (None: refused, logged once per change)."""
        path = config_arg if os.path.isabs(config_arg) else os.path.join(cwd or self.home, config_arg)
        try:
            return tyrant.read_config(path, nofollow=self.settings.tyrant_nofollow)
        except tyrant.Refused as exc:
            key = ("tyrant", mtime, str(exc))
            if self.refused.get(name) != key:
                self.refused[name] = key
                log(f"[emperor-tyrant] invalid permissions for vassal {name}: {exc}")
            return None

    def tyrant_refresh(self, v: VassalHandle) -> bool:
        """Before a tyrant vassal gets its config again: read and check the file again; a
        refusal or another owner stops the vassal (False)."""
        if not v.tyrant_file:
            return True
        verified = self.tyrant_verify(v.name, v.cwd, self.file_arg(v), v.last_mod)
        if verified is not None and (verified.uid, verified.gid) != (v.uid, v.gid):
            log(f"[emperor-tyrant] !!! permissions of vassal {v.name} changed. stopping the "
                "instance... !!!")
            verified = None
        if verified is None:
            self.retire(v)
            return False
        v.config = verified.data
        return True

    def start(self, v: VassalHandle) -> None:
        """Ask for the vassal's process; the loop goes on at once (``spawned`` follows)."""
        s = self.settings
        assert self.loop is not None and self.spawner is not None
        req = self.spawn_request(v)
        if spawning.find_binary(req) is None:
            # uWSGI's child exits 26 here and the next scan tries again, blacklist permitting:
            # retry as the blacklist says, so installing the binary is enough to recover
            log(f"[emperor] binary path: {req.argv[0]}")
            log("[emperor] is the uwsgi binary in your system PATH ?")
            self.spawn_failed(v)
            return
        try:
            req.jail.cgroups = self.cgroups.prepare(v.name)
        except CgroupError as exc:
            log(f"[emperor] cannot limit vassal {v.name}: {exc}")
            self.spawn_failed(v)
            return
        try:
            channel = v.open_channel(self.loop, self.on_readable)
        except OSError as exc:
            log(f"[emperor] unable to spawn vassal {v.name}: {exc}")
            self.spawn_failed(v)
            return
        v.spawn_method = req.method
        if self.output.enabled:
            try:
                channel.output_child = self.output.pipe(v.name)
                req.output = True
            except OSError as exc:
                log(f"[emperor] cannot collect the output of vassal {v.name}: {exc.strerror}")
        if s.tyrant:
            log(f"[emperor-tyrant] dropping privileges to {v.uid} {v.gid} for instance {v.name}")
        fds = channel.child_fds()
        if v.listener is not None:
            fds.append(v.listener.fileno())
        self.spawner.spawn(req, fds,
                           lambda pid, err, v=v: self.spawned(v, pid, err))

    def spawn_request(self, v: VassalHandle) -> spawning.SpawnRequest:
        s = self.settings
        # every zerg of NAME is started as NAME:zerg (its [zerg] section), whatever its id
        argv_name = v.parent + broodlord.SUFFIX if v.parent else v.name
        argv = spawning.build_argv(s, argv_name, v.config_arg,
                                   has_config=v.use_config and not v.tyrant_file, cwd=v.cwd,
                                   broodlord=s.broodlord > 0)
        env = spawning.build_env(os.environ, 0, 0 if v.use_config else None,
                                 vassals_dir=v.vassals_dir if (s.start_hook or s.stop_hook) else None,
                                 broodlord_num=v.broodlord_num)
        env.pop("UWSGI_EMPEROR_FD", None)
        env.pop("UWSGI_EMPEROR_FD_CONFIG", None)
        env.pop(ENV_FILE_FROM_EMPEROR, None)
        if v.tyrant_file:
            env[ENV_FILE_FROM_EMPEROR] = self.file_arg(v)
        method = "exec"
        fs = self.forkserver
        if (s.spawn_method == "fork" and fs is not None and self.spawner is fs and not s.wrapper
                and not s.binary_path and not s.wrapper_override and fs.can_fork(env)
                and own_interpreter(argv[0]) == fs.interpreter):
            method = "fork"
        jail = JailSpec(clone=s.use_clone, uid=v.uid if s.tyrant else None,
                        gid=v.gid if s.tyrant else None, initgroups=s.tyrant_initgroups,
                        caps=s.vassals_cap)
        return spawning.SpawnRequest(
            v.name, argv, env, v.cwd, method, jail=jail, start_hook=s.start_hook,
            overrides=list(s.wrapper_override), fallbacks=list(s.wrapper_fallback),
            with_config=v.use_config, stdin_socket=v.listener is not None)

    def spawned(self, v: VassalHandle, pid: int | None, error: str | None) -> None:
        """The spawner's answer: the process exists (or could not be made)."""
        if pid is None:
            log(f"[emperor] unable to spawn vassal {v.name}: {error}")
            self.spawn_failed(v)
            return
        self.by_pid[pid] = v
        v.attach(pid)
        log_verbose(f"[emperor] vassal {v.name} is {v.spawn_method}ed (pid: {pid})")

    def spawn_failed(self, v: VassalHandle) -> None:
        self.cgroups.release(v.name)
        if v.life.on_demand and self.royal_death_at is None and v.life.phase is Phase.STARTING:
            # back to waiting; the queued connection stays queued for the next try, after
            # the back-off of a vassal that never became loyal
            v.life.to(Phase.RETURNING)
            v.waiting_again()
            if not self.settings.no_blacklist:
                self.blacklist.add(v.name, self.clock.mono(), self.clock.wall())
            item = self.blacklist.check(v.name)
            delay = max(item.retry_at() - self.clock.mono() if item else 0.0, self.settings.freq)
            assert self.loop is not None
            self.loop.call_later(delay, self._rearm, v)
            return
        v.life.exited()
        self.remove(v)
        if self.royal_death_at is not None:
            self.maybe_buried()
            return
        item = self.blacklist.check(v.name)
        self.schedule_retry(v.name, item.retry_at() if item else self.clock.mono() + self.settings.freq)

    def on_process_exit(self, pid: int, status: int) -> None:
        v = self.by_pid.pop(pid, None)
        if v is not None:
            self.cgroups.release(v.name)
            self.on_exit(v, status)

    # --- retries (blacklisted names) ------------------------------------------------------------

    def schedule_retry(self, name: str, when: float) -> None:
        """Start ``name`` again at ``when`` (monotonic seconds)."""
        if name in self.retry or self.royal_death_at is not None:
            return
        assert self.loop is not None
        delay = max(0.0, when - self.clock.mono())
        log_verbose(f"[emperor] vassal {name} is blacklisted, next start in {int(delay * 1000)} ms")
        self.retry[name] = self.loop.call_later(delay + 0.0005, self._retry, name)

    def cancel_retry(self, name: str) -> None:
        timer = self.retry.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _retry(self, name: str) -> None:
        self.retry.pop(name, None)
        if name not in self.vassals:
            self.reconcile(name)

    # --- vassal messages -----------------------------------------------------------------------

    def on_readable(self, v: VassalHandle) -> None:
        data = v.read_bytes()
        if data is None:
            self.on_eof(v)
            return
        asked = False
        for byte in data:
            if byte == ToEmperor.CONFIG_REQUEST:
                asked = True  # answered once per read: requests in a loop cost one answer
            else:
                self.on_byte(v, byte)
        if asked:
            self.on_byte(v, ToEmperor.CONFIG_REQUEST)

    def on_byte(self, v: VassalHandle, byte: int) -> None:
        if byte == ToEmperor.LOYAL:
            v.life.on_loyal()
            log_verbose(f"[emperor] vassal {v.name} is now loyal")
            self.blacklist.remove(v.name)
        elif byte == ToEmperor.HEARTBEAT:
            v.life.on_heartbeat()
            self.attention.add(v)
        elif byte == ToEmperor.VOLUNTARY_SHUTDOWN:
            if v.life.on_demand:  # 22 changes meaning in on-demand mode: back to waiting
                v.back_to_waiting()
            else:
                v.stop(self.settings.graceful_shutdown, voluntary=True)
        elif byte == ToEmperor.ACCEPTING:
            v.life.on_accepting()
            log_verbose(f"[emperor] vassal {v.name} is ready to accept requests")
        elif byte == ToEmperor.SPAWNED:
            now = self.clock.mono()
            if v.life.phase is Phase.RELOADING:
                self.latencies.reload.observe(now - v.last_run.mono)
            elif v.life.ready_at is None:
                self.latencies.spawn.observe(now - v.first_run.mono)
            v.life.on_ready()
            log_verbose(f"[emperor] vassal {v.name} has been spawned")
        elif byte == ToEmperor.CONFIG_REQUEST:
            if self.tyrant_refresh(v):
                v.push_config()
        elif byte == ToEmperor.SOS:
            self.sos(v)

    def sos(self, v: VassalHandle) -> None:
        """Byte 30: a zerg for ``v`` if the broodlord budget allows (emperor/broodlord.py)."""
        s = self.settings
        if (s.broodlord <= 0 or v.life.kind is not Kind.PLAIN or v.life.dying or v.exited
                or self.royal_death_at is not None or self.vassals.get(v.name) is not v):
            return
        if broodlord.zerg_count(self.vassals.values()) >= s.broodlord:
            return
        now = self.clock.mono()
        if self.blacklist.refused_until(broodlord.blacklist_key(v.name), now) is not None:
            return  # its last zerg died before it became loyal: back off
        log_verbose(f"[emperor] going in broodlord mode: launching zergs for {v.name}")
        self.throttle.spawned(now)
        name = broodlord.zerg_name(v.name, self.vassals)
        z = VassalHandle(name, v.monitor, mtime=self.clock.wall(), config=v.config, uid=v.uid,
                         gid=v.gid, cwd=v.cwd, config_arg=v.config_arg + broodlord.SUFFIX,
                         vassals_dir=v.vassals_dir, attention=self.attention, clock=self.clock,
                         kind=Kind.ZERG, tyrant_file=v.tyrant_file)
        z.parent = v.name
        self.broodlord_num += 1
        z.broodlord_num = self.broodlord_num
        self.vassals[name] = z
        self.start(z)

    def stop_zergs(self, parent: str) -> None:
        for z in [z for z in self.vassals.values() if broodlord.is_zerg_of(z, parent)]:
            self.retire(z)

    def on_eof(self, v: VassalHandle) -> None:
        """EOF or error on the emperor fd: uWSGI curses the vassal (it is then removed when
        it dies, and started again through the monitor's claim, blacklist permitting)."""
        v.detach_reader()
        if not v.exited:
            v.curse()

    # --- process exits -------------------------------------------------------------------------

    def on_exit(self, v: VassalHandle, status: int) -> None:
        # messages sent just before dying (loyal, ready...) still count, and the EOF that
        # follows them is a curse, as uWSGI's loop sees it before the exit: this keeps the
        # back-off of a crashing vassal independent of which of the two the kernel reports first
        while True:
            data = v.read_bytes()
            if data is None:
                v.detach_reader()
                if v.status == 0:
                    v.curse()
                break
            if not data:
                break
            for byte in data:
                self.on_byte(v, byte)
        asked_to_stop, voluntary, wanted = v.life.asked_to_stop, v.life.voluntary, v.status == 0
        log_verbose(f"[emperor] vassal {v.name} (pid: {v.pid}) {describe_status(status)}")
        if (v.life.phase is Phase.RETURNING and self.vassals.get(v.name) is v
                and self.royal_death_at is None):
            v.waiting_again()
            log(f'[uwsgi-emperor] {v.name} -> back to "on demand" mode, waiting for connections '
                f'on socket "{v.socket_name}" ...')
            self.wait_on_demand(v)
            return
        v.life.exited()
        if self.vassals.get(v.name) is not v:
            v.close()
            v.close_listener()
            return
        if self.royal_death_at is not None:
            self.remove(v)
            self.maybe_buried()
            return
        if v.life.kind is not Kind.ZERG:
            # its zergs hold its listening sockets (zerg-server): its next process could not
            # bind them while they live, so they go with it
            self.stop_zergs(v.name)
        if not asked_to_stop and os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXILE_CODE:
            log_verbose(f"[emperor] vassal {v.name} exiled itself (exit code {EXILE_CODE}): "
                        "it comes back when its config changes")
            self.exiled[v.name] = v.last_mod
            self.remove(v)
            return
        if wanted:
            # uWSGI adds the vassal again (checking the blacklist) before removing the dead one
            # (which blacklists it): the order decides the back-off, so keep it
            now = self.clock.mono()
            allowed = self.blacklist.refused_until(v.name, now) is None
            kept = self.keep_socket(v, asked_to_stop)  # before remove(), which would close it
            self.remove(v)
            claim = self.owner_claim(v.name)
            if kept is not None:  # on demand: waits again on the socket the emperor kept
                self.wait_again(v.name, kept, v.socket_name, back_off=not allowed)
            elif allowed and claim is not None:
                # started from what its monitor says now (uWSGI reuses the dead one's
                # config and mtime: the same thing unless it changed while it was dying)
                monitor, t = claim
                cwd, arg, vdir = self.launch_params(t, monitor)
                self.add(v.name, monitor, mtime=t.mtime, config=t.config, uid=t.uid, gid=t.gid,
                         cwd=cwd, config_arg=arg, vassals_dir=vdir, skip_blacklist=True)
            elif claim is not None:
                item = self.blacklist.check(v.name)
                self.schedule_retry(v.name, item.retry_at() if item else now + self.settings.freq)
            return
        kept = self.keep_socket(v, asked_to_stop)
        self.remove(v)
        if kept is not None:
            self.wait_again(v.name, kept, v.socket_name)
            return
        if voluntary:
            # uWSGI's monitors find the config again at their next scan: so do we
            assert self.loop is not None
            self.loop.call_later(self.settings.freq, self.reconcile, v.name)
        else:
            self.reconcile(v.name)

    def remove(self, v: VassalHandle) -> None:
        """emperor_del: forget the vassal, run the stop hook, blacklist it if never loyal."""
        if self.vassals.get(v.name) is v:
            del self.vassals[v.name]
        self.attention.discard(v)
        v.close()
        v.close_listener()
        if self.settings.stop_hook:
            self.run_stop_hook(v)
        log_verbose(f"[emperor] removed uwsgi instance {v.name}")
        if not v.loyal and not self.settings.no_blacklist:
            key = broodlord.blacklist_key(v.parent) if v.parent else v.name
            for line in self.blacklist.add(key, self.clock.mono(), self.clock.wall()):
                log_verbose(line)

    def run_stop_hook(self, v: VassalHandle) -> None:
        hook = self.settings.stop_hook
        assert hook is not None and self.loop is not None
        log(f"[emperor] running vassal stop-hook: {hook} {v.name}")
        env = dict(os.environ)
        if v.vassals_dir:
            env["UWSGI_VASSALS_DIR"] = v.vassals_dir
        try:
            proc = spawning.run_hook(hook, v.name, env, self.home)
        except OSError as exc:
            log(f"[emperor] {v.name} stop-hook returned -1 ({exc.strerror})")
            return
        fut = self.loop.run_in_executor(None, proc.wait)
        self.hooks.add(fut)

        def done(f: asyncio.Future, name: str = v.name) -> None:
            self.hooks.discard(f)
            if not f.cancelled() and f.exception() is None:
                code = f.result()
                log(f"[emperor] {name} stop-hook returned {code if code >= 0 else 128 - code}")
            self.maybe_buried()
        fut.add_done_callback(done)

    # --- periodic checks -----------------------------------------------------------------------

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick()
            except Exception as exc:
                log(f"[emperor] error in the periodic checks: {type(exc).__name__}: {exc}")

    def tick(self) -> None:
        now = self.clock.mono()
        if isinstance(self.spawner, spawning.ThreadSpawner):
            self.spawner.poll()
        if self.cgroups.pending:
            self.cgroups.sweep()
        hb = self.settings.required_heartbeat
        for v in list(self.attention):
            beat = v.life.heartbeat_at
            if beat is not None and beat.mono + hb < now:
                log(f"[emperor] vassal {v.name} sent no heartbeat in last {hb} seconds, "
                    "brutally respawning it...")
                v.life.forget_heartbeat()
                v.signal(signal.SIGKILL)
            cursed = v.life.cursed_at
            if (v.life.dying and cursed is not None and v.alive() and self.royal_death_at is None
                    and now - cursed.mono >= self.settings.curse_tolerance):
                v.life.curse_again()  # SIGKILL again one tolerance later
                log_verbose(f"[emperor] vassal {v.name} (pid: {v.pid}) is still alive "
                            f"{self.settings.curse_tolerance}s after its curse: SIGKILL")
                v.signal(signal.SIGKILL)
        if self.notifier is not None and self.royal_death_at is None:
            self.notifier.tick(self.status_line,
                               lambda: systemd.any_reloading(list(self.vassals.values())), now)
        if self.royal_death_at is not None and now - self.royal_death_at >= self.settings.reload_mercy:
            for v in list(self.vassals.values()):
                if v.alive() and not v.no_mercy:
                    log_verbose(f"[emperor] NO MERCY for vassal {v.name} !!!")
                    v.no_mercy = True
                    v.signal(signal.SIGKILL)
            if now - self.royal_death_at >= self.settings.reload_mercy + 5:
                # nothing answers any more: do not hang the shutdown on it
                for v in list(self.vassals.values()):
                    self.remove(v)
                self.bury()

    def on_parent(self) -> None:
        """A message from our own emperor: stop (or EOF: it is gone) or reload."""
        assert self.parent is not None and self.loop is not None
        cmd = self.parent.read_command()
        if cmd == -1:
            return
        if cmd is None or cmd in (ToVassal.STOP, ToVassal.GRACEFUL_STOP):
            self.loop.remove_reader(self.parent.fileno())
            log("[emperor] stop requested by my Emperor" if cmd is not None
                else "[emperor] my Emperor is gone")
            self.royal_death()
        elif cmd == ToVassal.RELOAD:
            self.massive_reload()

    # --- signals -------------------------------------------------------------------------------

    def royal_death(self) -> None:
        now = self.clock.mono()
        if self.royal_death_at is not None:
            left = int(self.settings.reload_mercy - (now - self.royal_death_at))
            log(f"[emperor] *** RAGNAROK ALREADY EVOKED (mercyless in {left} seconds)***")
            return
        self.royal_death_at = now
        log("[emperor] *** RAGNAROK EVOKED ***")
        if self.notifier is not None:
            self.notifier.stopping()
        for task in self.monitor_tasks.values():
            task.cancel()
        for name in list(self.retry):
            self.cancel_retry(name)
        for v in list(self.vassals.values()):
            if v.exited or v.life.phase is Phase.WAITING:
                self.remove(v)
            else:  # a STARTING one reads the stop byte queued in its socket when it runs
                v.stop(self.settings.graceful_shutdown)
        self.maybe_buried()

    def maybe_buried(self) -> None:
        if self.royal_death_at is not None and not self.vassals and not self.hooks:
            self.bury()

    def bury(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(0)

    def massive_reload(self) -> None:
        if self.notifier is not None and self.royal_death_at is None:
            self.notifier.reload()
        now = self.clock.wall()  # becomes last_mod, a shown moment
        for v in list(self.vassals.values()):
            if v.status == 0 and self.tyrant_refresh(v) and not v.reload(now):
                v.curse()

    def log_status(self) -> None:
        for v in list(self.vassals.values()):
            log(f"vassal instance {v.name} (last modified {int(v.last_mod)}) status {v.status} "
                f"loyal {v.loyal} zerg {v.zerg}")

    def cleanup_blacklist(self) -> None:
        log_verbose("[emperor] cleaning up blacklist ...")
        self.blacklist.clear()

    def reopen_logs(self) -> None:
        """SIGUSR2 or ``imperium ctl SOCK reopen-logs``: for logrotate."""
        logto = self.settings.logto
        if logto and "://" not in logto and not logto.startswith("udp:"):
            try:
                _redirect_log(logto)
            except OSError as exc:
                log(f"[emperor] cannot reopen {logto}: {exc.strerror}")
        self.output.reopen()
        log_verbose("[emperor] log files reopened")

    # --- shutdown ------------------------------------------------------------------------------

    async def close(self) -> None:
        for task in self.monitor_tasks.values():
            task.cancel()
        for task in self.monitor_tasks.values():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        if self.stats is not None:
            await self.stats.close()
        if self.prometheus is not None:
            await self.prometheus.close()
        self.control.close()
        for v in list(self.vassals.values()):
            v.signal(signal.SIGKILL)
            v.close()
        if self.spawner is not None:
            self.spawner.close()
        self.cgroups.close()
        for _ in range(40):  # killed just now: their cgroups empty within moments
            if not self.cgroups.pending:
                break
            await asyncio.sleep(0.05)
            self.cgroups.sweep()
        self.output.close()
        if self.notifier is not None:
            self.notifier.buried()
            self.notifier = None
        if self.settings.pidfile:
            with contextlib.suppress(OSError):
                os.unlink(self.settings.pidfile)


def _redirect_log(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    set_output(2)


def start_forkserver(settings: EmperorSettings) -> ForkServer | None:
    """The fork server, with the interpreter of our own command when we have one."""
    interp = own_interpreter(default_binary()) if settings.spawn_method == "fork" else None
    server = ForkServer(interp)
    try:
        server.start()
    except OSError as exc:
        log(f"[emperor] cannot start the fork server ({exc}): vassals are exec'd from a thread")
        return None
    return server


def run_emperor(config: Any) -> int:
    """Entry point of ``imperium --emperor ...``: run until royal death, return the exit code."""
    try:
        settings = EmperorSettings.from_config(config)
    except ValueError as exc:
        log(f"imperium: {exc}")
        return 1
    if settings.logto and "://" not in settings.logto and not settings.logto.startswith("udp:"):
        _redirect_log(settings.logto)
    for line in settings.notices():
        log(line)
    if settings.procname:
        with contextlib.suppress(Exception):
            import setproctitle

            setproctitle.setproctitle(settings.procname)
    # the fork server first: no thread may exist yet (monitors start theirs later)
    forkserver = start_forkserver(settings)
    emperor = Emperor(settings, forkserver=forkserver)

    async def go() -> int:
        try:
            code = await emperor.main()
        finally:
            await emperor.close()
        if code == 0:
            log_verbose("The Emperor is buried.")
        return code

    return asyncio.run(go())
