"""The fork server: one small process that makes every vassal, forked before any thread.

The emperor starts it once (``ForkServer.start``, before its monitors start threads) as
``PYTHON -c "from emperor.forkserver import serve; serve()"`` with the interpreter of our
``imperium`` script, in its own process group (a Ctrl-C on the emperor's terminal does not
reach it). It imports the instance code, then serves requests on an AF_UNIX SOCK_SEQPACKET
socket, one datagram each way:

    emperor -> server   pickled ``SpawnRequest`` + the vassal's ends of its socketpairs
                        (SCM_RIGHTS)
    server -> emperor   ``("started", id, pid)`` | ``("failed", id, reason)`` |
                        ``("exited", pid, wait status)``

The server stays single-threaded, so Python code in a forked child is safe (the reason
the emperor itself never forks bare: see emperor.spawn). Its children are the vassals: it
reaps them, SIGKILLs what is left of a dead vassal's process group while its pid is still
reserved (``waitid(WNOWAIT)`` then ``killpg`` then ``waitpid``), and reports the status.
It dies with the emperor (``PR_SET_PDEATHSIG`` and EOF on its socket), and the vassals with
it (their death signal is set relative to it).

``become_vassal`` is what the child does before exec or the instance, in one order for
both ways in; ``run_instance`` makes the forked child look like a freshly exec'd
``imperium``: ``sys.argv``/``sys.orig_argv`` as exec would give them (so the master's
re-exec on reload works), ``sys.path[0]`` the script's directory, the process title the
exec'd command line, Python's own signal set-up, ``os.environ`` the vassal's.

What a fork cannot reproduce: the hash seed of str/bytes hashes (``PYTHONHASHSEED``) is
the fork server's for every forked vassal; ``/proc/PID/cmdline`` has the exec'd arguments,
NUL-separated, then NUL padding to the end of the server's argv area (a command line longer
than ``ARGV_ROOM`` is one string with spaces, as setproctitle writes it); the parent pid is
the fork server's. Ask for ``emperor-spawn = exec`` where any of that matters.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import traceback
from collections import deque
from typing import Any

from emperor.isolation import linux
from emperor.isolation.jail import JailError, enter
from emperor.isolation.linux import Clone
from emperor.protocol import EXILE_CODE
from emperor.spawn import Exited, SpawnRequest, Started, child_env, split_fds

ENV_SERVER_FD = "IMPERIUM_FORKSERVER_FD"
PR_SET_PDEATHSIG = 1
MAX_FDS = 4
MAX_MESSAGE = 1 << 20
ARGV_ROOM = 8192  # bytes of command line a forked vassal can show as exec would
#: modules a vassal imports anyway: imported once here, shared copy-on-write by every vassal
PRELOAD = ("emperor.cli", "emperor.protocol", "vassal.config", "vassal.options", "vassal.instance",
           "vassal.stats", "vassal.wsgi", "setproctitle", "runpy", "pkgutil",
           "encodings.idna")  # binding "127.0.0.1:port" encodes the host with idna


def _prctl_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def own_interpreter(binary: str) -> str | None:
    """The interpreter of ``binary`` when it is our own ``imperium`` console script (what
    the fork server must run so that a forked vassal's ``sys.executable`` is exec's)."""
    try:
        with open(binary, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if not head.startswith(b"#!") or b"from emperor.cli import main" not in head:
        return None
    interp = head[2:].split(b"\n", 1)[0].strip().decode(errors="replace")
    if " " in interp or not os.access(interp, os.X_OK):
        return None
    return interp


# --- the emperor's side ------------------------------------------------------------------------


class ForkServer:
    """The emperor's handle on the fork server: requests out, answers and exits in."""

    def __init__(self, interpreter: str | None = None) -> None:
        self.interpreter = interpreter or sys.executable
        self.popen: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.env_python: dict[str, str] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_exit: Exited | None = None
        self.next_id = 0
        self.waiting: dict[int, Started] = {}  # request id -> who wants the pid
        self.children: set[int] = set()
        self.outbox: deque[tuple[int, bytes, list[int]]] = deque()
        self.dead = False

    def start(self) -> None:
        """Start the server process; call before any thread exists (and again after a death)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env[ENV_SERVER_FD] = str(theirs.fileno())
        env["IMPERIUM_EMPEROR_PID"] = str(os.getpid())
        try:
            # the padding argument reserves room in the argv area: each child writes its own
            # command line there (see _write_cmdline)
            self.popen = subprocess.Popen(
                [self.interpreter, "-c", "from emperor.forkserver import serve; serve()",
                 " " * ARGV_ROOM],
                env=env, stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()], close_fds=True,
                process_group=0)
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.dead = False
        self.env_python = {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}

    def attach(self, loop: asyncio.AbstractEventLoop, on_exit: Exited) -> None:
        self.loop = loop
        self.on_exit = on_exit
        assert self.sock is not None
        loop.add_reader(self.sock.fileno(), self._readable)

    def can_fork(self, env: dict[str, str]) -> bool:
        """A forked vassal is an exec'd one only if Python would start it the same way."""
        return not self.dead and {k: v for k, v in env.items()
                                  if k.startswith("PYTHON")} == self.env_python

    def spawn(self, req: SpawnRequest, fds: list[int], done: Started) -> None:
        if self.dead or self.sock is None:
            self._restart()
        self.next_id += 1
        rid = self.next_id
        try:
            payload = pickle.dumps((rid, req), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - a request that cannot travel fails alone
            done(None, f"cannot pass the request to the fork server: {exc}")
            return
        if len(payload) > MAX_MESSAGE:
            done(None, f"request of {len(payload)} bytes is too big for the fork server")
            return
        self.waiting[rid] = done
        # the fds are duplicated into the queue entry: the caller may close its copies
        self.outbox.append((rid, payload, [os.dup(fd) for fd in fds]))
        self._flush()

    def _flush(self) -> None:
        assert self.sock is not None and self.loop is not None
        while self.outbox:
            rid, payload, fds = self.outbox[0]
            try:
                self.sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                               array.array("i", fds))])
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.sock.fileno(), self._writable)
                return
            except OSError as exc:
                self.outbox.popleft()
                self._close_fds(fds)
                done = self.waiting.pop(rid, None)
                if done is not None:
                    done(None, f"fork server: {exc.strerror or exc}")
                continue
            self.outbox.popleft()
            self._close_fds(fds)
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(self.sock.fileno())

    def _writable(self) -> None:
        self._flush()

    @staticmethod
    def _close_fds(fds: list[int]) -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._died()
                return
            try:
                msg = pickle.loads(data)
            except Exception:  # noqa: BLE001 - our own server: a bad message is a bug, skip it
                continue
            self._dispatch(msg)

    def _dispatch(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "started":
            _, rid, pid = msg
            self.children.add(pid)
            done = self.waiting.pop(rid, None)
            if done is not None:
                done(pid, None)
        elif kind == "failed":
            _, rid, reason = msg
            done = self.waiting.pop(rid, None)
            if done is not None:
                done(None, reason)
        elif kind == "exited":
            _, pid, status = msg
            self.children.discard(pid)
            if self.on_exit is not None:
                self.on_exit(pid, status)

    def _died(self) -> None:
        """The server is gone: its vassals die with it (their death signal); report them."""
        from emperor.logs import log

        if self.dead:
            return
        self.dead = True
        assert self.loop is not None and self.sock is not None
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()
        if self.popen is not None:
            with contextlib.suppress(Exception):
                self.popen.wait(timeout=1)
        log("[emperor] the fork server is gone: its vassals are respawned by a new one")
        for _, _, fds in self.outbox:
            self._close_fds(fds)
        self.outbox.clear()
        for done in list(self.waiting.values()):
            done(None, "the fork server is gone")
        self.waiting.clear()
        killed = int(signal.SIGKILL)  # the wait status of a process killed by SIGKILL
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self.children.discard(pid)
            if self.on_exit is not None:
                self.on_exit(pid, killed)

    def _restart(self) -> None:
        self.start()
        if self.loop is not None and self.on_exit is not None:
            self.attach(self.loop, self.on_exit)

    def close(self) -> None:
        if self.sock is not None:
            if self.loop is not None:
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_reader(self.sock.fileno())
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_writer(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for _, _, fds in self.outbox:
            self._close_fds(fds)
        self.outbox.clear()
        if self.popen is not None:
            try:
                self.popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


# --- the server --------------------------------------------------------------------------------


def serve() -> None:
    """The fork server's main loop (run as ``python -c``; never returns)."""
    emperor = int(os.environ.pop("IMPERIUM_EMPEROR_PID", "0") or 0)
    fd = int(os.environ.pop(ENV_SERVER_FD))
    _prctl_pdeathsig()
    if emperor and os.getppid() != emperor:
        os._exit(0)  # the emperor died before we could ask to die with it
    # a signal meant for the emperor's terminal or group is not for us: we die with it
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # -c put the cwd first; a vassal's sys.path is set in the child
    for mod in PRELOAD:
        with contextlib.suppress(Exception):
            __import__(mod)
    with contextlib.suppress(Exception):
        import setproctitle

        # set up here, while the environment strings are still where exec put them, so
        # that a vassal's own procname works later in the children
        setproctitle.setproctitle("imperium: emperor fork server")
    import gc

    gc.collect()
    gc.freeze()  # what the preload made stays shared: the children's gc never writes to it
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    plumbing = [wake_r, wake_w]
    global _own_pid_ns
    with contextlib.suppress(OSError):
        # our own pid namespace, to come back to after making a vassal in a new one
        _own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        plumbing.append(_own_pid_ns)
    while True:
        for key, _ in sel.select():
            if key.fileobj is sock:
                if not _serve_one(sock, sel, plumbing):
                    os._exit(0)  # the emperor is gone (its vassals follow: death signal)
            else:
                with contextlib.suppress(OSError):
                    while os.read(wake_r, 512):
                        pass
        _reap(sock)


_own_pid_ns = -1  # fd of the server's pid namespace (see serve)


def _serve_one(sock: socket.socket, sel: selectors.BaseSelector, plumbing: list[int]) -> bool:
    try:
        data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * 4))
    except InterruptedError:
        return True
    except OSError:
        return False
    if not data:
        return False
    fds: list[int] = []
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(cdata[: len(cdata) - (len(cdata) % arr.itemsize)])
            fds.extend(arr)
    try:
        rid, req = pickle.loads(data)
    except Exception:  # noqa: BLE001
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        return True
    new_pid_ns = req.jail.pid_ns
    if new_pid_ns:
        # the next child is pid 1 of a new namespace (what uWSGI's clone() gives); we go
        # back to our own namespace right after the fork
        try:
            linux.unshare(Clone.NEWPID)
        except OSError as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _send(sock, ("failed", rid, f"cannot jail vassal {req.name}: unshare(pid): "
                                        f"{exc.strerror}"))
            return True
    try:
        pid = os.fork()
    except OSError as exc:
        _send(sock, ("failed", rid, f"fork(): {exc.strerror}"))
        pid = -1
    if new_pid_ns and pid != 0:
        try:
            linux.setns(_own_pid_ns, Clone.NEWPID)
        except OSError:
            # every later vassal would land in this one's namespace: better to die (the
            # emperor starts a new server) than to mix them
            os._exit(1)
    if pid == 0:
        code = 1
        try:
            sel.close()
            # the socket object must not close its fd number again later (the instance
            # may have reused it by then)
            plumbing.append(sock.detach())
            code = become_vassal(req, fds, plumbing)
        except BaseException:  # noqa: BLE001 - the child never returns into the server
            with contextlib.suppress(Exception):
                traceback.print_exc()
        os._exit(code)
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    if pid > 0:
        _send(sock, ("started", rid, pid))
    return True


