"""Documents read on several cores come back as they would be read here: same data,
same errors, same order."""

from __future__ import annotations

import shutil
import sys

import pytest

from reconciler import parallel, yamlio
from reconciler.errors import PlanError, YamlError
from reconciler.planfile import parse_plan


def documents() -> list[tuple[bytes, str]]:
    found = [(f"n: {n}\nname: doc {n}\n".encode(), f"doc-{n}.yaml") for n in range(40)]
    found[7] = (b"a: 1\na: 2\n", "duplicate.yaml")
    found[31] = (b"a: [1,\n", "broken.yaml")
    return found


def as_compared(results: list[object]) -> list[object]:
    return [(type(r).__name__, str(r)) if isinstance(r, Exception) else r for r in results]


@pytest.mark.parametrize("workers", [2, 3])
def test_reading_on_several_cores_gives_what_one_gives(monkeypatch, workers):
    monkeypatch.setattr(parallel, "PARALLEL_ABOVE", 0)
    here = parallel.read_all(yamlio.load_bytes, documents(), workers=1)
    spread = parallel.read_all(yamlio.load_bytes, documents(), workers=workers)
    assert as_compared(spread) == as_compared(here)
    assert here[0] == {"n": 0, "name": "doc 0"}
    assert isinstance(spread[7], YamlError) and spread[7].path == "duplicate.yaml"
    assert (spread[7].line, spread[7].column) == (2, 1)
    assert isinstance(spread[31], YamlError)


def test_a_plan_error_comes_back_from_a_worker_as_it_is_raised_here(monkeypatch):
    monkeypatch.setattr(parallel, "PARALLEL_ABOVE", 0)
    plans = [(b"plan: x\n", "plans/a.yaml"), (b"- not a plan\n", "plans/b.yaml")]
    here = parallel.read_all(parse_plan, plans, workers=1)
    spread = parallel.read_all(parse_plan, plans, workers=2)
    assert all(isinstance(r, PlanError) for r in spread)
    assert as_compared(spread) == as_compared(here)
    assert "plans/b.yaml" in str(spread[1])


@pytest.mark.parametrize("interpreter", ["false", "/nonexistent/python"])
def test_a_worker_that_fails_leaves_its_documents_to_be_read_here(monkeypatch, interpreter):
    monkeypatch.setattr(parallel, "PARALLEL_ABOVE", 0)
    monkeypatch.setattr(sys, "executable", shutil.which(interpreter) or interpreter)
    here = parallel.read_all(yamlio.load_bytes, documents(), workers=1)
    assert as_compared(parallel.read_all(yamlio.load_bytes, documents(), workers=2)) == (
        as_compared(here)
    )


def test_parts_are_consecutive_and_cover_every_document():
    docs = [(b"x" * size, str(n)) for n, size in enumerate([5, 1, 1, 1, 9, 2, 2, 3])]
    for count in (1, 2, 3, 5, 20):
        parts = parallel._split(docs, count)
        assert [d for part in parts for d in part] == docs
        assert 1 <= len(parts) <= count
