"""An instance run by systemd (``Type=notify``): the master speaks ``$NOTIFY_SOCKET``.

As uWSGI's core/notify.c: ``STATUS=initializing uWSGI`` as the instance starts (before its
config is acted on), ``STATUS=uWSGI is ready`` with ``READY=1`` when the master loop
starts (before the workers are forked), and again in each new incarnation after a reload
(the master re-execs itself: same pid, the variable kept). Besides uWSGI: ``RELOADING=1``
when a reload begins and ``STOPPING=1`` when a shutdown does. Under an emperor the variable
is never set (the emperor removes it), so only a service of its own speaks.
"""

from __future__ import annotations

from typing import Any

from emperor.protocol import SystemdNotify
from vassal.services import Service


def initializing() -> None:
    """``STATUS=initializing uWSGI``, what uWSGI says first (again after each re-exec)."""
    notify = SystemdNotify.from_environ(pop=False)
    if notify is not None:
        notify.send("STATUS=initializing uWSGI")
        notify.close()


class SystemdService(Service):
    name = "sd_notify"

    def __init__(self, notify: SystemdNotify) -> None:
        self.notify = notify

    @classmethod
    def from_environ(cls) -> SystemdService | None:
        notify = SystemdNotify.from_environ(pop=False)
        return cls(notify) if notify is not None else None

    def start(self, master: Any) -> None:
        self.notify.send("STATUS=uWSGI is ready", "READY=1")

    def stopping(self, reload: bool) -> None:
        self.notify.send("RELOADING=1" if reload else "STOPPING=1")

    def in_worker(self, wid: int) -> None:
        self.notify.close()

    def finish(self) -> None:
        self.notify.close()
