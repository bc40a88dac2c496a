"""How the access repo grows: a month of daily checks at one size.

A new access repo imports day 1 (day 0 of the month), is packed with `git gc`, and its
`.git` is measured. Then each day brings 1% churn (`generate.Churn`), new exports and a
real check in a fresh process; the day's check time and its `commit` and `write` phases
are recorded. At the end `.git` is measured before and after `git gc`: a scheduled check
must pack on a schedule, since git's auto-gc counts loose objects, not bytes.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import generate, runner


@dataclass(frozen=True)
class GitDay:
    """One day's check."""

    day: int
    check_seconds: float
    max_rss_mib: float
    commit_seconds: float | None  # phases.commit; None when the check reports no phases
    write_seconds: float | None  # phases.write
    plan_status: str | None
    code: str  # runner.code_digest() of the reconciler source the check ran


@dataclass(frozen=True)
class GitGrowth:
    """A month of checks and what it did to `.git`."""

    n: int
    days: tuple[GitDay, ...]
    git_mib_day0: float  # after the day-1 import and gc
    git_mib_end_before_gc: float  # as the checks left it (their auto-gc included)
    git_mib_end: float  # after gc

    @property
    def growth_mib(self) -> float:
        return self.git_mib_end - self.git_mib_day0

    def to_data(self) -> dict[str, Any]:
        checks = [d.check_seconds for d in self.days]
        commits = [d.commit_seconds for d in self.days if d.commit_seconds is not None]
        return {
            "n": self.n,
            "days": len(self.days),
            "git_mib_day0": self.git_mib_day0,
            "git_mib_end_before_gc": self.git_mib_end_before_gc,
            "git_mib_end": self.git_mib_end,
            "growth_mib": self.growth_mib,
            "check_seconds_median": statistics.median(checks),
            "check_seconds_max": max(checks),
            "commit_seconds_median": statistics.median(commits) if commits else None,
            "commit_seconds_max": max(commits) if commits else None,
            "per_day": [asdict(d) for d in self.days],
        }


def du_mib(directory: Path) -> float:
    """Disk usage of a directory tree in MiB, as `du` counts it (allocated blocks)."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total / 2**20


def wait_for_auto_gc(repo: Path, timeout: float = 600.0) -> None:
    """Wait until a `git gc --auto` that a commit started in the background has ended.

    A check's commits may detach an auto-gc (git counts loose objects); a second gc
    refuses to start while it runs ("gc is already running").
    """
    lock = repo / ".git" / "gc.pid"
    deadline = time.monotonic() + timeout
    while lock.exists() and time.monotonic() < deadline:
        try:
            pid = int(lock.read_text(encoding="utf-8").split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return  # its process is gone: a stale lock, which `gc --force` overrides
        time.sleep(0.5)


def _gc(repo: Path) -> None:
    wait_for_auto_gc(repo)
    runner.git(repo, "gc", "--quiet", "--force")


def _phase_seconds(result: runner.CheckResult, name: str) -> float | None:
    phases = result.phases or {}
    return phases[name]["seconds"] if name in phases else None


def measure(
    n: int,
    day1: generate.Day,
    seed: int,
    days: int,
    work: Path,
    progress: Callable[[str], None] = lambda _: None,
) -> GitGrowth:
    """Import `day1` in a new access repo, then run `days` daily checks with churn."""
    repo = runner.make_access_repo(work / "access")
    logs = work / "logs"
    generate.write_exports(day1, repo / "exports")
    first = runner.run_check(repo, logs, "day00")
    runner.require_success(first, f"git growth N={n} import")
    _gc(repo)
    day0 = du_mib(repo / ".git")
    state = day1
    measured: list[GitDay] = []
    for index in range(1, days + 1):
        state = generate.next_day(state, seed, index + 1)
        generate.write_exports(state, repo / "exports")
        result = runner.run_check(repo, logs, f"day{index:02d}")
        runner.require_success(result, f"git growth N={n} day {index}")
        measured.append(
            GitDay(
                day=index,
                check_seconds=result.wall_seconds,
                max_rss_mib=result.max_rss_mib,
                commit_seconds=_phase_seconds(result, "commit"),
                write_seconds=_phase_seconds(result, "write"),
                plan_status=result.app.get("plan_status"),
                code=result.code,
            )
        )
        progress(f"git growth N={n}: day {index}/{days}: check {result.wall_seconds:.1f} s")
    wait_for_auto_gc(repo)
    before_gc = du_mib(repo / ".git")
    _gc(repo)
    return GitGrowth(
        n=n,
        days=tuple(measured),
        git_mib_day0=day0,
        git_mib_end_before_gc=before_gc,
        git_mib_end=du_mib(repo / ".git"),
    )
