"""Adversarial tests for `forge: github`: the installed command, real SCIM servers, real
git, and the stateful fake GitHub on 127.0.0.1. Each test tries to get an account
removed that no one approved on GitHub, or a secret shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from reconciler import demo
from reconciler.testing.access_repo import Company
from reconciler.testing.github_fake import FakeGitHub, PullRequest, github_company

LEAVERS = (*demo.LEAVERS_DEPROVISIONED, demo.LEAVER_DELETED)
REVIEWER = demo.REVIEWER
TOKEN = "ghs_e2eSecretToken9876543210"
BRANCH = "reconciler/wiki"


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr
    return result.stdout + result.stderr


def propose(c: Company, fake: FakeGitHub) -> PullRequest:
    """First check, the leavers leave, second check: the pull request on GitHub."""
    ok(c.run("check"))
    c.leave()
    out = ok(c.run("check", "--detailed-exitcode"), 4)
    assert "created on reconciler/wiki" in out
    pr = fake.pr_for(BRANCH)
    assert pr is not None
    return pr


def merge_and_pull(c: Company, fake: FakeGitHub, number: int, method: str = "merge") -> None:
    fake.merge(number, method)
    c.git.run("pull", "-q", "--ff-only", "origin", "main")


def active(c: Company, username: str) -> bool:
    return bool(c.app_user(username)["active"])


def assert_apply_refused(c: Company, *words: str) -> None:
    out = ok(c.run("apply", "--confirm"), 1)
    for word in words:
        assert word in out
    assert all(active(c, u) for u in (*LEAVERS, "alice.liddell"))


def test_a_reviewed_and_merged_pull_request_is_applied_and_told(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        pr = propose(c, fake)
        assert pr.labels == ["deprovisioning"]
        assert pr.requested_users == [REVIEWER]
        assert pr.body.startswith("#") and f"plan-id: {c.plan_on_branch()['plan']}" in pr.body
        status = ok(c.run("status", "--format", "json"))
        assert '"app": "wiki"' in status
        refused = ok(c.run("approve", "--app", "wiki", "--as", REVIEWER), 1)
        assert "approve the pull request" in refused
        fake.review(pr.number, REVIEWER, "APPROVED")
        merge_and_pull(c, fake, pr.number, "squash")
        out = ok(c.run("apply", "--confirm"))
        assert f"approved by {REVIEWER}" in out
        assert not any(active(c, u) for u in LEAVERS)
        assert active(c, "alice.liddell")
        journal = next((c.repo / "history/wiki").glob("*.yaml"))
        verified = yaml.safe_load(journal.read_text())["approval_verified"]
        assert verified["pull_request"] == pr.number
        assert verified["head_sha"] == pr.head_sha
        comment = fake.comments[pr.number][-1].body
        assert "3 of 3 accounts" in comment and journal.name in comment


def test_an_approval_by_someone_the_policy_does_not_list_is_refused(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        pr = propose(c, fake)
        fake.review(pr.number, "mallory", "APPROVED")
        merge_and_pull(c, fake, pr.number)
        assert_apply_refused(c, "mallory may not approve")


def test_an_approval_of_an_earlier_head_is_refused(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        pr = propose(c, fake)
        fake.review(pr.number, REVIEWER, "APPROVED")
        plan = yaml.safe_load(c.git.show(f"origin/{BRANCH}", "plans/wiki.yaml") or b"")
        plan["actions"] = plan["actions"][:1]  # looks harmless: a narrower plan
        fake.push_to_branch(BRANCH, {"plans/wiki.yaml": yaml.safe_dump(plan)}, "narrow")
        merge_and_pull(c, fake, pr.number)
        assert_apply_refused(c, "not the final head")


def test_a_plan_pushed_straight_to_main_is_refused(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        propose(c, fake)
        plan = c.git.show(f"origin/{BRANCH}", "plans/wiki.yaml")
        assert plan is not None
        fake.push_to_main({"plans/wiki.yaml": plan.decode()}, "ship it")
        c.git.run("pull", "-q", "--ff-only", "origin", "main")
        assert_apply_refused(c, "pushed straight to main")


def test_a_pull_request_closed_unmerged_is_not_reopened(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        pr = propose(c, fake)
        fake.close(pr.number)
        out = ok(c.run("check", "--detailed-exitcode"), 4)
        assert "rejected" in out
        assert len(fake.pulls) == 1 and fake.pulls[pr.number].state == "closed"


def test_a_token_without_permission_fails_clearly_and_is_never_shown(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        ok(c.run("check"))
        c.leave()
        fake.forbid(match="POST /repos/acme/access/pulls", count=10)
        out = ok(c.run("check"), 1)
        assert "pull-requests: write" in out
        assert sum(r.startswith("POST /repos/acme/access/pulls") for r in fake.requests) == 1


def test_a_forge_failure_fails_only_its_app_and_the_check_goes_on(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN) as (c, fake):
        # A second app on the same server: `crm` is proposed before `wiki`.
        config = c.repo / "reconciler.yaml"
        text = config.read_text(encoding="utf-8")
        wiki = text[text.index("  wiki:\n") :]
        config.write_text(text + wiki.replace("  wiki:\n", "  crm:\n", 1), encoding="utf-8")
        c.git.commit_paths(["reconciler.yaml"], "add crm")
        ok(c.run("check"))
        c.leave()
        fake.forbid(match="POST /repos/acme/access/pulls", count=1)
        out = ok(c.run("check", "--detailed-exitcode"), 1)
        assert "pull-requests: write" in out and "run the check again" in out
        assert fake.pr_for("reconciler/crm") is None
        wiki_pr = fake.pr_for(BRANCH)
        assert wiki_pr is not None and wiki_pr.requested_users == [REVIEWER]
        # The imports of both apps reached main all the same.
        assert fake.file_at("main", "state/apps/crm/accounts.yaml") is not None
        # Once the permission is there, the next check proposes crm too.
        out = ok(c.run("check", "--detailed-exitcode"), 4)
        assert "created on reconciler/crm" in out
        assert fake.pr_for("reconciler/crm") is not None
        assert fake.pr_for(BRANCH) == wiki_pr
