"""Plans: what a check proposes to deprovision in one app (DESIGN §7).

A plan's id is a digest of what was generated, so an unchanged proposal keeps its id
and its pull request is not touched. Reviewers may drop actions or mark them
`skip: true`; `check_subset` refuses anything they added or widened.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from reconciler.errors import PlanError

PlanStatus = Literal["open", "blocked"]

REASONS = {
    "idp_deprovisioned": "deprovisioned in the identity provider",
    "idp_suspended": "suspended in the identity provider",
    "idp_missing": "no longer in the identity provider",
    "inactive": "no sign-in for longer than the policy's inactive_after",
    "role_not_allowed": "holds a role the policy's allowed_roles does not give them",
    "delete_after": "disabled by reconciler for longer than the policy's delete_after",
    "returned": "active again in the identity provider since reconciler disabled the account",
}

# What an action does: remove the account, take roles from it (the account stays), or
# enable an account reconciler disabled whose person is back.
DEPROVISION = "deprovision"
REMOVE_ROLES = "remove_roles"
ENABLE = "enable"
# Reasons of the actions that remove no account (journals keep reasons, not ops): every
# role removal's, and an account enabled again; and of a graded removal's deletion.
ROLE_NOT_ALLOWED = "role_not_allowed"
RETURNED = "returned"
DELETE_AFTER = "delete_after"
# The modes each op may have; `manual` is a person's task.
OP_MODES = {
    DEPROVISION: ("manual", "disable", "delete"),
    REMOVE_ROLES: ("manual", "remove_roles"),
    ENABLE: ("manual", "enable"),
}

# A mode is wider than another when it removes more: reviewers may narrow, never widen.
MODE_RANK = {"manual": 0, "disable": 1, "remove_roles": 1, "enable": 1, "delete": 2}


def widens(mode: str, than: str) -> bool:
    """Whether `mode` removes more than `than` (an unknown mode is the widest of all)."""
    return MODE_RANK.get(mode, 99) > MODE_RANK.get(than, -1)


@dataclass(frozen=True)
class Action:
    """Deprovision one account, or (op `remove_roles`) take `roles` from it."""

    account_id: str
    username: str
    email: str
    display_name: str
    mode: str  # disable | delete | manual; remove_roles | manual for op remove_roles
    reason: str  # a key of REASONS
    identity_id: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    op: str = DEPROVISION
    skip: bool = False
    skip_reason: str = ""
    roles: tuple[str, ...] = ()  # the roles to take, for op remove_roles

    @property
    def takes_roles(self) -> bool:
        return self.op == REMOVE_ROLES

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "op": self.op,
            "account": {
                "id": self.account_id,
                "username": self.username,
                "email": self.email,
                "display_name": self.display_name,
            },
            "mode": self.mode,
            "reason": self.reason,
            "identity": self.identity_id,
            "evidence": dict(self.evidence),
        }
        if self.takes_roles:
            data["roles"] = list(self.roles)
        if self.skip:
            data["skip"] = True
            data["skip_reason"] = self.skip_reason
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Action:
        account = data["account"]
        return cls(
            op=data.get("op", DEPROVISION),
            account_id=str(account["id"]),
            username=account.get("username", ""),
            email=account.get("email", ""),
            display_name=account.get("display_name", ""),
            mode=data["mode"],
            reason=data["reason"],
            identity_id=str(data.get("identity", "")),
            evidence=data.get("evidence") or {},
            skip=bool(data.get("skip", False)),
            skip_reason=data.get("skip_reason", ""),
            roles=tuple(data.get("roles") or ()),
        )


@dataclass(frozen=True)
class Plan:
    id: str
    app: str
    created_at: str
    base_commit: str  # the main-branch commit whose snapshots the plan was computed from
    snapshot_digests: Mapping[str, str]
    policy_digest: str
    status: PlanStatus
    blocked_reasons: tuple[str, ...]
    actions: tuple[Action, ...]

    @property
    def active_actions(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if not a.skip)

    def to_data(self) -> dict[str, Any]:
        return {
            "plan": self.id,
            "app": self.app,
            "created_at": self.created_at,
            "base_commit": self.base_commit,
            "snapshots": dict(self.snapshot_digests),
            "policy_digest": self.policy_digest,
            "status": self.status,
            "blocked_reasons": list(self.blocked_reasons),
            "actions": [a.to_data() for a in self.actions],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            id=data["plan"],
            app=data["app"],
            created_at=data["created_at"],
            base_commit=data["base_commit"],
            snapshot_digests=data.get("snapshots") or {},
            policy_digest=data.get("policy_digest", ""),
            status=data.get("status", "open"),
            blocked_reasons=tuple(data.get("blocked_reasons") or ()),
            actions=tuple(Action.from_data(a) for a in data.get("actions") or ()),
        )


def tally(actions: Iterable[Action]) -> Counter[str]:
    """How many of the actions there are of each op."""
    return Counter(action.op for action in actions)


def what_it_does(actions: Sequence[Action]) -> str:
    """What the actions do, in a few words for a commit or a title: `deprovision 3
    accounts`, `deprovision 3 accounts and take roles from 1 account`."""
    counts = tally(actions)

    def accounts(n: int) -> str:
        return f"{n} account{'' if n == 1 else 's'}"

    parts = [f"deprovision {accounts(counts[DEPROVISION])}"] if counts[DEPROVISION] else []
    if counts[REMOVE_ROLES]:
        parts.append(f"take roles from {accounts(counts[REMOVE_ROLES])}")
    if counts[ENABLE]:
        parts.append(f"re-enable {accounts(counts[ENABLE])}")
    return " and ".join(parts) or f"deprovision {accounts(0)}"


def why(action: Action) -> str:
    """The action's reason as one line of plain text, from what the plan records (its
    reason and evidence): the plan file, the report and `explain` say it alike. Values
    come from apps and identity providers: callers print it through an escaper."""
    evidence = action.evidence
    reason = REASONS.get(action.reason, action.reason)
    if action.takes_roles:
        owner = [f"groups: {', '.join(map(str, evidence.get('identity_groups') or ())) or 'none'}"]
        owner += [
            f"{key}: {evidence[f'identity_{key}']}"
            for key in ("department", "title")
            if evidence.get(f"identity_{key}")
        ]
        line = (
            f"holds {', '.join(action.roles)}, which allowed_roles does not give its owner "
            f"({'; '.join(owner)}); the role goes, the account stays"
        )
    elif action.reason == "inactive":
        line = f"{reason}: last sign-in {evidence.get('last_login') or 'unknown'}"
    elif action.reason in ("delete_after", "returned"):
        line = (
            f"{reason} (disabled since {evidence.get('disabled_since') or 'unknown'}; owner "
            f"{evidence.get('identity_email') or action.identity_id} is "
            f"{evidence.get('identity_status') or 'unknown'})"
        )
    else:
        line = f"{reason} (owner {evidence.get('identity_email') or action.identity_id})"
    matched = evidence.get("matched_by")
    if matched:
        line += f"; matched by {matched}"
    expired = evidence.get("exception_expired")
    if isinstance(expired, Mapping):
        line += f"; its exception ran out on {expired.get('until')}"
    return line


def plan_id(app: str, actions: Iterable[Action], blocked_reasons: Iterable[str]) -> str:
    """A digest of what was generated: same proposal, same id."""
    payload = orjson.dumps(
        {
            "app": app,
            "actions": [a.to_data() for a in actions],
            "blocked": list(blocked_reasons),
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(payload).hexdigest()[:12]


def new_plan(
    app: str,
    actions: Iterable[Action],
    blocked_reasons: Iterable[str],
    *,
    created_at: str,
    base_commit: str,
    snapshot_digests: Mapping[str, str],
    policy_digest: str,
) -> Plan:
    actions = tuple(sorted(actions, key=lambda a: a.account_id))
    blocked = tuple(blocked_reasons)
    return Plan(
        id=plan_id(app, actions, blocked),
        app=app,
        created_at=created_at,
        base_commit=base_commit,
        snapshot_digests=dict(snapshot_digests),
        policy_digest=policy_digest,
        status="blocked" if blocked else "open",
        blocked_reasons=blocked,
        actions=actions,
    )


def check_subset(reviewed: Plan, generated: Plan) -> None:
    """Refuse a reviewed plan that adds or widens an action the tool did not generate.

    Identity, reason and evidence are compared too: an action pointed at another
    account or justified differently is an added action. A reviewer may narrow a role
    removal to some of its roles.
    """
    if reviewed.app != generated.app:
        raise PlanError(f"plan is for app {reviewed.app!r}, expected {generated.app!r}")
    allowed = {a.account_id: a for a in generated.actions}
    seen: set[str] = set()
    for action in reviewed.actions:
        label = f"action on account {action.account_id} ({action.username or action.email})"
        if action.account_id in seen:
            raise PlanError(
                f"plans/{reviewed.app}.yaml: {label} appears twice; revert the plan file to "
                "what the check wrote"
            )
        seen.add(action.account_id)
        original = allowed.get(action.account_id)
        if original is None:
            raise PlanError(
                f"plans/{reviewed.app}.yaml: {label} was not generated by reconciler; "
                "reviewers may remove actions or mark them `skip: true`, never add them. "
                "Revert the plan file to what the check wrote."
            )
        if action.mode not in OP_MODES.get(action.op, ()):
            raise PlanError(
                f"plans/{reviewed.app}.yaml: {label} has mode {action.mode!r}, which op "
                f"{action.op!r} cannot have; revert it"
            )
        if widens(action.mode, original.mode):
            raise PlanError(
                f"plans/{reviewed.app}.yaml: {label} was widened from {original.mode!r} to "
                f"{action.mode!r}; reviewers may only narrow a plan"
            )
        if action.takes_roles and not (action.roles and set(action.roles) <= set(original.roles)):
            raise PlanError(
                f"plans/{reviewed.app}.yaml: {label} takes roles "
                f"{', '.join(action.roles) or 'none'}, not some of the generated "
                f"{', '.join(original.roles)}; reviewers may drop roles from it or skip it, "
                "never add roles. Revert it"
            )
        unedited = replace(action, mode=original.mode, skip=False, skip_reason="")
        if replace(unedited, roles=original.roles) != original:
            raise PlanError(
                f"plans/{reviewed.app}.yaml: {label} differs from what reconciler generated "
                "(account, identity, reason or evidence edited); revert it"
            )
