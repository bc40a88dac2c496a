"""The report a reviewer reads, the PR body it becomes, and import commit messages."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from reconciler import demo
from reconciler.clock import utc_now
from reconciler.diff import AccountChange, AccountDiff
from reconciler.errors import ConfigError
from reconciler.model import Account
from reconciler.outcome import Ambiguous, AppCheck, Protected
from reconciler.plan import Action, Plan, new_plan
from reconciler.report import (
    SUMMARY_LABELS,
    import_commit_message,
    late_removals,
    render_pr_body,
    render_report,
    summary_line,
    summary_row,
)
from reconciler.seats import SeatCost
from reconciler.testing.access_repo import company

# One value that tries every trick: HTML, a table cell, a mention, an issue link, a code
# span, a javascript: link, an image, an RTL override, a new table row, a heading and a
# forged trailer, an HTML comment that would hide the rest of the report, emphasis.
HOSTILE = (
    "<script>alert(1)</script>|cell @channel @acme/admins #1 `code` "
    "[click](javascript:alert(1)) ![img](http://evil.example/x.png) \u202eevil\n"
    "| forged | row |\n## Approved-by: mallory <!-- **bold** https://evil.example"
)


def account(n: int, name: str = "", **fields: object) -> Account:
    return Account.build(id=str(n), username=name or f"user{n}", **fields)  # type: ignore[arg-type]


def hostile_account(n: int) -> Account:
    return Account.build(
        id=f"{n}{HOSTILE}",
        username=HOSTILE,
        email=f"{HOSTILE}@acme.com",
        display_name=HOSTILE,
        roles=[HOSTILE, "viewer"],
        entitlements=[HOSTILE],
    )


def action(n: int, mode: str = "disable", **fields: object) -> Action:
    base: dict[str, object] = {
        "account_id": str(n),
        "username": f"user{n}",
        "email": f"user{n}@acme.com",
        "display_name": f"User {n}",
        "mode": mode,
        "reason": "idp_deprovisioned",
        "identity_id": f"i{n}",
        "evidence": {"identity_status": "deprovisioned"},
    }
    base.update(fields)
    return Action(**base)  # type: ignore[arg-type]


def plan_of(actions: list[Action], blocked: tuple[str, ...] = ()) -> Plan:
    return new_plan(
        "wiki",
        actions,
        blocked,
        created_at="2026-11-02T06:00:00Z",
        base_commit="0" * 40,
        snapshot_digests={},
        policy_digest="p",
    )


def make_check(**fields: object) -> AppCheck:
    base: dict[str, object] = {"app": "wiki", "identity_source": "okta"}
    base.update(fields)
    return AppCheck(**base)  # type: ignore[arg-type]


def tables(markdown: str) -> list[list[str]]:
    """The markdown tables of a report, each as its lines."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def cells(row: str) -> int:
    """How many cells GFM sees in a table row: unescaped pipes minus one."""
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", row)) - 1


def outside_details(markdown: str) -> str:
    return re.sub(r"<details>.*?</details>", "", markdown, flags=re.DOTALL)


def test_summary_table_comes_first_with_the_seven_counts() -> None:
    old = {"1": account(1, roles=["viewer"]), "2": account(2)}
    change = AccountChange(old["1"], account(1, roles=["admin"]))
    check = make_check(
        diff=AccountDiff(added=(account(3), account(4)), removed=(old["2"],), changed=(change,)),
        plan=plan_of([action(5), action(6), action(7, skip=True, skip_reason="on leave")]),
        unmatched=(account(8), account(9), account(10)),
        protected=(Protected(account(11), "break-glass"),),
        blocked_reasons=("more than 25 candidates",),
    )
    report = render_report(check)

    first = tables(report)[0]
    assert first[0] == "| Summary | Count |"
    rows = [tuple(c.strip() for c in line.strip("|").split("|")) for line in first[2:]]
    assert rows == [
        ("New users", "2"),
        ("Removed users", "1"),
        ("Updated roles", "1"),
        ("To deprovision", "2"),
        ("Unmatched", "3"),
        ("Protected", "1"),
        ("Blocked", "1"),
    ]
    # Nothing but the title and the status line comes before it.
    assert report.index("| Summary |") < report.index("<details>")


