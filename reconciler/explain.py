"""Why an account is (or is not) proposed: the reasons the policy core would give for
one account, one line each. Pure: the caller reads the snapshots and the history.

The verdict comes from the same evaluation `check` runs (`policy.evaluate`), so it
cannot drift from what the next check proposes; the lines around it say which identity
the account matched and by which rule, what protects or excepts it, and which of the
policy's rules bear on it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from reconciler.config import Policy
from reconciler.correlate import Link, correlate
from reconciler.inert import terminal
from reconciler.model import Account, Identity
from reconciler.plan import REMOVE_ROLES, why
from reconciler.policy import (
    Evaluation,
    admits,
    effective_mode,
    evaluate,
    exception_for,
    held_back,
    protection,
    span_text,
)


@dataclass(frozen=True)
class Explanation:
    """One account's reasons, and what the next check would do with it."""

    app: str
    account: Account
    identity: Identity | None
    rule: str  # the match rule that linked them ('' when none did)
    reasons: tuple[str, ...]
    verdict: str  # proposed | protected | excepted | waiting | unmatched | ambiguous | kept
    next_check: str  # the verdict in a sentence
    action: Mapping[str, object] = field(default_factory=dict)


def explain(
    app: str,
    account: Account,
    identities: Mapping[str, Identity],
    policy: Policy,
    now: datetime,
    *,
    modes: Collection[str],
    gone_since: Callable[[set[str]], Mapping[str, datetime]] | None = None,
) -> Explanation:
    """The reasons for `account` of `app` under `policy` at `now`; `modes` what the app
    supports, `gone_since` the I/O edge that says since when people have been gone (as
    for `policy.assess`), asked only when the policy has a grace."""
    link = correlate([account], identities.values(), policy.match, policy.domain_aliases)[
        account.id
    ]
    identity = identities.get(link.identity_id or "")
    reasons = [_account_line(account), _match_line(link, identities, policy)]
    protected = protection(account, policy)
    reasons.append(f"protected: {protected}" if protected else "not protected")
    if identity is not None:
        reasons.append(_exception_line(account, identity, policy, app, now))
    reasons += _rule_lines(policy)
    reasons += _role_lines(account, identity, policy)

    found = evaluate(
        {account.id: account},
        identities,
        {account.id: link},
        policy,
        effective_mode(policy.mode, modes) or "",
        app=app,
        now=now,
        idle_mode=effective_mode("disable", modes) or "",
        role_mode=effective_mode(REMOVE_ROLES, modes) or "",
    )
    found = held_back(found, {account.id: account}, policy, now, gone_since)
    verdict, sentence, action = _verdict(found, account, identity)
    return Explanation(app, account, identity, link.rule, tuple(reasons), verdict, sentence, action)


def _account_line(account: Account) -> str:
    return (
        f"account {terminal(account.id)} (username {terminal(account.username) or '-'}, "
        f"email {terminal(account.email) or '-'}): {account.status}, {account.type}"
    )


def _match_line(link: Link, identities: Mapping[str, Identity], policy: Policy) -> str:
    rules = ", ".join(f"{r.account_field}={r.identity_field}" for r in policy.match)
    if link.ambiguous:
        return (
            f"matches {len(link.candidates)} identities in {policy.identity_source} "
            f"({', '.join(terminal(c) for c in link.candidates)}) by the first rule that "
            "found any: never proposed until the match rules tell them apart"
        )
    if link.identity_id is None:
        return (
            f"matches no identity in {policy.identity_source} (rules tried: {rules}); "
            f"unmatched accounts are {'reported' if policy.unmatched == 'report' else 'ignored'}"
            ", never proposed"
        )
    identity = identities[link.identity_id]
    return (
        f"matched identity {terminal(identity.id)} ({terminal(identity.email) or '-'}) "
        f"by rule {link.rule}; its status in {policy.identity_source}: {identity.status}"
    )


def _exception_line(
    account: Account, identity: Identity, policy: Policy, app: str, now: datetime
) -> str:
    granted = exception_for(account, identity, policy, app)
    if granted is None:
        return "no exception"
    state = "holds" if now.date() <= granted.until else "ran out"
    return (
        f"exception for {terminal(granted.names)} {state}: until {granted.until.isoformat()}, "
        f"granted by {terminal(granted.granted_by)} ({terminal(granted.reason)}), "
        f"in {policy.source_file}"
    )


def _rule_lines(policy: Policy) -> list[str]:
    lines = [
        f"{policy.source_file}: proposes `{policy.mode}` when the person is "
        f"{', '.join(policy.deprovision_when) or 'never gone'}"
    ]
    if policy.grace is not None:
        lines.append(f"grace: {span_text(policy.grace)} gone before being proposed")
    if policy.deadline is not None:
        lines.append(f"deadline: {span_text(policy.deadline)} from detection to removal")
    if policy.inactive_after is not None:
        lines.append(
            f"inactive_after: {span_text(policy.inactive_after)} since the last sign-in, "
            "as the app says it in each pull (never stored: judged by the next check)"
        )
    return lines


def _role_lines(account: Account, identity: Identity | None, policy: Policy) -> list[str]:
    """One line per role of the account that `allowed_roles` governs."""
    lines = []
    for role in account.roles:
        rule = policy.allowed_roles.get(role)
        if rule is None:
            continue
        who = " or ".join(
            part
            for part in (
                f"members of {', '.join(rule.groups)}" if rule.groups else "",
                f"department {', '.join(rule.departments)}" if rule.departments else "",
                f"title {', '.join(rule.titles)}" if rule.titles else "",
                f"{', '.join(rule.people)}" if rule.people else "",
            )
            if part
        )
        verdict = (
            ""
            if identity is None
            else (": its owner may" if admits(rule, identity) else ": its owner may not")
        )
        lines.append(f"allowed_roles: {terminal(role)} is for {terminal(who)}{verdict}")
    return lines


def _verdict(
    found: Evaluation, account: Account, identity: Identity | None
) -> tuple[str, str, Mapping[str, object]]:
    if found.actions:
        (action,) = found.actions
        does = f"taking roles {', '.join(action.roles)}" if action.takes_roles else action.mode
        return (
            "proposed",
            f"the next check proposes `{terminal(does)}`: {terminal(why(action))}; the plan's "
            "guards still apply",
            action.to_data(),
        )
    if found.protected:
        return "protected", "never proposed: protected", {}
    if found.excepted:
        (kept,) = found.excepted
        until = kept.exception.until.isoformat()
        return "excepted", f"kept out of plans by the exception until {until}", {}
    if found.waiting:
        (waiting,) = found.waiting
        return (
            "waiting",
            f"waits for the grace: proposed from {waiting.proposed_from:%Y-%m-%d %H:%M} UTC "
            "if still gone",
            {},
        )
    if found.ambiguous:
        return "ambiguous", "never proposed while it matches several identities", {}
    if found.unmatched or identity is None:
        return "unmatched", "never proposed: it matches no identity", {}
    if account.status != "active":
        return "kept", f"nothing to do: the account is {account.status} already", {}
    return "kept", f"nothing to propose: {terminal(identity.id)} is {identity.status}", {}
