"""The benchmark runs end to end and writes well-formed results (not how fast they are)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import generate, report

ROOT = Path(__file__).resolve().parents[1]


def _numbers(data: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(data, bool):
        return
    if isinstance(data, int | float):
        yield path, float(data)
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _numbers(value, f"{path}[{index}]")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench-out")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return orjson.loads((out / "results.json").read_bytes()), done.stdout, out


def test_results_have_every_section(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = quick_run
    assert set(results) >= {"meta", "sizes", "git_growth", "scim", "targets"}
    (size,) = results["sizes"]
    assert size["n"] == 1000
    check = size["check"]
    assert check["exit_code"] == 0
    assert check["plan"] and check["plan_status"] == "open"
    # The day-2 check is run three times, each on a copy of day 1's repo: the median.
    runs = size["check_runs_seconds"]
    assert len(runs) == 3 and sorted(runs)[1] == check["wall_seconds"]
    assert size["newcomer"]["status"] == "ok"
    assert size["newcomer"]["ratio"] > 0
    growth = results["git_growth"]
    assert growth["days"] == 3 and len(growth["per_day"]) == 3
    assert results["scim"]["users"] == 500
    assert len(results["scim"]["ours_seconds"]) == len(results["scim"]["bare_seconds"]) == 3
    names = [t["target"] for t in results["targets"]]
    assert len(names) == 7
    assert all(t["status"] in ("met", "missed", "not measured") for t in results["targets"])


def test_every_figure_is_positive(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = quick_run
    # Counts in the check's summary may be 0, and so may a phase rounded to 0.1 ms
    # (checked apart); growth is a difference (gc may shrink a repository).
    skipped = (".summary.", ".phases.", ".options.")
    figures = [
        (path, value)
        for path, value in _numbers(results)
        if not path.endswith(("exit_code", "growth_mib")) and not any(s in path for s in skipped)
    ]
    assert len(figures) > 50
    bad = [(p, v) for p, v in figures if not (math.isfinite(v) and v > 0)]
    assert not bad, bad
    assert math.isfinite(results["git_growth"]["growth_mib"])


def test_phases_are_read_from_the_check(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = quick_run
    phases = results["sizes"][0]["check"]["phases"]
    assert {"pull", "write", "commit", "policy"} <= set(phases)
    for figures in phases.values():
        assert figures["seconds"] >= 0 and figures["max_rss_mib"] > 0


def test_markdown_is_printed_and_saved(quick_run: tuple[dict[str, Any], str, Path]) -> None:
    results, stdout, out = quick_run
    saved = (out / "results.md").read_text(encoding="utf-8")
    assert stdout == saved
    for heading in ("## Day-2 check by size", "## Git growth", "## SCIM pull", "## Targets"):
        assert heading in saved
    assert report.render(results) == saved


def test_generator_is_deterministic_and_shaped(tmp_path: Path) -> None:
    day1 = generate.day_one(2000, seed=7)
    again = generate.day_one(2000, seed=7)
    first = generate.write_exports(day1, tmp_path / "a")
    second = generate.write_exports(again, tmp_path / "b")
    assert first.accounts.read_bytes() == second.accounts.read_bytes()
    assert first.identities.read_bytes() == second.identities.read_bytes()

    accounts = list(day1.accounts.values())
    assert len(accounts) == len(day1.identities) == 2000
    assert sum(a["type"] == "service" for a in accounts) == 40
    emails = {i["email"] for i in day1.identities.values()}
    humans = [a for a in accounts if a["type"] == "human"]
    unmatched = [a for a in humans if a["email"].lower() not in emails]
    assert len(unmatched) == 20
    assert all(1 <= len(a["roles"]) <= 5 and len(a["entitlements"]) <= 20 for a in accounts)
    assert any(not a["display_name"].isascii() for a in accounts)

    day2 = generate.next_day(day1, seed=7, index=2)
    statuses = [i["status"] for i in day2.identities.values()]
    assert statuses.count("deprovisioned") == 6  # 0.3%
    assert len(day2.accounts.keys() - day1.accounts.keys()) == 10  # 0.5% added
    assert len(day1.accounts.keys() - day2.accounts.keys()) == 10  # 0.5% removed
    kept = day1.accounts.keys() & day2.accounts.keys()
    changed = [k for k in kept if day1.accounts[k] != day2.accounts[k]]
    assert len(changed) == 20  # 1%


def test_python_m_bench_rules_times_the_check_with_and_without_the_rules(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "rules", "--n", "500", "--runs", "1",
         "--out", str(tmp_path)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = orjson.loads((tmp_path / "rules.json").read_bytes())
    assert results["median_without"] > 0 and results["median_with"] > 0
    assert set(results["proposed"]) == {"with", "without"}
    assert "| 500 | 1 |" in (tmp_path / "rules.md").read_text(encoding="utf-8")


def test_python_m_bench_company_times_many_apps_against_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "company", "--people", "300", "--apps", "12",
         "--runs", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = orjson.loads((tmp_path / "company.json").read_bytes())
    assert results["median_company"] > 0 and results["median_one_app"] > 0
    assert results["accounts"] >= 12 * 50
    # A commit per app that changed, and none on a day without a change.
    assert 0 < results["day2_commits"] <= results["apps_changed"] + 1
    assert results["unchanged_day_commits"] == 0
    assert "| 300 | 12 (" in (tmp_path / "company.md").read_text(encoding="utf-8")


def test_python_m_bench_pulls_times_slow_scim_apps(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "pulls", "--apps", "2", "--size", "20",
         "--latency", "0.01", "--width", "2", "--remember", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = orjson.loads((tmp_path / "pulls.json").read_bytes())
    assert results["answers"] == "remembered" and "warm_up" not in results
    for label in ("one_app", "sequential", "parallel"):
        assert results[label] > 0 and results[f"{label}_wall"] >= results[label]
    assert "| 2, 20 | 10 ms | remembered |" in (tmp_path / "pulls.md").read_text()
