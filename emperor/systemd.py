"""The emperor as a systemd ``Type=notify`` service: what it tells ``$NOTIFY_SOCKET``.

- ``STATUS=initializing uWSGI`` as it starts, as uWSGI's emperor does.
- ``READY=1`` once every imperial monitor has done its first scan (a full listing, or
  "unavailable": an unreachable source must not hold the start forever), so that units
  ordered after the emperor start when the vassals known at boot are being started. A
  monitor without a listing to scan (amqp, zmq) is done as soon as it runs.
- ``STATUS=`` with the vassal counts whenever they change (uWSGI's "The Emperor is
  governing N vassals", then how many are ready and blacklisted).
- ``RELOADING=1`` on SIGHUP (every vassal reloaded), then ``READY=1`` again when no vassal
  is still reloading; ``STOPPING=1`` when the royal death begins; ``STATUS=The Emperor is
  buried.`` at the end, as uWSGI.
- ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` (when ``$WATCHDOG_PID`` is unset or ours),
  sent by the loop itself: an emperor whose loop is stuck stops feeding the watchdog and
  systemd restarts it (``WatchdogSec=``).

The variables are removed from the environment so that vassals never speak in our name.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from emperor.lifecycle import Phase
from emperor.logs import log
from emperor.protocol import SystemdNotify

#: seconds after which READY=1 is sent even if a monitor has not finished its first scan
SETTLE_LIMIT = 60.0
#: seconds between two looks at the vassal counts for STATUS=
STATUS_PERIOD = 1.0


class Notifier:
    def __init__(self, notify: SystemdNotify, watchdog_usec: int | None) -> None:
        self.notify = notify
        self.watchdog = watchdog_usec / 1e6 if watchdog_usec else None
        self.status = ""
        self.reloading = False
        self.ready_sent = False
        self.next_check = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_environ(cls) -> Notifier | None:
        notify = SystemdNotify.from_environ(pop=True)
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        if notify is None:
            return None
        watchdog = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(notify, watchdog)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.notify.send("STATUS=initializing uWSGI")  # uWSGI's first word, its emperor's too
        if self.watchdog:
            self._feed(loop)

    def _feed(self, loop: asyncio.AbstractEventLoop) -> None:
        self.notify.send("WATCHDOG=1")
        assert self.watchdog is not None
        self._timer = loop.call_later(self.watchdog / 2, self._feed, loop)

    def settled(self, status: str) -> None:
        """Every monitor has done its first scan."""
        if not self.ready_sent:
            self.ready_sent = True
            self.status = status
            self.notify.send("READY=1", f"STATUS={status}")

    def reload(self) -> None:
        self.reloading = True
        self.notify.send("RELOADING=1", "STATUS=reloading every vassal")
        self.status = ""

    def stopping(self) -> None:
        self.notify.send("STOPPING=1", "STATUS=The Emperor is stopping its vassals")
        self.status = ""

    def buried(self) -> None:
        self.notify.send("STATUS=The Emperor is buried.")
        self.close()

    def tick(self, status: Callable[[], str], still_reloading: Callable[[], bool],
             now: float) -> None:
        """From the emperor's periodic check, once a second at most (the counts walk every
        vassal): READY after a reload, STATUS on change."""
        if not self.ready_sent or now < self.next_check:
            return
        self.next_check = now + STATUS_PERIOD
        if self.reloading and not still_reloading():
            self.reloading = False
            text = status()
            self.status = text
            self.notify.send("READY=1", f"STATUS={text}")
            return
        text = status()
        if text != self.status:
            self.status = text
            self.notify.send(f"STATUS={text}")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.notify.close()


def status_line(vassals: list, blacklisted: int) -> str:
    """uWSGI's sentence (vassals with a process), then the ready and blacklisted counts."""
    alive = ready = 0
    for v in vassals:
        if v.pid > 0 and not v.exited:
            alive += 1
            if v.life.ready:
                ready += 1
    return f"The Emperor is governing {alive} vassals ({ready} ready, {blacklisted} blacklisted)"


def any_reloading(vassals: list) -> bool:
    return any(v.life.phase is Phase.RELOADING for v in vassals)


def log_not_settled(pending: list[str]) -> None:
    log(f"[emperor] monitors without a first scan after {int(SETTLE_LIMIT)}s: {', '.join(pending)}; "
        "telling systemd we are ready anyway")
