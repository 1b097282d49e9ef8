"""The one object every part of the ``uwsgi`` module reads: the instance it runs in.

Built by the master before the app is imported (``uwsgi_module.install``) and inherited by
every worker, mule and spooler through fork; the few per-process values (``worker_id``,
``mule_id``) are set in the child right after the fork. Subsystem modules keep their own
state (shared memory, tables) in their module and read the instance's facts from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


class ApiError(Exception):
    """A subsystem of the uwsgi module cannot be set up: the message is one line naming the
    option (``cache2 name=x,items=abc: items must be a number``)."""


@dataclass
class ApiContext:
    config: Any
    version: str
    numproc: int
    masterpid: int
    board: Any  # vassal.scoreboard.Scoreboard or None
    sockets: list = field(default_factory=list)
    buffer_size: int = 4096
    started_on: int = field(default_factory=lambda: int(time.time()))
    #: 0 in the master, 1..N in a worker
    worker_id: int = 0
    #: 0 unless this process is a mule
    mule_id: int = 0
    #: True in a spooler process (uWSGI refuses user locks there)
    spooler: bool = False
    #: master services (vassal.services.Service) the subsystems need, gathered by install()
    services: list = field(default_factory=list)
    #: the apps loaded in this process (vassal.wsgi.App), for uwsgi.workers()
    apps: list = field(default_factory=list)


#: the context of this process; replaced by install()
ctx = ApiContext(config=None, version="", numproc=1, masterpid=0, board=None)
