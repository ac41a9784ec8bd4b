"""Launch progress on stderr with rich: a spinner and one line per finished state.

Quiet when stderr is not a terminal, so scripted use sees only the result and errors.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console


class Steps:
    def __init__(self, title: str, enabled: bool | None = None) -> None:
        self.console = Console(stderr=True)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.title = title
        self.started = time.monotonic()
        self._status = None

    def __enter__(self) -> Steps:
        if self.enabled:
            self._status = self.console.status(self.title)
            self._status.start()
        return self

    def step(self, text: str) -> None:
        """A new state, e.g. 'slaves pending (32)'."""
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        self.console.print(f"[dim]{elapsed:6.1f}s[/dim] {text}")
        if self._status is not None:
            self._status.update(f"{self.title}: {text}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