def _send(sock: socket.socket, msg: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError):
        sock.send(pickle.dumps(msg))


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == 0:
            return
        pid = info.si_pid
        # exited, not reaped: its process group id is still reserved, kill what it left
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            continue
        _send(sock, ("exited", pid, status))


# --- the child ----------------------------------------------------------------------------------


_PYTHON_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)  # what a fresh interpreter ignores


def become_vassal(req: SpawnRequest, all_fds: list[int], plumbing: list[int]) -> int:
    """Turn this fork of the server into the vassal; returns only with an exit code."""
    fds, output, listener = split_fds(req, all_fds)
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    for fd in plumbing:
        with contextlib.suppress(OSError):
            os.close(fd)
    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    server = os.getppid()
    _prctl_pdeathsig()
    if os.getppid() != server:
        return 1  # the server died between fork and prctl: so must we
    if listener is not None:  # on demand: the emperor's listening socket is our fd 0
        if listener != 0:
            os.dup2(listener, 0)
            os.close(listener)
    else:
        devnull = os.open(os.devnull, os.O_RDONLY)
        if devnull != 0:
            os.dup2(devnull, 0)
            os.close(devnull)
    if output is not None:  # the emperor collects what the vassal writes
        os.dup2(output, 1)
        os.dup2(output, 2)
        if output > 2:
            os.close(output)
    keep = set(fds) | {0, 1, 2}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    for fd in fds:
        os.set_inheritable(fd, True)
    env = child_env(req, fds)
    if req.cwd:
        try:
            os.chdir(req.cwd)
        except OSError as exc:
            _say(f"[emperor] chdir() to {req.cwd} for vassal {req.name}: {exc.strerror}")
            return 1
    os.environ.clear()
    os.environ.update(env)
    if req.jail.needed:
        try:
            enter(req.jail)
        except JailError as exc:
            _say(f"[emperor] cannot jail vassal {req.name}: {exc}")
            return 1
    if req.start_hook:
        _start_hook(req.start_hook, req.name)
    if req.method == "fork":
        return run_instance(req.argv)
    return exec_vassal(req)


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode(errors="surrogateescape"))


