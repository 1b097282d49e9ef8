"""Intervals of the vassal are monotonic: a wall-clock step changes nothing.

The app (tests/fixtures/apps/clock_step.py) shifts ``time.time()`` in the master and the
workers by the seconds written in a file; uWSGI's intervals (harakiri, idle...) must not
notice. On main they were wall-clock differences: a one-hour step forward killed every
request in progress as a harakiri and put an idle instance in cheap mode at once.
"""

from __future__ import annotations

import threading
from pathlib import Path

from tests.conftest import Procs, free_port, read_json, wait_until
from tests.fixtures.instance_helpers import APPS, get, start
from tests.integration.emperor_harness import stays

CLOCK = str(APPS / "clock_step.py")


def test_a_wall_clock_step_triggers_no_harakiri_and_no_idle(procs: Procs, tmp_path: Path) -> None:
    offset = tmp_path / "offset"
    offset.write_text("0")
    port, stats = free_port(), free_port()
    p = start(procs, "--wsgi-file", CLOCK, "--master", "-p", "1", "--harakiri", "20",
              "--idle", "30", "--stats", f"127.0.0.1:{stats}", port=port,
              env={"CLOCK_OFFSET_FILE": str(offset)})
    assert get(port)[0] == 200
    answer: list[tuple[int, bytes]] = []
    t = threading.Thread(target=lambda: answer.append(get(port, "/sleep?2.5", timeout=30)))
    t.start()
    wait_until(lambda: read_json(stats)["workers"][0]["cores"][0]["in_request"], 5,
               message="the request under way")
    offset.write_text("3600")  # one hour forward, in the middle of the request
    t.join(30)
    assert answer and answer[0][0] == 200, procs.output(p)[-2000:]
    stays(lambda: "HARAKIRI" not in procs.output(p) and "inactive" not in procs.output(p), 2.0,
          "no harakiri and no idle after a wall-clock step")
    assert get(port)[0] == 200


def test_a_wall_clock_step_kills_no_user_harakiri_nor_spooler_harakiri(procs: Procs, tmp_path: Path) -> None:
    """uwsgi.set_user_harakiri (@harakiri) and spooler-harakiri deadlines are monotonic: on
    main they were wall time, and a step forward SIGKILLed the worker and the spooler."""
    offset = tmp_path / "offset"
    offset.write_text("0")
    port = free_port()
    p = start(procs, "--wsgi-file", CLOCK, "--master", "-p", "1", "--spooler", str(tmp_path / "spool"),
              "--spooler-frequency", "1", "--spooler-harakiri", "20", port=port,
              env={"CLOCK_OFFSET_FILE": str(offset)})
    assert get(port, "/spool?3")[0] == 200
    wait_until(lambda: "managing request" in procs.output(p), 10, message="the spooler running the job")
    answer: list[tuple[int, bytes]] = []
    t = threading.Thread(target=lambda: answer.append(get(port, "/user-harakiri?2.5", timeout=30)))
    t.start()
    wait_until(lambda: (tmp_path / "offset.armed").exists(), 10, message="the user harakiri set")
    offset.write_text("3600")  # one hour forward, with both deadlines under way
    t.join(30)
    assert answer and answer[0][0] == 200, procs.output(p)[-2000:]
    wait_until(lambda: (tmp_path / "offset.done").exists(), 15,
               message=f"the spooled job done; log:\n{procs.output(p)[-2000:]}")
    assert "HARAKIRI" not in procs.output(p), procs.output(p)[-2000:]