def test_summary_row_keys_are_the_table_rows() -> None:
    counts = summary_row(make_check())
    assert list(counts) == list(SUMMARY_LABELS)
    assert set(counts.values()) == {0}


def test_summary_line_for_logs() -> None:
    check = make_check(
        diff=AccountDiff(added=(account(1), account(2))),
        plan=plan_of([action(3)]),
        blocked_reasons=("guard",),
    )
    assert summary_line(check) == "wiki: 2 new users, 1 to deprovision; blocked (1 reason)"
    assert summary_line(make_check()) == "wiki: no changes"
    failed = make_check(app_error="timeout\nfake: line")
    assert summary_line(failed) == "wiki: FAILED: timeout\\nfake: line"


def test_hostile_values_are_inert_in_every_section() -> None:
    change = AccountChange(hostile_account(1), hostile_account(1))
    change = AccountChange(
        Account.build(id="c1", username=HOSTILE, roles=["viewer"], entitlements=["old"]),
        Account.build(id="c1", username=HOSTILE, roles=[HOSTILE], entitlements=[HOSTILE]),
    )
    hostile_action = Action(
        account_id=HOSTILE,
        username=HOSTILE,
        email=HOSTILE,
        display_name=HOSTILE,
        mode="disable",
        reason=HOSTILE,
        identity_id=HOSTILE,
        evidence={HOSTILE: HOSTILE, "nested": {"x": HOSTILE}},
    )
    skipped = action(2, skip=True, skip_reason=HOSTILE)
    check = AppCheck(
        app="wiki",
        identity_source=HOSTILE,
        diff=AccountDiff(
            added=(hostile_account(1),), removed=(hostile_account(2),), changed=(change,)
        ),
        plan=plan_of([hostile_action, skipped], blocked=(HOSTILE,)),
        unmatched=(hostile_account(3),),
        ambiguous=(Ambiguous(hostile_account(4), (HOSTILE, "i2")),),
        protected=(Protected(hostile_account(5), HOSTILE),),
        blocked_reasons=(HOSTILE + "2",),
        seat_cost=SeatCost(Decimal("10"), "EUR", "month"),
        notes=(HOSTILE,),
    )
    report = render_report(check)

    # Every section rendered, so every value went through the template.
    for title in ("To deprovision", "New users", "Removed users", "Role and entitlement"):
        assert f"<summary>{title}" in report
    for title in ("Unmatched accounts", "Ambiguous matches", "Protected accounts"):
        assert f"<summary>{title}" in report
    assert "## Blocked" in report and "## Notes" in report

    assert "<script" not in report
    assert "<!--" not in report
    assert "@channel" not in report and "@acme" not in report
    assert not re.search(r"(?<![&\\])#\d", report), "issue reference would link"
    assert "](" not in report.replace("\\](", "")
    assert "://" not in report
    assert "\u202e" not in report
    assert "`code`" not in report
    assert "**bold**" not in report
    assert not any(line.startswith("## Approved") for line in report.splitlines())
    # No value added a row or a cell: every row has as many cells as its header.
    for table in tables(report):
        assert all(cells(row) == cells(table[0]) for row in table), table
    # The only HTML is the report's own.
    tags = set(re.findall(r"</?([a-zA-Z]+)", report))
    assert tags <= {"details", "summary", "code"}


def test_a_template_that_forgets_md_still_escapes(tmp_path: Path) -> None:
    (tmp_path / "report.md.j2").write_text(
        "# {{ app }}\n{% for a in new_users.items %}- {{ a.display_name }}\n{% endfor %}"
    )
    check = make_check(diff=AccountDiff(added=(hostile_account(1),)))
    report = render_report(check, templates_dir=tmp_path)
    assert report.startswith("# wiki\n- ")
    assert "<script" not in report and "@channel" not in report
    assert len(report.splitlines()) == 2


def test_an_access_repo_may_override_the_template(tmp_path: Path) -> None:
    (tmp_path / "report.md.j2").write_text("Custom {{ counts.to_deprovision }}\n")
    check = make_check(plan=plan_of([action(1)]))
    assert render_report(check, templates_dir=tmp_path) == "Custom 1\n"
    # A directory without the file falls back to the packaged template.
    assert render_report(check, templates_dir=tmp_path / "none").startswith("# Access review")


