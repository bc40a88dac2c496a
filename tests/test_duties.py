"""Separation of duties: holders of every role of a set are listed, and block the plan
only when the policy says so (never for an account the plan itself removes)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler import demo
from reconciler.config import DutySeparation
from reconciler.model import Account
from reconciler.plan import REMOVE_ROLES, Action
from reconciler.policy import duty_blocks, duty_conflicts
from reconciler.testing.access_repo import company
from tests.test_policy import POLICY

MAKER_CHECKER = DutySeparation(("approve", "submit"), block=True, name="payments")


def holder(n: int, *roles: str, status: str = "active") -> Account:
    return Account.build(f"a{n}", f"user{n}", roles=roles, status=status)


def removal(account: Account) -> Action:
    return Action(account.id, account.username, "", "", "disable", "idp_deprovisioned", "i")


@pytest.mark.parametrize(
    ("roles", "status", "conflict"),
    [
        (("approve", "submit"), "active", True),
        (("approve", "submit", "view"), "active", True),
        (("approve",), "active", False),
        (("submit", "view"), "active", False),
        (("approve", "submit"), "disabled", False),  # a disabled account holds nothing
    ],
)
def test_an_account_holding_every_role_of_a_set_is_a_conflict(roles, status, conflict):
    policy = replace(POLICY, separation_of_duties=(MAKER_CHECKER,))
    found = duty_conflicts({"a1": holder(1, *roles, status=status)}, policy)
    assert bool(found) is conflict


def test_only_a_blocking_rule_blocks_and_never_for_an_account_being_removed():
    policy = replace(
        POLICY,
        separation_of_duties=(MAKER_CHECKER, DutySeparation(("admin", "audit"), block=False)),
    )
    accounts = {
        "a1": holder(1, "approve", "submit"),
        "a2": holder(2, "approve", "submit"),
        "a3": holder(3, "admin", "audit"),
    }
    found = duty_conflicts(accounts, policy)
    assert [(c.account.id, c.rule.label) for c in found] == [
        ("a1", "payments"), ("a2", "payments"), ("a3", "admin + audit"),
    ]  # fmt: skip
    (reason,) = duty_blocks(found, ())
    assert "2 account(s) hold every role of 'payments'" in reason
    assert "user1, user2" in reason
    removed = [removal(accounts["a1"]), removal(accounts["a2"])]
    assert duty_blocks(found, removed) == []
    # Taking one of the rule's roles resolves a conflict too; taking another role does not.
    takes_submit = replace(
        removal(accounts["a2"]), op=REMOVE_ROLES, mode="remove_roles", roles=("submit",)
    )
    takes_other = replace(takes_submit, roles=("audit",))
    assert duty_blocks(found, [removed[0], takes_submit]) == []
    (reason,) = duty_blocks(found, [removed[0], takes_other])
    assert "1 account(s) hold every role of 'payments'" in reason


def test_the_report_lists_holders_and_a_blocking_rule_blocks_the_plan(tmp_path):
    # In the demo, alice.liddell is an editor and an admin.
    rule = "separation_of_duties:\n  - {name: admin-editor, roles: [admins, editors], block: %s}\n"
    with company(tmp_path, policy=demo.POLICY + rule % "false") as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        plan = c.plan_on_branch()
        assert plan["status"] == "open"
        report = (c.git.show("reconciler/wiki", "plans/wiki.md") or b"").decode()
        assert "## Separation of duties (1)" in report
        assert "| alice.liddell |" in report and "| admins, editors | admin-editor | no |" in report
    with company(tmp_path / "blocking", policy=demo.POLICY + rule % "true") as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        plan = c.plan_on_branch()
        assert plan["status"] == "blocked"
        assert any("admin-editor" in reason for reason in plan["blocked_reasons"])
