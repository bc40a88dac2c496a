"""`reconciler apply`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from reconciler.apply import AppApply, Applier, mark_done, merged_plans
from reconciler.check import timestamp, utc_now
from reconciler.commands import EXIT_ERROR, EXIT_OK, open_repo
from reconciler.errors import ConfigError
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
    repo.git.require_clean("state", "plans")
    if options.mark_done:
        if len(options.apps) != 1 or not options.by or not options.confirm:
            raise ConfigError("--mark-done needs exactly one --app, --as NAME and --confirm")
        results = [
            mark_done(
                repo.settings,
                repo.git,
                options.apps[0],
                options.mark_done,
                options.by,
                timestamp(utc_now()),
            )
        ]
    else:
        apps = [a for a in merged_plans(repo.git) if not options.apps or a in options.apps]
        repo.select_apps(tuple(options.apps))
        with progress() as shown:
            applier = Applier(
                repo.settings,
                repo.git,
                default_factory(repo.root),
                confirm=options.confirm,
                concurrency=options.concurrency,
                progress=shown,
            )
            results = applier.run(apps)
    render(results, options.format, options.confirm)
    return EXIT_ERROR if any(r.failed for r in results) else EXIT_OK


def as_data(result: AppApply) -> dict[str, Any]:
    return {
        "app": result.app,
        "plan": result.plan_id,
        "approved_by": list(result.approved_by),
        "dry_run": result.dry_run,
        "error": result.error,
        "commit": result.commit,
        "actions": [e.to_data() for e in result.entries],
        "notes": list(result.notes),
    }


def render(results: list[AppApply], fmt: OutputFormat, confirm: bool) -> None:
    match fmt:
        case OutputFormat.TEXT | OutputFormat.MARKDOWN:
            if not results:
                emit("no merged plans to apply")
            for result in results:
                group(f"apply {result.app}")
                if result.error:
                    emit(f"{result.app}: REFUSED: {result.error}")
                    end_group()
                    continue
                head = "dry run" if result.dry_run else "applied"
                approvers = ", ".join(result.approved_by)
                emit(f"{result.app}: {head} plan {result.plan_id}, approved by {approvers}")
                for entry in result.entries:
                    who = entry.username or entry.email or entry.account_id
                    emit(f"  {entry.outcome:<14} {who}: {entry.detail}")
                for note in result.notes:
                    emit(f"  note: {note}")
                if result.commit:
                    emit(f"  committed {result.commit[:10]}")
                end_group()
            if results and not confirm:
                emit("dry run: nothing was changed; rerun with --confirm to act")
        case OutputFormat.JSON:
            emit_json({"confirm": confirm, "apps": [as_data(r) for r in results]})
        case _:
            assert_never(fmt)
