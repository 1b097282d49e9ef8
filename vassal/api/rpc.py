"""``uwsgi.register_rpc``, ``uwsgi.rpc``, ``uwsgi.call``, ``uwsgi.rpc_list``: local RPC.

As in uWSGI 2.0 (core/rpc.c) each worker has its own table: a function registered in the
master (at import time, before the fork) is inherited by every worker, one registered in a
worker is known to that worker only (another worker calling it gets None, as with uWSGI).
A respawned worker starts again from the master's table. Names, arguments and results are
bytes (``PyString`` is bytes in uWSGI's python 3 plugin): a str name or argument raises
ValueError("unable to call rpc function"); a function answering anything but non-empty
bytes gives None. Calling another node (``uwsgi.rpc("host:port", ...)``) is refused with a
clear error: the uwsgi RPC protocol over the network is not implemented.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from vassal.api.context import ApiContext
from vassal.log import log

_table: dict[bytes, tuple[Callable[..., Any], int]] = {}
_max = [64]


def setup(ctx: ApiContext) -> None:
    _table.clear()
    if ctx.config is not None and ctx.config.has("rpc-max"):
        _max[0] = max(1, int(ctx.config.get("rpc-max")))


def _call_local(name: bytes, args: tuple) -> bytes | None:
    entry = _table.get(name)
    if entry is None:
        return None
    try:
        ret = entry[0](*args)
    except Exception:  # noqa: BLE001 - uWSGI prints the traceback and answers None
        log(traceback.format_exc().rstrip())
        return None
    return ret if isinstance(ret, bytes) and ret else None


def _bytes_args(args: tuple) -> tuple:
    for a in args:
        if not isinstance(a, bytes):
            raise ValueError("unable to call rpc function")
    return args


def exports(ctx: ApiContext) -> dict[str, Any]:
    def register_rpc(name: str, func: Callable[..., Any], argc: int = 0) -> bool:
        if not isinstance(name, str):
            raise TypeError(f"register_rpc() argument 1 must be str, not {type(name).__name__}")
        if not callable(func):
            raise TypeError("register_rpc() argument 2 must be callable")
        if ctx.mule_id:
            log("only the master and the workers can register RPC functions")
            raise ValueError("unable to register rpc function")
        key = name.encode()
        if len(key) >= 255:
            log("the supplied RPC name string is too long, max size is 254")
            raise ValueError("unable to register rpc function")
        if key not in _table and len(_table) >= _max[0]:
            raise ValueError("unable to register rpc function")
        _table[key] = (func, argc)
        if ctx.worker_id == 0:
            log(f'registered shared/inherited RPC function "{name}"')
        else:
            log(f'registered RPC function "{name}" on worker {ctx.worker_id}')
        return True

    def rpc(node: Any, func: Any, *args: Any) -> bytes | None:
        if node not in (None, "", b""):
            raise ValueError(f"uwsgi.rpc: calling another node ({node!r}) is not supported by Imperium")
        if not isinstance(func, bytes):
            raise ValueError("unable to call rpc function")
        return _call_local(func, _bytes_args(args))

    def call(func: Any, *args: Any) -> bytes | None:
        if not isinstance(func, bytes):
            raise ValueError("unable to call rpc function")
        return _call_local(func, _bytes_args(args))

    def rpc_list() -> tuple:
        return tuple(_table)

    return {"register_rpc": register_rpc, "rpc": rpc, "call": call, "rpc_list": rpc_list}
