"""The master process: forks the workers, watches them, reloads and stops the instance.

Signals, as in uWSGI 2.0 (core/master.c):
- SIGHUP: graceful reload — workers finish their request and exit, then the master re-execs
  itself with the same command line, keeping the listening sockets (and the emperor fds)
  open, so that connections queue in the backlog instead of being refused;
- SIGTERM: brutal reload — workers are stopped at once, then re-exec; with ``die-on-term``
  SIGTERM shuts down and SIGQUIT does the brutal reload instead;
- SIGINT, SIGQUIT: shutdown at once ("goodbye to uWSGI.", exit 0).

The master runs no thread: every duty (reaping, respawn, harakiri, idle, emperor commands,
touch-reload, the stats server) is done from one select() loop, so forking a new worker is
always safe. The heartbeat to the emperor is not among them: as in uWSGI 2.0 the workers send
it from their accept loops (vassal/worker.py), so a vassal whose workers are all stuck stops
beating.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from emperor.protocol import ToVassal
from vassal import process_setup
from vassal import stats as statsmod
from vassal.log import log
from vassal.respawn_guard import RespawnGuard
from vassal.scoreboard import STATUS_CHEAP, Scoreboard
from vassal.services import Service
from vassal.sockets import ENV_INHERITED, ListenSocket, export_for_exec, parse_address, zerg_send

FAILED_APP_CODE = 22
EXCEPTION_CODE = 5  # a worker ended by reload-on-exception (uWSGI's UWSGI_EXCEPTION_CODE)

RUNNING, GRACEFUL_RELOAD, BRUTAL_RELOAD, SHUTDOWN, GRACEFUL_STOP = range(5)
_NAMES = {GRACEFUL_RELOAD: "graceful reload", BRUTAL_RELOAD: "brutal reload", SHUTDOWN: "shutdown",
          GRACEFUL_STOP: "graceful stop"}


class Master:
    def __init__(self, *, config: Any, sockets: list[ListenSocket], board: Scoreboard,
                 spawn_worker: Callable[[int], None], link: Any = None,
                 stats_source: statsmod.StatsSource | None = None,
                 original_cwd: str = "", cleanup: Callable[[], None] | None = None,
                 lazy_need_app: bool = False, services: list[Service] | None = None) -> None:
        self.config = config
        self.sockets = sockets
        self.board = board
        self.spawn_worker = spawn_worker  # forks worker wid; the child never returns
        self.link = link
        self.stats_source = stats_source
        self.original_cwd = original_cwd
        self.cleanup = cleanup
        self.lazy_need_app = lazy_need_app
        self.services: list[Service] = list(services or [])
        #: signals mapped to master operations (``unix_signal`` hooks, SIGTSTP): checked first
        self.signal_actions: dict[int, Callable[[], None]] = {}
        self.n = board.nworkers
        self.pids: dict[int, int] = {}  # pid -> wid
        self.state = RUNNING
        self.pending: list[int] = []
        self.respawn_at: dict[int, float] = {}
        self.guard = RespawnGuard(self.n)
        self.harakiri = int(config.get("harakiri") or 0)
        self.reload_mercy = int(config.get("reload-mercy") or 60)
        self.worker_mercy = int(config.get("worker-reload-mercy") or 60)
        self.idle = int(config.get("idle") or 0)
        self.die_on_idle = bool(config.get("die-on-idle"))
        self.die_on_term = bool(config.get("die-on-term"))
        self.exit_on_reload = bool(config.get("exit-on-reload"))
        self.evil_rss = int(config.get("evil-reload-on-rss") or 0) * 1024 * 1024
        self.evil_as = int(config.get("evil-reload-on-as") or 0) * 1024 * 1024
        self.harakiri_verbose = bool(config.get("harakiri-verbose"))
        self.harakiri_graceful = int(config.get("harakiri-graceful-timeout") or 0)
        self.harakiri_signal = int(config.get("harakiri-graceful-signal") or signal.SIGTERM)
        self.harakiri_tries: dict[int, int] = {}  # pid -> harakiri tries so far
        self.harakiri_next: dict[int, float] = {}  # pid -> when the next try may come
        self.touch_reload = {p: _mtime(p) for p in config.getlist("touch-reload")}
        self.idle_notified = False
        self.cheap = False  # idle without die-on-idle: workers stopped until a connection comes
        self.cheaper: Any = None  # vassal.services.cheaper.Cheaper, set by it when enabled
        self.started = time.monotonic()  # intervals are monotonic: a clock step changes nothing
        self.exit_code = 0
        self.zerg_server = _zerg_server(config.get("zerg-server"), int(config.get("listen") or 100))
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    # --- signals -------------------------------------------------------------------------

    def _signal(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD,
                    signal.SIGUSR1):
            signal.signal(sig, self._signal)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # uWSGI's "what are you doing": nothing to say

    def _handle_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaping happens every loop
        action = self.signal_actions.get(signum)
        if action is not None:
            action()
            return
        if signum == signal.SIGHUP:
            log("...gracefully killing workers...")
            self.begin(GRACEFUL_RELOAD)
        elif signum == signal.SIGTERM:
            if self.die_on_term:
                log("SIGINT/SIGTERM received...killing workers...")
                self.begin(SHUTDOWN)
            else:
                log("...brutally killing workers...")
                self.begin(BRUTAL_RELOAD)
        elif signum == signal.SIGQUIT:
            if self.die_on_term:
                log("...brutally killing workers...")
                self.begin(BRUTAL_RELOAD)
            else:
                log("SIGINT/SIGTERM received...killing workers...")
                self.begin(SHUTDOWN)
        elif signum == signal.SIGINT:
            log("SIGINT/SIGTERM received...killing workers...")
            self.begin(SHUTDOWN)
        elif signum == signal.SIGUSR1:
            total = self.board.total_requests()
            log(f"*** instance stats: {total} requests, {len(self.pids)} workers ***")

    # --- workers -------------------------------------------------------------------------

    def spawn(self, wid: int, respawn: bool = False) -> None:
        self.board.reset_worker(wid, time.time())
        pid = _fork_worker(self.spawn_worker, wid)
        self.pids[pid] = wid
        self.board.workers[wid].pid = pid
        if respawn:
            log(f"Respawned uWSGI worker {wid} (new pid: {pid})")
        else:
            log(f"spawned uWSGI worker {wid} (pid: {pid}, cores: {self.board.ncores})")

    def begin(self, state: int) -> None:
        """Start stopping the workers for a reload or a shutdown."""
        if self.state == SHUTDOWN or (self.state != RUNNING and state != SHUTDOWN):
            return
        self.state = state
        sig = signal.SIGHUP if state in (GRACEFUL_RELOAD, GRACEFUL_STOP) else signal.SIGINT
        if state == BRUTAL_RELOAD:
            sig = signal.SIGTERM
        for pid in list(self.pids):
            _kill(pid, sig)
        mercy = self.reload_mercy if state in (GRACEFUL_RELOAD, GRACEFUL_STOP) else self.worker_mercy
        self.deadline = time.monotonic() + mercy
        for service in self.services:
            service.stopping(reload=state in (GRACEFUL_RELOAD, BRUTAL_RELOAD))

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            wid = self.pids.pop(pid, None)
            if wid is None:
                if not any(service.child_exited(pid, status) for service in self.services):
                    _log_subprocess(pid, status)
                continue
            self.harakiri_tries.pop(pid, None)
            self.harakiri_next.pop(pid, None)
            w = self.board.workers[wid]
            w.pid = 0
            w.accepting = 0
            for c in range(self.board.ncores):
                w.cores[c].in_request = 0.0
            w.busy_cores = 0
            if self.state != RUNNING:
                log(f"worker {wid} buried after {int(time.time() - w.last_spawn)} seconds")
                continue
            if self.cheap:
                w.status = STATUS_CHEAP
                continue
            if w.cheaped:
                log(f"worker {wid} killed successfully (pid: {pid})")
                log(f"uWSGI worker {wid} cheaped.")
                continue
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == FAILED_APP_CODE and self.lazy_need_app:
                log(f"OOPS ! failed loading app in worker {wid} (pid {pid}) :( trying again...")
                log("need-app requested, destroying the instance...")
                self.exit_code = FAILED_APP_CODE
                self.begin(SHUTDOWN)
                continue
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXCEPTION_CODE:
                log(f"... monitored exception detected, respawning worker {wid} (pid: {pid})...")
            elif os.WIFSIGNALED(status):
                log(f"DAMN ! worker {wid} (pid: {pid}) died, killed by signal {os.WTERMSIG(status)} :( trying respawn ...")
            elif os.WEXITSTATUS(status) != 0:
                log(f"DAMN ! worker {wid} (pid: {pid}) died :( trying respawn ...")
            else:
                log(f"worker {wid} killed successfully (pid: {pid})")
            now = time.monotonic()
            at = self.guard.respawn_at(now)
            if at > now:
                self.respawn_at[wid] = at
            else:
                self.spawn(wid, respawn=True)

    # --- periodic checks -----------------------------------------------------------------

    def checks(self, now: float) -> None:
        """The periodic duties; ``now`` is ``time.monotonic()`` (the scoreboard's clock)."""
        for wid, due in list(self.respawn_at.items()):
            if now >= due:
                del self.respawn_at[wid]
                self.spawn(wid, respawn=True)
        if self.harakiri:
            for pid, wid in list(self.pids.items()):
                start = self.board.request_start(wid, now)
                if start and now - start > self.harakiri:
                    self.harakiri_worker(pid, wid, now)
        if self.evil_rss or self.evil_as:
            for pid, wid in list(self.pids.items()):
                rss, vsz = statsmod._memory(pid)
                if self.evil_as and vsz >= self.evil_as:
                    log(f"*** EVIL RELOAD ON WORKER {wid} ADDRESS SPACE: {vsz} (pid: {pid}) ***")
                    _kill(pid, signal.SIGKILL)
                elif self.evil_rss and rss >= self.evil_rss:
                    log(f"*** EVIL RELOAD ON WORKER {wid} RSS: {rss} (pid: {pid}) ***")
                    _kill(pid, signal.SIGKILL)
        if self.idle:
            last = max(self.board.instance.last_request_end, self.started)
            busy = any(self.board.workers[w].busy_cores > 0 for w in range(1, self.n + 1))
            if not busy and now - last > self.idle and not self.idle_notified:
                self.idle_notified = True
                wall = time.time()  # uWSGI shows wall times here
                log(f"workers have been inactive for more than {self.idle} seconds "
                    f"({int(wall - (now - last))}-{int(wall)})")
                if self.die_on_idle:
                    if self.link is not None:
                        self.link.voluntary_shutdown()
                    else:
                        self.begin(SHUTDOWN)
                else:
                    log("cheap mode: stopping the workers until a connection arrives")
                    self.cheap = True
                    for wid in range(1, self.n + 1):
                        self.board.workers[wid].cheaped = 1
                    for pid in list(self.pids):
                        _kill(pid, signal.SIGINT)
            elif now - last <= self.idle:
                self.idle_notified = False
        for path, old in list(self.touch_reload.items()):
            new = _mtime(path)
            if new != old:
                self.touch_reload[path] = new
                log(f"*** {path} has been touched... grace them all !!! ***")
                self.begin(GRACEFUL_RELOAD)

    def harakiri_worker(self, pid: int, wid: int, now: float) -> None:
        """uWSGI's trigger_harakiri: with harakiri-graceful-timeout the first try sends the
        graceful signal and the next one comes that many seconds later; else SIGKILL."""
        w = self.board.workers[wid]
        tries = self.harakiri_tries.get(pid, 0)
        if tries and now < self.harakiri_next.get(pid, 0.0):
            return
        graceful = tries == 0 and self.harakiri_graceful > 0
        log(f"HARAKIRI triggered by worker {wid} core 0 !!!")
        log(f"*** HARAKIRI ON WORKER {wid} (pid: {pid}, try: {tries + 1}"
            f"{', graceful: ' + ('yes' if graceful else 'no') if self.harakiri_graceful else ''}) ***")
        if self.harakiri_verbose:
            for what in ("syscall", "wchan"):
                try:
                    with open(f"/proc/{pid}/{what}") as f:
                        log(f"HARAKIRI: -- {what}> {f.read().strip()}")
                except OSError:
                    pass
        if tries == 0:
            w.harakiri_count += 1
        self.harakiri_tries[pid] = tries + 1
        if graceful:
            self.harakiri_next[pid] = now + self.harakiri_graceful
            log(f"HARAKIRI: graceful termination attempt on worker {wid} with signal "
                f"{self.harakiri_signal}. Next harakiri: {int(time.time() + self.harakiri_graceful)}")
            _kill(pid, self.harakiri_signal)
            return
        for c in range(self.board.ncores):
            w.cores[c].in_request = 0.0
        _kill(pid, signal.SIGKILL)

    # --- the cheaper subsystem's hands (vassal.services.cheaper decides) ------------------

    def can_scale(self) -> bool:
        """Workers may be added or cheaped now: not reloading, stopping or asleep (idle)."""
        return self.state == RUNNING and not self.cheap

    def start_worker(self, wid: int) -> None:
        """Spawn a cheaped worker again."""
        self.spawn(wid, respawn=self.board.workers[wid].respawn_count > 0)

    def cheap_worker(self, wid: int) -> None:
        """Stop a worker for good: it finishes what it is doing, exits and is not respawned."""
        w = self.board.workers[wid]
        w.cheaped = 1
        if w.pid > 0:
            _kill(w.pid, signal.SIGHUP)

    def emperor_command(self) -> None:
        cmd = self.link.read_command()
        if cmd == -1:
            return
        if cmd is None:
            log("lost connection with my Emperor !!!")
            self.tell_services("lost")
            self.link_gone()
            self.begin(SHUTDOWN)
        elif cmd == ToVassal.STOP:
            log("received message from the Emperor: stop")
            self.tell_services("stop")
            self.link_gone()
            self.begin(SHUTDOWN)
        elif cmd == ToVassal.RELOAD:
            log("received message from the Emperor: reload")
            self.tell_services("reload")
            self.begin(GRACEFUL_RELOAD)
        elif cmd == ToVassal.GRACEFUL_STOP:
            log("received message from the Emperor: graceful stop")
            self.tell_services("stop")
            self.link_gone()
            self.begin(GRACEFUL_STOP)

    def tell_services(self, message: str) -> None:
        for service in self.services:
            service.emperor(message)

    def link_gone(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        self.install_signals()
        if self.link is not None:
            # before the workers exist, so that the emperor always sees 1 before 5
            self.link.spawned()
        for service in self.services:
            service.start(self)
        for wid in range(1, self.n + 1):
            if not self.board.workers[wid].cheaped:
                self.spawn(wid)
        for service in self.services:
            service.running()
        while True:
            fds = [self.wake_r]
            if self.link is not None:
                fds.append(self.link.fileno())
            if self.zerg_server is not None:
                fds.append(self.zerg_server.fileno())
            listening = [ls.fileno() for ls in self.sockets] if self.cheap and not self.pids else []
            fds += listening
            mono = time.monotonic()
            owners: dict[int, Service] = {}
            writers: dict[int, Service] = {}
            timeout = 1.0
            for service in self.services:
                for fd in service.fds():
                    owners[fd] = service
                for fd in service.wfds():
                    writers[fd] = service
                wish = service.timeout(mono)
                if wish is not None:
                    timeout = min(timeout, max(0.0, wish))
            fds += owners
            if self.state != RUNNING:
                timeout = min(timeout, 0.05)
            try:
                ready, writable, _ = select.select(fds, list(writers), [], timeout)
            except InterruptedError:
                ready, writable = [], []
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    self.link_gone()
                    continue
                raise
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except (BlockingIOError, OSError):
                    pass
            while self.pending:
                self._handle_signal(self.pending.pop(0))
            if self.link is not None and self.link.fileno() in ready:
                self.emperor_command()
            if self.zerg_server is not None and self.zerg_server.fileno() in ready:
                self.serve_zerg()
            for fd in ready:
                service = owners.get(fd)
                if service is not None:
                    service.on_ready(fd)
            for fd in writable:
                writers[fd].on_writable(fd)
            self.reap()
            if listening and any(fd in ready for fd in listening) and self.state == RUNNING:
                log("a connection is waiting: leaving cheap mode")
                self.cheap = False
                self.idle_notified = False
                self.started = time.monotonic()
                # in cheaper mode only the minimum comes back; the algorithm adds the rest
                for wid in range(1, (self.cheaper.minimum if self.cheaper else self.n) + 1):
                    self.spawn(wid, respawn=True)
            mono = time.monotonic()
            for service in self.services:
                service.tick(mono)
            if self.state == RUNNING:
                self.checks(mono)
                continue
            if self.pids and time.monotonic() > self.deadline:
                for pid, wid in list(self.pids.items()):
                    log(f"worker {wid} (pid: {pid}) is taking too much time to die...NO MERCY !!!")
                    _kill(pid, signal.SIGKILL)
                self.deadline = time.monotonic() + 5
            if not self.pids and not any(service.busy() for service in self.services):
                return self.finish()

    def serve_zerg(self) -> None:
        """Hand our listening sockets to a zerg that connected (uWSGI's zerg server)."""
        assert self.zerg_server is not None
        try:
            conn, _ = self.zerg_server.accept()
        except OSError:
            return
        try:
            conn.settimeout(5)
            seen: set[str] = set()
            fds = []
            for ls in self.sockets:
                if ls.name not in seen:
                    seen.add(ls.name)
                    fds.append(ls.fileno())
            zerg_send(conn, fds)
        except OSError as exc:
            log(f"zerg server: cannot send the sockets: {exc}")
        finally:
            conn.close()

    def finish(self) -> int:
        for service in self.services:
            service.finish()
        if self.state in (GRACEFUL_RELOAD, BRUTAL_RELOAD) and not self.exit_on_reload:
            self.reexec()
        if self.zerg_server is not None:
            self.zerg_server.close()
            _unlink_unix(self.config.get("zerg-server"))
        if self.cleanup is not None:
            self.cleanup()
        log("goodbye to uWSGI.")
        return self.exit_code

    def reexec(self) -> None:
        """Replace this process by a new incarnation, sockets and emperor fds kept open."""
        log("binary reloading uWSGI...")
        if self.zerg_server is not None:
            self.zerg_server.close()  # rebound by the next incarnation
            _unlink_unix(self.config.get("zerg-server"))
        os.environ[ENV_INHERITED] = export_for_exec(
            self.sockets + [ls for service in self.services for ls in service.kept_sockets()])
        if self.link is not None:
            self.link.prepare_reexec()
        os.environ["UWSGI_RELOADS"] = str(int(os.environ.get("UWSGI_RELOADS", "0") or 0) + 1)
        if self.original_cwd:
            try:
                os.chdir(self.original_cwd)
            except OSError:
                pass
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
        log(f"chdir() to {os.getcwd()}")
        log(f"running {' '.join(argv)}")
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        try:
            os.execv(sys.executable, argv)
        except OSError as exc:
            log(f"imperium: cannot re-exec {sys.executable}: {exc}")
            os._exit(1)


_STOP_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def _fork_worker(spawn_worker: Callable[[int], None], wid: int) -> int:
    # stop signals stay blocked across fork until the child has its own handlers (Worker.run
    # unblocks them): a signal sent right after the fork must not reach the master's handler
    # inherited by the child, where it would be lost
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    master = os.getpid()
    pid = os.fork()
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    else:
        _die_with_parent(master)
        process_setup.relock_memory()
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            pass
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD,
                    signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        try:
            spawn_worker(wid)
        except SystemExit as exc:
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        except BaseException:
            # a child that dies of a bug says why; os._exit alone would swallow the traceback
            traceback.print_exc()
        finally:
            os._exit(1)
    return pid


def _zerg_server(address: str | None, backlog: int) -> socket.socket | None:
    if not address:
        return None
    family, addr = parse_address(address)
    if family != socket.AF_UNIX:
        raise OSError(errno.EINVAL, f"zerg-server {address}: must be a UNIX socket")
    _unlink_unix(address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind zerg-server {address}: {os.strerror(exc.errno).lower()}") from None
    sock.setblocking(False)
    log(f"*** Zerg server enabled on {address} ***")
    return sock


def _unlink_unix(address: str | None) -> None:
    if address and not address.startswith("@"):
        try:
            os.unlink(address)
        except OSError:
            pass


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive its master (killed -9 itself, or by its emperor's death)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def _log_subprocess(pid: int, status: int) -> None:
    """A child no one claims (a touch-exec command, ...): uWSGI logs how it ended."""
    if os.WIFEXITED(status):
        log(f"subprocess {pid} exited with code {os.WEXITSTATUS(status)}")
    elif os.WIFSIGNALED(status):
        log(f"subprocess {pid} exited by signal {os.WTERMSIG(status)}")


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
