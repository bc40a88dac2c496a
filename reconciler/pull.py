"""Reading a whole system through its connector, shared by check and apply.

A pull is all or nothing: a failure anywhere means nothing read is trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from reconciler import snapshot
from reconciler.connectors.base import Connector, Counts
from reconciler.errors import ConnectorError, ReconcilerError
from reconciler.model import STATUS_CHANGED_AT, Identity
from reconciler.progress import Progress, Task
from reconciler.snapshot import Records


class Keyed(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T")
K = TypeVar("K", bound=Keyed)

PROGRESS_STEP = 1000
_TIME_KEY = f'"{STATUS_CHANGED_AT}"'.encode()


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


def collect_records(
    system: str, pull: Callable[[], Iterable[K]], what: str, task: Task | None = None
) -> tuple[list[K], str]:
    """`collect`, and a pull that returned an id twice (a server that ignores paging, or
    data that changed under it) is a failed pull."""
    items, error = collect(system, pull, task)
    if not error and len({item.id for item in items}) != len(items):
        return [], f"the pull returned the same {what} id twice"
    return items, error


def counted(connector: Connector, task: Task) -> None:
    """Let `task` know how many records the connector's pull will give, if it can say."""
    if isinstance(connector, Counts):
        connector.on_total = task.expect


def pull_identities(
    connector: Connector, source: str, progress: Progress
) -> tuple[list[Identity], str]:
    """Every identity of `source`, or why the pull cannot be trusted; closes `connector`."""
    try:
        task = progress.task(f"pulling identities from {source}")
        counted(connector, task)
        return collect_records(source, connector.pull_identities, "identity", task)
    finally:
        connector.close()


def merge_tombstones(
    previous: Mapping[str, Identity] | None, pulled: Sequence[Identity]
) -> Records[Identity]:
    """The new identity snapshot: what was pulled, plus previous identities now gone,
    kept with status `missing` so their accounts stay linked. A source's status time is
    kept from the previous snapshot while the status stays the same (`Identity.settled`)."""
    merged = {i.id: i for i in pulled}
    if isinstance(previous, snapshot.Records):
        for identity in pulled:
            line = previous.lines.get(identity.id)
            # Most lines hold no status time on either side: leave those alone, unparsed.
            if line is not None and (identity.status_changed_at or _TIME_KEY in line):
                merged[identity.id] = identity.settled(_previous_record(previous, identity.id))
    for identity_id in (previous or {}).keys() - merged.keys():
        assert previous is not None
        # Gone from the source: it gives no time for that; the check that saw it is all.
        merged[identity_id] = previous[identity_id]._replace(status="missing", status_changed_at="")
    return snapshot.identity_records(merged.values())


def _previous_record(previous: Records[Identity], identity_id: str) -> dict[str, Any] | None:
    """An identity's record as the snapshot line holds it (with fields the decoded
    Identity may not carry), or None when it was not in the snapshot."""
    if identity_id not in previous:
        return None
    try:
        record = orjson.loads(previous.line(identity_id)[2:])
    except orjson.JSONDecodeError:
        return previous[identity_id].to_record()
    return record if isinstance(record, dict) else None
