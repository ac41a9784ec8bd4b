"""Live progress for long work (rich), quiet when output is not a terminal."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def progress_bar(description: str, total: int):
    """Yields advance(completed) to set how much is done."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=False,
    )
    with progress:
        task_id = progress.add_task(description, total=total)

        def advance(completed: int) -> None:
            progress.update(task_id, completed=completed)

        yield advance
