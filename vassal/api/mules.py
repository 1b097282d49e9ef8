"""Mules: processes beside the workers that run signal handlers, messages or a program.

Options, as uWSGI (core/mule.c): ``mule`` (alone: a mule in signal-only mode; ``mule =
file.py``: runs that file as ``__main__``; ``mule = module:callable``: calls it) and ``mules
= N`` add mules numbered 1.. in option order; ``farm = NAME:1,2`` groups mules.

Messages travel on UNIX SEQPACKET socketpairs made before any fork (one message per packet,
as uWSGI's message pipes on Linux): one queue shared by all mules (``mule_msg(msg)``: the
first mule that reads it), one per mule (``mule_msg(msg, N)``), one per farm
(``mule_msg(msg, "farm")``, ``farm_msg``). Every process holds the sending end 0, mules read
end 1. A mule without a program loops over its signal pipes and its queues: a signal runs
its handler, a message goes to ``uwsgi.mule_msg_hook`` (uwsgidecorators sets it) or is
logged. A programmed mule reads its messages itself with ``mule_get_msg``/``farm_get_msg``.
When its program returns, a mule exits and the master starts it again, as uWSGI does.

Differences from uWSGI, on purpose: ``mule_get_msg(signals=True)`` runs the signal handlers
while it waits (uWSGI 2.0 has the flag backwards and only does so with ``signals=False``); a
farm can be named with str as well as bytes (uWSGI 3 only takes bytes); a mule number out of
range, an unknown farm in ``farm_msg`` and ``farm_get_msg`` in a mule of no farm are errors
(uWSGI reads out of bounds, drops the message, or blocks forever).
"""

from __future__ import annotations

import runpy
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from vassal.api.role import ME, Role, become, end_me, run_post_fork_hook, uwsgi_module
from vassal.api.signals import SignalHub, socket_pair
from vassal.api.spooler import as_bytes
from vassal.log import log
from vassal.wsgi import print_app_exception

#: uWSGI's receive buffer for one message (char message[65536])
MSG_BUFFER = 65536


class MuleError(ValueError):
    """A bad mule option or API call; the message names it."""


@dataclass
class MuleSpec:
    id: int
    program: str  # "" for a mule in signal-only mode


@dataclass
class FarmSpec:
    name: str
    mules: list[int]


def parse(config: Any) -> tuple[list[MuleSpec], list[FarmSpec]]:
    """The mules (in option order) and farms an instance's options ask for."""
    mules: list[MuleSpec] = []
    for name, value in config.items():
        if name == "mule":
            mules.append(MuleSpec(len(mules) + 1, "" if value in ("true", "1") else value.strip()))
        elif name == "mules":
            try:
                n = int(value)
            except ValueError:
                raise MuleError(f"mules = {value!r}: not a number") from None
            if n < 0:
                raise MuleError(f"mules = {value}: must not be negative")
            mules += [MuleSpec(len(mules) + 1 + i, "") for i in range(n)]
    farms: list[FarmSpec] = []
    for value in config.getlist("farm"):
        name, sep, ids = value.partition(":")
        name = name.strip()
        if not sep or not name:
            raise MuleError(f"farm = {value!r}: invalid farm value, must be in the form name:mule[,muleN]")
        if any(f.name == name for f in farms):
            raise MuleError(f"farm = {value!r}: a farm named {name!r} is already defined")
        members = []
        for part in ids.split(","):
            part = part.strip()
            if not part.isdigit() or not 1 <= int(part) <= len(mules):
                raise MuleError(f"farm = {value!r}: invalid mule id {part!r} (this instance has {len(mules)} mules)")
            members.append(int(part))
        farms.append(FarmSpec(name, members))
    return mules, farms