def _start_hook(hook: str, name: str) -> None:
    """uWSGI runs ``HOOK NAME`` in the child before exec and waits for it."""
    _say(f"[emperor] running vassal start-hook: {hook} {name}")
    try:
        code = subprocess.call([hook, name], stdin=subprocess.DEVNULL)
    except OSError:
        code = 127
    _say(f"[emperor] {name} start-hook returned {code if code >= 0 else 128 - code}")


def exec_vassal(req: SpawnRequest) -> int:
    """execvp() as uWSGI's child does: each wrapper override, the binary, each fallback."""
    argv = list(req.argv)
    for wrapper in req.overrides:
        _say(f"[emperor] trying to use {wrapper} as binary wrapper ...")
        with contextlib.suppress(OSError):
            os.execvp(wrapper, [wrapper, *argv[1:]])
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        _say(f"execvp(): {exc.strerror} [{argv[0]}]")
    _say(f"[emperor] binary path: {argv[0]}")
    _say("[emperor] is the uwsgi binary in your system PATH ?")
    for wrapper in req.fallbacks:
        _say(f"[emperor] trying to use {wrapper} as binary fallback ...")
        with contextlib.suppress(OSError):
            os.execvp(wrapper, [wrapper, *argv[1:]])
    return EXILE_CODE  # as uWSGI's child


