"""`reconciler init` records the branch check and apply will work on, and writes the
GitHub workflows that run them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import reconciler
from reconciler import yamlio
from reconciler.cli import main
from reconciler.git import Git


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def recorded_branch(repo: Path) -> object:
    return yamlio.load(repo / "reconciler.yaml")["forge"]["branch"]


def test_a_fresh_repository_is_on_main_and_says_so(tmp_path: Path) -> None:
    repo = tmp_path / "access"
    assert cli("init", str(repo)).exit_code == 0
    assert Git.open(repo).current_branch() == "main"
    assert recorded_branch(repo) == "main"
    assert cli("check", "--repo", str(repo)).exit_code == 0


@pytest.mark.parametrize("branch", ["trunk", "1.0", "yes"])
@pytest.mark.parametrize("with_history", [False, True], ids=["unborn", "with-history"])
def test_init_into_an_existing_repository_records_its_branch(
    tmp_path: Path, branch: str, with_history: bool
) -> None:
    repo = tmp_path / "access"
    git = Git.init(repo, branch=branch)
    if with_history:
        (repo / "README.md").write_text("who has access to what\n")
        git.commit_paths(["README.md"], "start")

    result = cli("init", str(repo))
    assert result.exit_code == 0, result.output
    assert f"commit them on branch {branch}" in result.output
    # A branch named like a number or a boolean is still written as the string it is.
    assert recorded_branch(repo) == branch
    git.commit_paths(["."], "set up reconciler")

    assert cli("validate", "--repo", str(repo)).exit_code == 0
    checked = cli("check", "--repo", str(repo))
    assert checked.exit_code == 0, checked.output
    assert git.current_branch() == branch
    imported = [c.message for c in git.log(branch)]
    assert any(m.startswith("import identities corp") for m in imported), imported


def test_init_refuses_a_detached_head_and_writes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "access"
    git = Git.init(repo, branch="trunk")
    (repo / "README.md").write_text("x\n")
    git.commit_paths(["README.md"], "start")
    git.run("checkout", "-q", "--detach")

    result = cli("init", str(repo))
    assert result.exit_code == 1
    assert "detached" in result.output and "check out the branch" in result.output
    assert not (repo / "reconciler.yaml").exists()


def workflow_triggers(repo: Path, name: str) -> object:
    # YAML 1.1, which PyYAML speaks, reads the key `on` as the boolean true.
    return yaml.safe_load((repo / ".github" / "workflows" / name).read_text())[True]


def test_init_writes_and_commits_the_github_workflows(tmp_path: Path) -> None:
    repo = tmp_path / "access"
    assert cli("init", str(repo)).exit_code == 0
    skeleton = Path(reconciler.__file__).parent / "skeleton" / ".github" / "workflows"
    for name in ("check.yml", "apply.yml", "validate.yml"):
        written = repo / ".github" / "workflows" / name
        assert written.read_bytes() == (skeleton / name).read_bytes(), name
    assert Git.open(repo).run("status", "--porcelain").strip() == ""
    assert workflow_triggers(repo, "apply.yml") == {
        "push": {"branches": ["main"], "paths": ["plans/**"]}
    }


@pytest.mark.parametrize(
    ("branch", "pattern"), [("trunk", "trunk"), ("1.0", "1.0"), ("release+1", "release\\+1")]
)
def test_apply_runs_on_a_push_to_the_branch_init_recorded(
    tmp_path: Path, branch: str, pattern: str
) -> None:
    repo = tmp_path / "access"
    Git.init(repo, branch=branch)
    assert cli("init", str(repo)).exit_code == 0
    assert recorded_branch(repo) == branch
    # A branch filter is a pattern: `+` would mean "one or more" without its backslash.
    assert workflow_triggers(repo, "apply.yml") == {
        "push": {"branches": [pattern], "paths": ["plans/**"]}
    }
