"""The evidence pack for a period: every person who left, how each of their accounts lost
access, and which did not.

`assemble` is pure: it builds rows from leavers and their timelines (the same timelines
`reconciler audit person` shows, so detection and removal are decided in one place).
`render` turns the pack into the bytes of each file, deterministically: the same period
of the same history gives byte-identical files. `write_pack` is the only function here
that touches the file system.
"""

from __future__ import annotations

import csv
import hashlib
import io
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from reconciler.audit.timeline import (
    Leaver,
    OpenException,
    PersonTimeline,
    Removal,
    hours,
    iso,
)
from reconciler.errors import ReconcilerError
from reconciler.markdown import escape

SCHEMA_VERSION = 1

TERMINATIONS = "terminations.csv"
EXCEPTIONS = "exceptions.csv"
SUMMARY = "summary.md"
DATA = "evidence.json"
MANIFEST = "MANIFEST"

NO_ACCOUNT = "no account"
OPEN = "open"

CONTROLS = (
    "This pack evidences timely removal of access on termination: SOC 2 CC6.2 (access is "
    "removed when no longer authorised), ISO/IEC 27001:2022 A.5.18 (access rights "
    "are removed on termination) and PCI DSS v4.0 requirement 8.2.5 (access for terminated "
    "users is immediately revoked). Every row comes from the access repository's git "
    "history: the identity source's import that first showed the person gone, the plan "
    "that proposed removing each account, the approval that merged it, and the apply "
    "journal that recorded the outcome."
)


class EvidenceError(ReconcilerError):
    """The evidence pack cannot be built or written as asked."""


