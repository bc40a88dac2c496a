"""Progress on a terminal: a live line per pull and per apply, nothing elsewhere.

Logs in CI and piped output stay plain (GitHub Actions gets `::group::` folding from
`output.py` instead).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Task(Protocol):
    # Count `count` more items done.
    def advance(self, count: int) -> None: ...

    # The system says the task has `total` items.
    def expect(self, total: int) -> None: ...

    # The task has ended (successfully or not); its line stops moving.
    def done(self) -> None: ...


class Progress(Protocol):
    # Start a task, of `total` items if known.
    def task(self, description: str, total: int | None = None) -> Task: ...


class _Silent:
    def advance(self, count: int) -> None:
        pass

    def expect(self, total: int) -> None:
        pass

    def done(self) -> None:
        pass


class NoProgress:
    def task(self, description: str, total: int | None = None) -> Task:
        return _Silent()


class _RichTask:
    def __init__(self, bar: Any, task_id: Any) -> None:
        self.bar = bar
        self.task_id = task_id

    def advance(self, count: int) -> None:
        self.bar.advance(self.task_id, count)

    def expect(self, total: int) -> None:
        self.bar.update(self.task_id, total=total)

    def done(self) -> None:
        completed = self.bar.tasks[self.task_id].completed
        self.bar.update(self.task_id, total=completed, completed=completed)


class RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bar

        self.bar = Bar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )

    def task(self, description: str, total: int | None = None) -> Task:
        return _RichTask(self.bar, self.bar.add_task(description, total=total))


def on_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("GITHUB_ACTIONS") != "true"


@contextmanager
def progress() -> Iterator[Progress]:
    """A live progress display when stderr is a terminal, else one that shows nothing."""
    if not on_terminal():
        yield NoProgress()
        return
    shown = RichProgress()
    with shown.bar:
        yield shown
