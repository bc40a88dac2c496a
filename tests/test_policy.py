"""Table-driven tests of the reconcile core: who is proposed, protected, blocked."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.config import Guards, Policy
from reconciler.correlate import correlate
from reconciler.model import Account, Identity
from reconciler.policy import PullState, evaluate, guard_blocks, identity_blocks

POLICY = Policy(
    source_file="policies/default.yaml",
    apps=("*",),
    identity_source="corp",
    protected=("breakglass*", "root@example.com"),
)


def run(accounts, identities, policy=POLICY):
    accounts = {a.id: a for a in accounts}
    identities = {i.id: i for i in identities}
    links = correlate(accounts.values(), identities.values(), policy.match)
    return evaluate(accounts, identities, links, policy, "disable")


def person(n: int, status: str = "active") -> Identity:
    return Identity.build(f"i{n}", f"user{n}@example.com", f"user{n}", status=status)


def account(n: int, **kw) -> Account:
    return Account.build(f"a{n}", f"user{n}", f"user{n}@example.com", **kw)


@pytest.mark.parametrize(
    ("identity_status", "reason"),
    [
        ("deprovisioned", "idp_deprovisioned"),
        ("suspended", "idp_suspended"),
        ("missing", "idp_missing"),
        ("active", None),
    ],
)
def test_identity_status_decides(identity_status, reason):
    result = run([account(1)], [person(1, identity_status)])
    assert [a.reason for a in result.actions] == ([reason] if reason else [])


def test_trigger_not_in_policy_is_ignored():
    policy = replace(POLICY, deprovision_when=("deprovisioned",))
    assert run([account(1)], [person(1, "suspended")], policy).actions == ()


def test_disabled_accounts_are_not_proposed_again():
    assert run([account(1, status="disabled")], [person(1, "deprovisioned")]).actions == ()


@pytest.mark.parametrize(
    "protected_account",
    [
        Account.build("a9", "ci-bot", "user9@example.com", type="service"),
        Account.build("a9", "breakglass-admin", "user9@example.com"),
        Account.build("a9", "x", "ROOT@example.com"),
    ],
)
def test_protected_and_service_accounts_never_become_actions(protected_account):
    gone = Identity.build("i9", "user9@example.com", "user9", status="deprovisioned")
    result = run([protected_account], [gone])
    assert result.actions == ()
    assert [p.account.id for p in result.protected] == ["a9"]


def test_unmatched_and_ambiguous_are_listed_not_proposed():
    accounts = [
        Account.build("a1", "stranger", "s@else.com"),
        Account.build("a2", "", "dup@example.com"),
    ]
    identities = [
        Identity.build("i1", "dup@example.com", status="deprovisioned"),
        Identity.build("i2", "dup@example.com", status="deprovisioned"),
    ]
    result = run(accounts, identities)
    assert result.actions == ()
    assert [a.id for a in result.unmatched] == ["a1"]
    assert [a.account.id for a in result.ambiguous] == ["a2"]


def test_evidence_records_the_match():
    result = run([account(1, roles=["admin"])], [person(1, "deprovisioned")])
    evidence = result.actions[0].evidence
    assert evidence["matched_by"] == "email=email"
    assert evidence["roles"] == ["admin"]


@pytest.mark.parametrize(
    ("state", "candidates", "active", "blocked"),
    [
        (PullState("corp", count=100, previous_count=100), 3, 100, 0),
        (PullState("corp", count=100, previous_count=100), 26, 1000, 1),  # max_per_run 25
        (PullState("corp", count=100, previous_count=100), 3, 20, 1),  # 15% > max_fraction
        (PullState("corp", count=80, previous_count=100), 1, 100, 1),  # shrank 20%
        (PullState("corp", count=95, previous_count=100), 1, 100, 0),  # shrank 5%
    ],
)
def test_guards(state, candidates, active, blocked):
    assert len(guard_blocks(state, POLICY, candidates, active)) == blocked


def test_guard_thresholds_come_from_policy():
    policy = replace(POLICY, guards=Guards(max_per_run=2))
    assert guard_blocks(PullState("corp", count=10), policy, 3, 1000)


@pytest.mark.parametrize(
    "state",
    [PullState("corp", error="connection refused"), PullState("corp", count=0)],
)
def test_failed_or_empty_identity_pull_forbids_proposals(state):
    (reason,) = identity_blocks(state, POLICY)
    assert "corp" in reason