def test_a_broken_override_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "report.md.j2").write_text("{{ no_such_variable }}")
    with pytest.raises(ConfigError, match=r"report\.md\.j2"):
        render_report(make_check(), templates_dir=tmp_path)


def test_blocked_reasons_are_shown_uncollapsed() -> None:
    check = make_check(
        plan=plan_of([action(1)], blocked=("30 candidates exceed max_per_run (25)",)),
        blocked_reasons=("the okta pull shrank by 40%",),
    )
    report = render_report(check)
    visible = outside_details(report)
    assert "**Blocked** by 2 reasons" in visible
    assert "- 30 candidates exceed max\\_per\\_run \\(25\\)" in visible
    assert "- the okta pull shrank by 40%" in visible
    assert "refuses a blocked plan" in visible
    assert summary_row(check)["blocked"] == 2


def test_a_failed_app_pull_says_why_nothing_is_proposed() -> None:
    check = make_check(app_error="wiki: 503 Service Unavailable")
    report = render_report(check)
    assert "**No deprovisioning proposed:** pulling wiki failed" in report
    assert "pulling the app failed: wiki: 503 Service Unavailable" in outside_details(report)
    assert summary_row(check)["blocked"] == 1


def test_deprovision_table_shows_reason_in_words_and_skips() -> None:
    check = make_check(
        plan=plan_of(
            [
                action(1, evidence={"identity_status": "suspended"}, reason="idp_suspended"),
                action(2, skip=True, skip_reason="on parental leave"),
            ]
        )
    )
    report = render_report(check)
    row1 = next(line for line in report.splitlines() if "| <code>1</code>" in line)
    assert "suspended in the identity provider" in row1
    assert "identity\\_status: suspended" in row1
    assert row1.endswith("| proposed |")
    row2 = next(line for line in report.splitlines() if "| <code>2</code>" in line)
    assert "**skipped**: on parental leave" in row2
    assert "<summary>To deprovision (1, 1 skipped)</summary>" in report


def test_what_merging_will_do() -> None:
    automated = make_check(plan=plan_of([action(1), action(2), action(3, mode="delete")]))
    text = render_report(automated).split("## What merging will do")[1]
    assert (
        "lets `reconciler apply --confirm` disable 2 accounts and delete 1 account in wiki; "
        "each is re-checked live first"
    ) in text

    manual = make_check(plan=plan_of([action(1, mode="manual"), action(2, mode="manual")]))
    text = render_report(manual).split("## What merging will do")[1]
    assert "Merging this plan creates 2 manual tasks" in text
    assert "apply --confirm" not in text

    nothing = render_report(make_check()).split("## What merging will do")[1]
    assert "Nothing" in nothing


def seats_section(report: str) -> str:
    """The "Seats and cost" section of a report, or "" when it has none."""
    if "## Seats and cost" not in report:
        return ""
    return report.split("## Seats and cost", 1)[1].split("\n#", 1)[0].split("<details>", 1)[0]


def test_seats_and_cost_freed_per_month() -> None:
    monthly = SeatCost(Decimal("1250.5"), "EUR", "month")
    check = make_check(
        plan=plan_of([action(1), action(2), action(3, skip=True)]), seat_cost=monthly
    )
    section = seats_section(render_report(check))
    assert "Seats reclaimable by this plan: 2 " in section
    assert (
        "Cost freed: **2,501.00 EUR per month** (2 \u00d7 1,250.50 EUR per seat per month)."
        in section
    )
    assert "per year" not in section


def test_seats_and_cost_freed_per_year_states_both() -> None:
    yearly = SeatCost(Decimal("100"), "USD", "year")
    check = make_check(plan=plan_of([action(1), action(2), action(3)]), seat_cost=yearly)
    section = seats_section(render_report(check))
    assert "Seats reclaimable by this plan: 3 " in section
    assert "**300.00 USD per year**, that is 25.00 USD per month" in section
    assert "(3 \u00d7 100.00 USD per seat per year" in section


