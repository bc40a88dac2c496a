"""`reconciler status`: seats reclaimable and reclaimed, and what they cost, per app and
per currency, through check → approve → apply on real SCIM servers and real git."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler import demo
from reconciler.commands.status import render_markdown, render_text
from reconciler.testing.access_repo import Company, company

LEAVER = demo.LEAVERS_DEPROVISIONED[0]
CSV_HEADER = "id,username,email,display_name,status,type,roles,entitlements"
FILE_APPS = """\
  crm:
    type: file
    path: exports/crm.csv
  payroll:
    type: file
    path: exports/payroll.csv
"""
CRM_SEAT_COST = "  crm: {amount: 1200, currency: USD, per: year}\n"


def add_file_apps(c: Company) -> None:
    """Two export-file apps holding one leaver and nine people who stay: `crm` priced in
    USD per year, `payroll` without a seat cost."""
    leavers = {*demo.LEAVERS_DEPROVISIONED, demo.LEAVER_DELETED}
    stayers = [p for p in demo.people() if p.username not in leavers][:9]
    people = [p for p in demo.people() if p.username == LEAVER] + stayers
    rows = [CSV_HEADER]
    rows += [
        f"c-{i},{p.username},{p.email},{p.given} {p.family},active,human,user,"
        for i, p in enumerate(people)
    ]
    (c.repo / "exports").mkdir()
    for name in ("crm", "payroll"):
        (c.repo / "exports" / f"{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = c.repo / "reconciler.yaml"
    config.write_text(config.read_text(encoding="utf-8") + FILE_APPS, encoding="utf-8")
    # The demo's policy selects every app and prices the wiki; it prices crm too.
    policy = c.repo / "policies" / "default.yaml"
    text = policy.read_text(encoding="utf-8")
    assert "\nseat_cost:\n" in text
    priced = text.replace("\nseat_cost:\n", f"\nseat_cost:\n{CRM_SEAT_COST}", 1)
    policy.write_text(priced, encoding="utf-8")
    c.git.commit_paths(["reconciler.yaml", "policies", "exports"], "add crm and payroll")


def status_json(c: Company) -> dict[str, Any]:
    result = c.cli("status", "--format", "json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def seats_by_app(data: dict[str, Any]) -> dict[str, Any]:
    return {app["app"]: app["seats"] for app in data["apps"]}


def money(seats: dict[str, Any]) -> tuple[int, str, int, str]:
    return (
        seats["reclaimable"],
        seats["monthly_reclaimable"],
        seats["reclaimed"],
        seats["monthly_reclaimed"],
    )


def test_status_counts_seats_reclaimable_then_reclaimed_per_app_and_currency(tmp_path):
    with company(tmp_path) as c:
        add_file_apps(c)
        assert c.cli("check").exit_code == 0
        c.leave()
        proposed = c.cli("check", "--detailed-exitcode")
        assert proposed.exit_code == 4, proposed.output

        data = status_json(c)
        seats = seats_by_app(data)
        assert seats["payroll"] is None  # no seat cost: no seats shown
        assert seats["wiki"]["seat_cost"] == {"amount": "12.50", "currency": "EUR", "per": "month"}
        assert money(seats["wiki"]) == (3, "37.50", 0, "0.00")
        assert money(seats["crm"]) == (1, "100.00", 0, "0.00")  # 1200 a year
        assert [(t["currency"], *money(t)) for t in data["seat_totals"]] == [
            ("EUR", 3, "37.50", 0, "0.00"),
            ("USD", 1, "100.00", 0, "0.00"),
        ]
        assert data["schema_version"] == 1 and "open_plans" in data  # nothing removed

        approved = c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER)
        assert approved.exit_code == 0, approved.output
        # Merged, not applied yet: still reclaimable.
        assert money(seats_by_app(status_json(c))["wiki"]) == (3, "37.50", 0, "0.00")

        applied = c.cli("apply", "--app", "wiki", "--confirm")
        assert applied.exit_code == 0, applied.output

        data = status_json(c)
        seats = seats_by_app(data)
        assert money(seats["wiki"]) == (0, "0.00", 3, "37.50")
        assert money(seats["crm"]) == (1, "100.00", 0, "0.00")
        assert [(t["currency"], *money(t)) for t in data["seat_totals"]] == [
            ("EUR", 0, "0.00", 3, "37.50"),
            ("USD", 1, "100.00", 0, "0.00"),
        ]

        text = c.cli("status").output.splitlines()
        wiki = text.index(next(line for line in text if line.startswith("  wiki:")))
        assert text[wiki + 1] == (
            "    seats: 0 reclaimable (0.00 EUR a month), 3 reclaimed (37.50 EUR a month)"
        )
        payroll = text.index(next(line for line in text if line.startswith("  payroll:")))
        assert not text[payroll + 1].startswith("    seats:")
        assert "  USD: 1 reclaimable (100.00 USD a month), 0 reclaimed (0.00 USD a month)" in text

        markdown = c.cli("status", "--format", "markdown").output
        table = markdown.split("## Seats and cost", 1)[1].split("##", 1)[0]
        assert "| wiki | 12.50 EUR per month | 0 | 0.00 EUR | 3 | 37.50 EUR |" in table
        assert "| crm | 1200.00 USD per year | 1 | 100.00 USD | 0 | 0.00 USD |" in table
        assert "| **total EUR** | | 0 | 0.00 EUR | 3 | 37.50 EUR |" in table
        assert "payroll" not in table


def app_row(name: str, seats: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "app": name,
        "last_change": None,
        "accounts": 3,
        "last_check": None,
        "last_check_ok": None,
        "last_check_problem": None,
        "last_import_commit": None,
        "rejected": None,
        "seats": seats,
    }


NO_SEAT_COST = {
    "schema_version": 1,
    "apps": [app_row("wiki", None)],
    "open_plans": [],
    "merged_not_applied": [],
    "seat_totals": [],
}


@pytest.mark.parametrize("render", [render_text, render_markdown])
def test_without_seat_costs_status_shows_no_seats(render, capsys):
    render(NO_SEAT_COST)
    out = capsys.readouterr().out
    assert "wiki" in out
    assert "seat" not in out.lower()