@dataclass(frozen=True)
class Period:
    """Whole UTC days, both inclusive."""

    since: date
    until: date

    @property
    def start(self) -> datetime:
        return datetime(self.since.year, self.since.month, self.since.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The last second of `until`."""
        last = datetime(self.until.year, self.until.month, self.until.day, tzinfo=UTC)
        return last + timedelta(days=1, seconds=-1)


@dataclass(frozen=True)
class Termination:
    """One account of one person who left (or the person alone, when they held none)."""

    person: str  # email
    person_name: str
    source: str
    left_at: str  # the source's own timestamp, verbatim
    detected_at: datetime
    detected_status: str
    detected_commit: str
    app: str = ""
    account_id: str = ""
    username: str = ""
    plan: str = ""
    approval: str = ""
    approved_by: tuple[str, ...] = ()
    approved_at: datetime | None = None
    applied_at: datetime | None = None
    outcome: str = ""
    deadline: timedelta | None = None
    within_deadline: bool | None = None

    @property
    def time_to_removal(self) -> timedelta | None:
        return None if self.applied_at is None else self.applied_at - self.detected_at


@dataclass(frozen=True)
class AccessException:
    """An account of a person who left that was still active at the end of the period."""

    person: str
    person_name: str
    source: str
    detected_at: datetime
    app: str
    account_id: str
    username: str
    plan: str
    reason: str
    deadline: timedelta | None
    past_deadline: bool | None


@dataclass(frozen=True)
class Summary:
    people: int
    accounts: int
    removed: int
    still_open: int
    median_hours: float | None
    worst_hours: float | None
    breaches: int


@dataclass(frozen=True)
class EvidencePack:
    period: Period
    as_of: datetime  # the end of the period, or now if it has not ended
    first_commit: str  # of main within the period ("" when none)
    last_commit: str
    leavers: tuple[Leaver, ...]
    terminations: tuple[Termination, ...]
    exceptions: tuple[AccessException, ...]

    @property
    def summary(self) -> Summary:
        accounts = [t for t in self.terminations if t.app]
        taken = [
            t.time_to_removal.total_seconds() / 3600
            for t in accounts
            if t.time_to_removal is not None
        ]
        return Summary(
            people=len(self.leavers),
            accounts=len(accounts),
            removed=sum(1 for t in accounts if t.applied_at is not None),
            still_open=len(self.exceptions),
            median_hours=round(statistics.median(taken), 2) if taken else None,
            worst_hours=round(max(taken), 2) if taken else None,
            breaches=sum(1 for t in accounts if t.within_deadline is False),
        )


# --- assembly (pure) ----------------------------------------------------------------------


def _before(moment: datetime | None, as_of: datetime) -> bool:
    return moment is not None and moment <= as_of


def _late(detected_at: datetime, deadline: timedelta | None, as_of: datetime) -> bool | None:
    """Whether an account still open at `as_of` is past the deadline (None: no deadline,
    or not past it yet, so not decided)."""
    if deadline is None:
        return None
    return True if as_of - detected_at > deadline else None


def _reason(
    protected: str | None,
    decided: Removal | None,
    still_active: OpenException | None,
    as_of: datetime,
) -> str:
    if protected:
        return protected  # as the policy says it: "protected by …", "service account"
    if decided is not None and decided.outcome == "skipped":
        return f"skipped: {decided.detail or 'by a reviewer'}"
    if decided is not None and decided.outcome:
        return f"{decided.outcome}: {decided.detail}".rstrip(": ")
    pending = still_active.pending if still_active else None
    if pending is not None and _before(pending.created_at, as_of):
        state = "waiting for review" if pending.state == "open" else "approved, waiting for apply"
        return f"plan {pending.plan} {state}"
    return "no removal applied by the end of the period"


def _rows_for(
    leaver: Leaver,
    timeline: PersonTimeline,
    *,
    sources: Mapping[str, str],
    deadlines: Mapping[str, timedelta | None],
    protected: Mapping[tuple[str, str], str],
    as_of: datetime,
) -> tuple[list[Termination], list[AccessException]]:
    removals: dict[tuple[str, str], list[Removal]] = {}
    for removal in timeline.removals:
        if sources.get(removal.app) == leaver.source and (
            removal.detected_commit == leaver.detected_commit
        ):
            removals.setdefault((removal.app, removal.account_id), []).append(removal)
    active: dict[tuple[str, str], OpenException] = {}
    for item in timeline.open_exceptions:
        if (
            sources.get(item.app) == leaver.source
            and item.detected_at is not None
            and item.detected_at >= leaver.detected_at
        ):
            active[(item.app, item.account_id)] = item
    person = leaver.email or leaver.username or leaver.identity_id
    terminations: list[Termination] = []
    exceptions: list[AccessException] = []
    for key in sorted(removals.keys() | active.keys()):
        app, account_id = key
        found = removals.get(key, [])
        deadline = deadlines.get(app)
        done = sorted(
            (r for r in found if _before(r.removed_at, as_of)),
            key=lambda r: r.removed_at or as_of,
        )
        # What was decided by the end of the period: a later apply is not evidence for it.
        decided = next(
            (
                r
                for r in sorted(found, key=lambda r: r.approved_at or as_of, reverse=True)
                if r.how == "plan" and _before(r.approved_at, as_of) and r.removed_at is None
            ),
            None,
        )
        shown = done[0] if done else decided
        username = shown.username if shown else ""
        if not username and key in active:
            username = active[key].username
        if not username and found:
            username = found[0].username
        removed_at = done[0].removed_at if done else None
        taken = removed_at - leaver.detected_at if removed_at else None
        if taken is not None:
            within = None if deadline is None else taken <= deadline
        else:
            within = False if _late(leaver.detected_at, deadline, as_of) else None
        terminations.append(
            Termination(
                person=person,
                person_name=leaver.display_name,
                source=leaver.source,
                left_at=leaver.left_at,
                detected_at=leaver.detected_at,
                detected_status=leaver.status,
                detected_commit=leaver.detected_commit,
                app=app,
                account_id=account_id,
                username=username,
                plan=shown.plan if shown else "",
                approval=shown.approval if shown else "",
                approved_by=shown.approved_by if shown else (),
                approved_at=shown.approved_at if shown else None,
                applied_at=removed_at,
                outcome=shown.outcome if shown else OPEN,
                deadline=deadline,
                within_deadline=within,
            )
        )
        if removed_at is None:
            still_active = active.get(key)
            pending = still_active.pending if still_active else None
            plan = decided.plan if decided else ""
            if not plan and pending is not None and _before(pending.created_at, as_of):
                plan = pending.plan
            exceptions.append(
                AccessException(
                    person=person,
                    person_name=leaver.display_name,
                    source=leaver.source,
                    detected_at=leaver.detected_at,
                    app=app,
                    account_id=account_id,
                    username=username,
                    plan=plan,
                    reason=_reason(protected.get(key), decided, still_active, as_of),
                    deadline=deadline,
                    past_deadline=(
                        None if deadline is None else as_of - leaver.detected_at > deadline
                    ),
                )
            )
    if not terminations:
        terminations.append(
            Termination(
                person=person,
                person_name=leaver.display_name,
                source=leaver.source,
                left_at=leaver.left_at,
                detected_at=leaver.detected_at,
                detected_status=leaver.status,
                detected_commit=leaver.detected_commit,
                outcome=NO_ACCOUNT,
            )
        )
    return terminations, exceptions


def assemble(
    period: Period,
    commits: Sequence[str],
    people: Sequence[tuple[Leaver, PersonTimeline]],
    *,
    sources: Mapping[str, str],
    deadlines: Mapping[str, timedelta | None],
    protected: Mapping[tuple[str, str], str],
    now: datetime,
) -> EvidencePack:
    """The evidence pack of a period from its leavers and each one's timeline.

    `commits` are main's commits within the period, oldest first; `sources` names each
    app's identity source; `deadlines` each app's policy deadline; `protected` why an
    account the policy protects may not be removed, by (app, account id). Facts dated
    after the period's end (or after `now`) are left out: the pack says what was true
    then, so building it again later gives the same files.
    """
    as_of = min(period.end, now)
    terminations: list[Termination] = []
    exceptions: list[AccessException] = []
    for leaver, timeline in people:
        rows, open_rows = _rows_for(
            leaver,
            timeline,
            sources=sources,
            deadlines=deadlines,
            protected=protected,
            as_of=as_of,
        )
        terminations += rows
        exceptions += open_rows
    terminations.sort(key=lambda t: (t.detected_at, t.person, t.source, t.app, t.account_id))
    exceptions.sort(key=lambda e: (e.detected_at, e.person, e.source, e.app, e.account_id))
    return EvidencePack(
        period=period,
        as_of=as_of,
        first_commit=commits[0] if commits else "",
        last_commit=commits[-1] if commits else "",
        leavers=tuple(leaver for leaver, _ in people),
        terminations=tuple(terminations),
        exceptions=tuple(exceptions),
    )


# --- rendering (pure, deterministic) --------------------------------------------------------

# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV
# injection"); a leading apostrophe makes it text and is not shown.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: object) -> str:
    """A value from a system, safe to open in a spreadsheet."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def _yes_no(value: bool | None) -> str:
    return {None: "", True: "yes", False: "no"}[value]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


TERMINATION_COLUMNS = (
    "person",
    "person_name",
    "identity_source",
    "left_at",
    "detected_at",
    "detected_status",
    "detection_commit",
    "app",
    "account_id",
    "username",
    "plan_id",
    "approval",
    "approvers",
    "approved_at",
    "applied_at",
    "outcome",
    "hours_to_removal",
    "deadline_hours",
    "within_deadline",
)

EXCEPTION_COLUMNS = (
    "person",
    "person_name",
    "identity_source",
    "detected_at",
    "app",
    "account_id",
    "username",
    "plan_id",
    "reason",
    "deadline_hours",
    "past_deadline",
)


def termination_data(row: Termination) -> dict[str, Any]:
    return {
        "person": row.person,
        "person_name": row.person_name,
        "identity_source": row.source,
        "left_at": row.left_at,
        "detected_at": iso(row.detected_at),
        "detected_status": row.detected_status,
        "detection_commit": row.detected_commit,
        "app": row.app,
        "account_id": row.account_id,
        "username": row.username,
        "plan_id": row.plan,
        "approval": row.approval,
        "approvers": list(row.approved_by),
        "approved_at": iso(row.approved_at),
        "applied_at": iso(row.applied_at),
        "outcome": row.outcome,
        "hours_to_removal": hours(row.time_to_removal),
        "deadline_hours": hours(row.deadline),
        "within_deadline": row.within_deadline,
    }


def exception_data(row: AccessException) -> dict[str, Any]:
    return {
        "person": row.person,
        "person_name": row.person_name,
        "identity_source": row.source,
        "detected_at": iso(row.detected_at),
        "app": row.app,
        "account_id": row.account_id,
        "username": row.username,
        "plan_id": row.plan,
        "reason": row.reason,
        "deadline_hours": hours(row.deadline),
        "past_deadline": row.past_deadline,
    }


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return _yes_no(value)
    if isinstance(value, float | int):
        return _number(float(value))
    if isinstance(value, list):
        return spreadsheet_cell("; ".join(str(v) for v in value))
    return spreadsheet_cell(value)


def to_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> bytes:
    """A header and one line per row: comma-separated, minimal quoting, `\\n` endings."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=",", quotechar='"', lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row[c]) for c in columns])
    return out.getvalue().encode("utf-8")


def pack_data(pack: EvidencePack) -> dict[str, Any]:
    summary = pack.summary
    return {
        "schema_version": SCHEMA_VERSION,
        "period": {
            "since": pack.period.since.isoformat(),
            "until": pack.period.until.isoformat(),
        },
        "commits": {"first": pack.first_commit or None, "last": pack.last_commit or None},
        "summary": {
            "people_who_left": summary.people,
            "accounts": summary.accounts,
            "removed": summary.removed,
            "still_open": summary.still_open,
            "median_hours_to_removal": summary.median_hours,
            "worst_hours_to_removal": summary.worst_hours,
            "deadline_breaches": summary.breaches,
        },
        "terminations": [termination_data(t) for t in pack.terminations],
        "exceptions": [exception_data(e) for e in pack.exceptions],
    }


def _hours_text(value: float | None) -> str:
    return "none removed" if value is None else f"{value:.2f} h"


def summary_markdown(pack: EvidencePack) -> bytes:
    summary = pack.summary
    deadlines = sorted({t.deadline for t in pack.terminations if t.deadline is not None})
    deadline = (
        ", ".join(f"{hours(d):g} h" for d in deadlines) if deadlines else "none set in policy"
    )
    commits = (
        f"`{pack.first_commit}` to `{pack.last_commit}`"
        if pack.first_commit
        else "no commit of main in the period"
    )
    lines = [
        f"# Access removal on termination: {pack.period.since} to {pack.period.until}",
        "",
        f"Period: {pack.period.since} to {pack.period.until} (UTC, both days included).",
        f"Built from the access repository's main branch, commits {commits}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| people who left | {summary.people} |",
        f"| their accounts | {summary.accounts} |",
        f"| removed | {summary.removed} |",
        f"| still open at the end of the period | {summary.still_open} |",
        f"| median hours from detection to removal | {_hours_text(summary.median_hours)} |",
        f"| worst hours from detection to removal | {_hours_text(summary.worst_hours)} |",
        f"| policy deadline | {deadline} |",
        f"| deadline breaches | {summary.breaches} |",
        "",
        "## Controls",
        "",
        CONTROLS,
        "",
    ]
    if pack.exceptions:
        lines += ["## Still open", ""]
        lines += [
            f"- {escape(e.app)}: {escape(e.username or e.account_id)} of "
            f"{escape(e.person)} ({escape(e.reason, max_length=0)})"
            for e in pack.exceptions
        ]
        lines.append("")
    lines += [
        "## Files",
        "",
        f"- `{TERMINATIONS}`: one row per account of each person who left",
        f"- `{EXCEPTIONS}`: accounts still active at the end of the period, with the reason",
        f"- `{DATA}`: the same data as JSON",
        f"- `{MANIFEST}`: the SHA-256 of every file and the commit range",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def manifest(pack: EvidencePack, files: Mapping[str, bytes]) -> bytes:
    """`sha256  name` lines (as `sha256sum` writes them) after the period and commits."""
    lines = [
        "# reconciler audit evidence",
        f"# period: {pack.period.since} {pack.period.until}",
        f"# commits: {pack.first_commit or 'none'} {pack.last_commit or 'none'}",
    ]
    lines += [f"{hashlib.sha256(files[name]).hexdigest()}  {name}" for name in sorted(files)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def render(pack: EvidencePack) -> dict[str, bytes]:
    """Every file of the pack by name, MANIFEST last computed over the others."""
    data = pack_data(pack)
    files = {
        TERMINATIONS: to_csv(TERMINATION_COLUMNS, data["terminations"]),
        EXCEPTIONS: to_csv(EXCEPTION_COLUMNS, data["exceptions"]),
        SUMMARY: summary_markdown(pack),
        DATA: orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n",
    }
    files[MANIFEST] = manifest(pack, files)
    return files


# --- the file system ----------------------------------------------------------------------


def check_out_dir(out: Path) -> None:
    """Refuse anything but a new or empty directory: a pack mixed with other files is
    not evidence of anything."""
    if out.exists() and not out.is_dir():
        raise EvidenceError(f"--out {out} is a file; give a new or empty directory")
    if out.is_dir() and any(out.iterdir()):
        raise EvidenceError(f"--out {out} is not empty; give a new or empty directory")


def write_pack(out: Path, files: Mapping[str, bytes]) -> None:
    """Write every file into `out`, a new or empty directory."""
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(files):
        # "x": never overwrite a file that appeared since the check.
        with open(out / name, "xb") as handle:
            handle.write(files[name])
