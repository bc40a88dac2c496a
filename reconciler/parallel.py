"""Many documents read on every core.

A year of history holds tens of thousands of plans and journals (100 MB of YAML), and
the strict reader (`yamlio`) and the schema checks spend their time in Python: one core
reads about 3 MB a second. A batch big enough to pay for starting workers is split
between this process and workers started fresh (`python -m reconciler.parallel`:
nothing of this process is copied into them or run again in them, so neither threads
waiting on git here nor the caller's own main module matter). Each document is read by
the same function, so with the same result or the same error, as it would be here.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    with reading(read, documents, workers=workers) as results:
        return results()


@contextlib.contextmanager
def reading(
    read: Callable[[bytes, str], T],
    documents: Sequence[Document],
    *,
    workers: int | None = None,
    meanwhile: bool = False,
) -> Iterator[Callable[[], list[T | ReconcilerError]]]:
    """`read_all`, started now and collected by calling what it yields, so that this
    process can do other work while the workers read. `meanwhile`: the caller has work
    of its own for this core, so every part goes to a worker (with one core to spare,
    one worker reads them all)."""
    count = workers if workers is not None else cores()
    small = len(documents) < 2 or sum(len(raw) for raw, _ in documents) < PARALLEL_ABOVE
    if count < 2 or small:
        yield lambda: _read_here(read, documents)
        return
    parts = _split(documents, count - 1 if meanwhile else count)
    here, there = ([], parts) if meanwhile else (parts[0], parts[1:])
    with (
        tempfile.TemporaryDirectory(prefix="reconciler-") as scratch,
        contextlib.ExitStack() as held,
    ):
        started = [
            _start(read, part, Path(scratch) / str(number), held)
            for number, part in enumerate(there)
        ]

        def results() -> list[T | ReconcilerError]:
            found = _read_here(read, here)
            for worker, part in zip(started, there, strict=True):
                found += _results(worker, read, part)
            return found

        yield results


@dataclass
class _Worker:
    process: subprocess.Popen[bytes] | None  # None: it could not be started
    answer: Path  # where it writes what it read


def _start(
    read: Callable[[bytes, str], T],
    documents: Sequence[Document],
    scratch: Path,
    held: contextlib.ExitStack,
) -> _Worker:
    """A worker process reading `documents` with `read` (pickled, by its module and
    name), through files named from `scratch`: nothing here has to feed it while this
    process reads its own share. `held` stops the worker if this process stops waiting
    for it."""
    sent, answer = scratch.with_suffix(".in"), scratch.with_suffix(".out")
    sent.write_bytes(pickle.dumps((read, list(documents)), protocol=pickle.HIGHEST_PROTOCOL))
    with sent.open("rb") as feed, answer.open("wb") as out:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=feed, stdout=out, stderr=subprocess.DEVNULL
            )
        except OSError:
            return _Worker(None, answer)
    held.callback(process.wait)
    held.callback(process.kill)
    return _Worker(process, answer)


def _results(
    worker: _Worker, read: Callable[[bytes, str], T], documents: Sequence[Document]
) -> list[T | ReconcilerError]:
    """What the worker read; a worker that failed (no memory, no interpreter) leaves
    its documents to be read here."""
    if worker.process is None or worker.process.wait() != 0:
        return _read_here(read, documents)
    results: list[T | ReconcilerError] = pickle.loads(worker.answer.read_bytes())
    return results


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


def _work() -> None:
    """A worker: read what `_start` sent on stdin, answer on stdout."""
    read, documents = pickle.load(sys.stdin.buffer)
    sys.stdout.buffer.write(pickle.dumps(_read_here(read, documents), pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    _work()
