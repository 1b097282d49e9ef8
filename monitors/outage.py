"""What a network monitor does while its source is unreachable.

Two small pieces shared by pg, mongodb, amqp and zmq: an exponential ``Backoff`` between
reconnection attempts, and an ``Outage`` tracker that reports ``Unavailable`` once when the
source goes away and ``Available`` once when it comes back, so the emperor hears about
transitions rather than about every failed retry.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from emperor.events import Available, Event, Unavailable


class Backoff:
    """Delays of initial, initial*factor, ... capped at ``maximum``, with +-``jitter`` spread.

    The jitter keeps a cluster of emperors from hammering a database that just came back
    all in the same instant.
    """

    def __init__(self, initial: float = 0.2, maximum: float = 10.0, factor: float = 2.0,
                 jitter: float = 0.1) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(delay, 0.0)

    def reset(self) -> None:
        self._next = self.initial


class Outage:
    """Turns a stream of failures and successes into Unavailable/Available transitions."""

    def __init__(self, emit: Callable[[Event], None], log: logging.Logger, prefix: str) -> None:
        self._emit = emit
        self._log = log
        self._prefix = prefix
        self.down = False
        self.reason: str | None = None

    def failed(self, reason: str) -> None:
        """The source could not be read; the first failure of an outage is reported."""
        if not self.down:
            self.down = True
            self.reason = reason
            self._log.warning("%s source unavailable, its vassals are left running: %s",
                              self._prefix, reason)
            self._emit(Unavailable(reason))
        elif reason != self.reason:
            self.reason = reason
            self._log.warning("%s still unavailable: %s", self._prefix, reason)
        else:
            self._log.debug("%s still unavailable: %s", self._prefix, reason)

    def recovered(self) -> None:
        """The source answers again; reported only if it had been reported down."""
        if self.down:
            self.down = False
            self.reason = None
            self._log.warning("%s source available again", self._prefix)
            self._emit(Available())
