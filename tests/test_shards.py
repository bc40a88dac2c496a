"""Apps split into shards for a matrix of checks (`reconciler shards`)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from reconciler.cli import main
from reconciler.shards import PER_APP, shard


def test_shards_balance_accounts_and_the_cost_of_each_app() -> None:
    sizes = {"big": 10_000, "mid": 4_000, **{f"s{n:02d}": 50 for n in range(20)}}
    shards = shard(sizes, 2)
    assert sorted(app for apps in shards for app in apps) == sorted(sizes)
    loads = [sum(sizes[a] + PER_APP for a in apps) for apps in shards]
    assert max(loads) / min(loads) < 1.25
    assert all(apps == sorted(apps) for apps in shards)
    assert shard(sizes, 2) == shards  # the same input, the same shards


def test_no_more_shards_than_apps_and_none_empty() -> None:
    assert shard({"a": 1, "b": 2}, 8) == [["b"], ["a"]]
    assert shard({}, 4) == []
    assert shard({"a": 1, "b": 2}, 1) == [["a", "b"]]


def test_the_command_prints_one_line_of_json_from_the_snapshots(tmp_path) -> None:
    repo = tmp_path / "access"
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(repo)]).exit_code == 0
    assert runner.invoke(main, ["check", "--repo", str(repo)]).exit_code == 0
    result = runner.invoke(main, ["shards", "--repo", str(repo), "--count", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1
    assert json.loads(result.output) == [["payroll"]]
    unknown = runner.invoke(main, ["shards", "--repo", str(repo), "--app", "nope"])
    assert unknown.exit_code != 0 and "unknown app" in unknown.output
