"""Adversarial tests for `forge: github`: the installed command, real SCIM servers, real
git, and the stateful fake GitHub on 127.0.0.1. Each test tries to get an account
removed that no one approved on GitHub, or a secret shown."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from reconciler import demo
from reconciler.testing.access_repo import Company
from reconciler.testing.access_repo import company as demo_company
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
        status = json.loads(ok(c.run("status", "--format", "json")))
        (wiki,) = status["apps"]
        assert f"#{pr.number}" in wiki["rejected"] and "closed without merging" in wiki["rejected"]
        assert f"rejected: pull request #{pr.number}" in ok(c.run("status"))


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


IMPORTS = "reconciler/import"


def on_origin_main(c: Company, fake: FakeGitHub) -> bool:
    """The local main is exactly the remote's: nothing was, or is left to be, pushed."""
    return c.git.head("main") == fake.ref("main")


def merge_imports(c: Company, fake: FakeGitHub, method: str = "merge") -> PullRequest:
    pr = fake.pr_for(IMPORTS)
    assert pr is not None and pr.labels == ["import"]
    merge_and_pull(c, fake, pr.number, method)
    return pr


def test_imports_by_pull_request_then_the_plan_rests_on_main(tmp_path: Path) -> None:
    with github_company(tmp_path, token=TOKEN, import_mode="pull-request") as (c, fake):
        start = fake.ref("main")
        out = ok(c.run("check", "--detailed-exitcode"), 4)
        assert "waiting for the import pull request #1" in out
        assert on_origin_main(c, fake) and fake.ref("main") == start
        pr = fake.pr_for(IMPORTS)
        assert pr is not None and pr.base == "main"
        assert pr.title.startswith("import: ") and "wiki" in pr.title and "corp" in pr.title
        assert "reconciler imports" in pr.body and pr.requested_users == []
        assert fake.file_at(pr.head_sha, "state/apps/wiki/accounts.yaml") is not None
        merge_imports(c, fake)

        # Leavers change the identities: imported through a pull request again, no plan.
        c.leave()
        out = ok(c.run("check", "--detailed-exitcode"), 4)
        assert "waiting for the import pull request #2" in out
        assert fake.pr_for(BRANCH, "all") is None and on_origin_main(c, fake)
        merge_imports(c, fake, "squash")

        # Main holds what the check pulls: the plan, computed at main's head.
        out = ok(c.run("check", "--detailed-exitcode"), 4)
        assert "created on reconciler/wiki" in out
        assert fake.pr_for(IMPORTS) is None and on_origin_main(c, fake)
        plan = yaml.safe_load(c.git.show(f"origin/{BRANCH}", "plans/wiki.yaml") or b"")
        assert plan["base_commit"] == fake.ref("main")
        pr = fake.pr_for(BRANCH)
        assert pr is not None
        fake.review(pr.number, REVIEWER, "APPROVED")
        merge_and_pull(c, fake, pr.number)
        ok(c.run("apply", "--confirm"))
        assert not any(active(c, u) for u in LEAVERS)
        assert active(c, "alice.liddell")


def test_an_open_plan_is_left_alone_while_new_imports_wait_and_stale_imports_close(
    tmp_path: Path,
) -> None:
    with github_company(tmp_path, token=TOKEN, import_mode="pull-request") as (c, fake):
        ok(c.run("check"))
        merge_imports(c, fake)
        c.leave()
        ok(c.run("check"))
        merge_imports(c, fake)
        ok(c.run("check", "--detailed-exitcode"), 4)
        plan_pr = fake.pr_for(BRANCH)
        assert plan_pr is not None
        head = plan_pr.head_sha
        # Someone new in the app: an import waits; the open plan is not touched.
        hire = {"userName": "new.hire", "emails": [{"value": "new.hire@example.com"}]}
        hired = c.app.seed([hire]).users["new.hire"]
        out = ok(c.run("check", "--detailed-exitcode"), 4)
        assert "waiting for the import pull request" in out
        imports = fake.pr_for(IMPORTS)
        assert imports is not None
        still = fake.pr_for(BRANCH)
        assert still is not None and still.head_sha == head
        # The new account is removed again before anyone merged: nothing left to import.
        c.app.delete_user(hired)
        ok(c.run("check", "--detailed-exitcode"), 4)
        assert fake.pulls[imports.number].state == "closed" and fake.ref(IMPORTS) is None
        assert on_origin_main(c, fake)


def test_a_failed_import_pull_request_fails_the_check_and_leaves_main_alone(
    tmp_path: Path,
) -> None:
    with github_company(tmp_path, token=TOKEN, import_mode="pull-request") as (c, fake):
        fake.forbid(match="POST /repos/acme/access/pulls", count=10)
        out = ok(c.run("check"), 1)
        assert "pull-requests: write" in out and "imports: FAILED" in out
        assert on_origin_main(c, fake)
        assert c.git.dirty_paths() == []


def test_import_mode_pull_request_needs_the_github_forge(tmp_path: Path) -> None:
    with demo_company(tmp_path) as c:
        config = c.repo / "reconciler.yaml"
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace("  type: local\n", "  type: local\n  import_mode: pull-request\n"),
            encoding="utf-8",
        )
        c.git.commit_paths(["reconciler.yaml"], "imports by pull request")
        out = ok(c.run("check"), 1)
        assert "import_mode pull-request needs `type: github`" in out
        assert c.commit_count() == 2
