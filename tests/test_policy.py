"""Table-driven tests of the reconcile core: who is proposed, protected, blocked."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from reconciler.config import Approvals, Guards, Policy, PolicyException
from reconciler.correlate import correlate
from reconciler.errors import ApprovalError
from reconciler.model import Account, Identity
from reconciler.policy import (
    PullState,
    app_shrink_block,
    assess,
    check_approvers,
    evaluate,
    guard_blocks,
    held_back,
    identity_blocks,
    lateness,
    still_proposed,
)

POLICY = Policy(
    source_file="policies/default.yaml",
    apps=("*",),
    identity_source="corp",
    protected=("breakglass*", "root@example.com"),
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TODAY = NOW.date()


def run(accounts, identities, policy=POLICY):
    accounts = {a.id: a for a in accounts}
    identities = {i.id: i for i in identities}
    links = correlate(accounts.values(), identities.values(), policy.match)
    return evaluate(accounts, identities, links, policy, "disable", app="wiki", now=NOW)


def person(n: int, status: str = "active") -> Identity:
    return Identity.build(f"i{n}", f"user{n}@example.com", f"user{n}", status=status)


def account(n: int, **kw) -> Account:
    return Account.build(f"a{n}", f"user{n}", f"user{n}@example.com", **kw)


def granted(until: date, **names: str) -> PolicyException:
    return PolicyException(reason="handover", until=until, granted_by="alice", **names)


@pytest.mark.parametrize(
    ("exceptions", "outcome"),
    [
        ((), "proposed"),
        ((granted(TODAY, account="a1"),), "excepted"),  # its last day still holds
        ((granted(TODAY + timedelta(days=30), account="USER1"),), "excepted"),  # any case
        ((granted(TODAY, account="user1@example.com"),), "excepted"),
        ((granted(TODAY, person="i1"),), "excepted"),
        ((granted(TODAY, person="user1@example.com"),), "excepted"),
        ((granted(TODAY, account="a1", app="wiki"),), "excepted"),
        ((granted(TODAY, account="a1", app="crm"),), "proposed"),  # another app's
        ((granted(TODAY, account="user"),), "proposed"),  # exact names only
        ((granted(TODAY, person="a1"),), "proposed"),  # a person is named by identity
        ((granted(TODAY - timedelta(days=1), account="a1"),), "expired"),
        (
            (granted(TODAY - timedelta(days=1), account="a1"), granted(TODAY, person="i1")),
            "excepted",  # the longest-lasting of several
        ),
    ],
)
def test_an_exception_keeps_an_account_out_of_plans_until_its_day(exceptions, outcome):
    policy = replace(POLICY, exceptions=exceptions)
    found = run([account(1)], [person(1, "deprovisioned")], policy)
    if outcome == "excepted":
        assert not found.actions
        (kept,) = found.excepted
        assert kept.account.id == "a1" and kept.exception in exceptions
    else:
        (action,) = found.actions
        assert not found.excepted
        history = action.evidence.get("exception_expired")
        if outcome == "expired":
            assert history == {
                "account": "a1", "reason": "handover",
                "until": (TODAY - timedelta(days=1)).isoformat(), "granted_by": "alice",
            }  # fmt: skip
        else:
            assert history is None


HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("grace", "gone_since", "outcome"),
    [
        (None, {"i1": NOW}, "proposed"),  # no grace: at once
        (24 * HOUR, None, "proposed"),  # grace not judged (apply's live check)
        (24 * HOUR, {"i1": NOW - 25 * HOUR}, "proposed"),
        (24 * HOUR, {"i1": NOW - 24 * HOUR}, "proposed"),  # exactly the grace
        (24 * HOUR, {"i1": NOW - 23 * HOUR}, "waiting"),
        (24 * HOUR, {"i1": NOW}, "waiting"),
        (24 * HOUR, {}, "proposed"),  # leaving not in the history: never held back
    ],
)
def test_grace_holds_a_leaver_back_until_gone_long_enough(grace, gone_since, outcome):
    policy = replace(POLICY, grace=grace)
    accounts = {"a1": account(1)}
    identities = {"i1": person(1, "deprovisioned")}
    links = correlate(accounts.values(), identities.values(), policy.match)
    found = held_back(
        evaluate(accounts, identities, links, policy, "disable", app="wiki", now=NOW),
        accounts,
        policy,
        NOW,
        None if gone_since is None else lambda people: gone_since,
    )
    if outcome == "proposed":
        assert [a.account_id for a in found.actions] == ["a1"] and not found.waiting
    else:
        (waiting,) = found.waiting
        since = (gone_since or {}).get("i1", NOW)
        assert not found.actions
        assert (waiting.gone_since, waiting.proposed_from) == (since, since + grace)


def test_grace_is_judged_only_for_people_the_plan_would_name():
    asked: list[set[str]] = []

    def gone_since(people: set[str]) -> dict[str, datetime]:
        asked.append(people)
        return {"i1": NOW - 2 * HOUR, "i3": NOW - HOUR / 2}

    accounts = {a.id: a for a in (account(1), account(2), account(3))}
    identities = {i.id: i for i in (person(1, "deprovisioned"), person(2), person(3, "missing"))}
    policy = replace(POLICY, grace=HOUR)
    found = assess(
        "wiki", accounts, identities, PullState("corp", count=3), policy, {"disable"}, NOW,
        gone_since,
    )  # fmt: skip
    assert asked == [{"i1", "i3"}]
    assert [a.account_id for a in found.actions] == ["a1"]
    assert [w.account.id for w in found.evaluation.waiting] == ["a3"]


DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("inactive_after", "last_login", "status", "idle_mode", "outcome"),
    [
        (90 * DAY, NOW - 91 * DAY, "active", "disable", "inactive"),
        (90 * DAY, NOW - 90 * DAY, "active", "disable", None),  # exactly the limit: not yet
        (90 * DAY, NOW - 10 * DAY, "active", "disable", None),
        (90 * DAY, None, "active", "disable", None),  # unknown is never inactive
        (None, NOW - 900 * DAY, "active", "disable", None),  # no rule
        (90 * DAY, NOW - 91 * DAY, "active", "", None),  # the app can do neither
        (90 * DAY, NOW - 91 * DAY, "active", "manual", "inactive"),
        (90 * DAY, NOW - 91 * DAY, "deprovisioned", "disable", "idp_deprovisioned"),
    ],
)
def test_an_account_unused_for_too_long_is_proposed_as_inactive(
    inactive_after, last_login, status, idle_mode, outcome
):
    policy = replace(POLICY, inactive_after=inactive_after)
    signed_in = "" if last_login is None else last_login.strftime("%Y-%m-%dT%H:%M:%SZ")
    accounts = {"a1": account(1, last_login=signed_in)}
    identities = {"i1": person(1, status)}
    links = correlate(accounts.values(), identities.values(), policy.match)
    found = evaluate(
        accounts, identities, links, policy, "delete", app="wiki", now=NOW, idle_mode=idle_mode
    )
    if outcome is None:
        assert not found.actions
        return
    (action,) = found.actions
    assert action.reason == outcome
    if outcome == "inactive":
        assert action.mode == idle_mode and action.evidence["last_login"] == signed_in
    else:
        assert action.mode == "delete" and "last_login" not in action.evidence


def test_an_unmatched_or_protected_account_is_never_proposed_as_inactive():
    policy = replace(POLICY, inactive_after=DAY)
    old = (NOW - 10 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    accounts = {
        "a1": account(1, last_login=old),  # nobody in the IdP
        "a2": Account.build("a2", "breakglass-1", last_login=old),  # protected
    }
    links = correlate(accounts.values(), [], policy.match)
    found = evaluate(
        accounts, {}, links, policy, "disable", app="wiki", now=NOW, idle_mode="disable"
    )
    assert not found.actions


def test_an_exception_for_someone_still_employed_changes_nothing():
    policy = replace(POLICY, exceptions=(granted(TODAY, person="i1"),))
    found = run([account(1)], [person(1)], policy)
    assert not found.actions and not found.excepted


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


@pytest.mark.parametrize(
    ("modes", "actions", "blocked"),
    [
        ({"disable", "delete"}, 1, ()),
        ({"manual"}, 1, ()),  # an app without an API gets manual tasks
        ({"delete"}, 1, ("supports none of the policy's mode",)),  # never disable → delete
    ],
)
def test_assess_picks_the_mode_or_blocks(modes, actions, blocked) -> None:
    accounts = {a.id: a for a in [account(n) for n in range(20)]}
    identities = {i.id: i for i in [person(0, "deprovisioned"), *(person(n) for n in range(1, 20))]}
    state = PullState("corp", count=20, previous_count=20)
    assessment = assess("wiki", accounts, identities, state, POLICY, modes, NOW)
    assert len(assessment.actions) == actions
    assert len(assessment.blocked_reasons) == len(blocked)
    for reason, words in zip(assessment.blocked_reasons, blocked, strict=True):
        assert words in reason


def test_assess_blocks_what_the_guards_block() -> None:
    accounts = {a.id: a for a in [account(n) for n in range(10)]}
    identities = {i.id: i for i in [person(n, "suspended") for n in range(10)]}
    state = PullState("corp", count=10, previous_count=100)  # the IdP lost 90%
    assessment = assess("wiki", accounts, identities, state, POLICY, {"disable"}, NOW)
    assert len(assessment.actions) == 10
    assert len(assessment.blocked_reasons) == 2  # shrank, and more than max_fraction


@pytest.mark.parametrize(
    ("identity", "proposed"),
    [
        (person(1, "deprovisioned"), True),
        (person(1), False),  # active again
        (Identity.build("i9", "user1@example.com", "user1"), False),  # re-hired, new id
    ],
)
def test_still_proposed_runs_the_policy_on_one_live_account(identity, proposed) -> None:
    identities = {identity.id: identity, "i1-old": person(1, "missing")._replace(id="i1-old")}
    assert (
        still_proposed(account(1), identities, POLICY, "disable", app="wiki", now=NOW) is not None
    ) is proposed


@pytest.mark.parametrize(
    ("approvers", "reviewers", "minimum", "ok"),
    [
        (["alice"], (), 1, True),
        (["alice"], ("alice", "bob"), 1, True),
        (["mallory"], ("alice",), 1, False),
        (["alice", "mallory"], ("alice",), 2, False),  # mallory does not count
        (["alice", "bob"], ("alice", "bob"), 2, True),
        ([], (), 1, False),
    ],
)
def test_check_approvers(approvers, reviewers, minimum, ok) -> None:
    rules = Approvals(min_approvals=minimum, reviewers=reviewers)
    if ok:
        check_approvers("wiki", approvers, rules, "policies/default.yaml")
    else:
        with pytest.raises(ApprovalError, match="valid approval"):
            check_approvers("wiki", approvers, rules, "policies/default.yaml")


@pytest.mark.parametrize(
    ("previous", "current", "blocked"),
    [(100, 100, False), (100, 80, False), (100, 74, True), (100, 5, True), (0, 0, False)],
)
def test_app_shrink_block(previous, current, blocked) -> None:
    reason = app_shrink_block("wiki", previous, current, POLICY)  # max_app_shrink 25%
    assert (reason is not None) is blocked
    if reason:
        assert "max_app_shrink" in reason and "nothing was imported" in reason


@pytest.mark.parametrize(
    ("hours_since", "deadline", "late"),
    [
        (5, None, None),  # no deadline, never late
        (5, timedelta(hours=24), None),
        (24, timedelta(hours=24), None),  # exactly at the deadline is still within it
        (30, timedelta(hours=24), "past the policy deadline of 24h by 6h"),
        (24 * 10, timedelta(days=3), "past the policy deadline of 3.0d by 7.0d"),
    ],
)
def test_lateness(hours_since, deadline, late) -> None:
    proposed = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    found = lateness(proposed, proposed + timedelta(hours=hours_since), deadline)
    if late is None:
        assert found is None
    else:
        assert found is not None and found.startswith(late)
        assert "proposed 2026-11-01 08:00 UTC" in found
