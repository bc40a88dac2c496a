"""Live re-verification before each action: a pure decision, table-driven."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.apply import shows_done, verify_live
from reconciler.config import Policy
from reconciler.model import Account, Identity
from reconciler.plan import Action

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
    assert shows_done(live, mode) is done
