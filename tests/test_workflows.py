"""The GitHub Actions workflows `reconciler init` writes, and this repository's own copies.

What a user would notice: when each workflow runs, that two runs never race or cancel an
apply, that a day with leavers (exit 4) does not fail the check, that no untrusted text
reaches a shell, that every action and the reconciler release are pinned.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import reconciler
from reconciler.cli import main
from reconciler.git import bot_env

ROOT = Path(__file__).resolve().parent.parent
SKELETON = ROOT / "reconciler" / "skeleton" / ".github" / "workflows"
REPOSITORY = ROOT / ".github" / "workflows"
NAMES = ("apply.yml", "check.yml", "validate.yml")
EVERY_WORKFLOW = [SKELETON / name for name in NAMES] + [REPOSITORY / name for name in NAMES]

# What GitHub would expand inside a script before the shell sees it.
UNTRUSTED_IN_SCRIPT = re.compile(r"\$\{\{\s*(github\.event|inputs|secrets)\b")
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(path: Path) -> dict[Any, Any]:
    workflow = yaml.safe_load(path.read_text())
    assert isinstance(workflow, dict)
    return workflow


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1, which PyYAML speaks, reads the key `on` as the boolean true.
    found = workflow[True]
    assert isinstance(found, dict)
    return found


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def step(workflow: dict[Any, Any], name: str) -> dict[str, Any]:
    """The step called `name`; a step that several jobs share is the same in each."""
    found = [s for s in steps(workflow) if s.get("name") == name]
    assert found, name
    assert all(s == found[0] for s in found), f"{name} differs between jobs"
    return found[0]


def test_the_skeleton_and_this_repository_have_the_same_workflows() -> None:
    assert sorted(p.name for p in SKELETON.iterdir()) == sorted(NAMES)
    assert sorted(p.name for p in REPOSITORY.glob("*.yml")) == sorted(NAMES)
    for name in NAMES:
        assert (SKELETON / name).read_bytes() == (REPOSITORY / name).read_bytes(), name


def test_check_runs_daily_and_by_hand_for_one_app_or_all() -> None:
    workflow = load(SKELETON / "check.yml")
    on = triggers(workflow)
    assert len(on["schedule"]) == 1
    minute, hour, *every_day = on["schedule"][0]["cron"].split()
    assert every_day == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()
    app = on["workflow_dispatch"]["inputs"]["app"]
    assert app["required"] is False and app["type"] == "string"
    assert set(on) == {"schedule", "workflow_dispatch"}


def test_two_checks_of_one_app_queue_and_none_is_cancelled() -> None:
    workflow = load(SKELETON / "check.yml")
    assert workflow["concurrency"] == {
        "group": "reconciler-check-${{ inputs.app || 'all' }}",
        "cancel-in-progress": False,
    }


def test_apply_runs_when_a_plan_reaches_main_and_is_never_cancelled() -> None:
    workflow = load(SKELETON / "apply.yml")
    assert triggers(workflow) == {"push": {"branches": ["main"], "paths": ["plans/**"]}}
    assert workflow["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}
    # The person who merged is the author: no `--as` overrides GITHUB_ACTOR.
    assert step(workflow, "Apply")["run"].strip() == "reconciler apply --confirm"


def test_validate_runs_on_pull_requests_that_change_the_configuration() -> None:
    workflow = load(SKELETON / "validate.yml")
    assert triggers(workflow) == {"pull_request": {"paths": ["policies/**", "reconciler.yaml"]}}
    assert step(workflow, "Validate")["run"].strip() == "reconciler validate"


@pytest.mark.parametrize(
    ("name", "permissions"),
    [
        ("check.yml", {"contents": "write", "pull-requests": "write"}),
        ("apply.yml", {"contents": "write", "pull-requests": "write"}),
        ("validate.yml", {"contents": "read"}),
    ],
)
def test_each_workflow_asks_for_no_more_than_it_needs(
    name: str, permissions: dict[str, str]
) -> None:
    workflow = load(SKELETON / name)
    assert workflow["permissions"] == permissions
    assert all("permissions" not in job for job in workflow["jobs"].values())


@pytest.mark.parametrize(
    "path", EVERY_WORKFLOW, ids=lambda p: f"{p.parent.parent.parent.name}/{p.name}"
)
def test_no_event_text_input_or_secret_is_expanded_inside_a_script(path: Path) -> None:
    for s in steps(load(path)):
        assert not UNTRUSTED_IN_SCRIPT.search(s.get("run", "")), s


@pytest.mark.parametrize(
    "path", EVERY_WORKFLOW, ids=lambda p: f"{p.parent.parent.parent.name}/{p.name}"
)
def test_every_action_is_pinned_to_a_commit_and_names_its_release(path: Path) -> None:
    uses = [s["uses"] for s in steps(load(path)) if "uses" in s]
    assert uses
    lines = path.read_text().splitlines()
    for action in uses:
        assert PINNED_ACTION.match(action), action
        for line in lines:
            if f"uses: {action}" in line:
                assert re.search(r" # v\d+\.\d+\.\d+$", line), line


def test_one_action_is_pinned_to_the_same_commit_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in EVERY_WORKFLOW:
        for s in steps(load(path)):
            if "uses" in s:
                name, commit = s["uses"].split("@")
                pins.setdefault(name, set()).add(commit)
    assert {name: len(commits) for name, commits in pins.items()} == dict.fromkeys(pins, 1)


def test_every_workflow_installs_this_release_by_its_distribution_name() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "access-reconciler"
    assert project["version"] == reconciler.__version__
    default = f"${{{{ vars.RECONCILER_REQUIREMENT || 'access-reconciler=={project['version']}' }}}}"
    for name in NAMES:
        install = step(load(SKELETON / name), "Install reconciler")
        assert install["env"] == {"RECONCILER_REQUIREMENT": default}, name


def test_check_and_apply_see_the_same_tokens() -> None:
    check = step(load(SKELETON / "check.yml"), "Check")["env"]
    identities = step(load(SKELETON / "check.yml"), "Pull the identity sources")["env"]
    apply = step(load(SKELETON / "apply.yml"), "Apply")["env"]
    tokens = {key: value for key, value in check.items() if key != "APPS"}
    assert tokens == apply
    assert {key: value for key, value in identities.items() if key != "APP"} == apply
    # The name the docs tell people to give reconciler.yaml's forge.token_env.
    assert "RECONCILER_GITHUB_TOKEN" in apply


@pytest.mark.parametrize("name", ["check.yml", "apply.yml"])
def test_commits_made_in_a_run_name_the_bot_as_committer(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = list(load(SKELETON / name)["jobs"].values())
    assert all(job["env"] == jobs[0]["env"] for job in jobs)
    defaults = {
        key: re.fullmatch(r"\$\{\{ vars\.(\w+) \|\| '(.+)' \}\}", value)
        for key, value in jobs[0]["env"].items()
    }
    for key, match in defaults.items():
        assert match and match.group(1) == key, jobs[0]["env"]
        monkeypatch.setenv(key, match.group(2))
    assert bot_env()["GIT_COMMITTER_NAME"] == "reconciler[bot]"
    assert bot_env()["GIT_COMMITTER_EMAIL"] == "reconciler[bot]@users.noreply.github.com"


def run_script(
    script: str, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run a step's script as GitHub runs a `shell: bash` step."""
    path = tmp_path / "step.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def fake_command(tmp_path: Path, name: str, exit_code: int) -> Path:
    """A directory for PATH holding `name`, which records its arguments and exits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    command = bin_dir / name
    command.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/{name}.args"\nexit {exit_code}\n')
    command.chmod(0o755)
    return bin_dir


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


@pytest.mark.parametrize(
    ("exit_code", "needs_review"), [(0, "false"), (4, "true"), (1, "false"), (3, "false")]
)
@pytest.mark.parametrize("apps", ["wiki", "crm wiki"])
def test_the_check_step_reports_its_exit_code_instead_of_failing(
    tmp_path: Path, exit_code: int, needs_review: str, apps: str
) -> None:
    script = step(load(SKELETON / "check.yml"), "Check")["run"]
    bin_dir = fake_command(tmp_path, "reconciler", exit_code)
    github_output = tmp_path / "output"
    github_output.touch()

    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(github_output)}
    result = run_script(script, tmp_path, {**env, "APPS": apps})

    # The step itself passes; a later step fails the run unless the code was 0 or 4.
    assert result.returncode == 0, result.stderr
    assert outputs(github_output) == {"exit-code": str(exit_code), "needs-review": needs_review}
    expected = "check --detailed-exitcode --identities snapshot"
    expected += "".join(f" --app {app}" for app in apps.split())
    assert (tmp_path / "reconciler.args").read_text().strip() == expected


@pytest.mark.parametrize("app", ["", "wiki"])
def test_the_identities_are_pulled_once_before_the_shards(tmp_path: Path, app: str) -> None:
    workflow = load(SKELETON / "check.yml")
    assert workflow["jobs"]["check"]["needs"] == "identities"
    matrix = workflow["jobs"]["check"]["strategy"]["matrix"]
    assert matrix == {"apps": "${{ fromJSON(needs.identities.outputs.shards) }}"}
    assert workflow["jobs"]["check"]["strategy"]["fail-fast"] is False
    script = step(workflow, "Pull the identity sources")["run"]
    bin_dir = fake_command(tmp_path, "reconciler", 1)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "APP": app}
    result = run_script(script, tmp_path, env)
    assert result.returncode == 1  # a failed identity pull stops the run: no shard runs
    expected = "check --identities only" + (f" --app {app}" if app else "")
    assert (tmp_path / "reconciler.args").read_text().strip() == expected


@pytest.mark.parametrize(
    ("app", "shards", "expected"), [("", "3", "--count 3"), ("wiki", "3", "--app wiki")]
)
def test_the_shards_step_gives_the_matrix_one_line_of_json(
    tmp_path: Path, app: str, shards: str, expected: str
) -> None:
    script = step(load(SKELETON / "check.yml"), "Split the apps into shards")["run"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "reconciler"
    command.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\necho \'[["crm","wiki"]]\'\n')
    command.chmod(0o755)
    github_output = tmp_path / "output"
    github_output.touch()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(github_output),
        "APP": app,
        "SHARDS": shards,
    }
    result = run_script(script, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args").read_text().strip() == f"shards {expected}"
    assert outputs(github_output) == {"shards": '[["crm","wiki"]]'}


def test_the_run_fails_after_a_check_that_failed() -> None:
    workflow = load(SKELETON / "check.yml")
    fail = step(workflow, "Fail if the check failed")
    assert fail["if"] == (
        "steps.check.outputs.exit-code != '0' && steps.check.outputs.exit-code != '4'"
    )
    assert fail["run"].rstrip().endswith("exit 1")
    assert workflow["jobs"]["check"]["outputs"] == {
        "needs-review": "${{ steps.check.outputs.needs-review }}"
    }


@pytest.mark.parametrize(
    ("requirement", "installs"),
    [
        ("access-reconciler==0.1.0", True),
        ("access-reconciler @ git+https://github.com/example/access@" + "0" * 40, True),
        ("access-reconciler", False),
        ("access-reconciler>=0.1", False),
        ("access-reconciler @ git+https://github.com/example/access@main", False),
    ],
)
def test_an_unpinned_release_is_refused_before_anything_is_installed(
    tmp_path: Path, requirement: str, installs: bool
) -> None:
    script = step(load(SKELETON / "check.yml"), "Install reconciler")["run"]
    bin_dir = fake_command(tmp_path, "python", 0)

    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RECONCILER_REQUIREMENT": requirement}
    result = run_script(script, tmp_path, env)

    assert (result.returncode == 0) is installs, result.stdout
    if installs:
        args = (tmp_path / "python.args").read_text().strip()
        assert args.endswith(f"install --disable-pip-version-check {requirement}")
    else:
        assert not (tmp_path / "python.args").exists()
        assert "::error::RECONCILER_REQUIREMENT" in result.stdout


def test_the_pre_commit_hook_runs_validate_on_the_configuration() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "reconciler-validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    command, subcommand = hook["entry"].split()
    assert command == "reconciler" and subcommand in main.commands
    files = re.compile(hook["files"])
    for path in ("reconciler.yaml", "policies/default.yaml", "policies/wiki.yml"):
        assert files.search(path), path
    for path in ("state/apps/wiki/accounts.yaml", "plans/wiki.yaml", "docs/reconciler.yaml"):
        assert not files.search(path), path


def git_in(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
        env={**os.environ, **bot_env()},
    )  # fmt: skip
    return done.stdout.strip()


def shard_clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare origin with one commit on main and two clones of it: two shards' jobs."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git_in(seed, "init", "-q", "-b", "main")
    (seed / "README").write_text("access\n")
    git_in(seed, "add", "README")
    git_in(seed, "commit", "-q", "-m", "start")
    origin = tmp_path / "origin.git"
    git_in(tmp_path, "clone", "-q", "--bare", str(seed), str(origin))
    one, two = tmp_path / "one", tmp_path / "two"
    for clone in (one, two):
        git_in(tmp_path, "clone", "-q", str(origin), str(clone))
    return origin, one, two


def import_in(clone: Path, app: str, text: str) -> None:
    (clone / "state" / app).mkdir(parents=True, exist_ok=True)
    (clone / "state" / app / "accounts.yaml").write_text(text)
    git_in(clone, "add", "state")
    git_in(clone, "commit", "-q", "-m", f"import {app}")


@pytest.mark.parametrize("job", ["identities", "check"])
def test_the_push_step_rebases_on_another_shards_push(tmp_path: Path, job: str) -> None:
    """With the local forge nothing pushes but this step: each shard pushes its own
    imports, rebased on the others'; two shards that imported the same app do not."""
    pushes = [
        s for s in load(SKELETON / "check.yml")["jobs"][job]["steps"]
        if s.get("name") == "Push the imports to main"
    ]  # fmt: skip
    (push,) = pushes
    origin, one, two = shard_clones(tmp_path)

    def run_in(clone: Path) -> subprocess.CompletedProcess[str]:
        return run_script(f"cd {clone}\n{push['run']}", tmp_path, bot_env())

    nothing = run_in(one)
    assert nothing.returncode == 0 and "Nothing new on main to push." in nothing.stdout
    import_in(one, "crm", "crm\n")
    import_in(two, "wiki", "wiki\n")
    assert run_in(one).returncode == 0
    second = run_in(two)
    assert second.returncode == 0, second.stderr
    assert git_in(origin, "log", "--format=%s", "main").splitlines() == [
        "import wiki", "import crm", "start",
    ]  # fmt: skip

    import_in(one, "hr", "hr as one saw it\n")
    git_in(two, "pull", "-q", "--ff-only", "origin", "main")
    import_in(two, "hr", "hr as two saw it\n")
    assert run_in(one).returncode == 0
    pushed = git_in(origin, "rev-parse", "main")
    clash = run_in(two)
    assert clash.returncode == 1
    assert "::error::origin's main changed files this check committed" in clash.stdout
    assert git_in(origin, "rev-parse", "main") == pushed
    assert git_in(two, "status", "--porcelain") == ""  # the rebase was undone
