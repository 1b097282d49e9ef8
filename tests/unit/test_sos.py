"""vassal/services/sos.py: when the master asks its emperor for reinforcements (byte 30)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vassal.master import RUNNING
from vassal.services import sos
from vassal.services.sos import SosService


class Link:
    def __init__(self) -> None:
        self.sent = 0

    def sos(self) -> None:
        self.sent += 1


def master(link: Link | None, busy: list[int]) -> SimpleNamespace:
    workers = {i + 1: SimpleNamespace(busy_cores=b) for i, b in enumerate(busy)}
    return SimpleNamespace(state=RUNNING, sockets=["s"], link=link, n=len(busy),
                           board=SimpleNamespace(workers=workers))


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    depth = [0]
    monkeypatch.setattr(sos, "listen_queue", lambda _ls: depth[0])
    return depth


def run(service: SosService, m: SimpleNamespace, seconds: int) -> None:
    service.start(m)
    for _ in range(seconds):  # one master check a second
        service.tick(service.next_check + 0.01)


def test_backlog_sends_an_sos_every_check_while_it_lasts(queue, capfd) -> None:
    link = Link()
    queue[0] = 3
    run(SosService(backlog=2, busy_seconds=0), master(link, [0]), 3)
    assert link.sent == 3
    assert capfd.readouterr().err.count("asking Emperor for reinforcements (backlog: 3)...") == 3
    queue[0] = 1
    run(SosService(backlog=2, busy_seconds=0), master(link, [0]), 3)
    assert link.sent == 3


def test_backlog_is_not_checked_without_an_emperor(queue, capfd) -> None:
    """uWSGI checks vassal-sos-backlog only under an emperor: no line every second."""
    queue[0] = 50
    run(SosService(backlog=2, busy_seconds=0), master(None, [0]), 3)
    assert "reinforcements" not in capfd.readouterr().err


def test_overload_asks_at_most_every_n_seconds(queue, capfd) -> None:
    link = Link()
    service = SosService(backlog=0, busy_seconds=2)
    m = master(link, [1, 1])
    service.start(m)
    t = service.next_check
    for step in range(6):  # one check a second, every worker busy
        service.tick(t + step + 0.01)
    assert link.sent == 2 and service.overloaded == 6  # at t, then more than 2 s later
    m.board.workers[2].busy_cores = 0  # one idle worker: no overload
    service.tick(t + 7.01)
    assert service.overloaded == 6 and link.sent == 2
    assert "asking Emperor for reinforcements (overload: 1)..." in capfd.readouterr().err
