"""Policy evaluation: which accounts to propose for removal, which are protected,
which are blocked by a guard (DESIGN §5, §6). Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.config import Policy
from reconciler.correlate import Link
from reconciler.model import Account, Identity
from reconciler.outcome import Ambiguous, Protected
from reconciler.plan import Action

TRIGGERS = {
    "deprovisioned": "idp_deprovisioned",
    "suspended": "idp_suspended",
    "missing": "idp_missing",
}


@dataclass(frozen=True)
class Evaluation:
    actions: tuple[Action, ...]
    protected: tuple[Protected, ...]
    unmatched: tuple[Account, ...]
    ambiguous: tuple[Ambiguous, ...]


def protection(account: Account, policy: Policy) -> str | None:
    """Why an account may never be deprovisioned, or None."""
    if account.type == "service":
        return "service account"
    names = {v.casefold() for v in (account.id, account.username, account.email) if v}
    for pattern, folded in _folded(policy.protected):
        if any(fnmatch.fnmatchcase(name, folded) for name in names):
            return f"protected by {policy.source_file} ({pattern!r})"
    return None


@functools.cache
def _folded(patterns: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # Once per policy, not once per account and pattern.
    return tuple((pattern, pattern.casefold()) for pattern in patterns)


def evaluate(
    accounts: Mapping[str, Account],
    identities: Mapping[str, Identity],
    links: Mapping[str, Link],
    policy: Policy,
    mode: str,
) -> Evaluation:
    """Candidates for deprovisioning, protected, unmatched and ambiguous accounts."""
    actions: list[Action] = []
    protected: list[Protected] = []
    unmatched: list[Account] = []
    ambiguous: list[Ambiguous] = []
    for account_id in sorted(accounts):
        account = accounts[account_id]
        reason = protection(account, policy)
        if reason:
            protected.append(Protected(account, reason))
            continue
        if account.status != "active":
            continue
        link = links.get(account_id)
        if link is None or not link.matched:
            if link is not None and link.ambiguous:
                ambiguous.append(Ambiguous(account, link.candidates))
            elif policy.unmatched == "report":
                unmatched.append(account)
            continue
        assert link.identity_id is not None
        identity = identities[link.identity_id]
        if identity.status not in policy.deprovision_when or identity.status not in TRIGGERS:
            continue
        actions.append(
            Action(
                account_id=account.id,
                username=account.username,
                email=account.email,
                display_name=account.display_name,
                mode=mode,
                reason=TRIGGERS[identity.status],
                identity_id=identity.id,
                evidence={
                    "identity_status": identity.status,
                    "identity_email": identity.email,
                    "matched_by": link.rule,
                    "roles": list(account.roles),
                    "entitlements": list(account.entitlements),
                },
            )
        )
    return Evaluation(tuple(actions), tuple(protected), tuple(unmatched), tuple(ambiguous))


@dataclass(frozen=True)
class PullState:
    """What the check knows about the identity pull behind an evaluation."""

    source: str
    error: str = ""  # the pull failed or was partial: nothing may be proposed
    count: int = 0  # identities in this pull (tombstones excluded)
    previous_count: int | None = None  # in the last snapshot, if any


def identity_blocks(state: PullState, policy: Policy) -> list[str]:
    """Reasons that forbid proposing anything: the identity data cannot be trusted."""
    if state.error:
        return [
            f"pulling identity source {state.source!r} failed: {state.error}; no deprovisioning "
            "is proposed until a complete pull succeeds"
        ]
    if state.count == 0:
        return [
            f"identity source {state.source!r} returned no identities; an empty pull is never "
            "read as everyone having left: check the source's credentials and filter"
        ]
    return []


def guard_blocks(
    state: PullState, policy: Policy, candidates: int, active_accounts: int
) -> list[str]:
    """Reasons that block a plan: it is still written, but cannot be applied without an
    override (`guards.allow_blocked_plans`) merged into the policy."""
    reasons = []
    guards = policy.guards
    if state.previous_count and state.count < state.previous_count:
        shrink = (state.previous_count - state.count) / state.previous_count
        if shrink > guards.max_identity_shrink:
            reasons.append(
                f"identity source {state.source!r} shrank by {shrink:.0%} since the last pull "
                f"({state.previous_count} → {state.count}), more than max_identity_shrink "
                f"{guards.max_identity_shrink:.0%}"
            )
    if candidates > guards.max_per_run:
        reasons.append(
            f"{candidates} accounts to deprovision, more than max_per_run {guards.max_per_run}"
        )
    if active_accounts and candidates / active_accounts > guards.max_fraction:
        reasons.append(
            f"{candidates} of {active_accounts} active accounts "
            f"({candidates / active_accounts:.0%}) to deprovision, "
            f"more than max_fraction {guards.max_fraction:.0%}"
        )
    return reasons
