"""`reconciler audit person|app|evidence`: who had what, and how they lost it, from git
alone."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, assert_never

from reconciler.audit.app import audit_app
from reconciler.audit.evidence import (
    EvidenceError,
    Period,
    assemble,
    check_out_dir,
    render,
    write_pack,
)
from reconciler.audit.people import identity_history, period_leavers, timelines
from reconciler.audit.person import audit_person
from reconciler.audit.repository import AuditRepository
from reconciler.audit.timeline import (
    Event,
    OpenException,
    PersonTimeline,
    Removal,
    iso,
)
from reconciler.clock import utc_now
from reconciler.commands import EXIT_OK, SCHEMA_VERSION, open_repo
from reconciler.config import Policy
from reconciler.errors import ReconcilerError
from reconciler.inert import terminal
from reconciler.markdown import escape
from reconciler.model import Account
from reconciler.output import OutputFormat, emit, emit_json
from reconciler.policy import protection


@dataclass(frozen=True)
class PersonOptions:
    repo: Path
    person: str
    since: datetime | None = None
    until: datetime | None = None
    format: OutputFormat = OutputFormat.TEXT


def short(sha: str) -> str:
    return sha[:10]


def span(delta: timedelta | None) -> str:
    """A duration as people read it in an audit: hours, and days beyond two."""
    if delta is None:
        return "?"
    total = delta.total_seconds() / 3600
    if total >= 48:
        return f"{total / 24:.1f} d"
    return f"{total:.1f} h"


def person(options: PersonOptions) -> int:
    repo = open_repo(options.repo)
    history = AuditRepository(repo.root)
    timeline = audit_person(
        history,
        repo.settings,
        options.person,
        now=utc_now(),
        since=options.since,
        until=options.until,
    )
    match options.format:
        case OutputFormat.TEXT:
            emit(person_text(timeline))
        case OutputFormat.MARKDOWN:
            emit(person_markdown(timeline))
        case OutputFormat.JSON:
            emit_json(person_data(timeline))
        case _:
            assert_never(options.format)
    return EXIT_OK


# --- json ---------------------------------------------------------------------------------


def person_data(timeline: PersonTimeline) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "person": timeline.query,
        "identities": [
            {
                "source": i.source,
                "id": i.identity_id,
                "email": i.email,
                "username": i.username,
                "status": i.status,
            }
            for i in timeline.identities
        ],
        "accounts": [
            {
                "app": a.app,
                "id": a.account_id,
                "username": a.username,
                "email": a.email,
                "status": a.status,
                "roles": list(a.roles),
            }
            for a in timeline.accounts
        ],
        "events": [e.to_data() for e in timeline.events],
        "removals": [r.to_data() for r in timeline.removals],
        "open_exceptions": [o.to_data() for o in timeline.open_exceptions],
    }


# --- text ---------------------------------------------------------------------------------


def _deadline_note(removal: Removal) -> str:
    if removal.within_deadline is None:
        return ""
    verdict = "within" if removal.within_deadline else "LATE, past"
    return f"; {verdict} the deadline of {span(removal.deadline)}"


def removal_text(removal: Removal) -> str:
    """One removal as plain text; values from systems are not escaped yet."""
    parts = [f"{removal.app}: {removal.username or removal.account_id}"]
    if removal.left_at:
        parts.append(f"left at {removal.left_at} by the source's own time")
    if removal.detected_at:
        parts.append(
            f"detected {iso(removal.detected_at)} ({removal.detected_status}, "
            f"commit {short(removal.detected_commit)})"
        )
    else:
        parts.append("no detection recorded")
    if removal.how == "plan":
        parts.append(f"plan {removal.plan}")
        verified = removal.approval_verified.get("forge")
        parts.append(
            f"approved by {', '.join(removal.approved_by) or 'nobody recorded'} "
            f"({removal.approval or 'no approval recorded'}"
            f"{f', verified by forge {verified}' if verified else ''}) "
            f"at {iso(removal.approved_at) or '?'}"
        )
    else:
        parts.append(f"removed in the app itself, seen by `{removal.detail}`")
    if removal.removed_at:
        parts.append(f"{removal.outcome} at {iso(removal.removed_at)}")
        if removal.how == "plan" and removal.detail:
            parts[-1] += f" ({removal.detail})"
        parts.append(f"{span(removal.time_to_removal)} after detection{_deadline_note(removal)}")
    else:
        parts.append(f"not removed: {removal.outcome} {removal.detail}".rstrip())
    return "; ".join(parts)


def exception_text(item: OpenException) -> str:
    text = f"{item.app}: {item.username or item.account_id} still active"
    if item.detected_at:
        text += f", {item.detected_status} since {iso(item.detected_at)} ({span(item.age)} ago)"
    if item.past_deadline:
        text += f"; LATE, past the deadline of {span(item.deadline)}"
    if item.pending:
        state = "waiting for review" if item.pending.state == "open" else "approved, not applied"
        text += f"; plan {item.pending.plan} {state}"
    else:
        text += "; no plan proposes its removal"
    return text


def event_text(event: Event) -> str:
    commit = f" [{short(event.commit)}]" if event.commit else ""
    return f"{iso(event.at)}  {event.system}: {event.text}{commit}"


def person_text(timeline: PersonTimeline) -> str:
    lines = [f"person: {terminal(timeline.query)}"]
    lines.append("identities:" if timeline.identities else "identities: none found")
    for i in timeline.identities:
        name = terminal(i.email or i.username)
        lines.append(
            f"  {terminal(i.source)}: {name} (id {terminal(i.identity_id)}), "
            f"{terminal(i.status)} now"
        )
    lines.append("accounts:" if timeline.accounts else "accounts: none")
    for a in timeline.accounts:
        roles = f", roles {terminal(', '.join(a.roles))}" if a.roles else ""
        name = terminal(a.username or a.email)
        lines.append(
            f"  {terminal(a.app)}: {name} (id {terminal(a.account_id)}), "
            f"{terminal(a.status)} now{roles}"
        )
    lines.append("timeline:" if timeline.events else "timeline: nothing in that period")
    lines += [f"  {terminal(event_text(e), max_length=0)}" for e in timeline.events]
    lines.append("removals:" if timeline.removals else "removals: none")
    lines += [f"  {terminal(removal_text(r), max_length=0)}" for r in timeline.removals]
    lines.append(
        "open exceptions (left, still active):"
        if timeline.open_exceptions
        else "open exceptions: none"
    )
    lines += [f"  {terminal(exception_text(o), max_length=0)}" for o in timeline.open_exceptions]
    return "\n".join(lines)


# --- markdown -----------------------------------------------------------------------------


def _cells(values: Sequence[object]) -> str:
    return "| " + " | ".join(escape(v, max_length=0) for v in values) + " |"


def person_markdown(timeline: PersonTimeline) -> str:
    lines = [f"# Audit: {escape(timeline.query)}", "", "## Identities", ""]
    if timeline.identities:
        lines += ["| source | id | email | username | status now |", "|---|---|---|---|---|"]
        lines += [
            _cells([i.source, i.identity_id, i.email, i.username, i.status])
            for i in timeline.identities
        ]
    else:
        lines.append("None found.")
    lines += ["", "## Accounts", ""]
    lines += ["| app | id | username | email | status now | roles |", "|---|---|---|---|---|---|"]
    lines += [
        _cells([a.app, a.account_id, a.username, a.email, a.status, ", ".join(a.roles)])
        for a in timeline.accounts
    ]
    lines += ["", "## Timeline", ""]
    if timeline.events:
        lines += ["| when | where | what | commit |", "|---|---|---|---|"]
        lines += [_cells([iso(e.at), e.system, e.text, short(e.commit)]) for e in timeline.events]
    else:
        lines.append("Nothing in that period.")
    lines += ["", "## Removals", ""]
    if timeline.removals:
        lines += [
            "| app | account | detected | plan | approved by | approval | removed | outcome "
            "| time to removal | within deadline |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in timeline.removals:
            within = {None: "", True: "yes", False: "**no**"}[r.within_deadline]
            lines.append(
                _cells(
                    [
                        r.app,
                        r.username or r.account_id,
                        f"{iso(r.detected_at) or '?'} ({r.detected_status})",
                        r.plan or "removed in the app",
                        ", ".join(r.approved_by),
                        r.approval,
                        iso(r.removed_at) or "",
                        r.outcome,
                        span(r.time_to_removal),
                    ]
                )
                + f" {within} |"
            )
    else:
        lines.append("None.")
    lines += ["", "## Open exceptions (left, still active)", ""]
    if timeline.open_exceptions:
        lines += [f"- {escape(exception_text(o), max_length=0)}" for o in timeline.open_exceptions]
    else:
        lines.append("None.")
    return "\n".join(lines)


@dataclass(frozen=True)
class AppOptions:
    repo: Path
    app: str
    since: datetime | None = None
    until: datetime | None = None
    format: OutputFormat = OutputFormat.TEXT


def app(options: AppOptions) -> int:
    repo = open_repo(options.repo)
    events = audit_app(
        AuditRepository(repo.root),
        repo.settings,
        options.app,
        since=options.since,
        until=options.until,
    )
    match options.format:
        case OutputFormat.TEXT:
            lines = [f"app: {terminal(options.app)}"]
            lines += [f"  {terminal(event_text(e), max_length=0)}" for e in events]
            if not events:
                lines.append("  nothing in that period")
            emit("\n".join(lines))
        case OutputFormat.MARKDOWN:
            lines = [f"# Audit: app {escape(options.app)}", ""]
            if events:
                lines += ["| when | what | commit |", "|---|---|---|"]
                lines += [_cells([iso(e.at), e.text, short(e.commit)]) for e in events]
            else:
                lines.append("Nothing in that period.")
            emit("\n".join(lines))
        case OutputFormat.JSON:
            emit_json(
                {
                    "schema_version": SCHEMA_VERSION,
                    "app": options.app,
                    "events": [e.to_data() for e in events],
                }
            )
        case _:
            assert_never(options.format)
    return EXIT_OK


# --- evidence -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceOptions:
    repo: Path
    since: str  # YYYY-MM-DD, as given
    until: str
    out: Path


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(value: str, flag: str) -> date:
    """A `YYYY-MM-DD` option value as a date."""
    try:
        if not _DAY.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise EvidenceError(
            f"{flag} {value!r} is not a date: give YYYY-MM-DD (a UTC day), e.g. 2026-01-31"
        ) from None


def parse_period(since: str, until: str) -> Period:
    start, end = parse_day(since, "--since"), parse_day(until, "--until")
    if end < start:
        raise EvidenceError(f"--until {until} is before --since {since}: swap them")
    return Period(start, end)


def evidence(options: EvidenceOptions) -> int:
    period = parse_period(options.since, options.until)
    # Refuse before reading any history; write_pack checks again right before writing.
    check_out_dir(options.out)
    repo = open_repo(options.repo)
    now = utc_now()
    # Judged as of the period's end: the history up to main's last commit by then, the
    # plans proposed by then; accounts still active then are open exceptions.
    as_of = min(period.end, now)
    history = AuditRepository(repo.root)
    rev = history.last_main_commit(as_of)
    if rev is not None:
        history = AuditRepository(repo.root, rev=rev, until=as_of)
    settings = repo.settings
    policies: dict[str, Policy] = {}
    for name in sorted(settings.config.apps):
        try:
            policies[name] = settings.policy_for(name)
        except ReconcilerError:
            continue  # an app no policy governs has no leavers to answer for
    # The journals are parsed in workers while this process reads the indexes.
    with history.journals_reading(meanwhile=True) as journals:
        identities = identity_history(history)
        people = timelines(
            history,
            settings,
            period_leavers(history, identities, period.start, period.end),
            identities,
            now=as_of,
            journals=journals,
        )
    protected: dict[tuple[str, str], str] = {}
    for _, timeline in people:
        for account in timeline.accounts:
            policy = policies.get(account.app)
            if policy is None:
                continue
            why = protection(
                Account.build(account.account_id, account.username, account.email), policy
            )
            if why:
                protected[(account.app, account.account_id)] = why
    commits = history.main_commits(period.start, min(period.end, now))
    pack = assemble(
        period,
        [c.sha for c in commits],
        people,
        sources={name: p.identity_source for name, p in policies.items()},
        deadlines={name: p.deadline for name, p in policies.items()},
        protected=protected,
        now=as_of,
    )
    files = render(pack)
    write_pack(options.out, files)
    summary = pack.summary
    emit(
        f"wrote {len(files)} files to {terminal(str(options.out))}: "
        f"{summary.people} people left, {summary.accounts} accounts, {summary.removed} "
        f"removed, {summary.still_open} still open, {summary.breaches} past the deadline"
    )
    return EXIT_OK
