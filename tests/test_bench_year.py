"""The generated year (bench/year.py) is the history real checks would leave.

Day by day, a generated repository and a repository where the installed `reconciler
check` ran on the same exports hold the same snapshot files (meta files equal but for
the time of the pull), the same import commits in the same order, and the same plans.
A generated year with approvals and applies passes `reconciler audit verify`, and the
audit commands answer from it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import year


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def reconciler(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("reconciler")
    assert command, "the reconciler command is not installed"
    return subprocess.run(
        [command, *args, "--repo", str(repo)], capture_output=True, text=True, check=False
    )


def state_at(repo: Path, rev: str) -> dict[str, Any]:
    """The snapshot files at `rev`; meta files parsed, without the time of the pull."""
    files: dict[str, Any] = {}
    for path in git(repo, "ls-tree", "-r", "--name-only", rev, "state").split():
        content = git(repo, "show", f"{rev}:{path}")
        if path.endswith("meta.yaml"):
            data = yaml.safe_load(content)
            data.pop("pulled_at")
            files[path] = data
        else:
            files[path] = content
    return files


def plans_on_branches(repo: Path) -> dict[str, dict[str, Any]]:
    plans = {}
    for ref in git(
        repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/reconciler/"
    ).split():
        app = ref.rsplit("/", 1)[1]
        data = yaml.safe_load(git(repo, "show", f"{ref}:plans/{app}.yaml"))
        for moving in ("created_at", "base_commit"):
            data.pop(moving)
        plans[app] = data
    return plans


def first_parent_days(repo: Path) -> dict[str, list[tuple[str, str]]]:
    """Main's commits by day (UTC date of the commit): (sha, message), oldest first."""
    days: dict[str, list[tuple[str, str]]] = {}
    out = git(repo, "log", "--first-parent", "--reverse", "--date=format-local:%Y-%m-%d",
              "--format=%H%x00%cd%x00%B%x1e", "main")  # fmt: skip
    for entry in out.split("\x1e")[:-1]:
        sha, day, message = entry.lstrip("\n").split("\0")
        days.setdefault(day, []).append((sha, message))
    return days


def test_generated_days_equal_real_checks(tmp_path: Path) -> None:
    shape = year.Shape(apps=2, app_size=300, big_size=10_200, days=3, approve=False)
    generated = year.build(shape, tmp_path / "generated")

    real = tmp_path / "real"
    real.mkdir()
    git(real, "init", "-q", "-b", "main")
    year.write_config(shape, real)
    git(real, "add", ".")
    git(real, "-c", "user.name=admin", "-c", "user.email=admin@example.com",
        "commit", "-qm", "configure reconciler")  # fmt: skip
    company = year.Company(shape)
    days = list(first_parent_days(generated.repo).values())
    days[0] = days[0][1:]  # after the configuration
    assert len(days) == shape.days
    for index, commits in enumerate(days, start=1):
        if index > 1:
            company.next_day(index)
        company.write_exports(real / "exports")
        before = git(real, "rev-parse", "main").strip()
        done = reconciler(real, "check", "--format", "json")
        assert done.returncode == 0, done.stderr
        out = git(real, "log", "--reverse", "--format=%B%x1e", f"{before}..main")
        messages = [m.lstrip("\n") for m in out.split("\x1e")[:-1]]
        # The whole messages: subject, body and the index of changed records.
        assert messages == [message for _, message in commits], f"day {index}"
        assert state_at(real, "main") == state_at(generated.repo, commits[-1][0]), f"day {index}"
        real_plans = plans_on_branches(real)
        wanted = {app: plan for day, app, plan in generated.proposed if day == index}
        assert {app: p["plan"] for app, p in real_plans.items()} == wanted, f"day {index}"
        if index < shape.days:  # a reviewer rejects the plans: the next check starts afresh
            for ref in git(
                real, "for-each-ref", "--format=%(refname)", "refs/heads/reconciler/"
            ).split():
                git(real, "update-ref", "-d", ref)
    assert any(day == shape.days for day, _, _ in generated.proposed)
    # On the last day, the plans on the branches are the same files.
    assert plans_on_branches(real) == plans_on_branches(generated.repo)
    for app in plans_on_branches(real):
        report = f"reconciler/{app}:plans/{app}.md"
        assert git(real, "show", report) == git(generated.repo, "show", report)


@pytest.fixture(scope="module")
def applied_year(tmp_path_factory: pytest.TempPathFactory) -> year.Year:
    shape = year.Shape(apps=3, app_size=200, big_size=10_200, days=6)
    return year.build(shape, tmp_path_factory.mktemp("year") / "access")


def test_a_generated_year_passes_audit_verify(applied_year: year.Year) -> None:
    assert applied_year.applied > 0
    done = reconciler(applied_year.repo, "audit", "verify", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr


def test_python_m_bench_year_times_every_audit_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "year", "--apps", "2", "--app-size", "200",
         "--big", "2000", "--days", "3", "--runs", "1", "--out", str(tmp_path)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "year.json").read_text(encoding="utf-8"))
    names = [command["name"] for command in results["commands"]]
    assert names == [
        "commit-graph", "git log", "person, first", "person", "app", "evidence", "verify"
    ]  # fmt: skip
    assert all(command["median"] > 0 for command in results["commands"])
    assert "| person |" in (tmp_path / "year.md").read_text(encoding="utf-8")
    # A second run reuses the year it generated.
    again = subprocess.run(
        [sys.executable, "-m", "bench", "year", "--apps", "2", "--app-size", "200",
         "--big", "2000", "--days", "3", "--runs", "1", "--out", str(tmp_path)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert again.returncode == 0 and "reusing" in again.stderr
