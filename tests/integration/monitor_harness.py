"""Running one imperial monitor in-process, against the real service, and recording what it says.

The monitor runs in its own asyncio loop on a background thread, exactly as the emperor
would run it; every event is recorded with its arrival time. Tests poll the record with
deadlines.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from emperor.events import Event, Monitor, MonitorContext, Sync, Touch
from tests.conftest import wait_until


class LogRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class MonitorRun:
    monitor: Monitor
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    logs: LogRecorder
    events: list[tuple[float, Event]] = field(default_factory=list)
    task: asyncio.Task | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, _monitor: Monitor, event: Event) -> None:
        with self.lock:
            self.events.append((time.monotonic(), event))

    def all(self, kind: type | None = None) -> list[Event]:
        with self.lock:
            return [e for _, e in self.events if kind is None or isinstance(e, kind)]

    def mark(self) -> int:
        """Index of the next event: wait for things that happen after this point."""
        with self.lock:
            return len(self.events)

    def since(self, mark: int, kind: type | None = None) -> list[Event]:
        with self.lock:
            return [e for _, e in self.events[mark:] if kind is None or isinstance(e, kind)]

    def wait(self, predicate: Callable[[list[Event]], object], mark: int = 0, timeout: float = 10.0,
             message: str = "monitor event") -> object:
        return wait_until(lambda: predicate(self.since(mark)), timeout=timeout,
                          message=f"{message}; events so far: {self.since(mark)!r}; "
                                  f"log: {self.logs.text()[-1500:]}")

    def wait_sync(self, names: set[str], mark: int = 0, timeout: float = 10.0) -> Sync:
        """The first Sync after ``mark`` that lists exactly ``names``."""
        def found(events: list[Event]) -> Sync | None:
            for e in events:
                if isinstance(e, Sync) and e.names == frozenset(names):
                    return e
            return None
        return self.wait(found, mark, timeout, message=f"Sync({sorted(names)})")  # type: ignore[return-value]

    def touches(self, mark: int = 0, name: str | None = None) -> list[Touch]:
        return [e for e in self.since(mark, Touch) if name is None or e.name == name]  # type: ignore[misc]

    def stop(self) -> None:
        """Cancel the monitor and wait until it has wound down (idempotent)."""
        if self.loop.is_closed():
            return
        try:
            if self.task is not None:
                self.loop.call_soon_threadsafe(self.task.cancel)
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed in between
            pass
        self.thread.join(timeout=10)


def start_monitor(cls: type[Monitor], arg: str, ctx: MonitorContext | None = None) -> MonitorRun:
    ctx = ctx or MonitorContext(freq=1.0)
    logs = LogRecorder()
    logger = logging.getLogger(f"imperium.test.{cls.__name__}.{id(logs)}")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(logs)
    logger.propagate = True
    ctx.log = logger
    loop = asyncio.new_event_loop()
    started = threading.Event()
    run: MonitorRun

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()
        # let the cancelled monitor unwind (close its connections) before the loop goes
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=5))
        loop.close()

    thread = threading.Thread(target=main, name=f"monitor-{cls.scheme}", daemon=True)
    run = MonitorRun(monitor=None, loop=loop, thread=thread, logs=logs)  # type: ignore[arg-type]
    run.monitor = cls(arg, run.record, ctx)
    thread.start()
    assert started.wait(30), "the monitor's event loop thread did not start"

    def create() -> None:
        run.task = loop.create_task(run.monitor.start())

    loop.call_soon_threadsafe(create)
    return run


@pytest.fixture(name="monitors")
def monitors_fixture() -> Iterator[Callable[..., MonitorRun]]:
    """``monitors(cls, arg, ctx)`` starts a monitor; all are stopped at teardown."""
    runs: list[MonitorRun] = []

    def factory(cls: type[Monitor], arg: str, ctx: MonitorContext | None = None) -> MonitorRun:
        run = start_monitor(cls, arg, ctx)
        runs.append(run)
        return run

    try:
        yield factory
    finally:
        for run in runs:
            run.stop()
