"""Many documents read on every core.

A year of history holds tens of thousands of plans and journals (100 MB of YAML), and
the strict reader (`yamlio`) and the schema checks spend their time in Python: one core
reads about 3 MB a second. A batch big enough to pay for starting workers is split
between this process and workers started fresh (`spawn`: nothing of this process is
copied into them, so threads waiting on git here do not matter). Each document is read
by the same function, so with the same result or the same error, as it would be here.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from reconciler.errors import ReconcilerError

T = TypeVar("T")
Document = tuple[bytes, str]  # the raw file and the name its errors give

# Below this many bytes a batch is read here: starting a worker costs about a tenth of
# a second, the time to read a third of a megabyte.
PARALLEL_ABOVE = 4 * 1024 * 1024


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def read_all(
    read: Callable[[bytes, str], T],
    documents: Sequence[Document],
    *,
    workers: int | None = None,
) -> list[T | ReconcilerError]:
    """`read(raw, name)` of each document, or the ReconcilerError it raised, in the
    order given. `read` must be a module-level function (workers import it)."""
    count = workers if workers is not None else cores()
    if count < 2 or len(documents) < 2 or sum(len(r) for r, _ in documents) < PARALLEL_ABOVE:
        return _read_here(read, documents)
    parts = _split(documents, count)
    if len(parts) < 2:
        return _read_here(read, documents)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(parts) - 1, mp_context=context) as pool:
        elsewhere = [pool.submit(_read_here, read, part) for part in parts[1:]]
        found = _read_here(read, parts[0])
        for future in elsewhere:
            found += future.result()
    return found


def _split(documents: Sequence[Document], count: int) -> list[Sequence[Document]]:
    """`documents` in at most `count` consecutive parts of about equal size in bytes."""
    total = sum(len(raw) for raw, _ in documents)
    parts: list[Sequence[Document]] = []
    start, held = 0, 0
    for index, (raw, _) in enumerate(documents):
        held += len(raw)
        if len(parts) < count - 1 and held >= total * (len(parts) + 1) / count:
            parts.append(documents[start : index + 1])
            start = index + 1
    parts.append(documents[start:])
    return [part for part in parts if part]


def _read_here(
    read: Callable[[bytes, str], T], documents: Sequence[Document]
) -> list[T | ReconcilerError]:
    found: list[T | ReconcilerError] = []
    for raw, name in documents:
        try:
            found.append(read(raw, name))
        except ReconcilerError as exc:
            found.append(exc)
    return found
