"""Grace before proposing, end to end on real SCIM servers: a person gone for less than
the policy's `grace` is not proposed, one deactivated and reactivated within it never
reaches a plan, and one still gone after it is proposed and applied (apply judges the
grace on the same history the check did); and the report's list of who waits."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from reconciler import clock, demo
from reconciler.commands import check as check_command
from reconciler.git import Git
from reconciler.model import Account
from reconciler.outcome import AppCheck, Waiting
from reconciler.report import render_report
from reconciler.testing.access_repo import Company, company

DAY = timedelta(hours=24)


def later(monkeypatch: pytest.MonkeyPatch, hours: int) -> None:
    """Checks from now on run `hours` later than the real clock (only checks: a module
    that takes the clock by name keeps the real one)."""
    moved = functools.partial(
        check_command.Checker, now=lambda: clock.utc_now() + timedelta(hours=hours)
    )
    monkeypatch.setattr(check_command, "Checker", moved)


def summary(c: Company) -> dict:
    result = c.cli("check", "--format", "json")
    assert result.exit_code in (0, 4), result.output
    (app,) = [a for a in json.loads(result.output)["apps"] if a["app"] == "wiki"]
    return app


def test_a_leaver_waits_for_the_grace_then_is_proposed_and_applied(tmp_path, monkeypatch):
    with company(tmp_path, policy=demo.POLICY + "grace: 24h\n") as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        waiting = summary(c)
        assert waiting["summary"]["to_deprovision"] == 0
        assert waiting["summary"]["waiting"] == 3
        assert c.git.show("reconciler/wiki", "plans/wiki.yaml") is None

        later(monkeypatch, 25)
        assert summary(c)["summary"]["to_deprovision"] == 3
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        assert c.app_user("bob.builder")["active"] is False


def test_a_deactivation_reverted_within_the_grace_never_reaches_reviewers(tmp_path, monkeypatch):
    with company(tmp_path, policy=demo.POLICY + "grace: 2d\n") as c:
        assert c.cli("check").exit_code == 0
        bob = c.idp_ids.users["bob.builder"]
        c.idp.set_active(bob, False)
        assert summary(c)["summary"]["waiting"] == 1
        c.idp.set_active(bob, True)  # a mistake, put right the same day
        later(monkeypatch, 72)
        found = summary(c)["summary"]
        assert found["to_deprovision"] == 0 and found["waiting"] == 0
        assert c.git.show("reconciler/wiki", "plans/wiki.yaml") is None


def test_the_grace_reads_the_history_with_the_checks_own_imports(tmp_path, monkeypatch):
    """A check commits its imports in a thread while it assesses the apps: the history
    the grace is judged on waits for them, however slow git is. Read before, it would
    not show the leavers at all, and they would be proposed at once."""
    commit_series = Git.commit_series

    def slow(self: Git, series: Sequence[tuple[Sequence[str], str]]) -> list[str | None]:
        time.sleep(1)
        return commit_series(self, series)

    monkeypatch.setattr(Git, "commit_series", slow)
    with company(tmp_path, policy=demo.POLICY + "grace: 24h\n") as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        waiting = summary(c)["summary"]
        assert waiting["to_deprovision"] == 0 and waiting["waiting"] == 3


def test_the_report_lists_who_waits_and_from_when():
    since = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    waiting = Waiting(Account.build("a7", "judy.hale", "judy@example.com"), since, since + DAY)
    text = render_report(
        AppCheck(app="wiki", identity_source="corp", waiting=(waiting,), grace=DAY)
    )
    assert "## Waiting: gone for less than the 24h grace (1)" in text
    assert "| In grace | 1 |" in text
    assert "| 2026-11-25 09:30 UTC | 2026-11-26 09:30 UTC |" in text
    # Without anyone waiting, no row and no section: reports read as they always did.
    plain = render_report(AppCheck(app="wiki", identity_source="corp", grace=DAY))
    assert "Waiting" not in plain and "In grace" not in plain
