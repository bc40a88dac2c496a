from __future__ import annotations

from reconciler.errors import PullError
from reconciler.pull import PROGRESS_STEP, collect


class Counting:
    def __init__(self) -> None:
        self.count = 0
        self.finished = False

    def advance(self, count: int) -> None:
        self.count += count

    def done(self) -> None:
        self.finished = True


def test_collect_reports_every_item_and_finishes():
    task = Counting()
    items, error = collect("wiki", lambda: iter(range(PROGRESS_STEP * 2 + 7)), task)
    assert (len(items), error) == (PROGRESS_STEP * 2 + 7, "")
    assert task.count == len(items) and task.finished


def test_a_failed_pull_still_finishes_its_task_and_returns_nothing():
    def pull():
        yield 1
        raise PullError("wiki", "page 2 failed")

    task = Counting()
    items, error = collect("wiki", pull, task)
    assert items == [] and error == "page 2 failed"
    assert task.finished
