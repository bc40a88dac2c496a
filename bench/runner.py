"""Run the real `reconciler check` on generated data, in a temporary access repo.

For one size N: an access repo with one identity source `corp` and one app `app`, both
`type: file`; day 1's exports and a check (the initial import), then day 2's exports and
the measured check. The check runs as `python -m reconciler check --format json` in a
fresh process, so its wall time includes interpreter start-up and imports, exactly as
a scheduled job pays them, and its peak memory is its own (`measure.run_measured`).
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.generate import ExportFiles
from bench.measure import Measured, run_measured

IDENTITY_SOURCE = "corp"
APP = "app"
CONFIG = f"""\
# Written by the benchmark (bench/runner.py).
version: 1
forge:
  type: local
defaults:
  mode: disable
identity_sources:
  {IDENTITY_SOURCE}:
    type: file
    path: exports/identities.json
apps:
  {APP}:
    type: file
    path: exports/accounts.json
"""


def config_head(written_by: str, identities: str, source: str = IDENTITY_SOURCE) -> list[str]:
    """The lines of a benchmark's reconciler.yaml up to `apps:`: the local forge and one
    file identity source reading `identities`; the caller adds its apps."""
    return [
        f"# Written by the benchmark ({written_by}).",
        "version: 1",
        "forge:",
        "  type: local",
        "defaults:",
        "  mode: disable",
        "identity_sources:",
        f"  {source}:",
        "    type: file",
        f"    path: {identities}",
        "apps:",
    ]


# Guards loose enough that a day's leavers (0.3% of accounts) give an open plan: the
# benchmark measures the path that writes and proposes a plan, not a blocked check.
POLICY = f"""\
description: Benchmark policy
apps: ["*"]
identity_source: {IDENTITY_SOURCE}
match:
  - account: email
    identity: email
  - account: username
    identity: username
deprovision:
  when: [deprovisioned, suspended, missing]
  mode: disable
protected:
  accounts: ["breakglass-*"]
unmatched: report
guards:
  max_per_run: 1000000
  max_fraction: 1.0
  max_identity_shrink: 0.1
  allow_blocked_plans: []
approvals:
  min_approvals: 1
  reviewers: []
"""
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "reconciler bench",
    "GIT_AUTHOR_EMAIL": "bench@reconciler.invalid",
    "GIT_COMMITTER_NAME": "reconciler bench",
    "GIT_COMMITTER_EMAIL": "bench@reconciler.invalid",
}


class BenchError(Exception):
    """The benchmark could not measure what it set out to measure."""


def code_digest() -> str:
    """A digest of the reconciler package's source, to show which code a check ran.

    People may edit the package while a long run goes on; checks of one run that ran
    different code are not comparable, and the report says so.
    """
    import reconciler

    package = Path(reconciler.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".j2", ".json", ".yaml"):
            digest.update(str(path.relative_to(package)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class CheckResult:
    """One `reconciler check` run: what it cost and what it said."""

    wall_seconds: float
    max_rss_mib: float
    exit_code: int
    output: Mapping[str, Any]
    stderr: str
    code: str = ""  # code_digest() when the check started

    @property
    def phases(self) -> dict[str, dict[str, float]] | None:
        """Per-phase `{"seconds", "max_rss_mib"}` from the check's JSON, if it has them."""
        timings = self.output.get("timings")
        phases = timings.get("phases") if isinstance(timings, dict) else None
        if not isinstance(phases, dict) or not phases:
            return None
        return {
            str(name): {
                "seconds": float(figures.get("seconds", 0.0)),
                "max_rss_mib": float(figures.get("max_rss_mib", 0.0)),
            }
            for name, figures in phases.items()
            if isinstance(figures, dict)
        }

    @property
    def app(self) -> Mapping[str, Any]:
        """The app's entry in the check's JSON output."""
        for entry in self.output.get("apps", []):
            if entry.get("app") == APP:
                return dict(entry)
        return {}

    def to_data(self) -> dict[str, Any]:
        app = self.app
        return {
            "wall_seconds": self.wall_seconds,
            "max_rss_mib": self.max_rss_mib,
            "exit_code": self.exit_code,
            "plan": app.get("plan"),
            "plan_status": app.get("plan_status"),
            "summary": app.get("summary"),
            "phases": self.phases,
            "code": self.code,
        }


@dataclass(frozen=True)
class SizeResult:
    """The measured day-2 check at one size, with the floor it is compared to."""

    n: int
    accounts: int
    identities: int
    grants: int
    export_bytes: int
    floor_seconds: float
    day1: CheckResult
    day2: CheckResult
    extra: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accounts": self.accounts,
            "identities": self.identities,
            "grants": self.grants,
            "export_mib": self.export_bytes / 2**20,
            "floor_seconds": self.floor_seconds,
            "day1_check": self.day1.to_data(),
            "check": self.day2.to_data(),
            **self.extra,
        }


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with the benchmark's identity; its output."""
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} in {repo} failed: {done.stderr.strip()}")
    return done.stdout


def make_access_repo(repo: Path) -> Path:
    """A new access repo at `repo`: config, policy, exports/ ignored, one commit."""
    repo.mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "exports").mkdir()
    (repo / "reconciler.yaml").write_text(CONFIG, encoding="utf-8")
    (repo / "policies" / "default.yaml").write_text(POLICY, encoding="utf-8")
    # Exports stand in for the apps: they are read by the check, never committed.
    (repo / ".gitignore").write_text("/exports/\n", encoding="utf-8")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "reconciler.yaml", "policies", ".gitignore")
    git(repo, "commit", "-q", "-m", "configure reconciler for the benchmark")
    return repo


