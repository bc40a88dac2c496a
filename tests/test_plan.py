from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.errors import PlanError
from reconciler.plan import Action, Plan, check_subset, new_plan


def action(n: int, mode: str = "disable") -> Action:
    return Action(
        account_id=f"a{n}",
        username=f"user{n}",
        email=f"user{n}@example.com",
        display_name="",
        mode=mode,
        reason="idp_deprovisioned",
        identity_id=f"i{n}",
        evidence={"identity_status": "deprovisioned"},
    )


def plan(*actions: Action) -> Plan:
    return new_plan(
        "wiki", actions, (), created_at="t", base_commit="c", snapshot_digests={}, policy_digest="p"
    )


def test_plan_id_depends_on_actions_only():
    assert plan(action(1)).id == plan(action(1)).id
    assert plan(action(1)).id != plan(action(2)).id


def test_round_trip():
    original = plan(action(1), action(2))
    assert Plan.from_data(original.to_data()) == original


def test_reviewer_may_drop_or_skip():
    generated = plan(action(1), action(2))
    check_subset(plan(action(1)), generated)
    skipped = replace(
        generated, actions=(replace(action(1), skip=True, skip_reason="on leave"), action(2))
    )
    check_subset(skipped, generated)


def test_reviewer_may_narrow_delete_to_disable():
    check_subset(plan(action(1, "disable")), plan(action(1, "delete")))


@pytest.mark.parametrize(
    ("reviewed", "message"),
    [
        (plan(action(1), action(3)), "a3"),  # added
        (plan(action(1, "delete")), "widened"),  # widened
        (plan(replace(action(1), identity_id="i9")), "differs"),  # re-targeted
        (plan(action(1), replace(action(1), skip=True, skip_reason="x")), "appears twice"),
    ],
)
def test_reviewer_may_not_add_or_widen(reviewed, message):
    with pytest.raises(PlanError, match=message):
        check_subset(reviewed, plan(action(1), action(2)))
