from __future__ import annotations

import pytest

from reconciler import diff as diff_module
from reconciler import snapshot
from reconciler.diff import (
    AccountChange,
    FieldChange,
    describe,
    diff_accounts,
    diff_records,
    field_changes,
)
from reconciler.inert import terminal
from reconciler.model import Account, Identity


def test_keyed_diff_finds_added_removed_and_changed():
    old = {
        "1": Account.build("1", "alice", roles=["admin"]),
        "2": Account.build("2", "bob"),
        "3": Account.build("3", "carol", entitlements=["repo:a:read"]),
    }
    new = {
        "1": Account.build("1", "alice", roles=["admin", "billing"]),
        "3": Account.build("3", "carol", entitlements=["repo:a:read"]),
        "4": Account.build("4", "dan"),
    }
    diff = diff_accounts(old, new)
    assert [a.id for a in diff.added] == ["4"]
    assert [a.id for a in diff.removed] == ["2"]
    assert [c.new.id for c in diff.changed] == ["1"]
    change = diff.changed[0]
    assert change.fields == ("roles",)
    assert change.roles_added == ("billing",)
    assert diff.role_changes == (change,)


def test_role_order_is_not_a_change():
    old = {"1": Account.build("1", roles=["b", "a"])}
    new = {"1": Account.build("1", roles=["a", "b"])}
    assert diff_accounts(old, new).empty


def test_status_change_is_not_a_role_change():
    old = {"1": Account.build("1")}
    new = {"1": Account.build("1", status="disabled")}
    diff = diff_accounts(old, new)
    assert diff.changed[0].fields == ("status",)
    assert diff.role_changes == ()


# --- field-level detail (DeepDiff on one changed pair) ----------------------------------

FIELD_CASES = [
    pytest.param(
        {"roles": ["viewer"]},
        {"roles": ["admin"]},
        [FieldChange("roles", added=("admin",), removed=("viewer",))],
        ["roles +admin -viewer"],
        id="role swapped is added and removed, not paired by position",
    ),
    pytest.param(
        {"roles": ["a", "b", "c"]},
        {"roles": ["b", "c", "d"]},
        [FieldChange("roles", added=("d",), removed=("a",))],
        ["roles +d -a"],
        id="a shifted list reports only the names that differ",
    ),
    pytest.param(
        {"email": "old@x"},
        {"email": "new@x"},
        [FieldChange("email", old="old@x", new="new@x")],
        ["email old@x → new@x"],
        id="scalar from → to",
    ),
    pytest.param(
        {"display_name": ""},
        {"display_name": "Bob"},
        [FieldChange("display_name", old="", new="Bob")],
        ['display_name "" → Bob'],
        id="an empty value is shown as quotes",
    ),
    pytest.param(
        {"status": "active", "type": "human"},
        {"status": "disabled", "type": "service"},
        [
            FieldChange("status", old="active", new="disabled"),
            FieldChange("type", old="human", new="service"),
        ],
        ["status active → disabled", "type human → service"],
        id="several scalars in record order",
    ),
    pytest.param(
        {"username": "bob", "entitlements": []},
        {"username": "robert", "entitlements": ["repo:a:write", "repo:b:read"]},
        [
            FieldChange("username", old="bob", new="robert"),
            FieldChange("entitlements", added=("repo:a:write", "repo:b:read")),
        ],
        ["username bob → robert", "entitlements +repo:a:write +repo:b:read"],
        id="scalar and list together",
    ),
    pytest.param({"roles": ["a"]}, {"roles": ["a"]}, [], [], id="equal records"),
]


@pytest.mark.parametrize(("before", "after", "expected", "phrases"), FIELD_CASES)
def test_field_changes(before, after, expected, phrases):
    old = Account.build("1", **{"username": "bob", **before})
    new = Account.build("1", **{"username": "bob", **after})
    changes = field_changes(old.to_record(), new.to_record())
    assert list(changes) == expected
    assert describe(changes, str) == phrases


def test_field_changes_of_identities_report_groups():
    old = Identity.build("i1", "a@x", groups=["eng", "ops"])
    new = Identity.build("i1", "b@x", groups=["eng", "sales"], status="suspended")
    changes = field_changes(old.to_record(), new.to_record())
    assert describe(changes, str) == [
        "email a@x → b@x",
        "status active → suspended",
        "groups +sales -ops",
    ]


def test_a_field_missing_on_one_side_is_a_change_from_nothing():
    changes = field_changes({"id": "1"}, {"id": "1", "email": "a@x"})
    assert changes == (FieldChange("email", old=None, new="a@x"),)
    assert describe(changes, str) == ['email "" → a@x']


def test_describe_escapes_every_value_and_can_count():
    change = AccountChange(
        Account.build("1", "bob", email="a@x", entitlements=["e1"]),
        Account.build("1", "bob", email="b@x\nApproved-by: m", entitlements=["e2", "e3"]),
    )
    phrases = describe(change.details, terminal, counted=frozenset({"entitlements"}))
    assert phrases == ["email a@x → b@x\\nApproved-by: m", "entitlements +2 -1"]


def test_change_details_as_json_data():
    change = AccountChange(Account.build("1", roles=["a"]), Account.build("1", status="disabled"))
    assert [c.to_data() for c in change.details] == [
        {"field": "status", "from": "active", "to": "disabled"},
        {"field": "roles", "added": [], "removed": ["a"]},
    ]


def test_diff_records_works_for_identities():
    old = {"1": Identity.build("1", "a@x"), "2": Identity.build("2", "b@x")}
    new = {"1": Identity.build("1", "a@y"), "3": Identity.build("3", "c@x")}
    diff = diff_records(old, new)
    assert [i.id for i in diff.added] == ["3"]
    assert [i.id for i in diff.removed] == ["2"]
    assert [c.new.id for c in diff.changed] == ["1"]
    assert describe(diff.changed[0].details, str) == ["email a@x → a@y"]


def test_only_changed_lines_are_compared(monkeypatch):
    accounts = [Account.build(str(n), f"user{n}") for n in range(1000)]
    old = snapshot.account_records(accounts)
    changed = [*accounts[:999], Account.build("999", "renamed")]
    new = snapshot.account_records(changed)
    calls = []
    real = diff_module.field_changes
    monkeypatch.setattr(
        diff_module, "field_changes", lambda a, b: calls.append(a["id"]) or real(a, b)
    )
    diff = diff_accounts(old, new)
    assert [c.details for c in diff.changed] == [
        (FieldChange("username", old="user999", new="renamed"),)
    ]
    assert calls == ["999"]
