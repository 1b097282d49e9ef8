"""The master's operations by their uWSGI names: what the master FIFO, ``unix_signal`` hooks,
``call`` hooks and the touch options trigger.

uWSGI keeps these as C functions (core/master.c, core/uwsgi.c, core/master_utils.c) and its
FIFO table and ``unix_signal`` hook point at them by name; ``SIGNAL_FUNCTIONS`` is that set
of names here. ``MasterControl`` is a ``Service`` so that it can keep the state some of them
need across loop turns:

- workers told to go one by one (``w``, ``W``, chain reload) get ``worker-reload-mercy``
  seconds before a SIGKILL ("NO MERCY"), as uWSGI's ``uwsgi_curse`` gives them;
- chain reload (``c``, ``touch-chain-reload``): one worker at a time gets SIGHUP, the next
  only once the previous one's replacement is accepting;
- pause (``p``, SIGTSTP): idle workers are stopped (SIGSTOP) and continued on resume. uWSGI
  workers park themselves before their next request; ours are stopped from outside, so a
  request that arrives while pausing waits in the backlog like every other one.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from vassal.log import log
from vassal.scoreboard import STATUS_CHEAP, STATUS_IDLE, STATUS_PAUSE
from vassal.services import Service, log_verbose

#: uWSGI master functions that FIFO commands, ``unix_signal`` and ``call`` hooks may name
SIGNAL_FUNCTIONS = (
    "grace_them_all", "reap_them_all", "kill_them_all", "gracefully_kill_them_all", "stats",
    "suspend_resume_them_all", "uwsgi_reload_workers", "uwsgi_brutally_reload_workers",
    "uwsgi_chain_reload", "uwsgi_go_cheap", "uwsgi_log_reopen", "uwsgi_log_rotate",
    "uwsgi_update_pidfiles", "vassal_sos", "uwsgi_refork_master", "emperor_rescan",
    "subscriptions_blocker", "uwsgi_cheaper_increase", "uwsgi_cheaper_decrease",
)


class MasterControl(Service):
    name = "control"

    def __init__(self, config: Any) -> None:
        self.config = config
        self.master: Any = None
        self.mercy = int(config.get("worker-reload-mercy") or 60)
        self.cursed: dict[int, float] = {}  # pid -> monotonic deadline
        self.chain = 0  # 0: no chain reload; else the id of the next worker to reload
        self.chain_pid = 0  # the worker of the chain being reloaded now
        self.chain_wait_logged = 0
        self.paused = False
        self.stopped: set[int] = set()  # pids we SIGSTOPped
        self.pending_signals: dict[int, str] = {}

    # --- Service -------------------------------------------------------------------------

    def start(self, master: Any) -> None:
        self.master = master
        self.map_signal(signal.SIGTSTP, "suspend_resume_them_all")
        for signum, func in self.pending_signals.items():
            self.map_signal(signum, func)

    def timeout(self, now: float) -> float | None:
        if self.chain or self.paused or self.cursed:
            return 0.2
        return None

    def tick(self, now: float) -> None:
        m = self.master
        for pid in list(self.cursed):
            if pid not in m.pids:
                del self.cursed[pid]
            elif now > self.cursed[pid]:
                wid = m.pids[pid]
                log_verbose(f"worker {wid} (pid: {pid}) is taking too much time to die...NO MERCY !!!")
                _kill(pid, signal.SIGKILL)
                self.cursed[pid] = now + self.mercy
        if self.chain and self._running():
            self._chain_step()
        if self.paused:
            self._stop_idle()

    def in_worker(self, wid: int) -> None:
        # a worker must not run the master's operations on the signals mapped to them; a
        # child forked by a service that starts before this one (the spooler) finds none yet
        mapped = self.master.signal_actions if self.master is not None else ()
        for signum in (*mapped, signal.SIGTSTP):
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass

    def stopping(self, reload: bool) -> None:
        self.chain = 0
        self.chain_pid = 0
        if self.paused:
            self._resume_all()  # stopped workers cannot finish

    # --- the operations ------------------------------------------------------------------

    def run(self, func: str) -> None:
        """Run one of ``SIGNAL_FUNCTIONS`` (from the FIFO, a signal, a hook)."""
        getattr(self, "do_" + func)()

    def map_signal(self, signum: int, func: str) -> None:
        """``unix_signal:SIGNUM FUNC``: the master runs FUNC when it gets SIGNUM."""
        m = self.master
        if m is None:
            self.pending_signals[signum] = func
            return
        try:
            signal.signal(signum, m._signal)
        except (OSError, ValueError) as exc:
            log(f"unix_signal {signum}: {exc}")
            return
        m.signal_actions[signum] = lambda: self.run(func)

    def curse(self, wid: int, sig: int) -> None:
        """Tell a worker to go; it gets ``worker-reload-mercy`` seconds before SIGKILL."""
        m = self.master
        pid = m.board.workers[wid].pid
        if pid <= 0 or pid not in m.pids:
            return
        self.cursed[pid] = time.monotonic() + self.mercy
        if pid in self.stopped:
            self.stopped.discard(pid)
            _kill(pid, signal.SIGCONT)
        _kill(pid, sig)

    def _running(self) -> bool:
        from vassal.master import RUNNING

        return self.master.state == RUNNING

    def _begin(self, state_name: str) -> None:
        from vassal import master as mastermod

        self.master.begin(getattr(mastermod, state_name))

    def do_grace_them_all(self) -> None:
        if not self._running():
            return
        log("...gracefully killing workers...")
        self._begin("GRACEFUL_RELOAD")

    def do_reap_them_all(self) -> None:
        if not self._running():
            return
        log("...brutally killing workers...")
        self._begin("BRUTAL_RELOAD")

    def do_kill_them_all(self) -> None:
        log("SIGINT/SIGTERM received...killing workers...")
        self._begin("SHUTDOWN")

    def do_gracefully_kill_them_all(self) -> None:
        if not self._running():
            return
        log_verbose("graceful shutdown triggered...")
        self._begin("GRACEFUL_STOP")

    def do_stats(self) -> None:
        m = self.master
        text = self.config.show_config() if hasattr(self.config, "show_config") else ""
        for line in text.splitlines():
            log(line)
        log(f"\tworkers total requests: {m.board.total_requests()}")
        log("-----------------")
        for wid in range(1, m.n + 1):
            w = m.board.workers[wid]
            if w.app_loaded:
                log(f"\tworker {wid} app 0 [] requests: {w.app_requests} exceptions: {w.app_exceptions}")
            log("-----------------")
        log("")

    def do_uwsgi_reload_workers(self) -> None:
        for wid in range(1, self.master.n + 1):
            self.curse(wid, signal.SIGHUP)

    def do_uwsgi_brutally_reload_workers(self) -> None:
        m = self.master
        for wid in range(1, m.n + 1):
            pid = m.board.workers[wid].pid
            if pid > 0 and pid in m.pids:
                log_verbose(f"killing worker {wid} (pid: {pid})")
                self.curse(wid, signal.SIGINT)

    def do_uwsgi_chain_reload(self, touched: str | None = None) -> None:
        if self.chain:
            if touched:
                log_verbose(f"*** {touched} has been touched... but chain reload is already running ***")
            else:
                log_verbose("chain reload already running...")
            return
        if touched:
            log_verbose(f"*** {touched} has been touched... chain reload !!! ***")
        else:
            log_verbose("chain reload starting...")
        self.chain = 1
        self.chain_pid = 0

    def _chain_step(self) -> None:
        m = self.master
        board = m.board
        if self.chain_pid:
            if board.workers[self.chain].pid == self.chain_pid:
                return  # the victim is still finishing its requests
            self.chain_pid = 0  # gone (respawned by the master): on to the next one
            self.chain += 1
        if 1 < self.chain <= m.n + 1:
            prev = board.workers[self.chain - 1]
            if prev.pid > 0 and prev.status != STATUS_CHEAP and not prev.accepting:
                now = int(time.time())
                if now != self.chain_wait_logged:
                    self.chain_wait_logged = now
                    log_verbose(f"chain is still waiting for worker {self.chain - 1}...")
                return
        while self.chain <= m.n:
            w = board.workers[self.chain]
            if w.pid > 0 and w.pid in m.pids and w.accepting:
                if w.pid not in self.cursed:
                    log_verbose(f"chain next victim is worker {self.chain}")
                    self.curse(self.chain, signal.SIGHUP)
                self.chain_pid = w.pid
                return
            self.chain += 1
        self.chain = 0
        log_verbose("chain reloading complete")

    def do_uwsgi_go_cheap(self) -> None:
        m = self.master
        if m.cheap:
            return
        log_verbose("going cheap...")
        m.cheap = True
        for wid in range(1, m.n + 1):
            w = m.board.workers[wid]
            w.status = STATUS_CHEAP
            w.cheaped = 1  # as uWSGI: in cheaper mode the slots a wake-up leaves alone stay spawnable
            if w.pid > 0 and w.pid in m.pids:
                log(f"killing worker {wid} (pid: {w.pid})")
                _kill(w.pid, signal.SIGKILL)
        log("cheap mode enabled: waiting for socket connection...")

    def do_suspend_resume_them_all(self) -> None:
        if self.paused:
            log_verbose("*** (SIGTSTP received) resuming workers ***")
            self._resume_all()
        else:
            log_verbose("*** PAUSE (press start to resume, if you do not have a joypad send SIGTSTP) ***")
            self.paused = True
            self._stop_idle()

    def _stop_idle(self) -> None:
        m = self.master
        for pid, wid in list(m.pids.items()):
            w = m.board.workers[wid]
            if pid in self.stopped or pid in self.cursed or w.busy_cores > 0:
                continue
            _kill(pid, signal.SIGSTOP)
            self.stopped.add(pid)
            w.status = STATUS_PAUSE
            log_verbose(f"*** worker {wid} suspended ***")

    def _resume_all(self) -> None:
        m = self.master
        self.paused = False
        for pid in sorted(self.stopped):
            _kill(pid, signal.SIGCONT)
            wid = m.pids.get(pid)
            if wid is not None:
                m.board.workers[wid].status = STATUS_IDLE
                log_verbose(f"*** worker {wid} resumed ***")
        self.stopped.clear()

    def do_uwsgi_log_reopen(self) -> None:
        # like uWSGI's, this acts on the master's log fd: with log-master the master is the
        # only writer; without it the workers keep the file they have until respawned
        from vassal import log as logmod

        if not logmod.reopen():
            log("log reopen: no log file (logto/logto2/daemonize) to reopen")

    def do_uwsgi_log_rotate(self) -> None:
        from vassal import log as logmod

        if logmod.rotate() is None:
            log("log rotate: no log file (logto/logto2/daemonize) rotated")

    def do_uwsgi_update_pidfiles(self) -> None:
        for opt in ("pidfile", "pidfile2"):
            path = self.config.get(opt)
            if path:
                try:
                    with open(path, "w") as f:
                        f.write(f"{os.getpid()}\n")
                except OSError as exc:
                    log(f"cannot update {opt} {path}: {exc.strerror}")

    def do_vassal_sos(self) -> None:
        link = self.master.link
        if link is None:
            log("[broodlord] instance not governed by an Emperor !!!")
            return
        link.sos()

    def do_uwsgi_refork_master(self) -> None:
        m = self.master
        try:
            pid = os.fork()
        except OSError as exc:
            log(f"uwsgi_refork_master()/fork(): {exc.strerror}")
            return
        if pid > 0:
            log_verbose(f"new master copy spawned with pid {pid}")
            return
        _refork_exec(m)

    def do_emperor_rescan(self) -> None:
        log("emperor_rescan: this instance runs no emperor")

    def do_subscriptions_blocker(self) -> None:
        log("subscriptions_blocker: this instance has no subscriptions (not available in Imperium)")

    def do_uwsgi_cheaper_increase(self) -> None:
        self._cheaper_nudge("uwsgi_cheaper_increase", 1)

    def do_uwsgi_cheaper_decrease(self) -> None:
        self._cheaper_nudge("uwsgi_cheaper_decrease", -1)

    def _cheaper_nudge(self, name: str, delta: int) -> None:
        """``+``/``-``: one worker more or less at the next cheaper cycle (vassal.services.cheaper)."""
        cheaper = self.master.cheaper
        if cheaper is None:
            log(f"{name}: cheaper mode is off (no cheaper = N): the number of workers is fixed")
            return
        cheaper.nudge(delta)


def _refork_exec(master: Any) -> None:
    """In the child of a refork: a new master on the same sockets, not the emperor's."""
    from vassal.sockets import ENV_INHERITED, export_for_exec

    try:
        os.setsid()
        for key in ("UWSGI_EMPEROR_FD", "UWSGI_EMPEROR_FD_CONFIG", "UWSGI_RELOADS"):
            os.environ.pop(key, None)
        os.environ[ENV_INHERITED] = export_for_exec(master.sockets)
        if master.original_cwd:
            os.chdir(master.original_cwd)
        log("fork()'ing uWSGI...")
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
        os.execv(sys.executable, argv)
    except BaseException as exc:  # noqa: BLE001 - never return into the old master's loop
        log(f"uwsgi_refork_master(): {exc}")
    os._exit(1)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


#: what each master FIFO command runs (uWSGI's uwsgi_fifo_table)
FIFO_COMMANDS: dict[str, str] = {
    "-": "uwsgi_cheaper_decrease", "+": "uwsgi_cheaper_increase", "B": "vassal_sos",
    "c": "uwsgi_chain_reload", "C": "uwsgi_go_cheap", "E": "emperor_rescan",
    "f": "uwsgi_refork_master", "l": "uwsgi_log_reopen", "L": "uwsgi_log_rotate",
    "p": "suspend_resume_them_all", "P": "uwsgi_update_pidfiles", "q": "gracefully_kill_them_all",
    "Q": "kill_them_all", "r": "grace_them_all", "R": "reap_them_all", "s": "stats",
    "S": "subscriptions_blocker", "w": "uwsgi_reload_workers", "W": "uwsgi_brutally_reload_workers",
}

Operation = Callable[[], None]
