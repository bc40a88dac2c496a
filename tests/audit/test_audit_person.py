"""`reconciler audit person` on a real cycle: check, leave, check, approve, apply."""

from __future__ import annotations

import json

import pytest

from reconciler import demo
from reconciler.testing.access_repo import Company, company

# Every test runs with the lookup and with a search of the messages.
pytestmark = pytest.mark.usefixtures("lookup_or_messages")


def cycle(c: Company) -> None:
    assert c.cli("check").exit_code == 0
    c.leave()
    assert c.cli("check").exit_code == 0
    assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
    applied = c.cli("apply", "--confirm")
    assert applied.exit_code == 0, applied.output


@pytest.fixture
def applied(tmp_path):
    with company(tmp_path) as c:
        cycle(c)
        yield c


def test_leaver_timeline_from_detection_to_removal(applied):
    result = applied.cli("audit", "person", "bob.builder@example.com")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "corp: identity bob.builder: status active → deprovisioned" in out
    assert "import identities corp: 2 deprovisioned, 1 missing" in out
    assert "wiki: account bob.builder appeared" in out
    assert f"approved by {demo.REVIEWER} (merge " in out
    assert "disable bob.builder: done" in out
    (removal,) = [line for line in out.splitlines() if line.startswith("  wiki: bob.builder;")]
    assert "detected " in removal and "(deprovisioned, commit " in removal
    assert " h after detection" in removal
    assert "open exceptions: none" in out


def test_json_names_plan_approval_and_hours(applied):
    result = applied.cli("audit", "person", "Bob.Builder@EXAMPLE.com ", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema_version"] == 1
    (removal,) = data["removals"]
    (journal,) = (applied.repo / "history/wiki").glob("*.yaml")
    assert removal["plan"] in journal.name
    assert removal["approved_by"] == [demo.REVIEWER]
    assert removal["approval_verified"]["forge"] == "local"
    assert removal["outcome"] == "done" and removal["detected_status"] == "deprovisioned"
    assert removal["hours_to_removal"] is not None and removal["hours_to_removal"] >= 0
    assert [a["status"] for a in data["accounts"]] == ["disabled"]


def test_identity_id_and_username_find_the_same_person(applied):
    by_email = json.loads(
        applied.cli("audit", "person", "peggy.carter@example.com", "--format", "json").output
    )
    (identity,) = by_email["identities"]
    assert identity["status"] == "missing"
    for query in (identity["id"], "peggy.carter"):
        other = json.loads(applied.cli("audit", "person", query, "--format", "json").output)
        assert other["removals"] == by_email["removals"]
        assert other["removals"][0]["detected_status"] == "missing"


def test_unapplied_leaver_is_an_open_exception(applied):
    applied.idp.set_active(applied.idp_ids.users["alice.liddell"], False)
    assert applied.cli("check").exit_code == 0
    result = applied.cli("audit", "person", "alice.liddell@example.com")
    assert result.exit_code == 0, result.output
    assert "open exceptions (left, still active):" in result.output
    assert "wiki: alice.liddell still active, deprovisioned since" in result.output
    assert "waiting for review" in result.output
    markdown = applied.cli("audit", "person", "alice.liddell@example.com", "--format", "markdown")
    assert "## Open exceptions" in markdown.output
    assert "alice.liddell@&#8203;example.com" in markdown.output


def test_unknown_person_is_a_user_error(applied):
    result = applied.cli("audit", "person", "nobody@example.com")
    assert result.exit_code == 1
    assert "nobody with the email, username or id" in result.output


def test_until_before_anything_happened_shows_no_events(applied):
    result = applied.cli("audit", "person", "bob.builder", "--until", "2000-01-01")
    assert result.exit_code == 0, result.output
    assert "timeline: nothing in that period" in result.output


def test_app_timeline_of_a_cycle(applied):
    result = applied.cli("audit", "app", "wiki", "--format", "json")
    assert result.exit_code == 0, result.output
    events = json.loads(result.output)["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["import", "plan_proposed", "plan_approved"]
    assert kinds.count("applied") == 3 and "apply" in kinds
    assert events[0]["text"].endswith("(36 new)")
    text = applied.cli("audit", "app", "wiki").output
    assert f"approved by {demo.REVIEWER}" in text


def test_unknown_app_is_a_user_error(applied):
    result = applied.cli("audit", "app", "payroll")
    assert result.exit_code == 1
    assert "unknown app 'payroll'" in result.output


def test_policy_deadline_says_whether_each_removal_was_within_it(tmp_path):
    with company(tmp_path, policy=demo.POLICY + "deadline: 24h\n") as c:
        cycle(c)
        result = c.cli("audit", "person", "bob.builder@example.com", "--format", "json")
        assert result.exit_code == 0, result.output
        (removal,) = json.loads(result.output)["removals"]
        assert removal["deadline_hours"] == 24 and removal["within_deadline"] is True
        text = c.cli("audit", "person", "bob.builder@example.com").output
        assert "within the deadline of 24.0 h" in text


@pytest.mark.parametrize("deadline", ["0h", "24", "3w", "1.5d"])
def test_a_malformed_deadline_is_a_policy_error(tmp_path, deadline):
    with company(tmp_path, policy=demo.POLICY + f"deadline: '{deadline}'\n") as c:
        result = c.cli("validate")
        assert result.exit_code == 1
        assert "deadline" in result.output
