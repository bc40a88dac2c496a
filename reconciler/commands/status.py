"""`reconciler status`: open plans, merged plans waiting for apply, last check per app."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, assert_never

import orjson

from reconciler import history, snapshot
from reconciler.apply import load_plan, merged_plans
from reconciler.clock import read_time, utc_now
from reconciler.commands import EXIT_OK, SCHEMA_VERSION, Repo, open_repo
from reconciler.commands.check import LAST_CHECK
from reconciler.errors import PlanError
from reconciler.forge.base import OpenPlan
from reconciler.inert import terminal
from reconciler.markdown import Markdown, escape
from reconciler.output import OutputFormat, emit, emit_json
from reconciler.plan import Plan, what_it_does
from reconciler.policy import lateness
from reconciler.seats import AppSeats, CurrencyTotal, money_text
from reconciler.seats import totals as seat_totals


@dataclass(frozen=True)
class StatusOptions:
    repo: Path
    format: OutputFormat = OutputFormat.TEXT


def collect_status(repo: Repo) -> dict[str, Any]:
    last_check_file = repo.git.private_dir() / LAST_CHECK
    checks = orjson.loads(last_check_file.read_bytes()) if last_check_file.exists() else {}
    forge = repo.forge()
    proposals = forge.open_plans()
    proposed = {p.app for p in proposals}
    apps = []
    for app in sorted(repo.settings.config.apps):
        meta = snapshot.read_meta(snapshot.app_dir(repo.root, app) / "meta.yaml") or {}
        apps.append(
            {
                "app": app,
                "last_change": meta.get("pulled_at"),
                "accounts": meta.get("count"),
                "last_check": checks.get(app, {}).get("checked_at"),
                "last_check_ok": checks.get(app, {}).get("ok"),
                "last_check_problem": checks.get(app, {}).get("problem") or None,
                "last_import_commit": _last_commit(repo, f"state/apps/{app}"),
                "rejected": None if app in proposed else forge.rejection(app),
            }
        )
    now = utc_now()

    def late(app: str, plan: Plan) -> str | None:
        deadline = repo.settings.policy_for(app).deadline
        return lateness(proposed_at(plan), now, deadline)

    open_plans = [
        {
            "app": p.app,
            "branch": p.branch,
            "plan": p.plan.id,
            "status": p.plan.status,
            "actions": len(p.plan.active_actions),
            "does": what_it_does(p.plan.active_actions),
            "blocked_reasons": list(p.plan.blocked_reasons),
            "late": late(p.app, p.plan),
        }
        for p in proposals
    ]
    merged = {app: load_plan(repo.git, app) for app in merged_plans(repo.git)}
    waiting = [
        {
            "app": app,
            "plan": plan.id,
            "actions": len(plan.active_actions),
            "late": late(app, plan),
        }
        for app, plan in merged.items()
    ]
    seats = app_seats(repo, proposals, merged)
    for entry in apps:
        counted = seats.get(entry["app"])
        entry["seats"] = _seats_data(counted) if counted else None
    return {
        "schema_version": SCHEMA_VERSION,
        "apps": apps,
        "open_plans": open_plans,
        "merged_not_applied": waiting,
        "seat_totals": [_total_data(t) for t in seat_totals(seats.values())],
    }


def app_seats(
    repo: Repo, proposals: Sequence[OpenPlan], merged: Mapping[str, Plan]
) -> dict[str, AppSeats]:
    """The seats of every app whose policy gives it a seat cost. Reclaimable: the accounts
    (not roles) that plans not applied yet propose to remove (open for review, or merged
    and waiting, less what an apply of that plan already did). Reclaimed: the accounts
    applied plans removed, by their journals under history/."""
    pending: dict[str, set[str]] = {}
    for proposal in proposals:
        ids = {a.account_id for a in proposal.plan.active_actions if not a.takes_roles}
        pending.setdefault(proposal.app, set()).update(ids)
    for app, plan in merged.items():
        done = history.done_accounts(repo.root, app, plan.id)
        ids = {a.account_id for a in plan.active_actions if not a.takes_roles} - done
        pending.setdefault(app, set()).update(ids)
    seats: dict[str, AppSeats] = {}
    for app in sorted(repo.settings.config.apps):
        cost = repo.settings.policy_for(app).seat_cost_for(app)
        if cost is None:
            continue
        reclaimed = history.done_accounts(repo.root, app)
        seats[app] = AppSeats(
            app=app,
            cost=cost,
            reclaimable=len(pending.get(app, set())),
            reclaimed=len(reclaimed),
        )
    return seats


def _seats_data(seats: AppSeats) -> dict[str, Any]:
    # Money as decimal strings rounded to the cent: JSON numbers are binary floats.
    return {
        "seat_cost": seats.cost.to_data(),
        "currency": seats.cost.currency,
        "reclaimable": seats.reclaimable,
        "monthly_reclaimable": money_text(seats.monthly_reclaimable),
        "reclaimed": seats.reclaimed,
        "monthly_reclaimed": money_text(seats.monthly_reclaimed),
    }


def _total_data(total: CurrencyTotal) -> dict[str, Any]:
    return {
        "currency": total.currency,
        "reclaimable": total.reclaimable,
        "monthly_reclaimable": money_text(total.monthly_reclaimable),
        "reclaimed": total.reclaimed,
        "monthly_reclaimed": money_text(total.monthly_reclaimed),
    }


def _last_commit(repo: Repo, path: str) -> str | None:
    commits = repo.git.log("-1", "HEAD", "--", path)
    return commits[0].sha if commits else None


def status(options: StatusOptions) -> int:
    repo = open_repo(options.repo)
    data = collect_status(repo)
    match options.format:
        case OutputFormat.TEXT:
            render_text(data)
        case OutputFormat.MARKDOWN:
            render_markdown(data)
        case OutputFormat.JSON:
            emit_json(data)
        case _:
            assert_never(options.format)
    return EXIT_OK


def render_text(data: Mapping[str, Any]) -> None:
    emit("apps:")
    for app in data["apps"]:
        checked = app["last_check"] or "never (here)"
        if app["last_check"] and not app["last_check_ok"]:
            checked += f" FAILED: {terminal(app['last_check_problem'], max_length=0)}"
        changed = app["last_change"] or "never"
        emit(
            f"  {app['app']}: {app['accounts'] or 0} accounts; last check {checked}; "
            f"last change imported {changed}"
        )
        if app["rejected"]:
            emit(f"    rejected: {terminal(app['rejected'], max_length=0)}")
        if app["seats"]:
            emit(f"    seats: {_seats_text(app['seats'])}")
    if data["seat_totals"]:
        emit("seats, with their monthly cost, per currency:")
        for total in data["seat_totals"]:
            emit(f"  {total['currency']}: {_seats_text(total)}")
    emit("open plans (waiting for review):" if data["open_plans"] else "open plans: none")
    for plan in data["open_plans"]:
        emit(
            f"  {plan['app']}: plan {plan['plan']} ({plan['status']}), "
            f"{plan['does']}, branch {plan['branch']}"
        )
        if plan["late"]:
            emit(f"    LATE: {plan['late']}")
    if data["merged_not_applied"]:
        emit("approved, waiting for `reconciler apply --confirm`:")
        for plan in data["merged_not_applied"]:
            emit(f"  {plan['app']}: plan {plan['plan']}, {plan['actions']} actions")
            if plan["late"]:
                emit(f"    LATE: {plan['late']}")


def _seats_text(seats: Mapping[str, Any]) -> str:
    currency = seats["currency"]
    return (
        f"{seats['reclaimable']} reclaimable ({seats['monthly_reclaimable']} {currency} "
        f"a month), {seats['reclaimed']} reclaimed ({seats['monthly_reclaimed']} {currency} "
        "a month)"
    )


def render_markdown(data: Mapping[str, Any]) -> None:
    lines = ["# reconciler status", "", "| app | accounts | last check | last change imported |"]
    lines.append("|---|---|---|---|")
    for app in data["apps"]:
        checked = escape(app["last_check"] or "never (here)")
        if app["last_check"] and not app["last_check_ok"]:
            checked = Markdown(f"{checked} **failed**: {escape(app['last_check_problem'])}")
        if app["rejected"]:
            checked = Markdown(f"{checked}; **rejected**: {escape(app['rejected'], max_length=0)}")
        lines.append(
            f"| {escape(app['app'])} | {app['accounts'] or 0} | {checked} "
            f"| {escape(app['last_change'] or 'never')} |"
        )
    lines += _seats_markdown(data)
    lines += ["", "## Open plans (waiting for review)", ""]
    lines += [
        f"- {escape(p['app'])}: plan `{p['plan']}` ({p['status']}), {p['does']}, "
        f"branch `{escape(p['branch'])}`{_late_md(p)}"
        for p in data["open_plans"]
    ] or ["None."]
    lines += ["", "## Approved, waiting for `reconciler apply --confirm`", ""]
    lines += [
        f"- {escape(p['app'])}: plan `{p['plan']}`, {p['actions']} actions{_late_md(p)}"
        for p in data["merged_not_applied"]
    ] or ["None."]
    emit("\n".join(lines))


def _seats_markdown(data: Mapping[str, Any]) -> list[str]:
    """The "Seats and cost" table: one row per app with a seat cost, one per currency."""
    priced = [app for app in data["apps"] if app["seats"]]
    if not priced:
        return []
    lines = [
        "",
        "## Seats and cost",
        "",
        "Reclaimable: proposed in plans not applied yet. Reclaimed: removed by applied plans.",
        "",
        "| app | seat cost | reclaimable | monthly cost | reclaimed | monthly cost |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for app in priced:
        seats = app["seats"]
        price = seats["seat_cost"]
        lines.append(
            f"| {escape(app['app'])} | {price['amount']} {escape(price['currency'])} per "
            f"{escape(price['per'])} | {_seats_cells(seats)} |"
        )
    for total in data["seat_totals"]:
        currency = escape(total["currency"])
        lines.append(f"| **total {currency}** | | {_seats_cells(total)} |")
    return lines


def _seats_cells(seats: Mapping[str, Any]) -> str:
    currency = escape(seats["currency"])
    return (
        f"{seats['reclaimable']} | {seats['monthly_reclaimable']} {currency} "
        f"| {seats['reclaimed']} | {seats['monthly_reclaimed']} {currency}"
    )


def _late_md(plan: Mapping[str, Any]) -> str:
    return f" — **late**: {escape(plan['late'])}" if plan["late"] else ""


def proposed_at(plan: Plan) -> datetime:
    """When the plan was proposed (its `created_at`, written by check in UTC)."""
    created = read_time(plan.created_at)
    if created is None:
        raise PlanError(
            f"plan {plan.id} of {plan.app}: created_at {plan.created_at!r} is not a UTC time "
            "as check writes it; revert the plan file"
        )
    return created
