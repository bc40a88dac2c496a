from __future__ import annotations

from reconciler.connectors.base import Counts
from reconciler.errors import PullError
from reconciler.pull import PROGRESS_STEP, collect, collect_records, counted
from reconciler.testing.scim_server import start_scim_server
from tests.connectors.test_scim import connector


class Counting:
    def __init__(self) -> None:
        self.count = 0
        self.finished = False
        self.expected: list[int] = []

    def advance(self, count: int) -> None:
        self.count += count

    def expect(self, total: int) -> None:
        self.expected.append(total)

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


def test_a_scim_pull_tells_its_task_the_total_the_server_gives():
    with start_scim_server(token="t") as server:
        server.seed([{"userName": f"user{n}"} for n in range(5)])
        scim = connector(server, page_size=2)
        task = Counting()
        counted(scim, task)
        items, error = collect_records("app", scim.pull_accounts, "account", task)
        assert (len(items), error) == (5, "")
        assert task.expected == [5] and task.count == 5
        # A connector that cannot say leaves the task counting.
        assert not isinstance(object(), Counts)
