"""The local forge: a plan's "pull request" is the branch `reconciler/<app>` in the
access repo itself, and approving merges it into main with `Approved-by:` trailers.
No network.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler import yamlio
from reconciler.errors import PlanError
from reconciler.forge.base import OpenPlan, Proposal
from reconciler.git import Git, bot_env
from reconciler.plan import Plan

BRANCH_PREFIX = "reconciler/"


def branch_for(app: str) -> str:
    return f"{BRANCH_PREFIX}{app}"


def plan_path(app: str) -> str:
    return f"plans/{app}.yaml"


def report_path(app: str) -> str:
    return f"plans/{app}.md"


def read_plan(git: Git, rev: str, app: str) -> Plan | None:
    """The app's plan as it is at `rev`, or None if there is none there."""
    raw = git.show(rev, plan_path(app))
    if raw is None:
        return None
    try:
        return Plan.from_data(yamlio.load_bytes(raw, plan_path(app)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanError(f"{plan_path(app)}: not a valid plan ({exc}); revert your edits") from exc


def approval_trailers(approvers: Sequence[str]) -> str:
    return "\n".join(f"Approved-by: {name}" for name in approvers)


def parse_approvers(message: str) -> list[str]:
    names = []
    for line in message.splitlines():
        if line.startswith("Approved-by:"):
            name = line.removeprefix("Approved-by:").strip()
            if name and name not in names:
                names.append(name)
    return names


class LocalForge:
    def __init__(self, git: Git, main_branch: str = "main") -> None:
        self.git = git
        self.main = main_branch

    def _edited_by_reviewer(self, branch: str) -> bool:
        bot = bot_env()["GIT_AUTHOR_EMAIL"]
        commits = self.git.log(f"{self.main}..{branch}")
        return any(not c.author.endswith(f"<{bot}>") for c in commits)

    def propose(self, plan: Plan, plan_yaml: str, report_md: str) -> Proposal:
        branch = branch_for(plan.app)
        existing = self.git.head(branch)
        if existing:
            current = read_plan(self.git, branch, plan.app)
            if current is not None and current.id == plan.id:
                return Proposal.UNCHANGED
            if self._edited_by_reviewer(branch):
                return Proposal.KEPT_REVIEWER_EDITS
        base = self.git.head(self.main)
        if base is None:
            raise PlanError(f"branch {self.main!r} has no commits yet")
        files = {
            plan_path(plan.app): plan_yaml.encode("utf-8"),
            report_path(plan.app): report_md.encode("utf-8"),
        }
        count = len(plan.active_actions)
        state = " (blocked)" if plan.status == "blocked" else ""
        message = f"plan {plan.app}: deprovision {count} account{'s' if count != 1 else ''}{state}"
        self.git.commit_files_to_branch(branch, base, files, f"{message}\n\nPlan-Id: {plan.id}")
        return Proposal.UPDATED if existing else Proposal.CREATED

    def close(self, app: str) -> bool:
        branch = branch_for(app)
        if not self.git.head(branch):
            return False
        if self._edited_by_reviewer(branch):
            # A reviewer's work is never thrown away by the tool.
            return False
        self.git.delete_branch(branch)
        return True

    def open_plans(self) -> list[OpenPlan]:
        plans = []
        for branch in self.git.branches(f"{BRANCH_PREFIX}*"):
            app = branch.removeprefix(BRANCH_PREFIX)
            plan = read_plan(self.git, branch, app)
            if plan is not None:
                plans.append(OpenPlan(app=app, branch=branch, plan=plan))
        return plans

    def plan_of(self, app: str) -> Plan | None:
        branch = branch_for(app)
        return read_plan(self.git, branch, app) if self.git.head(branch) else None

    def approve(self, app: str, approvers: Sequence[str]) -> str:
        branch = branch_for(app)
        if not self.git.head(branch):
            raise PlanError(f"no open plan for app {app!r} (branch {branch} does not exist)")
        if self.git.show("HEAD", plan_path(app)) is not None:
            raise PlanError(
                f"main already holds an approved plan for {app!r} that was not applied; "
                f"run `reconciler apply --app {app} --confirm` first"
            )
        self.git.require_branch(self.main)
        plan = read_plan(self.git, branch, app)
        count = len(plan.active_actions) if plan else 0
        message = (
            f"approve {app}: deprovision {count} account{'s' if count != 1 else ''}\n\n"
            f"Merges {branch}.\n\n{approval_trailers(approvers)}"
        )
        sha = self.git.merge(branch, message)
        self.git.delete_branch(branch)
        return sha