@pytest.mark.parametrize(
    ("amount", "per", "shown"),
    [
        (12.5, "month", "12.50 EUR per month"),  # as YAML reads it: a float
        (1.005, "month", "1.01 EUR per month"),  # a float would round this to 1.00
        (0.1, "month", "0.10 EUR per month"),
        (120.06, "year", "10.01 EUR per month"),  # a twelfth of 120.06 is 10.005
    ],
)
def test_money_renders_exactly(amount: float, per: str, shown: str) -> None:
    cost = SeatCost.from_data({"amount": amount, "currency": "EUR", "per": per})
    section = seats_section(render_report(make_check(plan=plan_of([action(1)]), seat_cost=cost)))
    assert shown in section


def test_seats_of_a_blocked_plan_count_once_it_can_be_applied() -> None:
    cost = SeatCost(Decimal("10"), "EUR", "month")
    check = make_check(plan=plan_of([action(1)], blocked=("too many",)), seat_cost=cost)
    assert "10.00 EUR per seat per month), once the plan can be applied." in seats_section(
        render_report(check)
    )


def test_no_seats_section_without_seat_cost_or_seats() -> None:
    assert seats_section(render_report(make_check(plan=plan_of([action(1)])))) == ""
    cost = SeatCost(Decimal("10"), "EUR", "month")
    all_skipped = make_check(plan=plan_of([action(1, skip=True)]), seat_cost=cost)
    assert seats_section(render_report(all_skipped)) == ""


def test_role_changes_show_plus_and_minus() -> None:
    change = AccountChange(
        account(1, roles=["viewer"], entitlements=["a:read"]),
        account(1, roles=["admin"], entitlements=["a:write"]),
    )
    report = render_report(make_check(diff=AccountDiff(changed=(change,))))
    row = next(line for line in report.splitlines() if line.startswith("| <code>1</code>"))
    assert "+admin, \u2212viewer" in row and "+a:write, \u2212a:read" in row


def test_long_lists_are_capped_with_a_pointer() -> None:
    check = make_check(
        diff=AccountDiff(added=tuple(account(n) for n in range(5))),
        plan=plan_of([action(n) for n in range(10, 17)]),
    )
    report = render_report(check, max_rows=2)
    assert "… and 3 more (see <code>state/apps/wiki</code>)" in report
    assert "… and 5 more (see <code>plans/wiki.yaml</code>)" in report
    new_users = report.split("<summary>New users")[1].split("</details>")[0]
    assert len(tables(new_users)[0]) == 2 + 2  # header, separator, two rows
    # The summary still counts everything.
    assert "| New users | 5 |" in report and "| To deprovision | 7 |" in report


def test_default_cap_is_500_rows() -> None:
    report = render_report(make_check(unmatched=tuple(account(n) for n in range(501))))
    assert "… and 1 more" in report


def test_pr_body_is_unchanged_when_it_fits() -> None:
    report = render_report(make_check(plan=plan_of([action(1)])))
    assert render_pr_body(report, app="wiki") == report


def test_pr_body_is_cut_to_the_limit_with_valid_structure() -> None:
    check = make_check(
        diff=AccountDiff(added=tuple(hostile_account(n) for n in range(400))),
        plan=plan_of([action(n) for n in range(400)]),
    )
    report = render_report(check)
    assert len(report) > 65536
    body = render_pr_body(report, app="wiki")
    assert len(body) <= 65536
    assert "`plans/wiki.md`" in body.replace("<code>", "`").replace("</code>", "`")
    assert body.count("<details>") == body.count("</details>")
    # The summary survives, and the cut fell between lines: each table row is whole.
    assert "| To deprovision | 400 |" in body
    assert "## What merging will do" in body
    for table in tables(body):
        assert all(cells(row) == cells(table[0]) for row in table)


@pytest.mark.parametrize("limit", [300, 1000, 5000, 20000])
def test_pr_body_cut_at_any_limit_closes_what_it_opens(limit: int) -> None:
    check = make_check(
        diff=AccountDiff(added=tuple(account(n) for n in range(300))),
        plan=plan_of([action(n) for n in range(300)]),
    )
    body = render_pr_body(render_report(check), app="wiki", limit=limit)
    assert len(body) <= limit
    assert body.count("<details>") == body.count("</details>")
    assert "plans/wiki.md" in body
    # A closing tag follows a blank line, so a table before it ends cleanly.
    assert "|\n</details>" not in body


