"""Graded removal (`deprovision: {mode: disable, delete_after: 30d}`), end to end on real
SCIM servers: an account reconciler disabled is proposed for deletion once the history
shows it disabled that long, and deleted by a reviewed plan; a person who comes back in
between gets their account proposed for enabling, never enabled silently; an account
reconciler did not disable is never deleted this way."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from reconciler import demo
from reconciler.apply import verify_live
from reconciler.config import Policy, PolicyException
from reconciler.correlate import correlate
from reconciler.model import Account, Identity
from reconciler.plan import ENABLE, Action
from reconciler.policy import graded
from reconciler.testing.access_repo import Company, company
from tests.test_grace import later
from tests.test_validate import POLICY as VALID_POLICY
from tests.test_validate import check, make_repo

GRADED = demo.POLICY.replace("  mode: disable\n", "  mode: disable\n  delete_after: 30d\n", 1)
LEAVERS = (*demo.LEAVERS_DEPROVISIONED, demo.LEAVER_DELETED)


def actions(c: Company) -> dict[str, dict]:
    return {a["account"]["username"]: a for a in c.plan_on_branch()["actions"]}


def approve_and_apply(c: Company) -> str:
    approved = c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER)
    assert approved.exit_code == 0, approved.output
    applied = c.cli("apply", "--confirm")
    assert applied.exit_code == 0, applied.output
    return applied.output


def disabled_by_reconciler(c: Company) -> None:
    """The demo's three leavers leave, and an applied plan disables their accounts."""
    assert c.cli("check").exit_code == 0
    c.leave()
    assert c.cli("check").exit_code == 0
    approve_and_apply(c)
    for username in LEAVERS:
        assert c.app_user(username)["active"] is False


def usernames(c: Company) -> set[str]:
    return {user["userName"] for user in c.app.list_users()}


def test_an_account_disabled_long_enough_is_deleted_by_a_reviewed_plan(tmp_path, monkeypatch):
    with company(tmp_path, policy=GRADED) as c:
        disabled_by_reconciler(c)
        # Disabled for less than 30 days: nothing to propose.
        assert c.cli("check").exit_code == 0
        assert c.git.show("reconciler/wiki", "plans/wiki.yaml") is None

        later(monkeypatch, 31 * 24)
        result = c.cli("check", "--detailed-exitcode")
        assert result.exit_code == 4, result.output
        found = actions(c)
        assert sorted(found) == sorted(LEAVERS)
        for action in found.values():
            assert (action["op"], action["mode"], action["reason"]) == (
                "deprovision",
                "delete",
                "delete_after",
            )
            assert action["evidence"]["disabled_since"].endswith("Z")
        raw = (c.git.show("reconciler/wiki", "plans/wiki.yaml") or b"").decode()
        assert "disabled by reconciler for longer than the policy's delete_after" in raw
        assert "- op: deprovision" in raw or "op: deprovision" in raw
        output = approve_and_apply(c)
        assert "deleted" in output
        assert usernames(c).isdisjoint(LEAVERS)
        assert demo.EXCEPTED_LEAVER in usernames(c)


def test_a_person_who_comes_back_is_proposed_for_enabling_never_silently(tmp_path, monkeypatch):
    with company(tmp_path, policy=GRADED) as c:
        disabled_by_reconciler(c)
        bob = "bob.builder"
        c.idp.set_active(c.idp_ids.users[bob], True)  # rehired, or a mistake put right
        result = c.cli("check", "--detailed-exitcode")
        assert result.exit_code == 4, result.output
        (action,) = actions(c).values()
        assert (action["account"]["username"], action["op"], action["mode"]) == (
            bob,
            ENABLE,
            "enable",
        )
        assert action["reason"] == "returned"
        report = (c.git.show("reconciler/wiki", "plans/wiki.md") or b"").decode()
        assert "To re-enable (1)" in report and "| To re-enable | 1 |" in report
        assert c.app_user(bob)["active"] is False  # nothing happens before the review

        output = approve_and_apply(c)
        assert f"{bob}: enabled" in output
        assert c.app_user(bob)["active"] is True
        # The audit keeps the disable as the removal; enabling again is an event only.
        audited = c.cli("audit", "person", f"{bob}@{demo.DOMAIN}", "--format", "json")
        assert audited.exit_code == 0, audited.output
        assert len(json.loads(audited.output)["removals"]) == 1
        assert "enable bob.builder: done" in audited.output
        # Still gone: still disabled, and never deleted while back.
        later(monkeypatch, 31 * 24)
        assert c.cli("check").exit_code in (0, 4)
        proposed = actions(c) if c.git.show("reconciler/wiki", "plans/wiki.yaml") else {}
        assert bob not in proposed
        assert all(a["reason"] == "delete_after" for a in proposed.values())


