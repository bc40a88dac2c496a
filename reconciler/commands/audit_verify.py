"""`reconciler audit verify`: is main's history what the tool and approved reviews made?"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from reconciler.audit.verify import Verification, verify_history
from reconciler.commands import EXIT_ERROR, EXIT_OK, SCHEMA_VERSION, open_repo
from reconciler.inert import terminal
from reconciler.markdown import escape
from reconciler.output import OutputFormat, emit, emit_json


@dataclass(frozen=True)
class VerifyOptions:
    repo: Path
    since: str | None = None
    format: OutputFormat = OutputFormat.TEXT


def verify(options: VerifyOptions) -> int:
    repo = open_repo(options.repo)
    config = repo.settings.config
    result = verify_history(repo.root, config.main_branch, config.forge.type, options.since)
    match options.format:
        case OutputFormat.TEXT:
            render_text(result)
        case OutputFormat.JSON:
            emit_json(to_data(result))
        case OutputFormat.MARKDOWN:
            render_markdown(result)
        case _:
            assert_never(options.format)
    return EXIT_OK if result.ok else EXIT_ERROR


def to_data(result: Verification) -> dict[str, Any]:
    checked = result.checked
    return {
        "schema_version": SCHEMA_VERSION,
        "branch": result.branch,
        "since": result.since,
        "ok": result.ok,
        "checked": {
            "commits": checked.commits,
            "plans": checked.plans,
            "journals": checked.journals,
            "snapshots": checked.snapshots,
        },
        "findings": [f.to_data() for f in result.findings],
    }


def summary(result: Verification) -> str:
    checked = result.checked
    since = f" since {terminal(result.since)}" if result.since else ""
    return (
        f"verified {terminal(result.branch)}{since}: {checked.commits} commits, "
        f"{checked.plans} plan changes, {checked.journals} journal versions, "
        f"{checked.snapshots} snapshots"
    )


def render_text(result: Verification) -> None:
    # Names, messages and paths come from whoever committed: every one made inert.
    for f in result.findings:
        emit(
            f"{f.commit[:10]} {terminal(f.author, max_length=120)} {terminal(f.path)}: "
            f"{terminal(f.problem, max_length=0)}; {terminal(f.fix, max_length=0)}"
        )
    count = len(result.findings)
    verdict = f"{count} finding{'s' if count != 1 else ''}" if count else "no findings"
    emit(f"{summary(result)}; {verdict}")


def render_markdown(result: Verification) -> None:
    lines = ["# reconciler audit verify", "", escape(summary(result)), ""]
    lines += [
        f"- `{f.commit[:10]}` {escape(f.author)} {escape(f.path)}: "
        f"{escape(f.problem, max_length=0)}; {escape(f.fix, max_length=0)}"
        for f in result.findings
    ] or ["No findings."]
    emit("\n".join(lines))
