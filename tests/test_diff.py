from __future__ import annotations

from reconciler.diff import diff_accounts
from reconciler.model import Account


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