class Mules:
    """The message queues and API of an instance's mules."""

    def __init__(self, mules: list[MuleSpec], farms: list[FarmSpec], signals: SignalHub, msg_size: int = 0,
                 reload_mercy: int = 60) -> None:
        self.specs = mules
        self.farms = farms
        self.signals = signals
        self.reload_mercy = reload_mercy
        self.queue = socket_pair(socket.SOCK_SEQPACKET, msg_size) if mules else None
        self.queues = [socket_pair(socket.SOCK_SEQPACKET, msg_size) for _ in mules]
        self.farm_queues = {f.name: socket_pair(socket.SOCK_SEQPACKET, msg_size) for f in farms}
        self.buffer = max(MSG_BUFFER, msg_size)
        for f in farms:
            for mid in f.mules:
                signals.mule_farms.setdefault(mid, []).append(f.name)

    def my_farms(self) -> list[str]:
        return self.signals.farms_of_mule(ME.mule_id) if ME.role is Role.MULE else []

    # --- sending (any process) -----------------------------------------------------------

    def mule_msg(self, message: Any, target: Any = None) -> bool:
        data = _message("mule_msg", message)
        if not self.specs:
            raise MuleError("uwsgi.mule_msg: no mule configured")
        if target is None or (isinstance(target, int) and not isinstance(target, bool) and target == 0):
            sock = self.queue[0]  # type: ignore[index]
        elif isinstance(target, int) and not isinstance(target, bool):
            if not 1 <= target <= len(self.specs):
                raise MuleError(f"uwsgi.mule_msg: invalid mule number {target} (this instance has "
                                f"{len(self.specs)} mules)")
            sock = self.queues[target - 1][0]
        elif isinstance(target, (str, bytes)):
            name = target.decode() if isinstance(target, bytes) else target
            if name not in self.farm_queues:
                raise MuleError(f"uwsgi.mule_msg: unknown farm {name!r}")
            sock = self.farm_queues[name][0]
        else:
            raise MuleError(f"uwsgi.mule_msg: invalid mule {target!r} (a mule number or a farm name)")
        return _send(sock, data)

    def farm_msg(self, farm: Any, message: Any) -> None:
        name = farm.decode() if isinstance(farm, bytes) else farm
        if not isinstance(name, str):
            raise MuleError("uwsgi.farm_msg: the farm name must be a string")
        data = _message("farm_msg", message)
        if name not in self.farm_queues:
            raise MuleError(f"uwsgi.farm_msg: unknown farm {name!r}")
        _send(self.farm_queues[name][0], data)

    # --- receiving (in a mule) -----------------------------------------------------------

    def _my_queues(self, farms: bool = True) -> list[socket.socket]:
        out = [self.queues[ME.mule_id - 1][1], self.queue[1]]  # type: ignore[index]
        if farms:
            out += [self.farm_queues[name][1] for name in self.my_farms()]
        return out

    def mule_get_msg(self, signals: Any = True, farms: Any = True, buffer_size: int = MSG_BUFFER,
                     timeout: int = -1) -> bytes | None:
        if ME.role is not Role.MULE:
            raise MuleError("uwsgi.mule_get_msg: you can receive mule messages only in a mule !!!")
        manage_signals = signals is not None and signals is not False
        manage_farms = farms is not None and farms is not False
        queues = self._my_queues(manage_farms)
        pipes = self.signals.my_pipes() if manage_signals else []
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(queues + pipes, [], [], wait)
            if not ready:
                return b""  # timed out (uWSGI returns an empty message)
            for sock in queues:
                if sock in ready:
                    data = _recv(sock, max(1, int(buffer_size)))
                    if data is not None:
                        return data
            for sock in pipes:
                if sock in ready and self.signals.receive(sock) is not None:
                    return None  # a signal was handled: uWSGI returns None then
            # another mule took what woke us: wait again

    def farm_get_msg(self) -> bytes | None:
        if ME.role is not Role.MULE:
            raise MuleError("uwsgi.farm_get_msg: you can receive farm messages only in a mule !!!")
        queues = [self.farm_queues[name][1] for name in self.my_farms()]
        if not queues:
            raise MuleError(f"uwsgi.farm_get_msg: mule {ME.mule_id} is in no farm")
        while True:
            ready, _, _ = select.select(queues, [], [])
            for sock in queues:
                if sock in ready:
                    data = _recv(sock, MSG_BUFFER)
                    if data is not None:
                        return data

    def in_farm(self, name: Any = None) -> bool | None:
        if ME.role is not Role.MULE:
            return None
        mine = self.my_farms()
        if name is None:
            return True if mine else None
        text = name.decode() if isinstance(name, bytes) else name
        return True if text in mine else None

    def exports(self) -> dict[str, Any]:
        """The mule functions of the ``uwsgi`` module (``mule_id`` is the process module's)."""
        return {name: getattr(self, name) for name in ("mule_msg", "farm_msg", "mule_get_msg", "farm_get_msg",
                                                        "in_farm")}

    # --- the mule process ----------------------------------------------------------------

    def close_unused(self) -> None:
        """In a child: keep every sending end, and the receiving ends of this mule only."""
        mine = {s.fileno() for s in self._my_queues()} if ME.role is Role.MULE else set()
        pairs = [*self.queues, *self.farm_queues.values()] + ([self.queue] if self.queue else [])
        for pair in pairs:
            if pair[1].fileno() >= 0 and pair[1].fileno() not in mine:
                pair[1].close()

    def run(self, spec: MuleSpec) -> None:
        """The body of a mule (forked by the master); never returns."""
        become(Role.MULE, mule_id=spec.id)
        self.signals.close_unused()
        self.close_unused()
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(sig, lambda _s, _f: end_me())
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
        run_post_fork_hook()
        program = spec.program
        if program.endswith(".py"):
            try:
                runpy.run_path(program, run_name="__main__")
            except SystemExit as exc:
                end_me(exc.code if isinstance(exc.code, int) else 1)
            except BaseException:  # noqa: BLE001 - printed; the master starts the mule again
                print_app_exception()
            end_me()  # a program that returns ends the mule (uWSGI's end_me)
        if ":" in program:
            mod_name, _, func_name = program.partition(":")
            try:
                if "." not in sys.path and "" not in sys.path:
                    sys.path.insert(0, ".")
                mod = __import__(mod_name, fromlist=["_"])
                getattr(mod, func_name)()
            except SystemExit as exc:
                end_me(exc.code if isinstance(exc.code, int) else 1)
            except BaseException:  # noqa: BLE001
                print_app_exception()
            end_me()
        self._loop()

    def _loop(self) -> None:
        """Signal-only mode: signals run their handlers, messages go to mule_msg_hook."""
        pipes = self.signals.my_pipes()
        queues = self._my_queues()
        while True:
            try:
                ready, _, _ = select.select(pipes + queues, [], [])
            except InterruptedError:
                continue
            for sock in pipes:
                if sock in ready:
                    self.signals.receive(sock)
            for sock in queues:
                if sock in ready:
                    data = _recv(sock, self.buffer)
                    if data is not None:
                        self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        hook = getattr(uwsgi_module(), "mule_msg_hook", None)
        if hook is None:
            log(f"*** mule {ME.mule_id} received a {len(data)} bytes message ***")
            return
        try:
            hook(data)
        except Exception:  # noqa: BLE001 - printed, the mule goes on
            print_app_exception()


def _message(call: str, message: Any) -> bytes:
    return as_bytes(call, "the message", message, numbers=False, error=MuleError)


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.send(data)
    except BlockingIOError:
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        log(f"*** MULE MSG QUEUE IS FULL: buffer size {size} bytes (you can tune it with --mule-msg-size) ***")
        return False
    except OSError as exc:
        log(f"mule_send_msg(): {exc.strerror}")
        return False
    return True


def _recv(sock: socket.socket, size: int) -> bytes | None:
    try:
        return sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None  # another mule took it