def test_an_account_reconciler_did_not_disable_is_never_deleted(tmp_path, monkeypatch):
    with company(tmp_path, policy=GRADED) as c:
        assert c.cli("check").exit_code == 0
        carol = "carol.danvers"
        c.app.set_active(c.app_ids.users[carol], False)  # disabled by hand in the app
        c.idp.set_active(c.idp_ids.users[carol], False)
        assert c.cli("check").exit_code == 0
        later(monkeypatch, 60 * 24)
        assert c.cli("check").exit_code == 0
        assert c.git.show("reconciler/wiki", "plans/wiki.yaml") is None
        assert carol in usernames(c)


NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
POLICY = Policy(source_file="policies/default.yaml", apps=("*",), identity_source="corp")
BOB = Account.build("a1", "bob", "bob@example.com", status="disabled")
GONE = Identity.build("i1", "bob@example.com", "bob", status="deprovisioned")
DELETE = Action("a1", "bob", "bob@example.com", "Bob", "delete", "delete_after", "i1")
ENABLE_BOB = replace(DELETE, op=ENABLE, mode="enable", reason="returned")


@pytest.mark.parametrize(
    ("action", "live", "identity", "why"),
    [
        (DELETE, BOB, GONE, None),
        (DELETE, BOB._replace(status="active"), GONE, "enabled since the plan"),
        (DELETE, BOB, GONE._replace(status="active"), "is active in corp now"),
        (DELETE, None, GONE, "no longer exists"),
        (DELETE, BOB._replace(email="zed@example.com"), GONE, "changed since the plan"),
        (ENABLE_BOB, BOB, GONE._replace(status="active"), None),
        (ENABLE_BOB, BOB, GONE, "is deprovisioned in corp now"),
        (ENABLE_BOB, BOB._replace(status="active"), GONE._replace(status="active"), "is active"),
    ],
)
def test_verify_live_of_a_graded_removal(action, live, identity, why) -> None:
    found = verify_live(action, live, {identity.id: identity}, POLICY, "wiki", NOW)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found, found


@pytest.mark.parametrize(
    ("deprovision", "says"),
    [
        ("  mode: delete\n  delete_after: 30d\n", "nothing to delete after"),
        ("  mode: disable\n  delete_after: 30\n", "deprovision.delete_after: 30 has no unit"),
    ],
)
def test_validate_names_a_delete_after_that_cannot_work(tmp_path, deprovision, says) -> None:
    policy = VALID_POLICY.replace("  mode: delete\n", deprovision, 1)
    line = policy.splitlines().index(deprovision.splitlines()[1]) + 1
    found = [str(d) for d in check(make_repo(tmp_path, default=policy))]
    assert any(
        text.startswith(f"policies/default.yaml:{line}:") and says in text for text in found
    ), found


DELETE_AFTER_30 = replace(POLICY, delete_after=timedelta(days=30))
SINCE = {"a1": NOW - timedelta(days=31)}


def graded_for(
    account, identity, policy=DELETE_AFTER_30, since=SINCE, modes=("disable", "delete", "enable")
):
    links = correlate([account], [identity], policy.match, policy.domain_aliases)
    asked: list[set[str]] = []

    def disabled_since(ids: set[str]) -> dict[str, datetime]:
        asked.append(ids)
        return {i: since[i] for i in ids if i in since}

    found = graded(
        {account.id: account},
        {identity.id: identity},
        links,
        policy,
        NOW,
        modes,
        disabled_since,
        app="wiki",
    )
    return found, asked


@pytest.mark.parametrize(
    ("account", "identity", "since", "modes", "expected"),
    [
        (BOB, GONE, SINCE, ("disable", "delete", "enable"), ("deprovision", "delete")),
        (BOB, GONE, {"a1": NOW - timedelta(days=29)}, ("disable", "delete", "enable"), None),
        (BOB, GONE, {}, ("disable", "delete", "enable"), None),  # reconciler never disabled it
        (BOB, GONE, SINCE, ("manual",), ("deprovision", "manual")),  # an app without an API
        (BOB, GONE, SINCE, ("disable",), None),  # cannot delete: stays disabled
        (
            BOB,
            GONE._replace(status="active"),
            {"a1": NOW},
            ("disable", "enable"),
            ("enable", "enable"),
        ),
        (BOB._replace(status="active"), GONE, SINCE, ("disable", "delete", "enable"), None),
        (BOB._replace(type="service"), GONE, SINCE, ("disable", "delete", "enable"), None),
    ],
)
def test_graded_removal_decides(account, identity, since, modes, expected) -> None:
    found, _ = graded_for(account, identity, since=since, modes=modes)
    if expected is None:
        assert found == ()
    else:
        (action,) = found
        assert (action.op, action.mode) == expected


def test_graded_removal_asks_the_history_only_about_disabled_accounts_of_people_gone_or_back():
    _, asked = graded_for(BOB._replace(status="active"), GONE)
    assert asked == []
    _, asked = graded_for(BOB, GONE)
    assert asked == [{"a1"}]
    granted = PolicyException("audit hold", date(2026, 12, 31), "ciso", account="bob")
    found, _ = graded_for(BOB, GONE, replace(DELETE_AFTER_30, exceptions=(granted,)))
    assert found == ()
