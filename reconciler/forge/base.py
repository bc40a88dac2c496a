"""The contract of a forge."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler.plan import Plan


class Proposal(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    # A reviewer edited the open plan; the tool does not overwrite their work.
    KEPT_REVIEWER_EDITS = "kept reviewer edits"


@dataclass(frozen=True)
class OpenPlan:
    app: str
    branch: str
    plan: Plan


class Forge(Protocol):
    # Open or update the one pull request for the app's plan.
    def propose(self, plan: Plan, plan_yaml: str, report_md: str) -> Proposal: ...

    # Close the app's pull request (nothing to deprovision anymore); True if one was open.
    def close(self, app: str) -> bool: ...

    # The app's open plan, if any.
    def plan_of(self, app: str) -> Plan | None: ...

    # The plans proposed and not yet merged.
    def open_plans(self) -> list[OpenPlan]: ...

    # Merge the app's plan recording who approved it; returns the merge commit.
    def approve(self, app: str, approvers: Sequence[str]) -> str: ...
