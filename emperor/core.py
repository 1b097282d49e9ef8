"""The Emperor: one asyncio loop owns every vassal.

Monitors report what their sources hold (``Touch``/``Destroy``/``Sync``); the emperor keeps,
per vassal name, the *claims* of every monitor naming it, in the order they arrived. The
first claim owns the vassal; ``reconcile(name)`` compares that claim with the running
vassal and acts as uWSGI's ``uwsgi_emperor_simple_do``/``emperor_add`` would: start it
(blacklist and tyrant checks), reload it on a newer mtime, stop it when no monitor names it
any more. A second monitor naming the same vassal is a standby: it takes over (restarting
the vassal if its file is another one) when the owner drops the name.

Process exits come from pidfds watched by the loop; vassal messages from the emperor fd.
A periodic tick applies heartbeat and curse tolerance and the royal-death mercy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

from emperor import spawn as spawning
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
from emperor.logs import log, log_verbose, set_output, setup_logging
from emperor.policy import Blacklist, Throttle
from emperor.protocol import EXILE_CODE, VassalLink
from emperor.settings import EmperorSettings
from emperor.stats import StatsServer, render
from emperor.vassal import VassalHandle, describe_status

TICK = 0.25  # seconds between heartbeat / curse / mercy checks (of vassals that need them)


class Emperor:
    def __init__(self, settings: EmperorSettings) -> None:
        self.settings = settings
        self.log = setup_logging()
        self.ctx = MonitorContext(freq=float(settings.freq), tyrant=settings.tyrant,
                                  tyrant_nofollow=settings.tyrant_nofollow,
                                  follow_symlinks=not settings.nofollow,
                                  extra_extensions=settings.extra_extensions, log=self.log)
        self.monitors: list[Monitor] = []
        self.monitor_tasks: dict[Monitor, asyncio.Task] = {}
        self.claims: dict[str, dict[Monitor, Touch]] = {}
        self.vassals: dict[str, VassalHandle] = {}
        self.blacklist = Blacklist(settings.throttle_ms, settings.max_throttle_ms)
        self.throttle = Throttle(settings.throttle_ms, settings.max_throttle_ms)
        self.retry: dict[str, asyncio.TimerHandle] = {}
        self.exiled: dict[str, float] = {}
        self.refused: dict[str, tuple[Any, ...]] = {}  # last refusal logged, to log it once
        self.royal_death_at = 0.0
        self.hooks: set[asyncio.Future] = set()
        self.pidfds: dict[int, int] = {}
        self.polled: dict[int, VassalHandle] = {}  # vassals without a pidfd (old kernels)
        self.stats: StatsServer | None = None
        self.home = os.getcwd()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.done: asyncio.Future | None = None
        self.broodlord_num = 0
        self.attention: set[VassalHandle] = set()
        self.parent: VassalLink | None = None

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
        for sig, handler in ((signal.SIGINT, self.royal_death), (signal.SIGTERM, self.royal_death),
                             (signal.SIGQUIT, self.royal_death), (signal.SIGHUP, self.massive_reload),
                             (signal.SIGUSR1, self.log_status), (signal.SIGURG, self.cleanup_blacklist)):
            self.loop.add_signal_handler(sig, handler)
        self.loop.add_signal_handler(signal.SIGPIPE, lambda: None)
        # an emperor can itself be a vassal (of a uWSGI or an Imperium emperor)
        self.parent = VassalLink.from_environ(pop=True)
        log("*** starting uWSGI sub-Emperor ***" if self.parent else "*** starting uWSGI Emperor ***")
        if self.settings.stats:
            self.stats = StatsServer(self.settings.stats,
                                     lambda: render(self, self.settings.stats_minified),
                                     http=self.settings.stats_http)
            try:
                await self.stats.start()
            except OSError as exc:
                log(f"[emperor] cannot bind the stats server on {self.settings.stats}: {exc}")
                self.stats = None
        for m in self.monitors:
            self.start_monitor(m)
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

    def start_monitor(self, monitor: Monitor) -> None:
        task = asyncio.ensure_future(monitor.start())
        self.monitor_tasks[monitor] = task
        task.add_done_callback(lambda t, m=monitor: self.monitor_ended(m, t))

    def monitor_ended(self, monitor: Monitor, task: asyncio.Task) -> None:
        if task.cancelled() or self.royal_death_at:
            return
        exc = task.exception()
        why = f"{type(exc).__name__}: {exc}" if exc else "it returned"
        log(f"[emperor] imperial monitor {monitor.id} stopped ({why}); its vassals are left "
            f"running, restarting it in {self.settings.freq}s")
        assert self.loop is not None
        self.loop.call_later(self.settings.freq,
                             lambda: None if self.royal_death_at else self.start_monitor(monitor))

    # --- monitor events --------------------------------------------------------------------------

    def on_event(self, monitor: Monitor, event: Event) -> None:
        try:
            self._on_event(monitor, event)
        except Exception as exc:  # a bad event must never take the emperor down
            log(f"[emperor] error handling {event!r} from {monitor.id}: {type(exc).__name__}: {exc}")

    def _on_event(self, monitor: Monitor, event: Event) -> None:
        if self.royal_death_at:
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
            if event.socket and monitor not in claims:
                log(f"[emperor] on-demand vassals are not supported: {event.name} is started now "
                    f"instead of waiting on {event.socket}")
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
            for name in [n for n, c in self.claims.items() if monitor in c and n not in event.names]:
                claims = self.claims[name]
                del claims[monitor]
                if not claims:
                    del self.claims[name]
                self.reconcile(name)
        elif isinstance(event, Unavailable):
            log(f"[emperor] monitor {monitor.id} unavailable ({event.reason}): its vassals are left alone")
        elif isinstance(event, Available):
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
        if self.royal_death_at:
            return
        claim = self.owner_claim(name)
        v = self.vassals.get(name)
        if claim is None:
            self.cancel_retry(name)
            self.exiled.pop(name, None)
            self.refused.pop(name, None)
            if v is not None and v.status == 0:
                v.stop(self.settings.graceful_shutdown)
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
            v.stop(self.settings.graceful_shutdown)
            return
        if v.monitor is not monitor:
            log(f"[emperor] vassal {name} is now governed by {monitor.id}")
            v.monitor = monitor
        if self.settings.tyrant and (t.uid != v.uid or t.gid != v.gid):
            log(f"[emperor-tyrant] !!! permissions of vassal {name} changed. stopping the instance... !!!")
            v.stop(self.settings.graceful_shutdown)
            return
        if t.mtime > v.last_mod:
            if t.config is not None:
                v.config = t.config
            if not v.reload(t.mtime):
                v.curse()

    def add_from_claim(self, name: str, monitor: Monitor, t: Touch) -> None:
        cwd, arg, vdir = self.launch_params(t, monitor)
        self.add(name, monitor, mtime=t.mtime, config=t.config, uid=t.uid, gid=t.gid, cwd=cwd,
                 config_arg=arg, vassals_dir=vdir)

    def add(self, name: str, monitor: Monitor | None, *, mtime: float, config: bytes | None,
            uid: int | None, gid: int | None, cwd: str | None, config_arg: str,
            vassals_dir: str | None, skip_blacklist: bool = False) -> VassalHandle | None:
        """emperor_add: blacklist, throttle, tyrant checks, then start the vassal."""
        if len(name_bytes(name) or b"") > 254:
            log(f"[emperor] invalid vassal name: {printable(name)}")
            return None
        now = time.time()
        if not skip_blacklist:
            until = self.blacklist.refused_until(name, now)
            if until is not None:
                self.schedule_retry(name, until)
                return None
        self.throttle.spawned(now)
        if self.settings.tyrant and (not uid or not gid):
            key = ("tyrant", mtime, uid, gid)
            if self.refused.get(name) != key:
                self.refused[name] = key
                log(f"[emperor-tyrant] invalid permissions for vassal {name}")
            return None
        self.refused.pop(name, None)
        v = VassalHandle(name, monitor, mtime=mtime, config=config, uid=uid, gid=gid, cwd=cwd,
                         config_arg=config_arg, vassals_dir=vassals_dir, attention=self.attention)
        self.vassals[name] = v
        self.start(v)
        return v

    def start(self, v: VassalHandle) -> None:
        s = self.settings
        argv = spawning.build_argv(s, v.name, v.config_arg, has_config=v.use_config, cwd=v.cwd)
        env = spawning.build_env(os.environ, 0, 0 if v.use_config else None,
                                 vassals_dir=v.vassals_dir if (s.start_hook or s.stop_hook) else None)
        try:
            proc = spawning.spawn(argv, env, v.cwd, with_config=v.use_config,
                                  uid=v.uid if s.tyrant else None, gid=v.gid if s.tyrant else None,
                                  start_hook=s.start_hook, name=v.name)
        except spawning.BinaryNotFound:
            # uWSGI's child exits 26 here and the next scan tries again, blacklist permitting:
            # retry as the blacklist says, so installing the binary is enough to recover
            log(f"[emperor] binary path: {argv[0]}")
            log("[emperor] is the uwsgi binary in your system PATH ?")
            v.exited = True
            self.remove(v)
            item = self.blacklist.check(v.name)
            self.schedule_retry(v.name, item.retry_at() if item else time.time() + s.freq)
            return
        except OSError as exc:
            log(f"[emperor] unable to spawn vassal {v.name}: {exc}")
            v.exited = True
            self.remove(v)
            self.schedule_retry(v.name, time.time() + self.settings.freq)
            return
        if s.tyrant:
            log(f"[emperor-tyrant] dropping privileges to {v.uid} {v.gid} for instance {v.name}")
        assert self.loop is not None
        v.attach(proc, self.loop, self.on_readable)
        self.watch_exit(v)

    # --- retries (blacklisted names) ------------------------------------------------------------

    def schedule_retry(self, name: str, when: float) -> None:
        if name in self.retry or self.royal_death_at:
            return
        assert self.loop is not None
        delay = max(0.0, when - time.time())
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
        for byte in data:
            self.on_byte(v, byte)

    def on_byte(self, v: VassalHandle, byte: int) -> None:
        now = time.time()
        if byte == 17:
            v.loyal = 1
            v.last_loyal = now
            log_verbose(f"[emperor] vassal {v.name} is now loyal")
            self.blacklist.remove(v.name)
        elif byte == 26:
            v.last_heartbeat = now
            self.attention.add(v)
        elif byte == 22:
            v.voluntary = True
            v.stop(self.settings.graceful_shutdown)
        elif byte == 5:
            v.accepting = 1
            v.last_accepting = now
            log_verbose(f"[emperor] vassal {v.name} is ready to accept requests")
        elif byte == 1:
            v.ready = 1
            v.last_ready = now
            log_verbose(f"[emperor] vassal {v.name} has been spawned")
        elif byte == 2:
            v.push_config()
        elif byte == 30:
            pass  # broodlord is not supported: SOS requests are ignored

    def on_eof(self, v: VassalHandle) -> None:
        """EOF or error on the emperor fd: uWSGI curses the vassal (it is then removed when
        it dies, and started again through the monitor's claim, blacklist permitting)."""
        v.detach_reader()
        if not v.exited:
            v.curse()

    # --- process exits -------------------------------------------------------------------------

    def watch_exit(self, v: VassalHandle) -> None:
        assert self.loop is not None
        try:
            pidfd = os.pidfd_open(v.pid)
        except (OSError, AttributeError):
            self.polled[v.pid] = v
            return
        self.pidfds[v.pid] = pidfd
        self.loop.add_reader(pidfd, self._pidfd_ready, v)

    def _pidfd_ready(self, v: VassalHandle) -> None:
        # the vassal has exited but is not reaped: its pid (and so its process group id)
        # cannot be reused yet, so this is the safe moment to kill what it left behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(v.pid, signal.SIGKILL)
        self._reap(v)

    def _reap(self, v: VassalHandle) -> bool:
        try:
            pid, status = os.waitpid(v.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = v.pid, 0
        if pid == 0:
            return False
        pidfd = self.pidfds.pop(v.pid, None)
        if pidfd is not None:
            assert self.loop is not None
            self.loop.remove_reader(pidfd)
            os.close(pidfd)
        self.polled.pop(v.pid, None)
        if v.proc is not None:
            v.proc.popen.returncode = os.waitstatus_to_exitcode(status) if status else 0
        self.on_exit(v, status)
        return True

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
        v.exited = True
        log_verbose(f"[emperor] vassal {v.name} (pid: {v.pid}) {describe_status(status)}")
        if self.vassals.get(v.name) is not v:
            v.close()
            return
        if self.royal_death_at:
            self.remove(v)
            self.maybe_buried()
            return
        if not v.asked_to_stop and os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXILE_CODE:
            log_verbose(f"[emperor] vassal {v.name} exiled itself (exit code {EXILE_CODE}): "
                        "it comes back when its config changes")
            self.exiled[v.name] = v.last_mod
            self.remove(v)
            return
        if v.status == 0:
            # uWSGI adds the vassal again (checking the blacklist) before removing the dead one
            # (which blacklists it): the order decides the back-off, so keep it
            now = time.time()
            allowed = self.blacklist.refused_until(v.name, now) is None
            self.remove(v)
            claim = self.owner_claim(v.name)
            if allowed and claim is not None:
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
        self.remove(v)
        if v.voluntary:
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
        if self.settings.stop_hook:
            self.run_stop_hook(v)
        log_verbose(f"[emperor] removed uwsgi instance {v.name}")
        if not v.loyal and not self.settings.no_blacklist:
            for line in self.blacklist.add(v.name, time.time()):
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
        now = time.time()
        for v in list(self.polled.values()):
            self._reap(v)
        hb = self.settings.required_heartbeat
        for v in list(self.attention):
            if v.last_heartbeat > 0 and v.last_heartbeat + hb < now:
                log(f"[emperor] vassal {v.name} sent no heartbeat in last {hb} seconds, "
                    "brutally respawning it...")
                v.last_heartbeat = 0
                v.signal(signal.SIGKILL)
            if (v.cursed_at > 0 and v.alive() and not self.royal_death_at
                    and now - v.cursed_at >= self.settings.curse_tolerance):
                v.cursed_at = now
                log_verbose(f"[emperor] vassal {v.name} (pid: {v.pid}) is still alive "
                            f"{self.settings.curse_tolerance}s after its curse: SIGKILL")
                v.signal(signal.SIGKILL)
        if self.royal_death_at and now - self.royal_death_at >= self.settings.reload_mercy:
            for v in list(self.vassals.values()):
                if v.alive() and not getattr(v, "no_mercy", False):
                    log_verbose(f"[emperor] NO MERCY for vassal {v.name} !!!")
                    v.no_mercy = True  # type: ignore[attr-defined]
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
        if cmd is None or cmd in (0, 2):
            self.loop.remove_reader(self.parent.fileno())
            log("[emperor] stop requested by my Emperor" if cmd is not None
                else "[emperor] my Emperor is gone")
            self.royal_death()
        elif cmd == 1:
            self.massive_reload()

    # --- signals -------------------------------------------------------------------------------

    def royal_death(self) -> None:
        now = time.time()
        if self.royal_death_at:
            left = int(self.settings.reload_mercy - (now - self.royal_death_at))
            log(f"[emperor] *** RAGNAROK ALREADY EVOKED (mercyless in {left} seconds)***")
            return
        self.royal_death_at = now
        log("[emperor] *** RAGNAROK EVOKED ***")
        for task in self.monitor_tasks.values():
            task.cancel()
        for name in list(self.retry):
            self.cancel_retry(name)
        for v in list(self.vassals.values()):
            if v.alive():
                v.stop(self.settings.graceful_shutdown)
            else:
                self.remove(v)
        self.maybe_buried()

    def maybe_buried(self) -> None:
        if self.royal_death_at and not self.vassals and not self.hooks:
            self.bury()

    def bury(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(0)

    def massive_reload(self) -> None:
        now = time.time()
        for v in list(self.vassals.values()):
            if v.status == 0 and not v.reload(now):
                v.curse()

    def log_status(self) -> None:
        for v in list(self.vassals.values()):
            log(f"vassal instance {v.name} (last modified {int(v.last_mod)}) status {v.status} "
                f"loyal {v.loyal} zerg {v.zerg}")

    def cleanup_blacklist(self) -> None:
        log_verbose("[emperor] cleaning up blacklist ...")
        self.blacklist.clear()

    # --- shutdown ------------------------------------------------------------------------------

    async def close(self) -> None:
        for task in self.monitor_tasks.values():
            task.cancel()
        for task in self.monitor_tasks.values():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        if self.stats is not None:
            await self.stats.close()
        for v in list(self.vassals.values()):
            v.signal(signal.SIGKILL)
            v.close()
        for pidfd in self.pidfds.values():
            with contextlib.suppress(OSError):
                os.close(pidfd)
        if self.settings.pidfile:
            with contextlib.suppress(OSError):
                os.unlink(self.settings.pidfile)


def _redirect_log(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    set_output(2)


def run_emperor(config: Any) -> int:
    """Entry point of ``imperium --emperor ...``: run until royal death, return the exit code."""
    settings = EmperorSettings.from_config(config)
    if settings.logto and "://" not in settings.logto and not settings.logto.startswith("udp:"):
        _redirect_log(settings.logto)
    if settings.procname:
        with contextlib.suppress(Exception):
            import setproctitle

            setproctitle.setproctitle(settings.procname)
    emperor = Emperor(settings)

    async def go() -> int:
        try:
            code = await emperor.main()
        finally:
            await emperor.close()
        if code == 0:
            log_verbose("The Emperor is buried.")
        return code

    return asyncio.run(go())
