"""The command line. Click lives here only; commands live in `reconciler.commands`.

One error boundary: a ReconcilerError exits 1 with its message, Ctrl-C 130, and
anything else is a bug: exit 3 with the traceback written to a log file.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from reconciler import __version__
from reconciler.demo import ForgeType
from reconciler.errors import ReconcilerError
from reconciler.inert import text_block
from reconciler.output import OutputFormat

EXIT_BUG = 3
EXIT_INTERRUPTED = 130

repo_option = click.option(
    "--repo",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="The access repository.",
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in OutputFormat]),
    default=OutputFormat.TEXT.value,
    show_default=True,
)
app_option = click.option("--app", "apps", multiple=True, help="Only this app (repeatable).")


def run_command(command: Callable[[], int]) -> None:
    try:
        code = command()
    except ReconcilerError as exc:
        # Messages quote what systems said: keep their lines, make each inert.
        click.echo(f"error: {text_block(str(exc))}", err=True)
        code = 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    except Exception:
        details = traceback.format_exc()
        try:
            # A new private file (mode 0600) with an unpredictable name: a fixed name in
            # the shared temporary directory could be created, or pointed elsewhere with
            # a symlink, by another user, and one user's crash would overwrite another's.
            fd, log = tempfile.mkstemp(prefix="reconciler-crash-", suffix=".log")
            with open(fd, "w", encoding="utf-8") as handle:
                handle.write(details)
        except OSError as exc:
            click.echo(details, err=True, nl=False)
            click.echo(
                f"internal error: this is a bug in reconciler; the traceback is above "
                f"(it could not be written to a file: {exc}). Please include it in a bug "
                "report.",
                err=True,
            )
        else:
            click.echo(
                f"internal error: this is a bug in reconciler. The traceback is in {log}; "
                "please include it in a bug report.",
                err=True,
            )
        code = EXIT_BUG
    sys.exit(code)


@click.group()
@click.version_option(__version__)
def main() -> None:
    """Find and remove leavers' accounts in every app, after a human review."""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Write an access repo's skeleton (config, example policy and exports) into DIRECTORY."""
    from reconciler.commands.init import InitOptions, init

    run_command(lambda: init(InitOptions(directory)))


@main.command()
@repo_option
def validate(repo: Path) -> None:
    """Check reconciler.yaml and policies/*.yaml; print every problem as FILE:LINE:COL."""
    from reconciler.commands.validate import ValidateOptions, validate

    run_command(lambda: validate(ValidateOptions(repo=repo)))


@main.command()
@repo_option
@app_option
@format_option
@click.option("--detailed-exitcode", is_flag=True, help="Exit 4 when a plan needs review.")
@click.option(
    "--identities",
    type=click.Choice(["pull", "snapshot", "only"]),
    default="pull",
    show_default=True,
    help="pull: pull the identity sources; snapshot: use the identity snapshots main "
    "holds (pulled by an earlier `--identities only`, e.g. a workflow's first job); "
    "only: pull and import the identity sources and check no app.",
)
def check(
    repo: Path, apps: tuple[str, ...], fmt: str, detailed_exitcode: bool, identities: str
) -> None:
    """Pull every app and identity source, import changes, propose removals."""
    from reconciler.commands.check import CheckOptions, check

    options = CheckOptions(repo, apps, OutputFormat(fmt), detailed_exitcode, identities)
    run_command(lambda: check(options))


@main.command()
@repo_option
@click.option("--count", type=click.IntRange(1, 256), default=1, show_default=True)
@app_option
def shards(repo: Path, count: int, apps: tuple[str, ...]) -> None:
    """Split the apps into COUNT shards of about equal size, as JSON: one list of app
    names per shard, for a GitHub Actions matrix (`reconciler check --app A --app B`)."""
    from reconciler.commands.shards import ShardsOptions, shards

    run_command(lambda: shards(ShardsOptions(repo, count, apps)))


@main.command()
@repo_option
@click.option("--app", required=True, help="The app whose plan to approve.")
@click.option("--as", "approvers", multiple=True, required=True, help="Reviewer (repeatable).")
def approve(repo: Path, app: str, approvers: tuple[str, ...]) -> None:
    """Approve and merge an app's plan (local forge)."""
    from reconciler.commands.approve import ApproveOptions, approve

    run_command(lambda: approve(ApproveOptions(repo, app, approvers)))


@main.command()
@repo_option
@app_option
@format_option
@click.option("--confirm", is_flag=True, help="Act; without it, only show what would happen.")
@click.option(
    "--mark-done",
    multiple=True,
    help="Record a manual task as done (account id, or a username or email naming one task).",
)
@click.option(
    "--as",
    "by",
    default="",
    help="Who runs the apply (the commit's author), or who did the manual task.",
)
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 16))
def apply(
    repo: Path,
    apps: tuple[str, ...],
    fmt: str,
    confirm: bool,
    mark_done: tuple[str, ...],
    by: str,
    concurrency: int,
) -> None:
    """Apply merged, approved plans: re-verify each account live, then deprovision."""
    from reconciler.commands.apply import ApplyOptions, apply

    options = ApplyOptions(
        repo, apps, confirm, mark_done, by, OutputFormat(fmt), concurrency=concurrency
    )
    run_command(lambda: apply(options))


@main.command()
@repo_option
@format_option
def status(repo: Path, fmt: str) -> None:
    """Open plans, approved plans waiting for apply, and the last check of each app."""
    from reconciler.commands.status import StatusOptions, status

    run_command(lambda: status(StatusOptions(repo, OutputFormat(fmt))))


@main.command("explain")
@repo_option
@click.option("--app", required=True, help="The app the account belongs to.")
@click.argument("account")
@format_option
def explain_command(repo: Path, app: str, account: str, fmt: str) -> None:
    """Why one account (its id, username or email) is or is not proposed for removal."""
    from reconciler.commands.explain import ExplainOptions, explain_command

    run_command(lambda: explain_command(ExplainOptions(repo, app, account, OutputFormat(fmt))))


@main.command("doctor")
@repo_option
@click.option(
    "--system", "only", multiple=True, help="Only this app or identity source (repeatable)."
)
@format_option
def doctor_command(repo: Path, only: tuple[str, ...], fmt: str) -> None:
    """Check that every system in reconciler.yaml answers and that its credentials may
    read it, without pulling everything. Exit 1 if any cannot."""
    from reconciler.commands.doctor import DoctorOptions, doctor

    run_command(lambda: doctor(DoctorOptions(repo, only, OutputFormat(fmt))))


@main.command("diff")
@repo_option
@click.option("--app", default=None, help="The app whose accounts to compare.")
@click.option(
    "--identities",
    "source",
    default=None,
    help="Compare this identity source's identities instead of an app's accounts.",
)
@click.option(
    "--from",
    "from_rev",
    required=True,
    help="A git revision, or a date YYYY-MM-DD: the last commit on the main branch at or "
    "before the end of that day (UTC).",
)
@click.option("--to", "to_rev", default="HEAD", show_default=True, help="Like --from.")
@format_option
def diff_command(
    repo: Path, app: str | None, source: str | None, from_rev: str, to_rev: str, fmt: str
) -> None:
    """Accounts added, removed and changed (field by field) between two points of history."""
    from reconciler.commands.diff import DiffOptions, diff

    options = DiffOptions(repo, app, source, from_rev, to_rev, OutputFormat(fmt))
    run_command(lambda: diff(options))


date_option_formats = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]


def _period(
    since: datetime | None, until: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """--since/--until in UTC; a date alone for --until means the end of that day."""
    start = since.replace(tzinfo=UTC) if since else None
    end = until.replace(tzinfo=UTC) if until else None
    if end is not None and (end.hour, end.minute, end.second) == (0, 0, 0):
        end += timedelta(days=1, seconds=-1)
    return start, end


since_option = click.option(
    "--since",
    type=click.DateTime(date_option_formats),
    default=None,
    help="Only what happened on or after this date (UTC), e.g. 2026-01-31.",
)
until_option = click.option(
    "--until",
    type=click.DateTime(date_option_formats),
    default=None,
    help="Only what happened up to this date (UTC, the whole day).",
)


@main.group()
def audit() -> None:
    """Answer from the access repository's git history alone: who had what, who
    approved its removal, and when it was done."""


@audit.command("person")
@click.argument("who", metavar="EMAIL_OR_ID")
@since_option
@until_option
@repo_option
@format_option
def audit_person(
    who: str, since: datetime | None, until: datetime | None, repo: Path, fmt: str
) -> None:
    """One person's timeline across every app and identity source."""
    from reconciler.commands.audit import PersonOptions, person

    start, end = _period(since, until)
    options = PersonOptions(repo, who, start, end, OutputFormat(fmt))
    run_command(lambda: person(options))


@audit.command("app")
@click.argument("app_name", metavar="APP")
@since_option
@until_option
@repo_option
@format_option
def audit_app(
    app_name: str, since: datetime | None, until: datetime | None, repo: Path, fmt: str
) -> None:
    """Every import, plan, approval and applied action of one app, in time order."""
    from reconciler.commands.audit import AppOptions, app

    start, end = _period(since, until)
    options = AppOptions(repo, app_name, start, end, OutputFormat(fmt))
    run_command(lambda: app(options))


@audit.command("evidence")
@click.option("--since", "since_day", required=True, metavar="DATE", help="First day (UTC).")
@click.option(
    "--until", "until_day", required=True, metavar="DATE", help="Last day (UTC, included)."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="A new or empty directory for the pack.",
)
@repo_option
def audit_evidence(since_day: str, until_day: str, out: Path, repo: Path) -> None:
    """The evidence pack of a period (YYYY-MM-DD to YYYY-MM-DD): every person who left,
    how and when each of their accounts was removed, and what is still open."""
    from reconciler.commands.audit import EvidenceOptions, evidence

    run_command(lambda: evidence(EvidenceOptions(repo, since_day, until_day, out)))


@audit.command("verify")
@click.option(
    "--since",
    "since_rev",
    default=None,
    metavar="REV",
    help="Only the commits of the main branch after this revision (a commit or tag).",
)
@repo_option
@format_option
def audit_verify(since_rev: str | None, repo: Path, fmt: str) -> None:
    """Check that main's history is what the tool and approved reviews made: plans came
    through approved merges, journals stay within their plans, snapshots match their
    digests. Exit 1 on any finding."""
    from reconciler.commands.audit_verify import VerifyOptions, verify

    run_command(lambda: verify(VerifyOptions(repo, since_rev, OutputFormat(fmt))))


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo's access repo here instead of a temporary directory.",
)
@click.option(
    "--forge",
    type=click.Choice([f.value for f in ForgeType]),
    default=ForgeType.LOCAL.value,
    show_default=True,
    help="Review the plan in the access repo, or as a pull request on a fake GitHub "
    "served on 127.0.0.1.",
)
def demo(directory: Path | None, forge: str) -> None:
    """Run the whole check → review → apply cycle against local SCIM servers."""
    from reconciler.commands.demo import DemoOptions, demo

    run_command(lambda: demo(DemoOptions(directory, ForgeType(forge))))
