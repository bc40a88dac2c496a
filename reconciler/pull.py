"""Reading a whole system through its connector, shared by check and apply.

A pull is all or nothing: a failure anywhere means nothing read is trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from reconciler import snapshot
from reconciler.errors import ConnectorError, ReconcilerError
from reconciler.model import Identity
from reconciler.progress import Task
from reconciler.snapshot import Records

T = TypeVar("T")

PROGRESS_STEP = 1000


def collect(
    system: str, pull: Callable[[], Iterable[T]], task: Task | None = None
) -> tuple[list[T], str]:
    """Run a pull to the end; a failure anywhere means nothing read is trusted.
    The error message does not repeat the system's name; callers add it."""
    try:
        if task is None:
            return list(pull()), ""
        items: list[T] = []
        try:
            for item in pull():
                items.append(item)
                if len(items) % PROGRESS_STEP == 0:
                    task.advance(PROGRESS_STEP)
            task.advance(len(items) % PROGRESS_STEP)
        finally:
            task.done()
        return items, ""
    except ConnectorError as exc:
        return [], str(exc).removeprefix(f"{exc.system}: ")
    except ReconcilerError as exc:
        return [], str(exc)


def merge_tombstones(
    previous: Mapping[str, Identity] | None, pulled: Sequence[Identity]
) -> Records[Identity]:
    """The new identity snapshot: what was pulled, plus previous identities now gone,
    kept with status `missing` so their accounts stay linked."""
    merged = {i.id: i for i in pulled}
    for identity_id in (previous or {}).keys() - merged.keys():
        assert previous is not None
        merged[identity_id] = previous[identity_id]._replace(status="missing")
    return snapshot.identity_records(merged.values())
