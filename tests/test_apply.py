"""Live re-verification before each action: a pure decision, table-driven."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.apply import shows_done, verify_live
from reconciler.config import Policy, RoleRule
from reconciler.model import Account, Identity
from reconciler.plan import REMOVE_ROLES, Action

POLICY = Policy(source_file="policies/default.yaml", apps=("*",), identity_source="corp")

ACTION = Action(
    account_id="a1",
    username="bob",
    email="bob@example.com",
    display_name="Bob",
    mode="disable",
    reason="idp_deprovisioned",
    identity_id="i1",
)
BOB = Account.build("a1", "bob", "bob@example.com", "Bob")
GONE = Identity.build("i1", "bob@example.com", "bob", status="deprovisioned")

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("live", "identities", "why"),
    [
        (BOB, [GONE], None),
        (BOB, [GONE._replace(status="missing")], None),  # deleted from the IdP
        (BOB._replace(email="BOB@Example.com "), [GONE], None),  # same person, other spelling
        (None, [GONE], "no longer exists"),
        (BOB._replace(status="disabled"), [GONE], "already disabled"),
        (BOB._replace(username="zed", email="zed@example.com"), [GONE], "changed since the plan"),
        (BOB._replace(email="zed@example.com"), [GONE], "changed since the plan"),
        (BOB, [GONE._replace(status="active")], "active again"),
        # Re-hired under a new IdP id with the same email: the old id is a tombstone.
        (
            BOB,
            [GONE._replace(status="missing"), Identity.build("i2", "bob@example.com", "bob")],
            "matches identity i2",
        ),
        (BOB._replace(type="service"), [GONE], "protected now (service account)"),
    ],
)
def test_verify_live(live, identities, why) -> None:
    found = verify_live(ACTION, live, {i.id: i for i in identities}, POLICY, "wiki", NOW)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found


def test_a_returning_owner_of_an_unused_account_is_not_removed_as_a_leaver() -> None:
    # Re-hired under a new id: the account is now theirs, and unused for a year. The
    # policy would propose it as inactive, not as a leaver's: not for this action.
    policy = replace(POLICY, inactive_after=timedelta(days=90))
    unused = BOB._replace(last_login="2025-11-01T00:00:00Z")
    identities = [GONE._replace(status="missing"), Identity.build("i2", "bob@example.com", "bob")]
    found = verify_live(ACTION, unused, {i.id: i for i in identities}, policy, "wiki", NOW)
    assert found is not None and "no longer proposed" in found


@pytest.mark.parametrize(
    ("live", "mode", "done"),
    [
        (None, "delete", True),
        (None, "disable", True),
        (BOB._replace(status="disabled"), "disable", True),
        (BOB, "disable", False),
        (BOB._replace(status="disabled"), "delete", False),  # deleting must make it gone
    ],
)
def test_done_only_when_the_account_reads_back_deprovisioned(live, mode, done) -> None:
    assert shows_done(live, replace(ACTION, mode=mode)) is done


ADMINS = RoleRule("admins", groups=("it",))
ROLE_POLICY = replace(POLICY, allowed_roles={"admins": ADMINS})
TAKE = replace(
    ACTION, op=REMOVE_ROLES, mode="remove_roles", reason="role_not_allowed", roles=("admins",)
)
ADMIN = BOB._replace(roles=("admins", "editors"))
STAYS = Identity.build("i1", "bob@example.com", "bob", groups=["sales"])


@pytest.mark.parametrize(
    ("live", "identities", "why"),
    [
        (ADMIN, [STAYS], None),
        (None, [STAYS], "no longer exists"),
        (ADMIN._replace(status="disabled"), [STAYS], "roles are left as they are"),
        (ADMIN._replace(roles=("editors",)), [STAYS], "no longer holds admins"),
        # Joined the group the rule names since the plan: the role stays.
        (ADMIN, [STAYS._replace(groups=("it",))], "admits them to admins now"),
        # Left since: their accounts go by a leaver's plan, not by taking a role.
        (ADMIN, [STAYS._replace(status="deprovisioned")], "no longer proposed"),
        (ADMIN._replace(username="zed", email="zed@example.com"), [STAYS], "changed since"),
        (ADMIN._replace(type="service"), [STAYS], "protected now"),
    ],
)
def test_verify_live_of_a_role_removal(live, identities, why) -> None:
    found = verify_live(TAKE, live, {i.id: i for i in identities}, ROLE_POLICY, "wiki", NOW)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found


@pytest.mark.parametrize(
    ("roles", "done"),
    [(("editors",), True), (("admins", "editors"), False), ((), True)],
)
def test_a_role_removal_is_done_when_the_roles_read_back_gone(roles, done) -> None:
    assert shows_done(ADMIN._replace(roles=roles), TAKE) is done
    assert shows_done(None, TAKE) is False  # a vanished account is not a role taken
