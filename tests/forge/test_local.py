"""The local forge: plan branches in the access repo itself."""

from __future__ import annotations

from pathlib import Path

from reconciler.forge.base import Proposal
from reconciler.forge.local import LocalForge
from reconciler.git import Git
from reconciler.plan import Plan, new_plan


def plan_for(app: str, base: str) -> Plan:
    return new_plan(
        app, [], ["held for the test"], created_at="2026-11-26T08:00:00Z",
        base_commit=base, snapshot_digests={}, policy_digest="0" * 64,
    )  # fmt: skip


def test_a_branch_made_after_the_forge_listed_them_is_not_overwritten(tmp_path: Path) -> None:
    """The forge lists its plan branches once per run; one a reviewer makes meanwhile is
    still found before anything is written to it, and their work is kept."""
    git = Git.init(tmp_path)
    (tmp_path / "README").write_text("access\n")
    base = git.commit_paths(["README"], "start")
    assert base is not None
    forge = LocalForge(git)
    assert forge.plan_of("wiki") is None  # the list is read: no branch yet

    git.run("branch", "reconciler/wiki", base)
    git.run("checkout", "-q", "reconciler/wiki")
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "wiki.md").write_text("a reviewer's notes\n")
    git.commit_paths(["plans"], "notes", {"GIT_AUTHOR_NAME": "Ann", "GIT_AUTHOR_EMAIL": "ann@x"})
    git.run("checkout", "-q", "main")
    reviewed = git.head("reconciler/wiki")

    outcome = forge.propose(plan_for("wiki", base), "plan\n", "report\n")
    assert outcome == Proposal.KEPT_REVIEWER_EDITS
    assert git.head("reconciler/wiki") == reviewed
    assert forge.close("wiki") is False  # nor deleted
    assert git.head("reconciler/wiki") == reviewed


def test_a_branch_deleted_after_the_forge_listed_them_is_not_an_error(tmp_path: Path) -> None:
    git = Git.init(tmp_path)
    (tmp_path / "README").write_text("access\n")
    base = git.commit_paths(["README"], "start")
    assert base is not None
    forge = LocalForge(git)
    assert forge.propose(plan_for("wiki", base), "plan\n", "report\n") == Proposal.CREATED
    git.run("branch", "-D", "reconciler/wiki")
    assert forge.close("wiki") is False
