"""``imperium top ADDR``: a live terminal view of an emperor, on Textual.

ADDR is the emperor's stats server (``emperor-stats``): ours or uWSGI's. One line per
vassal: name, state, pid, respawns, loyal, RSS (its processes together) and requests per
second (from its own stats server), refreshed every ``--interval`` seconds (1). Keys:
``s`` changes the sort (name, RSS, req/s), ``r`` refreshes now, ``q`` quits. The reads
happen in a worker thread (emperor.top_model); the screen never waits for them.
"""

from __future__ import annotations

import argparse
import time

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from emperor.top_model import Frame, Row, TopModel

SORTS = ("name", "rss", "req/s")
COLUMNS = ("NAME", "STATE", "PID", "RESPAWNS", "LOYAL", "RSS", "REQ/S")


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


def cells(row: Row) -> tuple[str, ...]:
    return (row.name, row.state, str(row.pid), str(row.respawns), str(row.loyal),
            human_bytes(row.rss), "-" if row.rps is None else f"{row.rps:.1f}")


def sort_rows(rows: list[Row], key: str) -> list[Row]:
    if key == "rss":
        return sorted(rows, key=lambda r: (-(r.rss or 0), r.name))
    if key == "req/s":
        return sorted(rows, key=lambda r: (-(r.rps or 0.0), r.name))
    return sorted(rows, key=lambda r: r.name)


class TopApp(App):
    TITLE = "imperium top"
    CSS = "#summary { height: 1; padding: 0 1; } DataTable { height: 1fr; }"
    BINDINGS = [Binding("q", "quit", "quit"), Binding("s", "sort", "sort"),
                Binding("r", "refresh_now", "refresh")]

    def __init__(self, model: TopModel, interval: float) -> None:
        super().__init__()
        self.model = model
        self.interval = interval
        self.sort = 0
        self.frame: Frame | None = None

    def compose(self) -> ComposeResult:
        yield Static("reading the emperor...", id="summary")
        yield DataTable(zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        self.load()
        self.set_interval(self.interval, self.load)

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        frame = self.model.refresh()
        self.call_from_thread(self.show, frame)

    def show(self, frame: Frame) -> None:
        self.frame = frame
        summary = self.query_one("#summary", Static)
        if frame.error:
            summary.update(frame.error)
        else:
            loyal = sum(1 for r in frame.rows if r.loyal)
            summary.update(f"emperor {frame.emperor}  vassals {len(frame.rows)}  loyal {loyal}  "
                           f"blacklisted {frame.blacklisted}  sort {SORTS[self.sort]}  "
                           f"{time.strftime('%H:%M:%S', time.localtime(frame.at))}")
        table = self.query_one(DataTable)
        table.clear()
        for row in sort_rows(frame.rows, SORTS[self.sort]):
            table.add_row(*cells(row), key=row.name)

    def action_sort(self) -> None:
        self.sort = (self.sort + 1) % len(SORTS)
        if self.frame is not None:
            self.show(self.frame)

    def action_refresh_now(self) -> None:
        self.load()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imperium top", description="A live view of an emperor "
                                     "and its vassals.")
    parser.add_argument("address", help="the emperor's stats server (emperor-stats): HOST:PORT "
                        "or a UNIX socket path")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--vassal-stats", metavar="TEMPLATE",
                        help="where each vassal's stats server is, e.g. /run/uwsgi/{stem}.stats "
                        "({name}: the vassal name, {stem}: without extension); default: found "
                        "from the sockets its master listens on")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    if args.interval <= 0:
        print("imperium top: --interval must be positive")
        return 2
    TopApp(TopModel(args.address, args.vassal_stats), args.interval).run()
    return 0
