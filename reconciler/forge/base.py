"""The contract of a forge: where a plan's pull request lives, and the one place that
knows whether a merged plan was approved (DESIGN §8)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.actor import Person
from reconciler.plan import Plan


class Proposal(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    # A reviewer edited the open plan; the tool does not overwrite their work.
    KEPT_REVIEWER_EDITS = "kept reviewer edits"
    # Reviewers closed this very plan's pull request without merging it: it stays closed.
    REJECTED = "rejected (its pull request was closed unmerged; not proposed again)"


IMPORT_BRANCH = "reconciler/import"


@dataclass(frozen=True)
class ImportProposal:
    """The one pull request that brings a check's imports to main
    (`forge.import_mode: pull-request`)."""

    number: int
    outcome: Proposal  # CREATED or UPDATED
    url: str = ""


@dataclass(frozen=True)
class OpenPlan:
    app: str
    branch: str
    plan: Plan


@dataclass(frozen=True)
class Approval:
    """What the forge verified about the plan now on main."""

    app: str
    commit: str  # the commit that brought the approved plan to main
    approvers: tuple[str, ...]
    at: str  # when it was approved (ISO 8601)
    reference: str  # how people find the approval: "merge 1a2b3c4d5e", "#12"
    verified: Mapping[str, Any] = field(default_factory=dict)  # recorded in the history file
    # For policies that list teams (`org/slug`) as reviewers: the approvers the forge
    # found to be members of each such team.
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Forge(Protocol):
    # Open or update the one pull request for the app's plan.
    def propose(self, plan: Plan, plan_yaml: str, report_md: str) -> Proposal: ...

    # Close the app's pull request (nothing to deprovision anymore); True if one was open.
    def close(self, app: str) -> bool: ...

    # The app's open plan, if any.
    def plan_of(self, app: str) -> Plan | None: ...

    # The plans proposed and not yet merged.
    def open_plans(self) -> list[OpenPlan]: ...

    # Where a reviewer reviews the app's plan: its pull request's URL, or its branch.
    def review_link(self, app: str) -> str: ...

    # Why the app's last proposal is not proposed again (a reviewer closed it unmerged),
    # or None.
    def rejection(self, app: str) -> str | None: ...

    # Merge the app's plan recording who approved it; returns the merge commit.
    def approve(self, app: str, approvers: Sequence[str], author: Person) -> str: ...

    # How the app's plan on main got there and who approved it; ApprovalError when it
    # did not arrive through an approved proposal that changed nothing but the plan.
    def approval(self, app: str) -> Approval: ...

    # `forge.import_mode: pull-request`: point IMPORT_BRANCH at `head` (main's head plus
    # the check's import commits, whose messages are `imports`), push it, and open or
    # update its one pull request. Never pushes main.
    def propose_imports(self, head: str, imports: Sequence[str]) -> ImportProposal: ...

    # Bring main's new commits (a check's imports) to where the forge keeps main, before
    # any plan is proposed on them: the github forge pushes them, rebased on a main that
    # other checks pushed meanwhile (`push.push_rebasing`); the local forge has nothing
    # to do. How many rebases it took. Never pushes with `import_mode: pull-request`.
    def publish(self) -> int: ...

    # Close the import pull request (main holds what the check pulled); True if one was open.
    def close_imports(self) -> bool: ...

    # Tell the approval's reviewers what the apply did: `outcome` is a one-line summary,
    # `journal` the history file's path in the repository. Best effort: raises
    # ReconcilerError, which the apply records as a note.
    def report_applied(self, approval: Approval, outcome: str, journal: str) -> None: ...
