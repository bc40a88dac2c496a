"""`reconciler apply`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from reconciler import actor, lock
from reconciler.apply import AppApply, Applier, mark_done, merged_plans
from reconciler.clock import timestamp, utc_now
from reconciler.commands import EXIT_ERROR, EXIT_OK, SCHEMA_VERSION, open_repo
from reconciler.errors import ConfigError
from reconciler.inert import terminal
from reconciler.markdown import escape
from reconciler.output import OutputFormat, emit, emit_json, end_group, group
from reconciler.progress import progress
from reconciler.systems import default_factory


@dataclass(frozen=True)
class ApplyOptions:
    repo: Path
    apps: tuple[str, ...] = ()
    confirm: bool = False
    mark_done: tuple[str, ...] = ()
    by: str = ""
    format: OutputFormat = OutputFormat.TEXT
    concurrency: int = 4


def apply(options: ApplyOptions) -> int:
    repo = open_repo(options.repo)
    repo.git.require_branch(repo.settings.config.main_branch)
    repo.require_committed()
    forge = repo.forge()
    if options.mark_done:
        if len(options.apps) != 1 or not options.by or not options.confirm:
            raise ConfigError("--mark-done needs exactly one --app, --as NAME and --confirm")
        by = actor.resolve(repo.git, options.by)
        with lock.exclusive(repo.git, "apply --mark-done"):
            results = [
                mark_done(
                    repo.settings,
                    repo.git,
                    forge,
                    options.apps[0],
                    options.mark_done,
                    by,
                    timestamp(utc_now()),
                )
            ]
    else:
        repo.select_apps(tuple(options.apps))
        who = actor.resolve(repo.git, options.by)
        command = "apply --confirm" if options.confirm else "apply (dry run)"
        with lock.exclusive(repo.git, command), progress() as shown:
            apps = [a for a in merged_plans(repo.git) if not options.apps or a in options.apps]
            applier = Applier(
                repo.settings,
                repo.git,
                forge,
                default_factory(repo.root),
                confirm=options.confirm,
                actor=who,
                concurrency=options.concurrency,
                progress=shown,
            )
            results = applier.run(apps)
    render(results, options.format, options.confirm)
    return EXIT_ERROR if any(r.failed for r in results) else EXIT_OK


def as_data(result: AppApply) -> dict[str, Any]:
    approval = result.approval
    return {
        "app": result.app,
        "plan": result.plan_id or None,
        "approved_by": list(result.approved_by),
        "approval": approval.reference if approval else None,
        "dry_run": result.dry_run,
        "error": result.error or None,
        "commit": result.commit,
        "actions": [e.to_data() for e in result.entries],
        "notes": list(result.notes),
    }


def render(results: list[AppApply], fmt: OutputFormat, confirm: bool) -> None:
    match fmt:
        case OutputFormat.TEXT:
            render_text(results, confirm)
        case OutputFormat.MARKDOWN:
            render_markdown(results, confirm)
        case OutputFormat.JSON:
            emit_json(
                {
                    "schema_version": SCHEMA_VERSION,
                    "confirm": confirm,
                    "apps": [as_data(r) for r in results],
                }
            )
        case _:
            assert_never(fmt)


def render_text(results: list[AppApply], confirm: bool) -> None:
    if not results:
        emit("no merged plans to apply")
    for result in results:
        group(f"apply {result.app}")
        if result.error:
            emit(f"{result.app}: REFUSED: {terminal(result.error, max_length=0)}")
            end_group()
            continue
        head = "dry run" if result.dry_run else "applied"
        approvers = ", ".join(result.approved_by)
        emit(f"{result.app}: {head} plan {result.plan_id}, approved by {approvers}")
        for entry in result.entries:
            who = terminal(entry.username or entry.email or entry.account_id)
            emit(f"  {entry.outcome:<14} {who}: {terminal(entry.detail)}")
        for note in result.notes:
            emit(f"  note: {terminal(note)}")
        if result.commit:
            emit(f"  committed {result.commit[:10]}")
        end_group()
    if results and not confirm:
        emit("dry run: nothing was changed; rerun with --confirm to act")


def render_markdown(results: list[AppApply], confirm: bool) -> None:
    lines = ["# reconciler apply" + ("" if confirm else " (dry run: nothing was changed)"), ""]
    if not results:
        lines.append("No merged plans to apply.")
    for result in results:
        lines.append(f"## {escape(result.app)}")
        lines.append("")
        if result.error:
            lines += [f"**Refused:** {escape(result.error, max_length=0)}", ""]
            continue
        approvers = ", ".join(escape(a) for a in result.approved_by)
        lines += [f"Plan `{result.plan_id}`, approved by {approvers}.", ""]
        lines += ["| outcome | account | detail |", "|---|---|---|"]
        for entry in result.entries:
            who = escape(entry.username or entry.email or entry.account_id)
            lines.append(f"| {entry.outcome} | {who} | {escape(entry.detail, max_length=500)} |")
        lines.append("")
        lines += [f"- {escape(note, max_length=500)}" for note in result.notes]
        if result.commit:
            lines.append(f"Committed `{result.commit[:10]}`.")
    emit("\n".join(lines).rstrip())