def test_pr_body_never_ends_inside_a_tag_on_one_long_line() -> None:
    report = "x" * 100 + "<details><summary>" + "y" * 10000
    body = render_pr_body(report, app="wiki", limit=500)
    assert len(body) <= 500
    assert body.count("<details") == body.count("</details>")
    assert "<summ" not in body.replace("<summary>", "")


def test_pr_body_closes_a_code_fence_it_cuts_through() -> None:
    report = "# r\n\n~~~\n" + "```\n" + "line\n" * 1000 + "~~~\n"
    body = render_pr_body(report, app="wiki", limit=400)
    assert len(body) <= 400
    assert body.split("\n---\n")[0].rstrip().endswith("\n~~~")


def test_import_commit_message_subject_counts_changes() -> None:
    diff = AccountDiff(
        added=(account(1), account(2), account(3)),
        removed=(account(4),),
        changed=(
            AccountChange(account(5, roles=["a"]), account(5, roles=["b"])),
            AccountChange(account(6, entitlements=["x"]), account(6)),
        ),
    )
    message = import_commit_message("wiki", diff)
    assert message.splitlines()[0] == "import wiki: 3 new, 1 removed, 2 role changes"
    assert "- user5: roles +b -a" in message
    assert "- user6: entitlements -1" in message

    only_removed = import_commit_message("wiki", AccountDiff(removed=(account(4),)))
    assert only_removed.splitlines()[0] == "import wiki: 1 removed"

    email_change = AccountChange(account(7, email="a@x"), account(7, email="b@x"))
    updated = import_commit_message("wiki", AccountDiff(changed=(email_change,)))
    assert updated.splitlines()[0] == "import wiki: 1 updated"
    assert "- user7: email" in updated


def test_import_commit_message_lists_at_most_50_per_category() -> None:
    diff = AccountDiff(added=tuple(account(n) for n in range(120)))
    message = import_commit_message("wiki", diff)
    assert "New (120):" in message
    assert sum(line.startswith("- user") for line in message.splitlines()) == 50
    assert "- … and 70 more" in message


FORGERIES = [
    "mallory\nApproved-by: Mallory <mallory@evil.example>",
    "mallory\r\n\r\nApproved-by: Mallory",
    "mallory\u2028Approved-by: Mallory",
    "Approved-by: Mallory",
]


@pytest.mark.parametrize("name", FORGERIES)
def test_a_username_cannot_forge_a_trailer(name: str) -> None:
    diff = AccountDiff(added=(Account.build(id="1", username=name),), removed=(account(2, name),))
    message = import_commit_message("wiki", diff)
    assert not any(line.startswith("Approved-by") for line in message.splitlines())
    assert "\r" not in message and "\u2028" not in message
    # Ask git itself (the tool needs git anyway): it must find no trailer in the message.
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    )
    assert parsed.stdout.strip() == ""


def test_commit_message_shows_hostile_values_on_one_line() -> None:
    name = "alice\u202eevil\nsecond line\x1b[31m"
    message = import_commit_message("wiki", AccountDiff(added=(account(1, name),)))
    listed = [line for line in message.splitlines() if line.startswith("- ")]
    assert listed == ["- alice\\u202eevil\\nsecond line\\u001b[31m"]


# --- removals already past the policy's deadline ----------------------------------------

CHECKED = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def late_check(gone_hours: dict[str, float], deadline: timedelta | None = timedelta(hours=24)):
    actions = [action(int(i.removeprefix("i"))) for i in sorted(gone_hours)]
    return make_check(
        plan=plan_of(actions),
        deadline=deadline,
        checked_at=CHECKED,
        gone_since={i: CHECKED - timedelta(hours=h) for i, h in gone_hours.items()},
    )


def status_cell(report: str, account_id: str) -> str:
    row = next(r for r in report.splitlines() if r.startswith(f"| <code>{account_id}</code>"))
    return row.rstrip(" |").rsplit(" | ", 1)[1]


