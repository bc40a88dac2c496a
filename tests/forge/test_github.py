"""The github forge against the stateful fake GitHub: proposing, closing, and the one
question apply asks (`approval`), with real git on both sides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reconciler import yamlio
from reconciler.apply import approved
from reconciler.config import Approvals, Policy
from reconciler.connectors.http import RetryPolicy
from reconciler.errors import ApprovalError, ConfigError, ConnectorError, PlanError, ReconcilerError
from reconciler.forge.base import Proposal
from reconciler.forge.github import GitHubForge, GitHubOptions
from reconciler.git import Git
from reconciler.plan import Action, Plan, new_plan
from reconciler.report import GITHUB_BODY_LIMIT
from reconciler.testing.github_fake import FakeGitHub, PullRequest

TOKEN = "ghs_SuperSecretToken0123456789"
BOT = "reconciler-bot"
REVIEWER = "alice"
BRANCH = "reconciler/wiki"


@dataclass
class Lab:
    """An access repo whose `origin` is the fake's bare repository, and the forge."""

    fake: FakeGitHub
    git: Git
    forge: GitHubForge
    rules: dict[str, Approvals]
    owners: dict[str, tuple[str, ...]]
    sleeps: list[float]

    def plan(self, *users: str, blocked: Sequence[str] = ()) -> Plan:
        actions = [
            Action(
                account_id=f"id-{u}",
                username=u,
                email=f"{u}@example.com",
                display_name=u.title(),
                mode="disable",
                reason="idp_deprovisioned",
                identity_id=f"i-{u}",
            )
            for u in users
        ]
        digest = "0" * 64
        return new_plan(
            "wiki",
            actions,
            blocked,
            created_at="2026-01-05T00:00:00Z",
            base_commit=self.git.head() or "",
            snapshot_digests={"apps/wiki": digest, "identities/corp": digest},
            policy_digest=digest,
        )

    def propose(self, plan: Plan, report: str = "# Report\n") -> Proposal:
        return self.forge.propose(plan, yamlio.dump(plan.to_data()), report)

    def pr(self, state: str = "open") -> PullRequest:
        pr = self.fake.pr_for(BRANCH, state)
        assert pr is not None, f"no {state} pull request for {BRANCH}"
        return pr

    def merge(self, method: str = "merge") -> str:
        """Merge the open pull request on GitHub and pull main, as CI does before apply."""
        sha = self.fake.merge(self.pr().number, method)
        self.git.run("pull", "-q", "--ff-only", "origin", "main")
        return sha

    def approval_under(self, rules: Approvals) -> tuple[str, ...]:
        """Apply's question: the forge's approval held against a policy with `rules`."""
        self.rules["wiki"] = rules
        policy = Policy("policies/default.yaml", ("*",), "corp", approvals=rules)
        return approved(self.forge, "wiki", policy).approvers


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    fake = FakeGitHub(tmp_path, token=TOKEN, bot=BOT)
    fake.teams["acme/security"] = ["dave"]
    git = Git.init(tmp_path / "access")
    (git.root / "reconciler.yaml").write_text("version: 1\n")
    git.commit_paths(["reconciler.yaml"], "configure")
    git.run("remote", "add", "origin", str(fake.bare))
    git.run("push", "-q", "origin", "main")
    rules = {"wiki": Approvals(min_approvals=1, reviewers=(REVIEWER, "bob", "acme/security"))}
    owners: dict[str, tuple[str, ...]] = {}
    sleeps: list[float] = []

    def policy_for(app: str) -> Policy:
        return Policy(
            "policies/default.yaml",
            ("*",),
            "corp",
            approvals=rules[app],
            owners=owners.get(app, ()),
        )

    forge = GitHubForge(
        git,
        GitHubOptions(repository="acme/access", token_env="GH_TOKEN", api_url="https://gh.test"),
        policy_for,
        token=TOKEN,
        transport=httpx.WSGITransport(app=fake),
        retry=RetryPolicy(max_attempts=3, sleep=sleeps.append, jitter=lambda: 0.0),
    )
    return Lab(fake, git, forge, rules, owners, sleeps)


# --- proposing ----------------------------------------------------------------------------


