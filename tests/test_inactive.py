"""Inactive accounts, end to end on a real SCIM server whose users carry a last sign-in
in an extension: an account of someone still employed whose last sign-in is older than
`inactive_after` is proposed for disabling as its own reason, with the sign-in as
evidence; an unknown or recent one never is; apply reads the sign-in again and leaves
an account that was used since alone. Last sign-ins never reach the snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler import demo
from reconciler.testing.access_repo import Company, company
from reconciler.testing.scim_server import LAST_LOGIN_ATTRIBUTE

NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def reading_sign_ins(c: Company) -> None:
    """The wiki app's connector reads the activity extension's lastLogin."""
    config = c.repo / "reconciler.yaml"
    text = config.read_text().replace(
        "    token_env: DEMO_APP_TOKEN\n",
        f"    token_env: DEMO_APP_TOKEN\n    last_login_attribute: {LAST_LOGIN_ATTRIBUTE}\n",
    )
    config.write_text(text)
    c.git.commit_paths(["reconciler.yaml"], "read last sign-ins")


def signed_in(c: Company, username: str, days_ago: int) -> None:
    c.app.sign_in(c.app_ids.users[username], stamp(NOW - timedelta(days=days_ago)))


def proposed(c: Company) -> dict[str, dict]:
    return {a["account"]["username"]: a for a in c.plan_on_branch()["actions"]}


def test_an_account_unused_for_longer_than_inactive_after_is_proposed(tmp_path):
    with company(tmp_path, policy=demo.POLICY + "inactive_after: 90d\n") as c:
        reading_sign_ins(c)
        signed_in(c, "alice.liddell", 200)
        signed_in(c, "carol.danvers", 30)
        # dan.brown: the app does not say: unknown is never inactive.
        result = c.cli("check")
        assert result.exit_code == 0, result.output
        actions = proposed(c)
        assert list(actions) == ["alice.liddell"]
        alice = actions["alice.liddell"]
        assert alice["reason"] == "inactive" and alice["mode"] == "disable"
        assert alice["evidence"]["last_login"] == stamp(NOW - timedelta(days=200))
        assert alice["evidence"]["identity_status"] == "active"
        report = (c.git.show("reconciler/wiki", "plans/wiki.md") or b"").decode()
        assert "no sign-in for longer than the policy" in report
        # Live data only: the snapshot holds no sign-in.
        assert b"last_login" not in (c.repo / "state/apps/wiki/accounts.yaml").read_bytes()

        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        assert c.app_user("alice.liddell")["active"] is False
        assert c.app_user("carol.danvers")["active"] is True


def test_an_account_used_after_the_plan_is_left_alone(tmp_path):
    with company(tmp_path, policy=demo.POLICY + "inactive_after: 90d\n") as c:
        reading_sign_ins(c)
        signed_in(c, "alice.liddell", 200)
        assert c.cli("check").exit_code == 0
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        signed_in(c, "alice.liddell", 0)  # she came back before the apply
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        assert "not inactive now" in applied.output
        assert c.app_user("alice.liddell")["active"] is True


def test_a_leaver_is_proposed_as_a_leaver_even_when_also_inactive(tmp_path):
    with company(tmp_path, policy=demo.POLICY + "inactive_after: 90d\n") as c:
        reading_sign_ins(c)
        signed_in(c, "bob.builder", 200)
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        assert proposed(c)["bob.builder"]["reason"] == "idp_deprovisioned"


def test_a_forged_sign_in_in_the_plan_cannot_disable_an_active_user(tmp_path):
    with company(tmp_path, policy=demo.POLICY + "inactive_after: 90d\n") as c:
        reading_sign_ins(c)
        signed_in(c, "alice.liddell", 200)
        signed_in(c, "carol.danvers", 1)
        assert c.cli("check").exit_code == 0
        # A reviewer copies alice's action onto carol, old sign-in and all.
        plan_file = c.repo / "plans" / "wiki.yaml"
        c.git.run("checkout", "-q", "reconciler/wiki")
        text = plan_file.read_text()
        c.git.run("checkout", "-q", "main")
        forged = text.replace(
            f"id: {c.app_ids.users['alice.liddell']}", f"id: {c.app_ids.users['carol.danvers']}"
        ).replace("alice.liddell", "carol.danvers")
        assert forged != text
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        plan_file.write_text(forged)
        c.git.commit_paths(["plans/wiki.yaml"], "edit the approved plan")
        applied = c.cli("apply", "--confirm")
        assert c.app_user("carol.danvers")["active"] is True
        assert applied.exit_code != 0 or "not inactive now" in applied.output


def test_the_scim_connector_reads_the_sign_in_named_in_its_options():
    from reconciler.connectors.scim import account_from_user

    urn = "urn:example:params:scim:schemas:extension:activity:2.0:User"
    user = {"id": "7", "userName": "al", urn: {"LastLogin": "2026-08-01T12:00:00+02:00"}}
    read = account_from_user(user, last_login_attribute=f"{urn}:lastLogin")
    assert read.last_login == "2026-08-01T10:00:00Z"  # names compare without case; UTC
    assert account_from_user(user).last_login == ""  # not asked for: unknown
    assert (
        account_from_user({"id": "7", "lastLogin": "junk"}, last_login_attribute="lastLogin")[-1]
        == ""
    )