def install_exports(files: ExportFiles, repo: Path) -> None:
    """Put a day's exports where reconciler.yaml points (`exports/`)."""
    for path in files.paths:
        shutil.copyfile(path, repo / "exports" / path.name)


# Where the checks' compiled bytecode is kept between runs.
BYTECODE = Path(tempfile.gettempdir()) / "reconciler-bench-bytecode"


def check_env() -> dict[str, str]:
    """The environment of a measured check: this one, with the benchmark's git identity,
    and Python's compiled bytecode kept between runs (in BYTECODE, not beside the
    sources), as an installed reconciler has it. Without it (PYTHONDONTWRITEBYTECODE,
    set on some machines) every check would compile the package anew: 0.15 s here."""
    env = {**os.environ, **GIT_IDENTITY, "PYTHONPYCACHEPREFIX": str(BYTECODE)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_check(repo: Path, log_dir: Path, name: str) -> CheckResult:
    """`python -m reconciler check --repo REPO --format json` in a fresh process."""
    argv = [sys.executable, "-m", "reconciler", "check", "--repo", str(repo), "--format", "json"]
    env = check_env()
    code = code_digest()
    measured = run_measured(argv, output_dir=log_dir, name=name, env=env)
    return _check_result(measured, name, code)


def _check_result(measured: Measured, name: str, code: str) -> CheckResult:
    stderr = measured.stderr.decode("utf-8", "replace")
    try:
        output = orjson.loads(measured.stdout) if measured.stdout.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise BenchError(
            f"{name}: the check printed something other than JSON ({exc}); stderr: {stderr[-2000:]}"
        ) from exc
    if not isinstance(output, dict):
        raise BenchError(f"{name}: the check's JSON is not an object")
    return CheckResult(
        wall_seconds=measured.wall_seconds,
        max_rss_mib=measured.max_rss_mib,
        exit_code=measured.exit_code,
        output=output,
        stderr=stderr,
        code=code,
    )


def require_plan(result: CheckResult, name: str) -> None:
    """Fail unless the check succeeded and wrote an open (not blocked) plan for the app:
    otherwise the benchmark would time a shorter path than the real one."""
    app = result.app
    problems = []
    if result.exit_code != 0:
        problems.append(f"exit code {result.exit_code}")
    if not app.get("plan"):
        problems.append("no plan for the app")
    elif app.get("plan_status") == "blocked":
        problems.append(f"the plan is blocked: {app.get('blocked_reasons')}")
    if problems:
        raise BenchError(
            f"{name}: the check did not produce a plan ({'; '.join(problems)}); "
            f"output: {dict(result.output)!r:.2000}; stderr: {result.stderr[-2000:]}"
        )


def require_success(result: CheckResult, name: str) -> None:
    """Fail unless the check exited 0."""
    if result.exit_code != 0:
        raise BenchError(
            f"{name}: the check exited {result.exit_code}; stderr: {result.stderr[-2000:]}; "
            f"output: {dict(result.output)!r:.2000}"
        )


def parse_floor(paths: Sequence[Path], trials: int = 3) -> float:
    """The least time to read and `orjson.loads` every file in `paths` (best of `trials`).

    A check must at least read yesterday's state and today's exports; parsing both days'
    data as JSON is the cheapest way to do that in Python, so it is the yardstick. The
    garbage collector is off while timing: it would otherwise scan this process's own
    large heap (the generated days) and flatter every ratio to the floor.
    """
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(trials):
            started = time.perf_counter()
            for path in paths:
                orjson.loads(path.read_bytes())
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best


CHECK_RUNS = 3


def measure_size(
    n: int,
    day1: ExportFiles,
    day2: ExportFiles,
    *,
    work: Path,
    counts: tuple[int, int, int],
    runs: int = CHECK_RUNS,
) -> SizeResult:
    """Import day 1, then measure the day-2 check, in a new access repo under `work`:
    `runs` checks, each of its own copy of the repo as day 1 left it, and the one of
    median wall time is the result (a machine shared with others varies by a quarter
    from one run to the next; the floor is the best of its trials).

    `counts` are day 2's (accounts, identities, grants).
    """
    repo = make_access_repo(work / "access")
    logs = work / "logs"
    install_exports(day1, repo)
    first = run_check(repo, logs, "day1-check")
    require_success(first, f"N={n} day-1 check")
    install_exports(day2, repo)
    measured = []
    for run in range(1, runs + 1):
        copy = work / f"day2-{run}"
        shutil.copytree(repo, copy, symlinks=True)
        # A copy's files are new to git's index: let it look at them once, as it had
        # in the original, so that the check does not pay for hashing them again.
        git(copy, "status", "--porcelain")
        result = run_check(copy, logs, f"day2-check-{run}")
        shutil.rmtree(copy)
        require_plan(result, f"N={n} day-2 check")
        measured.append(result)
    second = sorted(measured, key=lambda result: result.wall_seconds)[(runs - 1) // 2]
    accounts, identities, grants = counts
    return SizeResult(
        n=n,
        accounts=accounts,
        identities=identities,
        grants=grants,
        export_bytes=day2.total_bytes,
        floor_seconds=parse_floor([*day1.paths, *day2.paths]),
        day1=first,
        day2=second,
        extra={"check_runs_seconds": [result.wall_seconds for result in measured]},
    )
