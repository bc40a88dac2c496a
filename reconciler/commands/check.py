"""`reconciler check`."""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

import orjson

from reconciler import lock, report
from reconciler.check import PULL, Checker, CheckRun
from reconciler.clock import timestamp, utc_now
from reconciler.commands import (
    EXIT_ERROR,
    EXIT_NEEDS_REVIEW,
    EXIT_OK,
    SCHEMA_VERSION,
    Repo,
    open_repo,
)
from reconciler.files import write_atomic
from reconciler.forge.base import IMPORT_BRANCH, Forge
from reconciler.inert import terminal
from reconciler.notify.owners import notify_owners
from reconciler.output import OutputFormat, emit, emit_json, end_group, group, step_summary
from reconciler.progress import progress
from reconciler.systems import default_factory


@dataclass(frozen=True)
class CheckOptions:
    repo: Path
    apps: tuple[str, ...] = ()
    format: OutputFormat = OutputFormat.TEXT
    detailed_exitcode: bool = False
    identities: str = PULL  # `--identities`: PULL, SNAPSHOT or ONLY


def check(options: CheckOptions) -> int:
    repo = open_repo(options.repo)
    repo.git.require_branch(repo.settings.config.main_branch)
    apps = repo.select_apps(options.apps)
    with lock.exclusive(repo.git, "check"):
        repo.require_committed("state")
        # A check allocates millions of small objects and frees few: the cyclic garbage
        # collector would scan them again and again for nothing (about 15% of a 100k check).
        gc.disable()
        try:
            with progress() as shown:
                forge = repo.forge()
                factory = default_factory(repo.root)
                checker = Checker(
                    repo.settings,
                    repo.git,
                    forge,
                    factory,
                    progress=shown,
                    identities=options.identities,
                )
                run = checker.run(apps)
        finally:
            # What the check allocated lives on in `run`: moved out of the collector's
            # sight, or its first collection would scan every object of it (0.2 s at 100k).
            gc.freeze()
            gc.enable()
        record_last_check(repo, run)
        told = tell_owners(repo, forge, run)
    render(run, options.format)
    for line in told:
        if options.format == OutputFormat.TEXT:
            emit(line)
        else:  # stdout holds the JSON or markdown document
            sys.stderr.write(line + "\n")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        for app in run.apps:
            step_summary(report.render_report(app))
    if run.failed:
        return EXIT_ERROR
    if options.detailed_exitcode and run.needs_review:
        return EXIT_NEEDS_REVIEW
    return EXIT_OK


LAST_CHECK = "last-check.json"


def record_last_check(repo: Repo, run: CheckRun) -> None:
    """When each app was last checked and how it went: local state for `status`, kept
    in .git so that a check with no change still makes no commit."""
    path = repo.git.private_dir() / LAST_CHECK
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        data = {}
    at = timestamp(utc_now())
    for app in run.apps:
        forge_error = run.forge_errors.get(app.app, "")
        data[app.app] = {
            "checked_at": at,
            "ok": not app.failed and not forge_error,
            "problem": forge_error or ("; ".join(app.blocked_reasons) if app.plan is None else ""),
        }
    write_atomic(path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def tell_owners(repo: Repo, forge: Forge, run: CheckRun) -> list[str]:
    """Email the apps' owners what is new (`notify:` in reconciler.yaml); the lines to
    print about it.

    Never fails the check: its work is committed by now and CI acts on its exit code, so
    even an unexpected error here is a line of output, not a different exit code.
    """
    try:
        deliveries = notify_owners(
            repo.settings,
            repo.git,
            forge,
            run,
            now=utc_now(),
            environ=os.environ,
            link=forge.review_link,
        )
    except Exception as exc:
        error = terminal(f"{type(exc).__name__}: {exc}", max_length=300)
        return [f"notify: could not email owners: {error}"]
    lines = []
    for delivery in deliveries:
        app = terminal(delivery.notice.app, max_length=100)
        if delivery.sent:
            count = len(delivery.notice.recipients)
            lines.append(
                f"notify: emailed {count} owner{'' if count == 1 else 's'} of {app}: "
                f"{delivery.notice.event.words}"
            )
        else:
            lines.append(f"notify: could not email owners of {app}: {delivery.error}")
    return lines


def as_data(run: CheckRun) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "identity_sources": [
            {
                "source": p.source,
                "error": p.state.error or None,
                "count": p.state.count,
                "commit": p.commit,
                "summary": p.summary or None,
                "pulled": p.pulled,
            }
            for p in run.identity_pulls
        ],
        "apps": [
            {
                "app": a.app,
                "summary": report.summary_row(a),
                "error": a.app_error or None,
                "blocked_reasons": list(a.blocked_reasons),
                "plan": a.plan.id if a.plan else None,
                "plan_status": a.plan.status if a.plan else None,
                "proposal": run.proposals.get(a.app),
            }
            for a in run.apps
        ],
        "commits": list(run.commits),
        # `forge.import_mode: pull-request`: the pull request holding the imports.
        "import_request": {
            "number": run.import_request.number if run.import_request else None,
            "outcome": run.import_request.outcome.value if run.import_request else None,
            "error": run.import_error or None,
        },
        "failed": run.failed,
        "needs_review": run.needs_review,
        # Measurements, not results: they differ between two runs on the same data.
        "timings": {"phases": dict(run.phases), "pull_span_seconds": round(run.pull_span, 4)},
    }


def render(run: CheckRun, fmt: OutputFormat) -> None:
    match fmt:
        case OutputFormat.TEXT:
            for pull in run.identity_pulls:
                if pull.state.error:
                    error = terminal(pull.state.error, max_length=0)
                    emit(f"identities {pull.source}: FAILED: {error}")
                elif pull.state.count == 0:
                    emit(f"identities {pull.source}: FAILED: the pull returned no identities")
                else:
                    done = "committed" if pull.commit else "unchanged"
                    if not pull.pulled:
                        done = "as the snapshot on main holds them (not pulled)"
                    emit(f"identities {pull.source}: {pull.state.count} identities, {done}")
            if run.import_request is not None:
                request = run.import_request
                emit(
                    f"imports: pull request #{request.number} {request.outcome} on {IMPORT_BRANCH}"
                )
            elif run.import_error:
                emit(f"imports: FAILED: {terminal(run.import_error, max_length=0)}")
            for app in run.apps:
                group(f"check {app.app}")
                emit(report.summary_line(app))
                for reason in app.blocked_reasons:
                    emit(f"  blocked: {terminal(reason, max_length=0)}")
                proposal = run.proposals.get(app.app)
                if app.app in run.forge_errors:
                    error = terminal(run.forge_errors[app.app], max_length=0)
                    emit(f"  plan: FAILED: {error}")
                elif app.plan is not None:
                    plan = app.plan
                    emit(f"  plan {plan.id} ({plan.status}): {proposal} on reconciler/{app.app}")
                elif proposal:
                    emit(f"  plan: {proposal}")
                end_group()
        case OutputFormat.JSON:
            emit_json(as_data(run))
        case OutputFormat.MARKDOWN:
            emit("\n\n".join(report.render_report(a) for a in run.apps))
        case _:
            assert_never(fmt)