def test_a_plan_opens_one_labelled_pull_request_asking_the_policy_reviewers(lab: Lab) -> None:
    plan = lab.plan("bob", "carl")
    assert lab.propose(plan, "# Two leavers\n") == Proposal.CREATED
    pr = lab.pr()
    assert (pr.head, pr.base, pr.author) == (BRANCH, "main", BOT)
    assert pr.title == "Deprovision 2 accounts in wiki"
    assert pr.body.startswith("# Two leavers")
    assert f"plan-id: {plan.id}" in pr.body
    assert pr.labels == ["deprovisioning"]
    assert pr.requested_users == [REVIEWER, "bob"]
    assert pr.requested_teams == ["security"]
    assert lab.fake.file_at(pr.head_sha, "plans/wiki.yaml") == yamlio.dump(plan.to_data()).encode()
    assert lab.forge.plan_of("wiki") == plan
    assert [p.app for p in lab.forge.open_plans()] == ["wiki"]


def test_the_owners_are_asked_too_each_once_and_never_the_author(lab: Lab) -> None:
    lab.fake.teams["acme/wiki-admins"] = ["frank"]
    lab.owners["wiki"] = (
        "Alice",  # a reviewer already, in another case
        "carol",
        BOT,  # the pull request's author
        "acme/wiki-admins",
        "acme/security",  # a reviewer team already
        "wiki-owners@example.com",  # emailed, not asked on GitHub
    )
    lab.propose(lab.plan("bob"))
    pr = lab.pr()
    assert pr.requested_users == [REVIEWER, "bob", "carol"]
    assert pr.requested_teams == ["security", "wiki-admins"]


