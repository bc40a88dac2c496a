"""`reconciler explain`: one account's reasons, from the access repo alone, and a verdict
that is the next check's (the same evaluation), on a real cycle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from reconciler import demo
from reconciler.testing.access_repo import Company, company

TODAY = datetime.now(UTC).date()


def explained(c: Company, account: str, *extra: str) -> dict:
    result = c.cli("explain", "--app", "wiki", account, "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def left(tmp_path):
    """Checked, three people gone, an exception for one of them, checked again."""
    until = TODAY + timedelta(days=5)
    policy = demo.POLICY + (
        "exceptions:\n  - person: judy.hale@example.com\n"
        f"    until: {until.isoformat()}\n    reason: handover\n    granted_by: carol\n"
    )
    with company(tmp_path, policy=policy) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        yield c


def test_a_leaver_is_explained_as_the_next_check_proposes_it(left):
    found = explained(left, "bob.builder@example.com")
    assert found["verdict"] == "proposed"
    assert found["matched_by"] == "email=email"
    assert found["action"]["reason"] == "idp_deprovisioned"
    assert any("status in corp: deprovisioned" in line for line in found["reasons"])
    # The same action the check put in the plan.
    plan = {a["account"]["id"]: a for a in left.plan_on_branch()["actions"]}
    assert plan[found["account"]["id"]] == found["action"]


@pytest.mark.parametrize(
    ("account", "verdict", "says"),
    [
        ("judy.hale", "excepted", "exception for person judy.hale@example.com holds"),
        ("ci-bot", "protected", "protected: service account"),
        ("breakglass-admin", "protected", "protected by policies/default.yaml"),
        ("alice.liddell", "kept", "its status in corp: active"),
    ],
)
def test_each_reason_is_one_line(left, account, verdict, says):
    found = explained(left, account)
    assert found["verdict"] == verdict
    assert any(says in line for line in found["reasons"]), found["reasons"]


def test_text_output_lists_the_reasons_and_the_next_check(left):
    result = left.cli("explain", "--app", "wiki", "JUDY.HALE")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "wiki: judy.hale"
    assert lines[-1].startswith("next check: kept out of plans by the exception until ")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--app", "wiki", "nobody"), "no account of wiki has the id, username or email"),
        (("--app", "crm", "bob.builder"), "unknown app 'crm'"),
    ],
)
def test_a_wrong_account_or_app_is_a_clear_error(left, args, says):
    result = left.cli("explain", *args)
    assert result.exit_code == 1
    assert says in result.output
