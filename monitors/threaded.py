"""Running a blocking client library (pika, pymongo) inside an async monitor.

The library gets a dedicated daemon thread rather than the loop's default executor: the
loop of a thread may block for minutes in a consume call, and a shared pool of a handful
of workers must not be starved by monitors. Events go back to the loop only through
``Monitor.emit_threadsafe`` (ARCHITECTURE rule 1).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

#: how long a cancelled monitor waits for its thread to wind down
STOP_GRACE = 3.0


async def run_blocking(target: Callable[[threading.Event], None], name: str) -> None:
    """Run ``target(stop)`` in its own thread until it returns or this task is cancelled.

    On cancellation ``stop`` is set and the thread is expected to notice it within a short
    polling interval; we do not wait for it (it is a daemon thread). An exception escaping
    ``target`` is re-raised here.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    stop = threading.Event()

    def finish(exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)

    def main() -> None:
        error: BaseException | None = None
        try:
            target(stop)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(finish, error)
            except RuntimeError:  # the loop closed meanwhile
                pass

    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        # let the thread close its connection before we report being stopped, so that a
        # stopped monitor consumes nothing more; a wedged library call is not waited for
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(done), STOP_GRACE)
        except (TimeoutError, asyncio.CancelledError, Exception):
            pass
        raise
    finally:
        stop.set()
