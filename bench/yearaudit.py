"""`python -m bench year`: the audit commands over a generated year (bench/year.py).

Each command runs as `python -m reconciler …` in a fresh process on the generated
repository, as an auditor runs it; its time is set against a plain
`git log --name-only` over the same history, measured in the same run, so machines of
different speeds compare by ratio.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from bench import year
from bench.measure import python_env, run_measured
from bench.runner import BenchError
from reconciler import snapshot
from reconciler.audit import lookup

GIT = shutil.which("git") or "git"
# What the issue asks of each command over the year, in seconds on a 2-core machine.
TARGETS = {"person": 2.0, "app": 10.0, "evidence": 60.0, "verify": 60.0}


@dataclass(frozen=True)
class Timing:
    """One command's runs."""

    name: str
    command: str
    seconds: tuple[float, ...]
    max_rss_mib: float

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def generated(shape: year.Shape, directory: Path, progress: Callable[[str], None]) -> year.Year:
    """The year for `shape` in `directory`: reused when an earlier run made it with the
    same shape and the same generator, else made anew."""
    info = directory / "year.json"
    repo = directory / "access"
    wanted = _shape_data(shape)
    if info.exists() and repo.exists():
        saved = orjson.loads(info.read_bytes())
        if saved.get("shape") == wanted:
            progress(f"year: reusing {repo}")
            return _year_of(saved, repo)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    # One pack, each file's versions deltified against the one before, as `git gc`
    # would leave a repository that lived the year (a gc of it takes longer than
    # writing it).
    made = year.build(shape, repo, progress)
    info.write_bytes(orjson.dumps({"shape": wanted, "year": _year_data(made)}))
    return made


def _shape_data(shape: year.Shape) -> dict[str, Any]:
    data = asdict(shape)
    data["start"] = shape.start.isoformat()
    data["generator"] = fingerprint(shape)
    return data


