"""Policy evaluation: which accounts to propose for removal, which are protected,
which are blocked by a guard (DESIGN §5, §6). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.clock import read_time, timestamp
from reconciler.config import Approvals, Policy, PolicyException, RoleRule
from reconciler.correlate import Link, Matcher, correlate
from reconciler.errors import ApprovalError
from reconciler.model import Account, Identity
from reconciler.outcome import Ambiguous, Conflict, Excepted, Protected, Waiting
from reconciler.plan import (
    DELETE_AFTER,
    DEPROVISION,
    ENABLE,
    REMOVE_ROLES,
    RETURNED,
    ROLE_NOT_ALLOWED,
    Action,
)

INACTIVE = "inactive"
# Recorded in a graded removal's action: since when the account has been disabled.
DISABLED_SINCE = "disabled_since"
# Recorded in an inactive account's action: its last sign-in as the app said then.
LAST_LOGIN = "last_login"
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
    excepted: tuple[Excepted, ...] = ()
    waiting: tuple[Waiting, ...] = ()


def protection(account: Account, policy: Policy) -> str | None:
    """Why an account may never be deprovisioned, or None."""
    if account.type == "service":
        return "service account"
    matches = _any_protected(policy.protected)
    if matches is None:
        return None
    names = [v.casefold() for v in (account.id, account.username, account.email) if v]
    if not any(map(matches, names)):
        return None  # the common case: one regular expression for every pattern
    for pattern, folded in _folded(policy.protected):
        if any(fnmatch.fnmatchcase(name, folded) for name in names):
            return f"protected by {policy.source_file} ({pattern!r})"
    return None


def idle_since(account: Account, policy: Policy, now: datetime) -> datetime | None:
    """When the account last signed in, if that is longer ago than the policy's
    `inactive_after` at `now`; None when it is not (or the app does not say: unknown is
    never inactive)."""
    if policy.inactive_after is None or not account.last_login:
        return None
    if account.last_login > _cutoff_text(now, policy.inactive_after):
        return None  # the common case, told by comparing text (`…Z` times sort as text)
    last = read_time(account.last_login)
    if last is None or now - last <= policy.inactive_after:
        return None
    return last


@functools.lru_cache(maxsize=4)
def _cutoff_text(now: datetime, limit: timedelta) -> str:
    # Once per evaluation (one `now`), not once per account.
    return timestamp(now - limit)


def exception_for(
    account: Account, identity: Identity, policy: Policy, app: str
) -> PolicyException | None:
    """The policy's exception for this account of `app` and the person it is linked to,
    or None; of several, the one that lasts longest (then the first written)."""
    by_name = _exceptions_by_name(policy.exceptions)
    found: tuple[PolicyException, int] | None = None
    for names, of_account in (
        ((account.id, account.username, account.email), True),
        ((identity.id, identity.email, identity.username), False),
    ):
        for name in names:
            for position, granted in by_name.get(name.casefold(), ()) if name else ():
                if bool(granted.account) != of_account or (granted.app and granted.app != app):
                    continue
                if found is None or (granted.until, -position) > (found[0].until, -found[1]):
                    found = (granted, position)
    return found[0] if found is not None else None


@functools.lru_cache(maxsize=8)
def _exceptions_by_name(
    exceptions: tuple[PolicyException, ...],
) -> dict[str, list[tuple[int, PolicyException]]]:
    """The exceptions by the name they give (casefolded), with their place in the policy:
    once per policy, not once per account and exception."""
    index: dict[str, list[tuple[int, PolicyException]]] = {}
    for position, granted in enumerate(exceptions):
        index.setdefault((granted.account or granted.person).casefold(), []).append(
            (position, granted)
        )
    return index


def admits(rule: RoleRule, identity: Identity) -> bool:
    """Whether the rule lets `identity` hold its role: a member of one of its groups, in
    one of its departments, with one of its titles, or one of its people (by id, email
    or username); all but groups compare without regard to case."""
    if rule.groups and not set(rule.groups).isdisjoint(identity.groups):
        return True
    if identity.department and identity.department.casefold() in rule.departments:
        return True
    if identity.title and identity.title.casefold() in rule.titles:
        return True
    if not rule.people:
        return False
    names = (identity.id, identity.email, identity.username)
    return any(name and name.casefold() in rule.people for name in names)


def denied_roles(account: Account, identity: Identity, policy: Policy) -> tuple[str, ...]:
    """The roles of `account` that the policy's `allowed_roles` does not give `identity`,
    its owner (sorted, like the account's roles); roles without a rule are anyone's."""
    rules = policy.allowed_roles
    return tuple(
        role for role in account.roles if role in rules and not admits(rules[role], identity)
    )


def unheld_groups(policy: Policy, identities: Mapping[str, Identity]) -> tuple[str, ...]:
    """Groups the policy's role rules name that no identity holds: more likely a pull
    that lost its groups, or a typo, than a role no one may hold."""
    named = {group for rule in policy.allowed_roles.values() for group in rule.groups}
    if not named:
        return ()
    for identity in identities.values():
        if identity.groups:
            named.difference_update(identity.groups)
            if not named:
                return ()
    return tuple(sorted(named))


@functools.cache
def _any_protected(patterns: tuple[str, ...]) -> Callable[[str], object] | None:
    """Whether a case-folded name matches any of `patterns` (fnmatch globs, compared
    case-folded), as one compiled expression; None when there are no patterns."""
    if not patterns:
        return None
    either = "|".join(fnmatch.translate(folded) for _, folded in _folded(patterns))
    return re.compile(either).match


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
    *,
    app: str,
    now: datetime,
    idle_mode: str = "",
    role_mode: str = "",
) -> Evaluation:
    """Candidates for deprovisioning, protected, unmatched, ambiguous and excepted
    accounts of `app` at `now` (an exception holds through its `until` day). The grace
    is judged after, on the candidates only (`held_back`).

    With `idle_mode` (the mode an inactive account is proposed with: disable, or a
    manual task; '' when the app supports neither), an account of someone still there
    whose last sign-in is older than the policy's `inactive_after` is proposed for its
    own reason, `inactive`; an unknown last sign-in is never inactive.

    With `role_mode` (how the app takes a role: remove_roles through its API, or a
    manual task), an account of someone still there that holds roles the policy's
    `allowed_roles` does not give them gets an action of op `remove_roles` for those
    roles, reason `role_not_allowed`: the account stays."""
    actions: list[Action] = []
    protected: list[Protected] = []
    unmatched: list[Account] = []
    ambiguous: list[Ambiguous] = []
    excepted: list[Excepted] = []
    # In any order: the lists are sorted by account id at the end (fewer to sort).
    for account_id, account in accounts.items():
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
        left = identity.status in policy.deprovision_when and identity.status in TRIGGERS
        idle = None if left or not idle_mode else idle_since(account, policy, now)
        denied: tuple[str, ...] = ()
        if not left and idle is None and role_mode and policy.allowed_roles:
            denied = denied_roles(account, identity, policy)
        if not left and idle is None and not denied:
            continue
        granted = exception_for(account, identity, policy, app) if policy.exceptions else None
        if granted is not None and now.date() <= granted.until:
            excepted.append(Excepted(account, granted))
            continue
        evidence = _evidence(account, identity, link.rule)
        if idle is not None:
            # The app's own word, read with this pull: never in a snapshot (live data).
            evidence[LAST_LOGIN] = account.last_login
        if granted is not None:
            # Proposed again once it has run out, with it as the account's history.
            evidence["exception_expired"] = granted.to_evidence()
        if denied:
            evidence["identity_groups"] = list(identity.groups)
            if identity.department:
                evidence["identity_department"] = identity.department
            if identity.title:
                evidence["identity_title"] = identity.title
            actions.append(
                _action(
                    account, identity, role_mode, ROLE_NOT_ALLOWED, evidence, REMOVE_ROLES, denied
                )
            )
            continue
        reason = TRIGGERS[identity.status] if left else INACTIVE
        actions.append(_action(account, identity, mode if left else idle_mode, reason, evidence))
    return Evaluation(
        tuple(sorted(actions, key=lambda a: a.account_id)),
        tuple(sorted(protected, key=lambda p: p.account.id)),
        tuple(sorted(unmatched, key=lambda a: a.id)),
        tuple(sorted(ambiguous, key=lambda a: a.account.id)),
        tuple(sorted(excepted, key=lambda e: e.account.id)),
    )


def effective_mode(wanted: str, modes: Collection[str]) -> str | None:
    """The mode an action will use: the policy's if the app supports it, else a manual
    task for apps without an API; None if the app supports neither."""
    if wanted in modes:
        return wanted
    if "manual" in modes:
        return "manual"
    # Never fall back from delete to disable or back: the policy's choice is deliberate.
    return None


@dataclass(frozen=True)
class Assessment:
    """Everything check proposes and apply verifies for one app: the one computation
    both commands share (DESIGN §9), so that a rule cannot drift between them."""

    evaluation: Evaluation
    blocked_reasons: tuple[str, ...]
    conflicts: tuple[Conflict, ...] = ()

    @property
    def actions(self) -> tuple[Action, ...]:
        return self.evaluation.actions


def assess(
    app: str,
    accounts: Mapping[str, Account],
    identities: Mapping[str, Identity],
    pull: PullState,
    policy: Policy,
    modes: Collection[str],
    now: datetime,
    gone_since: Callable[[set[str]], Mapping[str, datetime]] | None = None,
    disabled_since: Callable[[set[str]], Mapping[str, datetime]] | None = None,
    matcher: Matcher | None = None,
) -> Assessment:
    """Actions, guards and blocked reasons for `app` from its snapshot and the identity
    snapshot, under `policy`, at `now`. Pure but for `gone_since`, an I/O edge that says
    since when some identities have been gone: with it and a policy `grace`, it is asked
    once, for the people the plan would otherwise name (`held_back`). Check and apply's
    rebuild of a plan both judge the grace this way, so they agree; without it (apply's
    live check asks whether the person is still gone, not for how long) it is not
    judged. `disabled_since`, another I/O edge (since when accounts reconciler disabled
    have stayed disabled), is asked only with a policy `delete_after` (`graded`).
    `matcher`, `identities` already indexed, is used when it links by the policy's rules."""
    if matcher is None or not matcher.fits(policy.match, policy.domain_aliases):
        matcher = Matcher(identities.values(), policy.match, policy.domain_aliases)
    links = matcher.links(accounts.values())
    mode = effective_mode(policy.mode, modes)
    idle_mode = effective_mode("disable", modes) or ""
    role_mode = effective_mode(REMOVE_ROLES, modes) or ""
    evaluation = evaluate(
        accounts,
        identities,
        links,
        policy,
        mode or "",
        app=app,
        now=now,
        idle_mode=idle_mode,
        role_mode=role_mode,
    )
    evaluation = held_back(evaluation, accounts, policy, now, gone_since)
    if policy.delete_after is not None and disabled_since is not None:
        later = graded(accounts, identities, links, policy, now, modes, disabled_since, app=app)
        actions = tuple(sorted((*evaluation.actions, *later), key=lambda a: a.account_id))
        evaluation = dataclasses.replace(evaluation, actions=actions)
    blocked: list[str] = []
    if mode is None and evaluation.actions:
        blocked.append(
            f"{app} supports none of the policy's mode {policy.mode!r}; "
            "change `deprovision.mode` in the policy"
        )
    taking = any(a.takes_roles for a in evaluation.actions)
    blocked += role_blocks(app, policy, identities, role_mode, taking)
    active = sum(1 for a in accounts.values() if a.status == "active")
    blocked += guard_blocks(pull, policy, len(evaluation.actions), active)
    conflicts = duty_conflicts(accounts, policy)
    blocked += duty_blocks(conflicts, evaluation.actions)
    return Assessment(evaluation, tuple(blocked), conflicts)


def graded(
    accounts: Mapping[str, Account],
    identities: Mapping[str, Identity],
    links: Mapping[str, Link],
    policy: Policy,
    now: datetime,
    modes: Collection[str],
    disabled_since: Callable[[set[str]], Mapping[str, datetime]],
    *,
    app: str,
) -> tuple[Action, ...]:
    """Graded removal (`deprovision.delete_after`) of the disabled accounts: delete one
    that reconciler disabled once it has stayed disabled that long while its person is
    still gone (reason `delete_after`), and enable one whose person is active again
    (op `enable`, reason `returned`): never silently, always as a plan's action.
    `disabled_since` says, for some disabled accounts, since when they have been
    disabled, and only for those reconciler disabled; it is asked once, for the disabled
    accounts linked to someone gone or back. Protected and excepted accounts are left
    alone, like the rest of the policy leaves them."""
    assert policy.delete_after is not None
    candidates: dict[str, tuple[Account, Identity, bool]] = {}
    for account_id, account in accounts.items():
        link = links.get(account_id)
        if account.status != "disabled" or link is None or link.identity_id is None:
            continue
        identity = identities[link.identity_id]
        left = identity.status in policy.deprovision_when and identity.status in TRIGGERS
        if (left or identity.status == "active") and protection(account, policy) is None:
            candidates[account_id] = (account, identity, left)
    since_of = disabled_since(set(candidates)) if candidates else {}
    delete_mode = effective_mode("delete", modes)
    enable_mode = effective_mode(ENABLE, modes)
    actions = []
    for account_id in sorted(since_of.keys() & candidates.keys()):
        account, identity, left = candidates[account_id]
        since = since_of[account_id]
        granted = exception_for(account, identity, policy, app) if policy.exceptions else None
        if granted is not None and now.date() <= granted.until:
            continue
        if left and (now - since < policy.delete_after or delete_mode is None):
            continue
        if not left and enable_mode is None:
            continue
        evidence = _evidence(account, identity, links[account_id].rule)
        evidence[DISABLED_SINCE] = timestamp(since)
        if left:
            actions.append(_action(account, identity, delete_mode or "", DELETE_AFTER, evidence))
        else:
            actions.append(
                _action(account, identity, enable_mode or "", RETURNED, evidence, ENABLE)
            )
    return tuple(actions)


def _evidence(account: Account, identity: Identity, rule: str) -> dict[str, Any]:
    """What every action records of its account and the identity it matched by `rule`."""
    return {
        "identity_status": identity.status,
        "identity_email": identity.email,
        "matched_by": rule,
        "roles": list(account.roles),
        "entitlements": list(account.entitlements),
    }


def _action(
    account: Account,
    identity: Identity,
    mode: str,
    reason: str,
    evidence: Mapping[str, Any],
    op: str = DEPROVISION,
    roles: tuple[str, ...] = (),
) -> Action:
    return Action(
        account_id=account.id,
        username=account.username,
        email=account.email,
        display_name=account.display_name,
        mode=mode,
        reason=reason,
        identity_id=identity.id,
        evidence=evidence,
        op=op,
        roles=roles,
    )


def role_blocks(
    app: str, policy: Policy, identities: Mapping[str, Identity], role_mode: str, taking: bool
) -> list[str]:
    """Why the role rules cannot be followed in this plan: an app that can take roles
    neither through its API nor by hand; or, when the plan takes roles (`taking`), a
    group the rules name that no identity holds."""
    if not policy.allowed_roles:
        return []
    blocks = []
    if not role_mode:
        blocks.append(
            f"{app} can take roles neither through its API nor as manual tasks; remove "
            f"`allowed_roles` from {policy.source_file} or govern {app} by another policy"
        )
    unheld = unheld_groups(policy, identities) if taking else ()
    if unheld:
        blocks.append(
            f"allowed_roles in {policy.source_file} names group(s) {', '.join(unheld)}, "
            f"which no identity in {policy.identity_source} holds: the pull may have lost its "
            "groups, or a name is misspelt; fix the name (`reconciler validate` shows where)"
        )
    return blocks


def duty_conflicts(accounts: Mapping[str, Account], policy: Policy) -> tuple[Conflict, ...]:
    """Every active account holding all the roles of one of the policy's
    `separation_of_duties` sets, by rule then account id."""
    rules = [(rule, rule.roles[0], set(rule.roles)) for rule in policy.separation_of_duties]
    if not rules:
        return ()
    found = []
    for account in accounts.values():
        held = account.roles
        if account.status != "active":
            continue
        for index, (rule, first, needed) in enumerate(rules):
            if first in held and needed.issubset(held):
                found.append((index, account.id, Conflict(account, rule)))
    found.sort(key=lambda x: (x[0], x[1]))
    return tuple(conflict for _, _, conflict in found)


def duty_blocks(conflicts: Sequence[Conflict], actions: Sequence[Action]) -> list[str]:
    """Why the plan is blocked by a blocking separation of duties, or nothing. A holder
    the plan itself removes, or takes one of the rule's roles from, does not block it:
    that resolves the conflict."""
    by_account = {action.account_id: action for action in actions}
    by_rule: dict[str, list[str]] = {}
    for conflict in conflicts:
        action = by_account.get(conflict.account.id)
        resolved = action is not None and (
            not action.takes_roles or not set(action.roles).isdisjoint(conflict.rule.roles)
        )
        if conflict.rule.block and not resolved:
            name = conflict.account.username or conflict.account.id
            by_rule.setdefault(conflict.rule.label, []).append(name)
    return [
        f"{len(holders)} account(s) hold every role of {label!r}, which no one may hold "
        f"together ({', '.join(holders[:5])}{' …' if len(holders) > 5 else ''}); remove a "
        "role from each, or list this plan in guards.allow_blocked_plans"
        for label, holders in by_rule.items()
    ]


def held_back(
    evaluation: Evaluation,
    accounts: Mapping[str, Account],
    policy: Policy,
    now: datetime,
    gone_since: Callable[[set[str]], Mapping[str, datetime]] | None,
) -> Evaluation:
    """`evaluation` with the leavers' actions whose person has been gone for less than
    the policy's `grace` moved to `waiting`. `gone_since` (an I/O edge: since when each
    of some identities has been gone, by identity id) is asked once, for the people the
    actions name, and only when there is a grace; without it the grace is not judged.
    A person whose leaving the history does not show (a rewritten history) is not held
    back: never proposing them would leave their access in place for good."""
    grace = policy.grace
    if gone_since is None or grace is None or not evaluation.actions:
        return evaluation
    since_of = gone_since({a.identity_id for a in evaluation.actions if a.identity_id})
    actions, waiting = [], []
    for action in evaluation.actions:
        since = since_of.get(action.identity_id)
        if action.reason != INACTIVE and since is not None and now - since < grace:
            waiting.append(Waiting(accounts[action.account_id], since, since + grace))
        else:
            actions.append(action)
    return dataclasses.replace(evaluation, actions=tuple(actions), waiting=tuple(waiting))


def still_proposed(
    account: Account,
    identities: Mapping[str, Identity],
    policy: Policy,
    mode: str,
    *,
    app: str,
    now: datetime,
) -> Action | None:
    """The action the policy proposes for `account` of `app` against `identities` at
    `now`, in `mode`, if any: apply asks this of the account and identities read live
    (the account's last sign-in too), with the same rules check used."""
    links = correlate([account], identities.values(), policy.match, policy.domain_aliases)
    evaluation = evaluate(
        {account.id: account},
        identities,
        links,
        policy,
        mode,
        app=app,
        now=now,
        idle_mode=mode,
        role_mode=mode,
    )
    return evaluation.actions[0] if evaluation.actions else None


def may_approve(
    name: str, rules: Approvals, teams: Mapping[str, Collection[str]] | None = None
) -> bool:
    """Whether `name` may approve under the policy: anyone when `approvals.reviewers` is
    empty; else someone listed by name, or a member of a listed team (`org/slug`), as
    `teams` (team → the members a forge verified) says."""
    if not rules.reviewers:
        return True
    found = teams or {}
    return any(name == entry or name in found.get(entry, ()) for entry in rules.reviewers)


def check_approvers(
    app: str,
    approvers: Sequence[str],
    rules: Approvals,
    policy_file: str,
    teams: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Raise ApprovalError unless `approvers` meet the policy's approval rules; `teams`
    as for `may_approve`."""
    refused = [a for a in approvers if not may_approve(a, rules, teams)]
    allowed = [a for a in approvers if a not in refused]
    if len(allowed) < rules.min_approvals:
        detail = (
            f" ({', '.join(refused)} may not approve: approvals.reviewers lists "
            f"{', '.join(rules.reviewers)})"
            if refused
            else ""
        )
        raise ApprovalError(
            f"{app}: {len(allowed)} valid approval(s), {policy_file} requires "
            f"{rules.min_approvals}{detail}"
        )


@dataclass(frozen=True)
class PullState:
    """What the check knows about the identity pull behind an evaluation."""

    source: str
    error: str = ""  # the pull failed or was partial: nothing may be proposed
    count: int = 0  # identities in the pull that made the snapshot (tombstones excluded)
    previous_count: int | None = None  # in the snapshot before that pull, if any

    @classmethod
    def recorded(cls, source: str, meta: Mapping[str, Any]) -> PullState:
        """The pull that made an identity snapshot, as its meta.yaml records it."""
        previous = meta.get("previous_count")
        return cls(source, count=int(meta.get("count") or 0), previous_count=previous)


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


def _shrink(previous: int | None, current: int, limit: float) -> float | None:
    """The share lost from `previous` to `current` when it is more than `limit`, else None."""
    if not previous or current >= previous:
        return None
    shrink = (previous - current) / previous
    return shrink if shrink > limit else None


def identity_shrink_block(state: PullState, policy: Policy) -> str | None:
    """Why the identity pull looks too small to trust, or None."""
    previous, count = state.previous_count, state.count
    limit = policy.guards.max_identity_shrink
    shrink = _shrink(previous, count, limit)
    if shrink is None:
        return None
    return (
        f"identity source {state.source!r} shrank by {shrink:.0%} since the last pull "
        f"({previous} → {count}), more than max_identity_shrink {limit:.0%}"
    )


def guard_blocks(
    state: PullState, policy: Policy, candidates: int, active_accounts: int
) -> list[str]:
    """Reasons that block a plan: it is still written, but cannot be applied without an
    override (`guards.allow_blocked_plans`) merged into the policy."""
    guards = policy.guards
    shrink = identity_shrink_block(state, policy)
    reasons = [shrink] if shrink else []
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


def app_shrink_block(app: str, previous: int, current: int, policy: Policy) -> str | None:
    """Why an app pull that lost many accounts must not be imported, or None: a pull that
    shrank that much is more likely broken (a lost page, a narrowed export) than true."""
    limit = policy.guards.max_app_shrink
    shrink = _shrink(previous, current, limit)
    if shrink is None:
        return None
    return (
        f"the pull of {app} has {current} accounts, {shrink:.0%} fewer than the last snapshot "
        f"({previous}), more than guards.max_app_shrink {limit:.0%} in {policy.source_file}; "
        "nothing was imported and the open plan was left as it was. If the accounts really "
        "were removed, raise max_app_shrink in that policy for one check"
    )


def overdue(since: datetime, now: datetime, deadline: timedelta | None) -> timedelta | None:
    """How far past the policy's deadline something that started at `since` is at `now`,
    or None (no deadline, or still within it). The one rule for "late": `status` applies
    it to a plan's proposal time, a plan's report to each person's detection time."""
    if deadline is None:
        return None
    late = now - since - deadline
    return late if late > timedelta(0) else None


def lateness(proposed_at: datetime, now: datetime, deadline: timedelta | None) -> str | None:
    """How far past the policy's deadline a plan proposed at `proposed_at` is, or None
    (no deadline, or still within it)."""
    late = overdue(proposed_at, now, deadline)
    if deadline is None or late is None:
        return None
    return (
        f"past the policy deadline of {span_text(deadline)} by {span_text(late)} "
        f"(proposed {proposed_at:%Y-%m-%d %H:%M} UTC)"
    )


def span_text(span: timedelta) -> str:
    """A duration as deadlines are written: hours, and days from three days on."""
    hours = span.total_seconds() / 3600
    return f"{hours:.0f}h" if hours < 72 else f"{hours / 24:.1f}d"