def _write_cmdline(argv: list[str]) -> None:
    """Make /proc/self/cmdline read as exec would have made it: the arguments separated by
    NULs in the argv area (padded with NULs to its end: the kernel reports the whole area)."""
    blob = b"".join(os.fsencode(a) + b"\0" for a in argv)
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
    except (OSError, ValueError, IndexError):
        start = end = 0
    # setproctitle first: it then knows how much to clear when the instance sets its own
    # title (procname); too long for the room, this one string is what ps shows
    with contextlib.suppress(Exception):
        import setproctitle

        setproctitle.setproctitle(" ".join(argv))
    if 0 < len(blob) <= end - start:
        ctypes.memmove(start, blob + b"\0" * (end - start - len(blob)), end - start)


def run_instance(argv: list[str]) -> int:
    """Run ``imperium ARGS`` in this process as if exec had started it."""
    import atexit
    import threading

    script = argv[0]
    sys.argv = list(argv)
    sys.orig_argv = [sys.executable, *argv]
    here = os.path.dirname(os.path.realpath(script))
    if sys.path and sys.path[0] != here:
        sys.path.insert(0, here)
    for sig in _PYTHON_IGNORES:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _write_cmdline(sys.orig_argv)
    code = 0
    try:
        import runpy

        # the console script itself, as python runs it (``__main__``, its ``__file__``):
        # it calls emperor.cli.main, already imported here
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            _say(str(exc.code))
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, exit 1
        traceback.print_exc()
        code = 1
    # the end of a Python program: non-daemon threads joined, atexit run, streams flushed
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return int(code or 0)