def fingerprint(shape: year.Shape) -> str:
    """What today's generator and tool write, as the last commit id of a few days of a
    small company of the same kind (the big app sharded): a year made by code that
    writes anything else (a file, a message, a date, an order) is not reused, and
    changes to code that only reads history do not cost a new year."""
    small = replace(shape, apps=2, app_size=200, big_size=snapshot.SHARD_ABOVE + 2_000, days=4)
    with tempfile.TemporaryDirectory(prefix="year-fingerprint-") as scratch:
        made = year.build(small, Path(scratch) / "access")
        head = subprocess.run(
            ["git", "-C", str(made.repo), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        )
    return head.stdout.strip()


def _year_data(made: year.Year) -> dict[str, Any]:
    return {
        "days": made.days,
        "commits": made.commits,
        "plans": made.plans,
        "applied": made.applied,
        "leavers": list(made.leavers),
        "first_day": made.first_day.isoformat(),
        "last_day": made.last_day.isoformat(),
    }


def _year_of(saved: dict[str, Any], repo: Path) -> year.Year:
    from datetime import datetime

    data = saved["year"]
    return year.Year(
        repo=repo,
        days=data["days"],
        commits=data["commits"],
        plans=data["plans"],
        applied=data["applied"],
        leavers=tuple(data["leavers"]),
        proposed=(),
        first_day=datetime.fromisoformat(data["first_day"]),
        last_day=datetime.fromisoformat(data["last_day"]),
    )


def busiest_leaver(made: year.Year) -> str:
    """The leaver whose accounts were removed from the most apps: the longest timeline."""
    counts = Counter(email.lower() for email in made.leavers)
    if not counts:
        raise BenchError("the generated year has no leavers to audit")
    return min(counts, key=lambda email: (-counts[email], email))


def _time(name: str, argv: Sequence[str], runs: int, work: Path) -> Timing:
    seconds = []
    rss = 0.0
    for index in range(runs):
        measured = run_measured(
            list(argv), output_dir=work, name=f"{name}-{index}", env=python_env()
        )
        if measured.exit_code != 0:
            tail = measured.stderr.decode("utf-8", "replace")[-2000:]
            raise BenchError(f"{name} exited {measured.exit_code}: {tail}")
        seconds.append(measured.wall_seconds)
        rss = max(rss, measured.max_rss_mib)
    return Timing(name, " ".join(argv[2:]), tuple(seconds), rss)


def measure(
    made: year.Year, work: Path, runs: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Time `git log --name-only` and each audit command over the year."""
    repo = str(made.repo)
    since = made.first_day.strftime("%Y-%m-%d")
    until = made.last_day.strftime("%Y-%m-%d")
    person = busiest_leaver(made)
    reconciler = [sys.executable, "-m", "reconciler"]
    timings = []
    # What the first audit command of a fresh clone does once: write git's
    # commit-graph with changed-path filters (the audit keeps it current after).
    info = made.repo / ".git" / "objects" / "info"
    (info / "commit-graph").unlink(missing_ok=True)
    shutil.rmtree(info / "commit-graphs", ignore_errors=True)
    progress("year: git commit-graph write")
    graph = [GIT, "-C", repo, "commit-graph", "write", "--reachable", "--changed-paths", "--split"]
    timings.append(_time("commit-graph", graph, 1, work))
    progress("year: git log --name-only")
    timings.append(
        _time("git log", [GIT, "-C", repo, "log", "--name-only", "--format=%H", "main"], runs, work)
    )
    # And what the first `audit person` of a clone does once: build the lookup of
    # which commits name whom (later audits read only the commits made since).
    (made.repo / ".git" / "reconciler" / lookup.FILE).unlink(missing_ok=True)
    person_command = [*reconciler, "audit", "person", person, "--repo", repo, "--format", "json"]
    progress(f"year: audit person {person}, building the lookup")
    timings.append(_time("person, first", person_command, 1, work))
    progress(f"year: audit person {person}")
    timings.append(_time("person", person_command, runs, work))
    progress(f"year: audit app {year.BIG_APP}")
    timings.append(
        _time(
            "app",
            [*reconciler, "audit", "app", year.BIG_APP, "--repo", repo, "--format", "json"],
            runs,
            work,
        )
    )
    with tempfile.TemporaryDirectory(prefix="reconciler-evidence-") as out:
        progress("year: audit evidence")
        evidence = [*reconciler, "audit", "evidence", "--since", since, "--until", until]
        timings.append(_time("evidence", [*evidence, "--out", out, "--repo", repo], 1, work))
        csv = (Path(out) / "terminations.csv").read_text(encoding="utf-8")
        rows = len(csv.splitlines()) - 1
    progress("year: audit verify")
    timings.append(_time("verify", [*reconciler, "audit", "verify", "--repo", repo], 1, work))
    baseline = next(t.median for t in timings if t.name == "git log")
    return {
        "year": _year_data(made) | {"leavers": len(made.leavers)},
        "person": person,
        "terminations_rows": rows,
        "git_mib": _du_mib(made.repo / ".git"),
        "baseline_seconds": baseline,
        "commands": [
            {
                **asdict(t),
                "median": t.median,
                "ratio": t.median / baseline,
                "target_seconds": TARGETS.get(t.name),
                "met": t.median <= TARGETS[t.name] if t.name in TARGETS else None,
            }
            for t in timings
        ],
    }


def _du_mib(directory: Path) -> float:
    from bench.gitgrowth import du_mib

    return du_mib(directory)


def render(results: dict[str, Any]) -> str:
    """The results as the markdown table docs/benchmarks.md shows."""
    made = results["year"]
    lines = [
        "## A year of history: the audit commands",
        "",
        f"{made['days']} days, {made['commits']:,} commits, {made['plans']:,} plans approved "
        f"and applied ({made['leavers']:,} accounts disabled); `.git` "
        f"{results['git_mib']:,.0f} MiB (fast-import's pack, not repacked). Person: the "
        "leaver removed from the "
        f"most apps; evidence: the whole year ({results['terminations_rows']:,} rows in "
        "terminations.csv).",
        "",
        "| command | median | runs | peak memory | ratio to `git log --name-only` | target | met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for command in results["commands"]:
        target = command["target_seconds"]
        met = "" if command["met"] is None else ("yes" if command["met"] else "**no**")
        lines.append(
            f"| {command['name']} | {command['median']:.2f} s | {len(command['seconds'])} | "
            f"{command['max_rss_mib']:.0f} MiB | {command['ratio']:.1f} | "
            f"{'' if target is None else f'≤ {target:.0f} s'} | {met} |"
        )
    return "\n".join(lines) + "\n"
