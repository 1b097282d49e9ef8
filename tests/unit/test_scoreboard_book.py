"""The C request book (vassal/_scorefast.c) against RequestCounters, its Python reference.

Both write a request's start and end into a worker's scoreboard slot; for any sequence of
starts and ends on any cores, the two scoreboards must hold the same bytes afterwards (what
the master, the stats server and the metrics read) and the books the same counters.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import need_service
from vassal import scoreboard as SB

NCORES = 3


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    if SB._scorefast is None:  # a skip here, a failure under CI=true
        need_service("scoreboard accelerator", False,
                     "the C accelerator (vassal/_scorefast.c) was not compiled by the install")


def _board() -> SB.Scoreboard:
    board = SB.Scoreboard(2, NCORES)
    slot = board.workers[2]  # counts from before (a respawned worker goes on from them)
    slot.requests, slot.delta_requests, slot.running_time, slot.tx, slot.app_requests = 7, 3, 900, 512, 5
    slot.cores[1].requests = 4
    return board


STEPS = st.lists(st.tuples(st.integers(0, NCORES - 1), st.floats(0, 1e6, allow_nan=False),
                           st.integers(0, 10**9), st.integers(0, 10**12), st.booleans()), max_size=30)


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_the_c_book_writes_what_the_python_one_writes(steps) -> None:
    py_board, c_board = _board(), _board()
    py = SB.RequestCounters(py_board, 2, NCORES)
    book = SB.request_book(c_board, 2, NCORES)
    assert type(book) is SB._scorefast.Book
    for core, t, rt, tx, app in steps:
        py.begin(core, t)
        book.begin(core, t)
        assert bytes(py_board._mm) == bytes(c_board._mm)
        assert py.done(core, t + 1.5, rt, tx, app) == book.done(core, t + 1.5, rt, tx, app)
        assert bytes(py_board._mm) == bytes(c_board._mm)
    for name in ("requests", "delta", "running_time", "tx", "app_requests", "busy"):
        assert getattr(py, name) == getattr(book, name), name
    assert py.core_requests() == book.core_requests()


def test_a_request_shows_in_the_slot_while_it_runs() -> None:
    board = _board()
    book = SB.request_book(board, 2, NCORES)
    slot = board.workers[2]
    book.begin(1, 42.0)
    assert (slot.cores[1].in_request, slot.busy_cores, slot.status) == (42.0, 1, SB.STATUS_BUSY)
    assert book.done(1, 43.0, 1000, 10, True) == 4
    assert (slot.cores[1].in_request, slot.cores[1].requests, slot.busy_cores, slot.status) == (
        0.0, 5, 0, SB.STATUS_IDLE)
    assert (slot.requests, slot.delta_requests, slot.running_time, slot.tx, slot.avg_rt, slot.app_requests,
            slot.last_request_end) == (8, 4, 1900, 522, 1900 // 8, 6, 43.0)


def test_bad_cores_and_offsets_are_refused() -> None:
    board = _board()
    book = SB.request_book(board, 2, NCORES)
    with pytest.raises(IndexError):
        book.begin(NCORES, 1.0)
    with pytest.raises(IndexError):
        book.done(-1, 1.0, 0, 0, False)
    with pytest.raises(ValueError):
        SB._scorefast.Book(board._mm, len(board._mm), [0], 0, 4, 0, 0, 0, 0, 0, [0], 1, 0)
