"""`reconciler approve`: merge an app's plan branch, recording who approved it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.commands import EXIT_OK, open_repo
from reconciler.errors import ApprovalError
from reconciler.output import emit


@dataclass(frozen=True)
class ApproveOptions:
    repo: Path
    app: str
    approvers: tuple[str, ...]


def approve(options: ApproveOptions) -> int:
    repo = open_repo(options.repo)
    repo.select_apps((options.app,))
    policy = repo.settings.policy_for(options.app)
    rules = policy.approvals
    approvers = tuple(dict.fromkeys(a.strip() for a in options.approvers if a.strip()))
    refused = [a for a in approvers if rules.reviewers and a not in rules.reviewers]
    if refused:
        raise ApprovalError(
            f"{', '.join(refused)} may not approve plans for {options.app!r}; "
            f"{policy.source_file} allows: {', '.join(rules.reviewers)}"
        )
    if len(approvers) < rules.min_approvals:
        raise ApprovalError(
            f"{options.app}: {len(approvers)} approval(s) given, {policy.source_file} requires "
            f"{rules.min_approvals}; pass --as once per reviewer"
        )
    forge = repo.forge()
    plan = forge.plan_of(options.app)
    if (
        plan is not None
        and plan.status == "blocked"
        and plan.id not in policy.guards.allow_blocked_plans
    ):
        emit(
            f"note: plan {plan.id} is blocked ({'; '.join(plan.blocked_reasons)}); "
            "apply will refuse it until guards.allow_blocked_plans lists it"
        )
    repo.git.require_clean("plans")
    sha = forge.approve(options.app, approvers)
    emit(f"approved plan for {options.app} by {', '.join(approvers)}: merged as {sha[:10]}")
    emit(f"next: reconciler apply --app {options.app} --confirm")
    return EXIT_OK
