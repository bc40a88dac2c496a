"""What a check found for one app: the input of the report and of the summaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from reconciler.config import DutySeparation, PolicyException
from reconciler.diff import AccountDiff
from reconciler.model import Account
from reconciler.plan import DEPROVISION, ENABLE, REMOVE_ROLES, Plan, tally
from reconciler.seats import SeatCost


@dataclass(frozen=True)
class Protected:
    account: Account
    reason: str  # e.g. "service account", "policies/default.yaml protects 'breakglass'"


@dataclass(frozen=True)
class Excepted:
    """An account a policy exception keeps out of plans until its `until` date."""

    account: Account
    exception: PolicyException

    def days_left(self, today: date) -> int:
        """Days the exception still holds after `today` (0: today is its last day)."""
        return (self.exception.until - today).days


@dataclass(frozen=True)
class Waiting:
    """An account of a person gone for less than the policy's `grace`: proposed from
    `proposed_from` if they are still gone then."""

    account: Account
    gone_since: datetime
    proposed_from: datetime


@dataclass(frozen=True)
class Conflict:
    """An account holding every role of a set the policy keeps apart."""

    account: Account
    rule: DutySeparation


@dataclass(frozen=True)
class Ambiguous:
    account: Account
    identity_ids: tuple[str, ...]


@dataclass(frozen=True)
class AppCheck:
    """Everything a check learned about one app."""

    app: str
    identity_source: str
    diff: AccountDiff = field(default_factory=AccountDiff)
    plan: Plan | None = None
    unmatched: tuple[Account, ...] = ()
    ambiguous: tuple[Ambiguous, ...] = ()
    protected: tuple[Protected, ...] = ()
    excepted: tuple[Excepted, ...] = ()
    waiting: tuple[Waiting, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    # Why deprovisioning was not proposed or is blocked (failed pulls, guards).
    blocked_reasons: tuple[str, ...] = ()
    # A pull of the app itself failed: nothing was imported.
    app_error: str = ""
    account_count: int = 0
    seat_cost: SeatCost | None = None  # the app's, from its policy
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The policy's deadline, when the check ran, and since when each identity behind the
    # plan's actions has been gone (the import commit that first showed it, by identity
    # id): what the report needs to say which removals are already late.
    deadline: timedelta | None = None
    grace: timedelta | None = None  # the policy's, when it has one
    checked_at: datetime | None = None
    gone_since: Mapping[str, datetime] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """The app could not be checked: its pull failed, or its identity source's did and
        nothing could be proposed. (A plan blocked by a guard is not a failure.)"""
        return bool(self.app_error) or (bool(self.blocked_reasons) and self.plan is None)

    @property
    def to_deprovision(self) -> int:
        """Accounts the plan removes (skipped actions and role removals not counted)."""
        return tally(self.plan.active_actions)[DEPROVISION] if self.plan else 0

    @property
    def roles_to_remove(self) -> int:
        """Accounts the plan takes roles from (skipped actions not counted)."""
        return tally(self.plan.active_actions)[REMOVE_ROLES] if self.plan else 0

    @property
    def to_enable(self) -> int:
        """Accounts the plan re-enables (skipped actions not counted)."""
        return tally(self.plan.active_actions)[ENABLE] if self.plan else 0
