"""The audit core, table-driven: plain facts in, a timeline out; no git."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.audit.timeline import (
    ACCOUNT,
    IDENTITY,
    Commit,
    Journal,
    JournalAction,
    LineChange,
    PendingPlan,
    count_changes,
    describe,
    detections,
    gone_since,
    person_timeline,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def commit(hours: float, subject: str = "import") -> Commit:
    return Commit(f"c{hours:05.1f}".replace(".", ""), at(hours), subject)


def identity(status: str, **extra: object) -> dict[str, object]:
    return {"id": "i1", "email": "bob@acme.com", "username": "bob", "status": status, **extra}


def account(status: str = "active", **extra: object) -> dict[str, object]:
    return {
        "id": "a1",
        "username": "bob",
        "email": "bob@acme.com",
        "status": status,
        "roles": ["viewer"],
        "entitlements": [],
        **extra,
    }


def ident_change(hours: float, before, after) -> LineChange:
    return LineChange(commit(hours), "corp", IDENTITY, "i1", before, after)


def acct_change(hours: float, before, after, app: str = "wiki", subject="import") -> LineChange:
    return LineChange(commit(hours, subject), app, ACCOUNT, "a1", before, after)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (identity("active"), identity("deprovisioned"), "deprovisioned"),
        (identity("active"), identity("suspended"), "suspended"),
        (identity("active"), None, "missing"),
        (identity("active"), identity("missing"), "missing"),
        (identity("suspended"), identity("deprovisioned"), None),  # already detected
        (identity("active"), identity("active", groups=["x"]), None),
        (None, identity("deprovisioned"), "deprovisioned"),  # first seen gone
    ],
)
def test_detection_is_the_first_import_showing_them_gone(before, after, expected):
    found = detections([ident_change(5, before, after)])
    assert [d.status for d in found] == ([expected] if expected else [])
    if expected:
        assert found[0].at == at(5) and found[0].source == "corp"


@pytest.mark.parametrize(
    ("before", "after", "kind", "words"),
    [
        (None, account(), "account_appeared", ["appeared", "roles: viewer"]),
        (account(), None, "account_gone", ["gone from the snapshot"]),
        (account(), account("disabled"), "account_status", ["active → disabled"]),
        (account(), account(roles=["admin"]), "account_changed", ["+admin", "-viewer"]),
        (
            account(),
            account(entitlements=["repo:pay:write"]),
            "account_changed",
            ["entitlements +repo:pay:write"],
        ),
    ],
)
def test_describe_says_what_changed_in_a_line(before, after, kind, words):
    got_kind, text = describe(acct_change(1, before, after))
    assert got_kind == kind
    for word in words:
        assert word in text


def journal(outcome: str = "done", applied: float = 30, approved: float = 20) -> Journal:
    return Journal(
        app="wiki",
        plan="p1",
        path="history/wiki/x.yaml",
        approved_by=("rev",),
        approval="merge abc",
        approved_at=at(approved),
        approval_verified={"forge": "local"},
        plan_created_at=at(10.5),
        actions=(
            JournalAction(
                "a1",
                "bob",
                "bob@acme.com",
                "disable",
                "idp_deprovisioned",
                outcome,
                "disabled",
                at(applied),
            ),
            JournalAction(
                "a9", "eve", "eve@acme.com", "disable", "idp_deprovisioned", "done", "", at(applied)
            ),
        ),
        commit=commit(applied, "apply wiki"),
    )


LEFT_AT_10 = [
    ident_change(0, None, identity("active")),
    acct_change(0, None, account()),
    ident_change(10, identity("active"), identity("deprovisioned")),
]


@pytest.mark.parametrize(
    ("deadline", "applied", "within", "hours_taken"),
    [
        (None, 30, None, 20.0),
        (timedelta(hours=24), 30, True, 20.0),
        (timedelta(hours=24), 40, False, 30.0),
        (timedelta(days=3), 40, True, 30.0),
    ],
)
def test_removal_by_plan_from_detection_to_apply(deadline, applied, within, hours_taken):
    changes = [*LEFT_AT_10, acct_change(applied, account(), account("disabled"), subject="apply")]
    timeline = person_timeline(
        "bob@acme.com",
        changes,
        [journal(applied=applied)],
        [],
        sources={"wiki": "corp"},
        deadlines={"wiki": deadline},
        now=at(100),
    )
    (removal,) = timeline.removals
    assert removal.how == "plan" and removal.plan == "p1"
    assert removal.approved_by == ("rev",) and removal.approval == "merge abc"
    assert removal.detected_at == at(10) and removal.detected_status == "deprovisioned"
    assert removal.removed_at == at(applied) and removal.outcome == "done"
    assert removal.to_data()["hours_to_removal"] == hours_taken
    assert removal.within_deadline is within
    assert timeline.open_exceptions == ()
    kinds = [e.kind for e in timeline.events]
    assert (
        kinds.index("identity_status")
        < kinds.index("plan_proposed")
        < kinds.index("plan_approved")
        < kinds.index("applied")
    )
    # The other person in the same journal is not in bob's timeline.
    assert all("eve" not in e.text for e in timeline.events)


def test_failed_apply_is_no_removal_and_leaves_an_open_exception():
    timeline = person_timeline(
        "bob",
        LEFT_AT_10,
        [journal(outcome="failed")],
        [],
        sources={"wiki": "corp"},
        deadlines={"wiki": timedelta(hours=24)},
        now=at(58),
    )
    (removal,) = timeline.removals
    assert removal.removed_at is None and removal.time_to_removal is None
    (exception,) = timeline.open_exceptions
    assert exception.age == timedelta(hours=48) and exception.past_deadline is True


def test_without_events_the_removals_and_exceptions_are_the_same():
    for journals, now in (([journal(outcome="failed")], at(58)), ([journal(applied=30)], at(99))):
        arguments = dict(sources={"wiki": "corp"}, deadlines={"wiki": None}, now=now)
        full = person_timeline("bob", LEFT_AT_10, journals, [], **arguments)
        lean = person_timeline("bob", LEFT_AT_10, journals, [], with_events=False, **arguments)
        assert full.events and not lean.events
        assert (lean.removals, lean.open_exceptions) == (full.removals, full.open_exceptions)
        assert (lean.accounts, lean.identities) == (full.accounts, full.identities)


@pytest.mark.parametrize(
    ("pending", "state"),
    [
        ([], None),
        ([PendingPlan("wiki", "p2", "open", at(11), "reconciler/wiki", ("a1",))], "open"),
        ([PendingPlan("wiki", "p2", "approved", at(11), "main", ("a1",))], "approved"),
        ([PendingPlan("wiki", "p3", "open", at(11), "reconciler/wiki", ("zz",))], None),
    ],
)
def test_leaver_still_active_is_an_open_exception_with_its_age(pending, state):
    timeline = person_timeline(
        "bob",
        LEFT_AT_10,
        [],
        pending,
        sources={"wiki": "corp"},
        deadlines={},
        now=at(34),
    )
    (exception,) = timeline.open_exceptions
    assert exception.age == timedelta(hours=24)
    assert exception.detected_status == "deprovisioned"
    assert (exception.pending.state if exception.pending else None) == state
    assert exception.past_deadline is None


@pytest.mark.parametrize(
    ("later", "exceptions"),
    [
        ([], 1),
        ([ident_change(20, identity("deprovisioned"), identity("active"))], 0),  # came back
        ([acct_change(20, account(), None)], 0),  # removed in the app
    ],
)
def test_open_exceptions_follow_the_latest_state(later, exceptions):
    timeline = person_timeline(
        "bob",
        [*LEFT_AT_10, *later],
        [],
        [],
        sources={"wiki": "corp"},
        deadlines={},
        now=at(50),
    )
    assert len(timeline.open_exceptions) == exceptions


def test_account_removed_in_the_app_counts_as_a_removal_without_a_plan():
    timeline = person_timeline(
        "bob",
        [*LEFT_AT_10, acct_change(16, account(), None, subject="import wiki: 1 removed")],
        [],
        [],
        sources={"wiki": "corp"},
        deadlines={"wiki": timedelta(hours=24)},
        now=at(50),
    )
    (removal,) = timeline.removals
    assert removal.how == "app" and removal.plan == ""
    assert removal.time_to_removal == timedelta(hours=6) and removal.within_deadline is True


@pytest.mark.parametrize(
    ("since", "until", "kinds"),
    [
        (None, None, {"identity_appeared", "account_appeared", "identity_status"}),
        (at(5), None, {"identity_status"}),
        (None, at(5), {"identity_appeared", "account_appeared"}),
        (at(11), at(12), set()),
    ],
)
def test_since_and_until_bound_the_events(since, until, kinds):
    timeline = person_timeline(
        "bob",
        LEFT_AT_10,
        [],
        [],
        sources={"wiki": "corp"},
        deadlines={},
        now=at(50),
        since=since,
        until=until,
    )
    assert {e.kind for e in timeline.events} == kinds


def test_app_timeline_counts_each_import_and_orders_the_cycle():
    from reconciler.audit.timeline import app_timeline

    imported = commit(0, "import wiki: 2 new")
    applied_commit = commit(30, "apply wiki: disabled 1 of 1 accounts")
    imports = [
        LineChange(imported, "wiki", ACCOUNT, "a1", None, account()),
        LineChange(imported, "wiki", ACCOUNT, "a2", None, account(id="a2")),
    ]
    disabled = [LineChange(applied_commit, "wiki", ACCOUNT, "a1", account(), account("disabled"))]
    snapshots = [(imported, count_changes(imports)), (applied_commit, count_changes(disabled))]
    events = app_timeline(
        "wiki",
        snapshots,
        [(commit(11, "plan wiki: deprovision 1 account"), "p1")],
        [journal(applied=30)],
        [PendingPlan("wiki", "p2", "open", at(40), "reconciler/wiki", ("a2",))],
    )
    assert [e.kind for e in events] == [
        "import",
        "plan_proposed",
        "plan_approved",
        "apply",
        "applied",
        "applied",
        "plan_pending",
    ]
    assert "(2 new)" in events[0].text and "(1 changed)" in events[3].text
    assert "approved by rev" in events[2].text
    assert app_timeline("wiki", snapshots, [], [], [], since=at(1)) == events[3:4]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(0, None, "active"), (5, "active", "deprovisioned")], 5),
        ([(0, None, "active"), (5, "active", "suspended"), (9, "suspended", "active")], None),
        (
            [
                (0, None, "active"),
                (5, "active", "deprovisioned"),
                (9, "deprovisioned", "active"),
                (20, "active", "deprovisioned"),
            ],
            20,
        ),
        ([(0, None, "active"), (5, "active", "deprovisioned"), (8, "deprovisioned", None)], 5),
        ([(0, None, "active"), (7, "active", None)], 7),
        ([(0, None, "active")], None),
    ],
)
def test_gone_since_is_the_start_of_the_current_absence(steps, expected):
    changes = [
        ident_change(h, identity(before) if before else None, identity(after) if after else None)
        for h, before, after in steps
    ]
    found = gone_since(changes)
    if expected is None:
        assert found == {}
    else:
        assert found["i1"].at == at(expected)
