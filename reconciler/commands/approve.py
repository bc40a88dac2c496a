"""`reconciler approve`: merge an app's plan branch, recording who approved it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler import actor, lock
from reconciler.actor import valid_name
from reconciler.commands import EXIT_OK, open_repo
from reconciler.errors import ConfigError
from reconciler.inert import terminal
from reconciler.output import emit
from reconciler.policy import check_approvers


@dataclass(frozen=True)
class ApproveOptions:
    repo: Path
    app: str
    approvers: tuple[str, ...]


def approve(options: ApproveOptions) -> int:
    repo = open_repo(options.repo)
    repo.select_apps((options.app,))
    if repo.settings.config.forge.type == "github":
        raise ConfigError(
            "forge github: plans are approved on GitHub, not with `reconciler approve`: "
            f"reviewers approve the pull request from reconciler/{options.app} and merge it; "
            "then run `reconciler apply`"
        )
    policy = repo.settings.policy_for(options.app)
    approvers = tuple(dict.fromkeys(valid_name(a) for a in options.approvers))
    check_approvers(options.app, approvers, policy.approvals, policy.source_file)
    author = actor.resolve(repo.git, approvers[0])
    forge = repo.forge()
    with lock.exclusive(repo.git, "approve"):
        repo.require_committed()
        plan = forge.plan_of(options.app)
        if (
            plan is not None
            and plan.status == "blocked"
            and plan.id not in policy.guards.allow_blocked_plans
        ):
            emit(
                f"note: plan {plan.id} is blocked ({terminal('; '.join(plan.blocked_reasons))}); "
                "apply will refuse it until guards.allow_blocked_plans lists it"
            )
        sha = forge.approve(options.app, approvers, author)
    emit(f"approved plan for {options.app} by {', '.join(approvers)}: merged as {sha[:10]}")
    emit(f"next: reconciler apply --app {options.app} --confirm")
    return EXIT_OK