def test_an_owner_github_refuses_does_not_stop_the_others_being_asked(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    lab.fake.collaborators = {REVIEWER, "bob"}
    lab.owners["wiki"] = ("zoe", "acme/gone")  # not a collaborator; no such team
    assert lab.propose(lab.plan("bob")) == Proposal.CREATED
    pr = lab.pr()
    assert pr.requested_users == [REVIEWER, "bob"]
    assert pr.requested_teams == ["security"]
    assert "collaborator" in caplog.text
    assert TOKEN not in caplog.text


def test_a_new_plan_updates_the_open_pull_request_in_place(lab: Lab) -> None:
    lab.propose(lab.plan("bob"))
    number = lab.pr().number
    assert lab.propose(lab.plan("bob")) == Proposal.UNCHANGED
    blocked = lab.plan("bob", "carl", blocked=["too many removals"])
    assert lab.propose(blocked) == Proposal.UPDATED
    pr = lab.pr()
    assert pr.number == number and len(lab.fake.pulls) == 1
    assert pr.title.endswith("(blocked)")
    assert pr.labels == ["deprovisioning", "blocked"]
    assert lab.propose(lab.plan("carl")) == Proposal.UPDATED
    assert lab.pr().labels == ["deprovisioning"]


def test_an_open_pull_request_that_lost_its_plan_id_is_rewritten_in_place(lab: Lab) -> None:
    lab.propose(lab.plan("bob"))
    lab.fake.pulls[1].body = "opened by hand"
    assert lab.propose(lab.plan("bob", "carl")) == Proposal.UPDATED
    assert len(lab.fake.pulls) == 1
    assert "plan-id" in lab.pr().body


def test_a_plan_closed_unmerged_is_not_proposed_again(lab: Lab) -> None:
    plan = lab.plan("bob")
    lab.propose(plan)
    lab.fake.close(lab.pr().number)
    assert lab.forge.plan_of("wiki") is None
    assert lab.propose(plan) == Proposal.REJECTED
    assert len(lab.fake.pulls) == 1 and lab.fake.pulls[1].state == "closed"
    # Another plan (someone else left) is a new question for the reviewers.
    assert lab.propose(lab.plan("bob", "carl")) == Proposal.CREATED
    assert lab.pr().number == 2


def test_close_comments_closes_and_deletes_the_branch_and_may_reopen_later(lab: Lab) -> None:
    plan = lab.plan("bob")
    lab.propose(plan)
    assert lab.forge.close("wiki") is True
    pr = lab.fake.pulls[1]
    assert pr.state == "closed"
    assert "nothing left to deprovision" in lab.fake.comments[1][0].body.lower()
    assert lab.fake.ref(BRANCH) is None
    assert lab.forge.close("wiki") is False
    # Closed by the tool is not a rejection: the same plan may be proposed again.
    assert lab.propose(plan) == Proposal.CREATED


def test_a_report_over_the_body_limit_becomes_a_summary_with_a_pointer(lab: Lab) -> None:
    report = "# Report\n\n" + "| bob | x |\n" * 20_000
    lab.propose(lab.plan("bob"), report)
    body = lab.pr().body
    assert len(body) <= GITHUB_BODY_LIMIT
    assert "plans/wiki.md" in body and "plan-id" in body
    # A body GitHub still refuses (its count differs) falls back to a short pointer.
    lab.fake.fail_next(422, message="body is too long (maximum is 65536 characters)",
                       match="PATCH")  # fmt: skip
    lab.propose(lab.plan("bob", "carl"), report)
    body = lab.pr().body
    assert len(body) < 1000 and "plans/wiki.md" in body and "plan-id" in body


def test_approve_is_refused_on_github(lab: Lab) -> None:
    with pytest.raises(PlanError, match="approve the pull request"):
        lab.forge.approve("wiki", [REVIEWER], None)  # type: ignore[arg-type]


# --- approval -----------------------------------------------------------------------------


def proposed(lab: Lab) -> int:
    lab.propose(lab.plan("bob", "carl"))
    return lab.pr().number


@pytest.mark.parametrize("method", ["merge", "squash"])
def test_an_approved_merged_plan_is_approved_by_its_reviewers(lab: Lab, method: str) -> None:
    number = proposed(lab)
    head = lab.pr().head_sha
    lab.fake.review(number, REVIEWER, "APPROVED")
    lab.fake.review(number, "bob", "COMMENTED")  # a comment is no review
    merge = lab.merge(method)
    approval = lab.forge.approval("wiki")
    assert approval.approvers == (REVIEWER,)
    assert (approval.commit, approval.reference) == (merge, f"#{number}")
    assert approval.verified["head_sha"] == head
    assert approval.verified["merge"] == ("squash" if method == "squash" else "merge commit")
    assert approval.verified["approvals"][0]["user"] == REVIEWER


def test_a_comment_after_an_approval_keeps_it(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, REVIEWER, "APPROVED")
    lab.fake.review(number, REVIEWER, "COMMENTED")
    lab.merge()
    assert lab.forge.approval("wiki").approvers == (REVIEWER,)


def test_an_approval_before_a_new_push_is_stale(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, REVIEWER, "APPROVED")
    lab.fake.push_to_branch(BRANCH, {"plans/wiki.md": "# edited\n"}, "edit report")
    lab.merge()
    with pytest.raises(ApprovalError, match="not the final head"):
        lab.forge.approval("wiki")


def test_a_plan_edited_after_the_last_approval_is_not_approved(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, REVIEWER, "APPROVED")
    plan = lab.plan("carl")  # narrower, but nobody approved it
    lab.fake.push_to_branch(BRANCH, {"plans/wiki.yaml": yamlio.dump(plan.to_data())}, "edit")
    lab.merge("squash")
    with pytest.raises(ApprovalError, match="not the final head"):
        lab.forge.approval("wiki")


def test_a_dismissed_review_does_not_count(lab: Lab) -> None:
    number = proposed(lab)
    review = lab.fake.review(number, REVIEWER, "APPROVED")
    lab.fake.dismiss(number, review.id)
    lab.merge()
    with pytest.raises(ApprovalError, match="dismissed"):
        lab.forge.approval("wiki")


def test_changes_requested_then_approved_counts_and_outstanding_changes_refuse(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, REVIEWER, "CHANGES_REQUESTED")
    lab.fake.review(number, REVIEWER, "APPROVED")
    lab.fake.review(number, "bob", "CHANGES_REQUESTED")
    lab.fake.review(number, "bob", "COMMENTED")  # a comment does not lift it
    lab.merge()
    with pytest.raises(ApprovalError, match="bob requested changes"):
        lab.forge.approval("wiki")
    lab.fake.review(number, "bob", "APPROVED")
    assert lab.approval_under(lab.rules["wiki"]) == (REVIEWER, "bob")


def test_changes_requested_by_someone_not_allowed_does_not_block(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, REVIEWER, "APPROVED")
    lab.fake.review(number, "mallory", "CHANGES_REQUESTED")
    lab.merge()
    assert lab.approval_under(lab.rules["wiki"]) == (REVIEWER,)


def test_an_approval_by_someone_not_allowed_is_refused(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, "mallory", "APPROVED")
    lab.merge()
    with pytest.raises(ApprovalError, match="mallory may not approve"):
        lab.approval_under(lab.rules["wiki"])


def test_the_author_never_counts(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, BOT, "APPROVED")
    lab.merge()
    with pytest.raises(ApprovalError, match="author"):
        lab.approval_under(Approvals(min_approvals=1, reviewers=()))


def test_a_team_member_counts_for_a_team_the_policy_lists(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, "dave", "APPROVED")
    lab.fake.review(number, "erin", "APPROVED")  # in no listed team
    lab.merge()
    rules = Approvals(min_approvals=1, reviewers=("acme/security",))
    assert lab.approval_under(rules) == ("dave", "erin")  # the forge's word: both approved
    assert lab.forge.approval("wiki").teams == {"acme/security": ("dave",)}
    with pytest.raises(ApprovalError, match="erin may not approve"):
        lab.approval_under(Approvals(min_approvals=2, reviewers=("acme/security",)))


def test_a_plan_pushed_straight_to_main_is_refused(lab: Lab) -> None:
    plan = lab.plan("bob")
    lab.fake.push_to_main({"plans/wiki.yaml": yamlio.dump(plan.to_data())}, "sneak")
    lab.git.run("pull", "-q", "--ff-only", "origin", "main")
    with pytest.raises(ApprovalError, match="pushed straight to main"):
        lab.forge.approval("wiki")


def test_a_plan_edited_on_main_after_its_merge_is_refused(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, REVIEWER, "APPROVED")
    lab.merge()
    assert lab.forge.approval("wiki").approvers == (REVIEWER,)
    plan = lab.plan("bob", "carl", "zed")
    lab.fake.push_to_main({"plans/wiki.yaml": yamlio.dump(plan.to_data())}, "widen")
    lab.git.run("pull", "-q", "--ff-only", "origin", "main")
    with pytest.raises(ApprovalError, match="not the merge of a pull request"):
        lab.forge.approval("wiki")


def test_reviews_are_read_across_pages(lab: Lab) -> None:
    number = proposed(lab)
    for i in range(150):
        lab.fake.review(number, f"user{i}", "COMMENTED")
    lab.fake.review(number, REVIEWER, "CHANGES_REQUESTED")
    lab.fake.review(number, "bob", "APPROVED")  # on page 2
    lab.merge()
    with pytest.raises(ApprovalError, match="alice requested changes"):
        lab.forge.approval("wiki")
    assert any("page=2" in r for r in lab.fake.requests if "/reviews" in r)


# --- GitHub's limits and errors -------------------------------------------------------


def test_a_429_is_waited_out_as_github_asks(lab: Lab) -> None:
    lab.fake.rate_limit(retry_after=7, match="GET /repos/acme/access/pulls")
    assert lab.propose(lab.plan("bob")) == Proposal.CREATED
    assert 7.0 in lab.sleeps


@pytest.mark.parametrize(("retry_after", "wait"), [(5, 5.0), (None, 30.0)])
def test_a_secondary_limit_403_is_waited_out(
    lab: Lab, retry_after: int | None, wait: float
) -> None:
    lab.fake.secondary_limit(retry_after=retry_after, match="POST /repos/acme/access/pulls")
    assert lab.propose(lab.plan("bob")) == Proposal.CREATED
    assert wait in lab.sleeps  # without Retry-After: a minute, capped by max_delay


def test_a_permission_403_fails_at_once_naming_the_permission(lab: Lab) -> None:
    lab.fake.forbid(match="POST /repos/acme/access/pulls", count=5)
    with pytest.raises(ConnectorError, match="pull-requests: write") as caught:
        lab.propose(lab.plan("bob"))
    assert sum(r.startswith("POST /repos/acme/access/pulls") for r in lab.fake.requests) == 1
    assert lab.sleeps == []
    assert TOKEN not in str(caught.value)


def test_rate_limits_that_never_end_give_up(lab: Lab) -> None:
    lab.fake.secondary_limit(retry_after=1, match="GET", count=1000)
    with pytest.raises(ConnectorError, match="rate limited"):
        lab.forge.plan_of("wiki")
    assert len(lab.fake.requests) == 3


def test_the_token_never_appears_in_errors(lab: Lab, tmp_path: Path) -> None:
    lab.fake.token = "another"  # the token is refused
    with pytest.raises(ConnectorError, match="401") as caught:
        lab.forge.plan_of("wiki")
    assert TOKEN not in str(caught.value) and "GH_TOKEN" in str(caught.value)
    # A remote URL carrying the token, as CI checkouts do.
    lab.fake.token = TOKEN
    lab.git.run("remote", "set-url", "origin", f"https://x-access-token:{TOKEN}@127.0.0.1:9/a.git")
    with pytest.raises(ReconcilerError) as pushed:
        lab.propose(lab.plan("bob"))
    assert TOKEN not in str(pushed.value)


def test_a_missing_token_is_a_configuration_error(lab: Lab) -> None:
    options = GitHubOptions(repository="acme/access", token_env="GH_TOKEN")
    with pytest.raises(ConfigError, match="GH_TOKEN"):
        GitHubForge.from_options(lab.git, options, lambda app: Policy("p", ("*",), "corp"), env={})


def test_the_apply_outcome_is_commented_on_the_pull_request(lab: Lab) -> None:
    number = proposed(lab)
    lab.fake.review(number, REVIEWER, "APPROVED")
    lab.merge()
    approval = lab.forge.approval("wiki")
    lab.forge.report_applied(
        approval, "apply wiki: disabled 2 of 2 accounts", "history/wiki/x.yaml"
    )
    comment = lab.fake.comments[number][-1].body
    assert "disabled 2 of 2 accounts" in comment
    assert "https://gh.test/acme/access/blob/main/history/wiki/x.yaml" in comment


# --- imports by pull request ----------------------------------------------------------


def pull_request_imports(lab: Lab) -> GitHubForge:
    options = GitHubOptions(
        repository="acme/access",
        token_env="GH_TOKEN",
        api_url="https://gh.test",
        import_mode="pull-request",
    )
    return GitHubForge(
        lab.git,
        options,
        lab.forge.policy_for,
        token=TOKEN,
        transport=httpx.WSGITransport(app=lab.fake),
    )


def import_commit(lab: Lab, text: str) -> str:
    (lab.git.root / "state.yaml").write_text(text)
    sha = lab.git.commit_paths(["state.yaml"], "import wiki: 1 new")
    assert sha is not None
    return sha


def test_imports_open_one_labelled_pull_request_updated_in_place(lab: Lab) -> None:
    forge = pull_request_imports(lab)
    main = lab.git.head()
    head = import_commit(lab, "1\n")
    messages = [
        "import wiki: 1 new\n\nNew:\n- <b>@mallory</b> `x`",
        "import identities corp: 2 new",
    ]
    first = forge.propose_imports(head, messages)
    assert first.outcome == Proposal.CREATED
    pr = lab.fake.pulls[first.number]
    assert (pr.head, pr.base, pr.labels) == ("reconciler/import", "main", ["import"])
    assert pr.title == "import: wiki: 1 new; identities corp: 2 new"
    assert "<b>" not in pr.body and "@mallory" not in pr.body  # no HTML, no mention
    assert lab.fake.ref("main") == main  # main is never pushed
    assert forge.open_plans() == []
    second = forge.propose_imports(import_commit(lab, "2\n"), messages[:1])
    assert (second.number, second.outcome) == (first.number, Proposal.UPDATED)
    assert lab.fake.pull(first.number).head_sha == lab.git.head()
    assert forge.close_imports() is True
    assert lab.fake.pulls[first.number].state == "closed"
    assert lab.fake.ref("reconciler/import") is None
    assert forge.close_imports() is False


def test_with_pull_request_imports_a_plan_must_rest_on_the_remote_main(lab: Lab) -> None:
    forge = pull_request_imports(lab)
    import_commit(lab, "not pushed\n")  # a local commit of main, not on GitHub
    plan = lab.plan("bob")
    with pytest.raises(PlanError, match="never pushes main"):
        forge.propose(plan, yamlio.dump(plan.to_data()), "# r\n")
    assert lab.fake.ref("main") != lab.git.head()
    lab.git.run("reset", "-q", "--hard", "origin/main")
    plan = lab.plan("bob")
    assert forge.propose(plan, yamlio.dump(plan.to_data()), "# r\n") == Proposal.CREATED
    pr = lab.pr()
    assert lab.fake.ref("main") == plan.base_commit
    assert lab.git.run("rev-parse", f"{pr.head_sha}^").strip() == plan.base_commit
