"""Policy exceptions that expire, end to end on real SCIM servers: an excepted leaver
stays out of the plan until the day after `until` and is listed in the report; an
expired one is proposed again with the exception as its history; an exception merged
after the approval stops the apply; a malformed one is named with its line."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from reconciler import demo
from reconciler.testing.access_repo import Company, company
from tests.audit.test_audit_person import cycle

TODAY = datetime.now(UTC).date()


def policy_with(*exceptions: str) -> str:
    return demo.POLICY + "exceptions:\n" + "".join(exceptions)


def exception(until: date, name: str = "account: bob.builder", **extra: str) -> str:
    lines = [f"  - {name}\n", f"    until: {until.isoformat()}\n"]
    lines += ["    reason: hands over the wiki migration\n", "    granted_by: carol\n"]
    lines += [f"    {key}: {value}\n" for key, value in extra.items()]
    return "".join(lines)


def proposed(c: Company) -> dict[str, dict]:
    plan = c.plan_on_branch()
    return {a["account"]["username"]: a for a in plan["actions"]}


def test_an_excepted_leaver_stays_out_of_the_plan_and_is_listed(tmp_path):
    soon = TODAY + timedelta(days=3)
    with company(tmp_path, policy=policy_with(exception(soon))) as c:
        assert c.cli("validate").exit_code == 0
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        actions = proposed(c)
        assert "bob.builder" not in actions and "judy.hale" in actions
        report = (c.git.show("reconciler/wiki", "plans/wiki.md") or b"").decode()
        assert "## Exceptions (1)" in report
        assert "1 exception runs out within 14 days" in report
        assert (
            f"| {soon.isoformat()} (**3 days left**) | carol | hands over the wiki migration |"
            in (report)
        )


def test_a_person_excepted_in_another_app_is_still_proposed_here(tmp_path):
    with company(
        tmp_path, policy=policy_with(exception(TODAY, "person: bob.builder", app="crm"))
    ) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        assert "bob.builder" in proposed(c)


def test_an_expired_exception_is_proposed_again_with_its_history(tmp_path):
    yesterday = TODAY - timedelta(days=1)
    with company(tmp_path, policy=policy_with(exception(yesterday))) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        action = proposed(c)["bob.builder"]
        assert action["evidence"]["exception_expired"] == {
            "account": "bob.builder",
            "reason": "hands over the wiki migration",
            "until": yesterday.isoformat(),
            "granted_by": "carol",
        }
        assert yesterday.isoformat() in (
            (c.git.show("reconciler/wiki", "plans/wiki.md") or b"").decode()
        )


def test_an_exception_merged_after_the_approval_stops_the_apply(tmp_path):
    with company(tmp_path) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        c.write_policy(policy_with(exception(TODAY + timedelta(days=30))))
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code != 0
        assert "policies/default.yaml changed since plan" in applied.output
        # Nothing was done.
        assert c.app_user("bob.builder")["active"] is True
        assert c.app_user("judy.hale")["active"] is True
        # Withdrawn, the plan is proposed again under the new policy.
        c.git.run("revert", "--no-edit", "-m", "1", "HEAD~1")
        assert c.cli("check").exit_code == 0
        assert "bob.builder" not in proposed(c) and "judy.hale" in proposed(c)


def test_an_excepted_person_keeps_their_account_through_a_whole_cycle(tmp_path):
    with company(tmp_path, policy=policy_with(exception(TODAY, "person: judy.hale"))) as c:
        cycle(c)
        assert c.app_user("judy.hale")["active"] is True
        assert c.app_user("bob.builder")["active"] is False


def test_a_malformed_exception_is_named_with_its_line(tmp_path):
    broken = (
        "  - account: bob.builder\n    reason: r\n    granted_by: carol\n"  # no until
        "  - account: a\n    person: b\n    until: 2026-12-31\n    reason: r\n    granted_by: c\n"
        "  - person: b\n    until: '2026-02-30'\n    reason: r\n    granted_by: c\n"
    )
    with company(tmp_path, policy=policy_with(broken)) as c:
        result = c.cli("validate")
        assert result.exit_code != 0
        lines = result.output.splitlines()
        base = demo.POLICY.count("\n") + 2  # the line of the first exception
        assert any(
            line.startswith(f"policies/default.yaml:{base}:") and "'until'" in line
            for line in lines
        ), result.output
        assert any(
            line.startswith(f"policies/default.yaml:{base + 3}:") and "both" in line
            for line in lines
        ), result.output
        assert any(
            line.startswith(f"policies/default.yaml:{base + 9}:") and "not a date" in line
            for line in lines
        ), result.output
