"""Which process of the instance this is (its role): the master, a worker, a mule or a spooler.

The uWSGI API answers by process: ``mule_id()`` is the mule's number in a mule and 0
elsewhere, ``i_am_the_spooler()`` is true only in a spooler, a uWSGI signal is read from the
pipe of the process that runs it, only the master and the workers may register signal
handlers. The master is the default; each child sets its role right after the fork.
"""

from __future__ import annotations

import enum
import os
import signal
import sys
from dataclasses import dataclass

from vassal.api import context
from vassal.wsgi import print_app_exception


class Role(enum.Enum):
    MASTER = "master"
    WORKER = "worker"
    MULE = "mule"
    SPOOLER = "spooler"


@dataclass
class Me:
    role: Role = Role.MASTER
    worker_id: int = 0
    mule_id: int = 0
    spooler_slot: int = -1  # index in the spooler table


ME = Me()

#: uWSGI's exit code of a process that ends itself on purpose (core/uwsgi.h UWSGI_END_CODE)
END_CODE = 30


def become(role: Role, *, worker_id: int = 0, mule_id: int = 0, spooler_slot: int = -1) -> None:
    """Called in a freshly forked child."""
    ME.role = role
    ME.worker_id = worker_id
    ME.mule_id = mule_id
    ME.spooler_slot = spooler_slot
    context.ctx.worker_id = worker_id
    context.ctx.mule_id = mule_id


def end_me(code: int = END_CODE) -> None:
    """Leave this child process now (uWSGI's end_me): flush the standard streams, exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a broken stream must not keep us alive
            pass
    os._exit(code)


def exit_on(*signums: int) -> None:
    """These signals end this process at once (mules and spoolers, as uWSGI's end_me)."""
    for signum in signums:
        signal.signal(signum, lambda _s, _f: end_me())


def uwsgi_module() -> object:
    """The ``uwsgi`` module the app sees (its hooks are read from it when they are needed)."""
    return sys.modules.get("uwsgi")


def run_post_fork_hook(module: object | None = None) -> None:
    """``uwsgi.post_fork_hook``, if the app set one (uwsgidecorators' @postfork does): run in
    every worker, mule and spooler right after the fork, as uWSGI's python plugin does."""
    hook = getattr(module if module is not None else uwsgi_module(), "post_fork_hook", None)
    if hook is None:
        return
    try:
        hook()
    except Exception:  # noqa: BLE001 - uWSGI clears the error and goes on
        print_app_exception()
