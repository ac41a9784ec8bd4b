"""The one progress display for long work: rich on stderr, one row per thing being done.

A row has a label, a status word, elapsed time, an optional bar (when its total is
known) and a free-text step. Three shapes use it:

    with progress_bar("nodes joined", total=4) as advance: advance(2)   # a counter
    with Steps("launching demo") as steps: steps.step("master pending")  # a step log
    with Board() as board: row = board.row("master"); row.update(status="running")

On a terminal the rows are live; otherwise a Board prints one plain line per status
change when asked to (`plain=True`, the bake) and stays quiet by default.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .terminal import safe_text


class Row:
    """One line of a Board."""

    def __init__(self, board: Board, task: TaskID, label: str) -> None:
        self.board, self.task, self.label = board, task, label
        self.status, self.step, self.finished = "waiting", "", False

    def update(self, *, status: str | None = None, step: str | None = None,
               completed: float | None = None, finished: bool = False) -> None:
        # a step may quote the cluster (Packer's build output, drain states): shown escaped
        status = None if status is None else safe_text(status, one_line=True)
        step = None if step is None else safe_text(step, one_line=True)
        changed = (status is not None and status != self.status) or (
            step is not None and step != self.step)
        self.status = self.status if status is None else status
        self.step = self.step if step is None else step
        fields: dict[str, Any] = {"status": self.status, "step": self.step}
        if completed is not None:
            fields["completed"] = completed
        self.board.progress.update(self.task, **fields)
        if finished and not self.finished:
            self.finished = True
            self.board.progress.stop_task(self.task)
        if changed:
            self.board.plain_line(self)

    def restart_clock(self) -> None:
        self.board.progress.reset(self.task, start=True, status=self.status, step=self.step)


class Board:
    """Rows of progress on stderr (live on a terminal)."""

    def __init__(self, enabled: bool | None = None, plain: bool = False) -> None:
        self.console = Console(stderr=True)
        live = self.console.is_terminal if enabled is None else enabled
        self.plain = plain and not live
        self.progress = Progress(
            TextColumn("{task.description}"), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), BarColumn(bar_width=20),
            TextColumn("{task.fields[step]}", markup=False),
            console=self.console, disable=not live, transient=False)

    def __enter__(self) -> Board:
        self.progress.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.__exit__(kind, exc, tb)

    def row(self, label: str, total: float | None = None, status: str = "waiting") -> Row:
        task = self.progress.add_task(label, total=total, status=status, step="")
        row = Row(self, task, label)
        row.status = status
        return row

    def note(self, text: str) -> None:
        """A line printed above the live rows (nothing when not on a terminal)."""
        if not self.progress.disable:
            self.progress.console.print(safe_text(text), markup=False, highlight=False)

    def plain_line(self, row: Row) -> None:
        if self.plain:
            print(f"[{row.label}] {row.status}: {row.step}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Any]:
    """Yields advance(completed) to set how much is done (quiet when not a terminal)."""
    with Board() as board:
        row = board.row(description, total=total, status="")

        def advance(completed: int) -> None:
            row.update(completed=completed)

        yield advance


class Steps:
    """A log of states, each with the time since the start ('slaves pending (32)')."""

    def __init__(self, title: str, enabled: bool | None = None) -> None:
        self.board = Board(enabled=sys.stderr.isatty() if enabled is None else enabled)
        self.title = title
        self.started = time.monotonic()
        self.row: Row | None = None

    def __enter__(self) -> Steps:
        self.board.__enter__()
        self.row = self.board.row(self.title, status="")
        return self

    def step(self, text: str) -> None:
        assert self.row is not None
        self.board.note(f"{time.monotonic() - self.started:6.1f}s {text}")
        self.row.update(step=text)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.board.__exit__(kind, exc, tb)
