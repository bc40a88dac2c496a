"""Wall time and memory high-water mark per phase of a run (for `--format json` and the
benchmark)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PHASES = ("read_previous", "pull", "correlate", "diff", "policy", "report", "write", "commit")


def max_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class Phases:
    """Accumulates time per phase; a phase may be entered many times (once per app)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.rss: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.rss[name] = max_rss_mib()

    def to_data(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"seconds": round(self.seconds[name], 4), "max_rss_mib": round(self.rss[name], 1)}
            for name in sorted(self.seconds, key=lambda n: PHASES.index(n) if n in PHASES else 99)
        }