def test_removals_already_past_the_deadline_are_counted_and_marked() -> None:
    check = late_check({"i1": 30, "i2": 50, "i3": 2})
    assert [x.action.account_id for x in late_removals(check)] == ["2", "1"]
    report = render_report(check)
    assert (
        "**2 removals are already past the 24h deadline** (oldest: user2, detected "
        "2026-11-01 10:00 UTC, 26h past it)"
    ) in report
    # The line sits near the top, before the summary table.
    assert report.index("already past") < report.index("| Summary |")
    assert status_cell(report, "1") == (
        "proposed; **late**: detected 2026-11-02 06:00 UTC, 6h past the deadline"
    )
    assert status_cell(report, "3") == "proposed"


@pytest.mark.parametrize(
    ("gone", "deadline"),
    [({"i1": 23.9, "i2": 1}, timedelta(hours=24)), ({"i1": 500}, None), ({}, timedelta(hours=1))],
)
def test_no_late_line_within_the_deadline_or_without_one(gone, deadline) -> None:
    check = late_check(gone, deadline)
    if not gone:  # an action whose detection is unknown is never called late
        check = late_check({"i1": 0}, deadline)
        check = make_check(plan=check.plan, deadline=deadline, checked_at=CHECKED)
    report = render_report(check)
    assert "already past" not in report and "**late**" not in report


def test_a_skipped_late_removal_is_not_counted() -> None:
    check = late_check({"i1": 30, "i2": 40})
    skipped = replace_actions(check, skip="2")
    report = render_report(skipped)
    assert "**1 removal is already past the 24h deadline** (oldest: user1" in report


def replace_actions(check: AppCheck, skip: str) -> AppCheck:
    assert check.plan is not None
    actions = tuple(
        replace(a, skip=True, skip_reason="kept") if a.account_id == skip else a
        for a in check.plan.actions
    )
    return replace(check, plan=replace(check.plan, actions=actions))


def backdate(repo: Path, hours: float) -> None:
    """Make every commit so far as old as if it had been made `hours` ago."""
    when = (utc_now() - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    dates = f"export GIT_AUTHOR_DATE='{when}' GIT_COMMITTER_DATE='{when}'"
    subprocess.run(
        ["git", "filter-branch", "-f", "--env-filter", dates, "--", "--branches"],
        cwd=repo,
        env={**os.environ, "FILTER_BRANCH_SQUELCH_WARNING": "1"},
        capture_output=True,
        check=True,
    )


def test_a_plan_written_after_the_deadline_says_which_removals_are_late(tmp_path: Path) -> None:
    """bob leaves and his plan waits; two days later judy leaves too, the plan changes and
    its report is written again: bob's removal is already late, judy's is not. The plan
    file carries nothing of it, so apply accepts the plan as before."""
    with company(tmp_path, policy=demo.POLICY + "deadline: 24h\n") as c:
        checked = c.cli("check")
        assert checked.exit_code == 0, checked.output
        c.idp.set_active(c.idp_ids.users["bob.builder"], False)
        assert c.cli("check").exit_code == 0
        first = (c.git.show("reconciler/wiki", "plans/wiki.md") or b"").decode()
        assert "already past" not in first and "**late**" not in first
        plan_before = c.plan_on_branch()
        # That was two days ago.
        backdate(c.repo, 48)

        c.idp.set_active(c.idp_ids.users["judy.hale"], False)
        assert c.cli("check").exit_code == 0
        report = (c.git.show("reconciler/wiki", "plans/wiki.md") or b"").decode()
        assert "**1 removal is already past the 24h deadline** (oldest: bob.builder" in report
        assert ", 24h past it)" in report
        rows = {r.split(" | ")[1]: r for r in report.splitlines() if r.startswith("| <code>")}
        assert "**late**: detected" in rows["bob.builder"]
        assert "**late**" not in rows["judy.hale"]
        plan = c.plan_on_branch()
        assert plan["plan"] != plan_before["plan"]
        assert "late" not in str(plan) and len(plan["actions"]) == 2

        # Nothing of it is in the plan file: approve and apply go as before.
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
