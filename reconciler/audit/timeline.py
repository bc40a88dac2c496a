"""The audit core: a person's or an app's timeline assembled from plain facts.

Pure: no git, no files. The facts are what `reconciler.audit.repository` reads from the
access repository: snapshot lines as they changed commit by commit, apply journals, and
plans still waiting for review or for apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.clock import timestamp
from reconciler.plan import RETURNED, ROLE_NOT_ALLOWED

ACCOUNT = "account"
IDENTITY = "identity"
LEFT = frozenset({"deprovisioned", "suspended", "missing"})
# Where an identity's snapshot line holds the source's own time of its status change
# (`Identity.status_changed_at`); "left at" in the audit, never its detection.
LEFT_AT_KEYS = ("status_changed_at",)
# A plan's id as its proposing commit names it (trailer `Plan-Id:`).
PLAN_ID = re.compile(r"^Plan-Id:\s*([0-9a-f]{8,64})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Commit:
    """A commit of the access repository, as the audit shows it."""

    sha: str
    at: datetime
    subject: str

    @classmethod
    def logged(cls, sha: str | bytes, stamp: str | bytes, subject: str | bytes) -> Commit:
        """A commit as `git log` prints its `%H`, `%ct` (Unix time) and `%s`."""
        if isinstance(sha, bytes):
            sha = sha.decode()
        if isinstance(subject, bytes):
            subject = subject.decode("utf-8", "replace")
        return cls(sha, datetime.fromtimestamp(int(stamp), UTC), subject)


@dataclass(frozen=True)
class LineChange:
    """One record's snapshot line as one commit changed it: appeared (`before` None),
    changed, or gone from the snapshot (`after` None)."""

    commit: Commit
    system: str  # the app or identity source the snapshot belongs to
    kind: str  # ACCOUNT | IDENTITY
    record_id: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True)
class JournalAction:
    account_id: str
    username: str
    email: str
    mode: str
    reason: str
    outcome: str
    detail: str
    at: datetime | None


@dataclass(frozen=True)
class Journal:
    """One approval of one plan, applied (a history/<app>/… file)."""

    app: str
    plan: str
    path: str
    approved_by: tuple[str, ...]
    approval: str
    approved_at: datetime | None
    approval_verified: Mapping[str, Any]
    plan_created_at: datetime | None
    actions: tuple[JournalAction, ...]
    commit: Commit | None = None  # the commit that added the journal (the apply)


@dataclass(frozen=True)
class PendingPlan:
    """A plan not applied yet: `open` (waiting for review) or `approved` (on main,
    waiting for apply)."""

    app: str
    plan: str
    state: str  # open | approved
    created_at: datetime | None
    where: str  # the branch, or the main branch
    account_ids: tuple[str, ...]
    status: str = "open"  # the plan's own status: open | blocked


@dataclass(frozen=True)
class Event:
    """One line of a timeline. `text` is plain text holding values from systems; it is
    escaped where it is shown."""

    at: datetime
    system: str
    kind: str
    text: str
    commit: str = ""
    account_id: str = ""

    def to_data(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "system": self.system,
            "kind": self.kind,
            "text": self.text,
            "commit": self.commit,
            "account_id": self.account_id,
        }


@dataclass(frozen=True)
class Removal:
    """How one of the person's accounts lost access, from detection to removal."""

    app: str
    account_id: str
    username: str
    detected_at: datetime | None
    detected_status: str
    detected_commit: str
    how: str  # plan | app (removed in the app itself, seen by an import)
    left_at: str = ""  # the source's own time of the change (time to removal is from detection)
    plan: str = ""
    plan_created_at: datetime | None = None
    approved_by: tuple[str, ...] = ()
    approval: str = ""
    approved_at: datetime | None = None
    approval_verified: Mapping[str, Any] = field(default_factory=dict)
    removed_at: datetime | None = None
    outcome: str = ""
    detail: str = ""
    deadline: timedelta | None = None

    @property
    def time_to_removal(self) -> timedelta | None:
        if self.detected_at is None or self.removed_at is None:
            return None
        return self.removed_at - self.detected_at

    @property
    def within_deadline(self) -> bool | None:
        taken = self.time_to_removal
        if self.deadline is None or taken is None:
            return None
        return taken <= self.deadline

    def to_data(self) -> dict[str, Any]:
        taken = self.time_to_removal
        return {
            "app": self.app,
            "account_id": self.account_id,
            "username": self.username,
            "left_at": self.left_at or None,
            "detected_at": iso(self.detected_at),
            "detected_status": self.detected_status,
            "detected_commit": self.detected_commit,
            "how": self.how,
            "plan": self.plan or None,
            "plan_created_at": iso(self.plan_created_at),
            "approved_by": list(self.approved_by),
            "approval": self.approval or None,
            "approved_at": iso(self.approved_at),
            "approval_verified": dict(self.approval_verified),
            "removed_at": iso(self.removed_at),
            "outcome": self.outcome or None,
            "detail": self.detail or None,
            "hours_to_removal": hours(taken),
            "deadline_hours": hours(self.deadline),
            "within_deadline": self.within_deadline,
        }


@dataclass(frozen=True)
class OpenException:
    """An account of a person who left that is still active now."""

    app: str
    account_id: str
    username: str
    detected_at: datetime | None
    detected_status: str
    age: timedelta | None
    pending: PendingPlan | None
    deadline: timedelta | None = None

    @property
    def past_deadline(self) -> bool | None:
        if self.deadline is None or self.age is None:
            return None
        return self.age > self.deadline

    def to_data(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "account_id": self.account_id,
            "username": self.username,
            "detected_at": iso(self.detected_at),
            "detected_status": self.detected_status,
            "age_hours": hours(self.age),
            "plan": self.pending.plan if self.pending else None,
            "plan_state": self.pending.state if self.pending else None,
            "deadline_hours": hours(self.deadline),
            "past_deadline": self.past_deadline,
        }


@dataclass(frozen=True)
class AccountNow:
    app: str
    account_id: str
    username: str
    email: str
    status: str  # active | disabled | removed
    roles: tuple[str, ...]


@dataclass(frozen=True)
class IdentityNow:
    source: str
    identity_id: str
    email: str
    username: str
    status: str


@dataclass(frozen=True)
class PersonTimeline:
    query: str
    identities: tuple[IdentityNow, ...]
    accounts: tuple[AccountNow, ...]
    events: tuple[Event, ...]
    removals: tuple[Removal, ...]
    open_exceptions: tuple[OpenException, ...]


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else timestamp(moment)


def hours(span: timedelta | None) -> float | None:
    return None if span is None else round(span.total_seconds() / 3600, 2)


def in_range(moment: datetime | None, since: datetime | None, until: datetime | None) -> bool:
    if moment is None:
        return since is None and until is None
    return (since is None or moment >= since) and (until is None or moment <= until)


# Within one second (a demo, a fast cycle) events keep the order the cycle gives them.
_RANK = {
    "plan_proposed": 1,
    "plan_pending": 1,
    "plan_approved": 2,
    "applied": 3,
    "apply": 3,
}


def event_order(event: Event) -> tuple[datetime, int]:
    rank = _RANK.get(event.kind, 0)
    if event.kind.startswith("account_") and event.kind != "account_appeared":
        rank = 3  # an account's change in the same second as an approval is its apply
    return event.at, rank


# --- what changed in one line ------------------------------------------------------------


def _names(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def _label(record: Mapping[str, Any]) -> str:
    return str(record.get("username") or record.get("email") or record.get("id", ""))


def _listed(items: Iterable[str]) -> str:
    return ", ".join(items) or "none"


def describe(change: LineChange) -> tuple[str, str]:
    """The event kind and text of one line change."""
    before, after = change.before, change.after
    noun = "account" if change.kind == ACCOUNT else "identity"
    if before is None and after is not None:
        extra = ""
        if change.kind == ACCOUNT:
            extra = f", roles: {_listed(_names(after.get('roles')))}"
            entitlements = _names(after.get("entitlements"))
            if entitlements:
                extra += f", entitlements: {_listed(entitlements)}"
        return (
            f"{noun}_appeared",
            f"{noun} {_label(after)} appeared (status {after.get('status', '?')}{extra})",
        )
    if after is None and before is not None:
        return f"{noun}_gone", f"{noun} {_label(before)} gone from the snapshot"
    assert before is not None and after is not None
    parts = []
    if before.get("status") != after.get("status"):
        parts.append(f"status {before.get('status')} → {after.get('status')}")
        left_at = left_at_of(after) if change.kind == IDENTITY else ""
        if left_at:
            parts.append(f"changed at {left_at} by the source's own time")
    for key in ("roles", "entitlements", "groups"):
        old, new = set(_names(before.get(key))), set(_names(after.get(key)))
        if old != new:
            added, removed = sorted(new - old), sorted(old - new)
            words = []
            if added:
                words.append(f"+{', +'.join(added)}")
            if removed:
                words.append(f"-{', -'.join(removed)}")
            parts.append(f"{key} {' '.join(words)}")
    for key in ("username", "email", "display_name", "type"):
        if before.get(key) != after.get(key):
            parts.append(f"{key} {before.get(key)!s} → {after.get(key)!s}")
    kind = f"{noun}_status" if before.get("status") != after.get("status") else f"{noun}_changed"
    return kind, f"{noun} {_label(after)}: {'; '.join(parts) or 'rewritten'}"


# --- a person ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    source: str
    at: datetime  # the import commit that first showed the person gone
    status: str
    commit: str
    left_at: str = ""  # the source's own time of the change, when its records carry it


def detections(changes: Iterable[LineChange]) -> list[Detection]:
    """Every moment an identity source first showed the person as gone: a status turning
    deprovisioned/suspended/missing, or the identity's line leaving the snapshot."""
    found = []
    for change in sorted(changes, key=lambda c: c.commit.at):
        if change.kind != IDENTITY:
            continue
        old = (change.before or {}).get("status")
        new = "missing" if change.after is None else change.after.get("status")
        if new in LEFT and old not in LEFT:
            left_at = left_at_of(change.after) if change.after is not None else ""
            found.append(
                Detection(change.system, change.commit.at, str(new), change.commit.sha, left_at)
            )
    return found


def left_at_of(record: Mapping[str, Any]) -> str:
    """When the identity source says the person's status changed, if its record holds it."""
    return next((str(record[k]) for k in LEFT_AT_KEYS if record.get(k)), "")


def gone_since(changes: Iterable[LineChange]) -> dict[str, Detection]:
    """For each identity still gone after its last change, the detection that began
    its current absence (a person who came back and left again counts from the second
    time), by identity id. `changes` are one identity source's lines in the order they
    happened (as the repository reads them: commits of one second keep their order)."""
    by_record: dict[str, list[LineChange]] = {}
    for change in changes:
        if change.kind == IDENTITY:
            by_record.setdefault(change.record_id, []).append(change)
    found = {}
    for record_id, mine in by_record.items():
        latest = mine[-1]
        if latest.after is not None and latest.after.get("status") not in LEFT:
            continue
        seen = detections(mine)
        if seen:
            found[record_id] = seen[-1]
    return found


def _detection_for(
    found: Sequence[Detection], source: str | None, before: datetime | None
) -> Detection | None:
    """The latest detection in `source` at or before `before` (any time when None)."""
    chosen = None
    for detection in found:
        if source is not None and detection.source != source:
            continue
        if before is not None and detection.at > before:
            continue
        chosen = detection
    return chosen


def _identity_left_now(changes: Iterable[LineChange], source: str | None) -> bool:
    """Whether the person's identity in `source` (any source when None) is gone now."""
    latest: dict[tuple[str, str], Mapping[str, Any] | None] = {}
    for change in sorted(changes, key=lambda c: c.commit.at):
        if change.kind == IDENTITY and (source is None or change.system == source):
            latest[(change.system, change.record_id)] = change.after
    if not latest:
        return False
    # Someone with one live identity in the source has not left it (a rehire).
    return all(after is None or after.get("status") in LEFT for after in latest.values())


def _accounts_now(changes: Iterable[LineChange]) -> dict[tuple[str, str], LineChange]:
    latest: dict[tuple[str, str], LineChange] = {}
    for change in sorted(changes, key=lambda c: c.commit.at):
        if change.kind == ACCOUNT:
            latest[(change.system, change.record_id)] = change
    return latest


def person_timeline(
    query: str,
    changes: Sequence[LineChange],
    journals: Sequence[Journal],
    pending: Sequence[PendingPlan],
    *,
    sources: Mapping[str, str],
    deadlines: Mapping[str, timedelta | None],
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    with_events: bool = True,
) -> PersonTimeline:
    """One person's timeline across every app and identity source.

    `changes` are the person's identity lines and the lines of the accounts linked to
    them; `journals` and `pending` may mention others too (only the person's account ids
    count); `sources` names each app's identity source; `deadlines` each app's policy
    deadline (None: none). Without `with_events`, no event is described (an evidence
    pack of a hundred thousand leavers needs their removals and exceptions only).
    """
    account_ids = {(c.system, c.record_id) for c in changes if c.kind == ACCOUNT}
    found = detections(changes)
    events: list[Event] = []
    for change in changes if with_events else ():
        kind, text = describe(change)
        where = "app" if change.kind == ACCOUNT else "identity source"
        events.append(
            Event(
                change.commit.at,
                change.system,
                kind,
                f"{text} ({where} {change.system}; {change.commit.subject})",
                change.commit.sha,
                change.record_id if change.kind == ACCOUNT else "",
            )
        )
    removals: list[Removal] = []
    removed_by_plan: set[tuple[str, str, str]] = set()
    for journal in journals:
        mine = [a for a in journal.actions if (journal.app, a.account_id) in account_ids]
        if not mine:
            continue
        if with_events and journal.plan_created_at is not None:
            events.append(
                Event(
                    journal.plan_created_at,
                    journal.app,
                    "plan_proposed",
                    f"plan {journal.plan} proposed removing "
                    f"{_listed(a.username or a.account_id for a in mine)}",
                )
            )
        if with_events and journal.approved_at is not None:
            verified = journal.approval_verified.get("forge", "")
            events.append(
                Event(
                    journal.approved_at,
                    journal.app,
                    "plan_approved",
                    f"plan {journal.plan} approved by {_listed(journal.approved_by)} "
                    f"({journal.approval}{f', verified by forge {verified}' if verified else ''})",
                    str(journal.approval_verified.get("merge_commit", "")),
                )
            )
        for action in mine:
            if with_events and action.at is not None:
                events.append(
                    Event(
                        action.at,
                        journal.app,
                        "applied",
                        f"{action.mode} {action.username or action.account_id}: {action.outcome}"
                        f"{f' ({action.detail})' if action.detail else ''}, plan {journal.plan}",
                        journal.commit.sha if journal.commit else "",
                        action.account_id,
                    )
                )
            if action.reason in (ROLE_NOT_ALLOWED, RETURNED):
                continue  # a role taken, or an account enabled again: no removal
            removed = action.at if action.outcome == "done" else None
            detection = _detection_for(
                found, sources.get(journal.app), removed or journal.approved_at
            )
            removals.append(
                Removal(
                    app=journal.app,
                    account_id=action.account_id,
                    username=action.username,
                    detected_at=detection.at if detection else None,
                    detected_status=detection.status if detection else "",
                    detected_commit=detection.commit if detection else "",
                    left_at=detection.left_at if detection else "",
                    how="plan",
                    plan=journal.plan,
                    plan_created_at=journal.plan_created_at,
                    approved_by=journal.approved_by,
                    approval=journal.approval,
                    approved_at=journal.approved_at,
                    approval_verified=journal.approval_verified,
                    removed_at=removed,
                    outcome=action.outcome,
                    detail=action.detail,
                    deadline=deadlines.get(journal.app),
                )
            )
            if journal.commit is not None:
                removed_by_plan.add((journal.app, action.account_id, journal.commit.sha))
    # Accounts disabled or removed in the app itself, seen by an import.
    for change in changes:
        if change.kind != ACCOUNT or change.before is None:
            continue
        was_active = change.before.get("status") == "active"
        now_inactive = change.after is None or change.after.get("status") != "active"
        key = (change.system, change.record_id, change.commit.sha)
        if was_active and now_inactive and key not in removed_by_plan:
            detection = _detection_for(found, sources.get(change.system), change.commit.at)
            removals.append(
                Removal(
                    app=change.system,
                    account_id=change.record_id,
                    username=_label(change.before),
                    detected_at=detection.at if detection else None,
                    detected_status=detection.status if detection else "",
                    detected_commit=detection.commit if detection else "",
                    left_at=detection.left_at if detection else "",
                    how="app",
                    removed_at=change.commit.at,
                    outcome="removed" if change.after is None else "disabled",
                    detail=change.commit.subject,
                    deadline=deadlines.get(change.system),
                )
            )
    for plan in pending:
        mine_ids = [i for i in plan.account_ids if (plan.app, i) in account_ids]
        if with_events and mine_ids and plan.created_at is not None:
            state = "waiting for review" if plan.state == "open" else "approved, waiting for apply"
            events.append(
                Event(
                    plan.created_at,
                    plan.app,
                    "plan_pending",
                    f"plan {plan.plan} ({plan.status}) proposes removing the account, {state} "
                    f"({plan.where})",
                )
            )
    accounts = []
    exceptions = []
    for (app, account_id), change in sorted(_accounts_now(changes).items()):
        after = change.after
        status = "removed" if after is None else str(after.get("status", ""))
        record = after or change.before or {}
        accounts.append(
            AccountNow(
                app,
                account_id,
                str(record.get("username", "")),
                str(record.get("email", "")),
                status,
                tuple(_names(record.get("roles"))),
            )
        )
        source = sources.get(app)
        if status == "active" and _identity_left_now(changes, source):
            detection = _detection_for(found, source, None)
            waiting = next(
                (p for p in pending if p.app == app and account_id in p.account_ids), None
            )
            exceptions.append(
                OpenException(
                    app,
                    account_id,
                    _label(record),
                    detection.at if detection else None,
                    detection.status if detection else "",
                    now - detection.at if detection else None,
                    waiting,
                    deadlines.get(app),
                )
            )
    identities: dict[tuple[str, str], IdentityNow] = {}
    for change in sorted(changes, key=lambda c: c.commit.at):
        if change.kind == IDENTITY:
            record = change.after or change.before or {}
            identities[(change.system, change.record_id)] = IdentityNow(
                change.system,
                change.record_id,
                str(record.get("email", "")),
                str(record.get("username", "")),
                "missing" if change.after is None else str(record.get("status", "")),
            )
    shown = sorted((e for e in events if in_range(e.at, since, until)), key=event_order)
    kept = [
        r
        for r in removals
        if in_range(r.removed_at or r.approved_at or r.detected_at, since, until)
    ]
    kept.sort(key=lambda r: (r.app, r.account_id, iso(r.removed_at) or ""))
    return PersonTimeline(
        query=query,
        identities=tuple(identities.values()),
        accounts=tuple(accounts),
        events=tuple(shown),
        removals=tuple(kept),
        open_exceptions=tuple(exceptions),
    )


# --- an app ------------------------------------------------------------------------------


def count_changes(changes: Iterable[LineChange]) -> dict[str, int]:
    """How many accounts a commit added, removed and changed."""
    counts = {"new": 0, "removed": 0, "changed": 0}
    for change in changes:
        if change.before is None:
            counts["new"] += 1
        elif change.after is None:
            counts["removed"] += 1
        else:
            counts["changed"] += 1
    return counts


def app_timeline(
    app: str,
    snapshot_commits: Sequence[tuple[Commit, Mapping[str, int]]],
    plan_commits: Sequence[tuple[Commit, str]],
    journals: Sequence[Journal],
    pending: Sequence[PendingPlan],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Event, ...]:
    """Every import, plan, approval and applied action of one app, in time order.

    `snapshot_commits` are the commits that changed the app's accounts with how many
    they added, removed and changed (`count_changes`); `plan_commits` the commits that
    proposed or updated its plan, with the plan id each carried."""
    events: list[Event] = []
    for commit, counts in snapshot_commits:
        shown = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no account lines"
        kind = commit.subject.split(" ", 1)[0] if commit.subject else "commit"
        kind = kind if kind in ("import", "apply") else "edit"
        events.append(Event(commit.at, app, kind, f"{commit.subject} ({shown})", commit.sha))
    for commit, plan_id in plan_commits:
        events.append(
            Event(commit.at, app, "plan_proposed", f"{commit.subject} (plan {plan_id})", commit.sha)
        )
    for journal in journals:
        if journal.approved_at is not None:
            verified = journal.approval_verified.get("forge", "")
            events.append(
                Event(
                    journal.approved_at,
                    app,
                    "plan_approved",
                    f"plan {journal.plan} approved by {_listed(journal.approved_by)} "
                    f"({journal.approval}{f', verified by forge {verified}' if verified else ''})",
                    str(journal.approval_verified.get("merge_commit", "")),
                )
            )
        for action in journal.actions:
            if action.at is not None:
                events.append(
                    Event(
                        action.at,
                        app,
                        "applied",
                        f"{action.mode} {action.username or action.account_id}: {action.outcome}"
                        f"{f' ({action.detail})' if action.detail else ''}, plan {journal.plan}",
                        journal.commit.sha if journal.commit else "",
                        action.account_id,
                    )
                )
    for plan in pending:
        if plan.created_at is not None:
            state = "waiting for review" if plan.state == "open" else "approved, waiting for apply"
            events.append(
                Event(
                    plan.created_at,
                    app,
                    "plan_pending",
                    f"plan {plan.plan} ({plan.status}, {len(plan.account_ids)} accounts) "
                    f"{state} ({plan.where})",
                )
            )
    return tuple(sorted((e for e in events if in_range(e.at, since, until)), key=event_order))


# --- everyone who left -------------------------------------------------------------------


@dataclass(frozen=True)
class Leaver:
    """One identity an identity source first showed deprovisioned, suspended or missing."""

    source: str
    identity_id: str
    email: str
    username: str
    display_name: str
    status: str  # deprovisioned | suspended | missing
    detected_at: datetime  # the import commit's date
    detected_commit: str
    left_at: str = ""  # the source's own timestamp, as it recorded it ("" when none)


def leavers(
    changes: Iterable[LineChange], since: datetime | None, until: datetime | None
) -> list[Leaver]:
    """Every identity first shown as gone within [since, until], from identity line
    changes of any number of people (one leaver per detection, so a person who left,
    came back and left again in the period is two)."""
    by_record: dict[tuple[str, str], list[LineChange]] = {}
    for change in changes:
        if change.kind == IDENTITY:
            by_record.setdefault((change.system, change.record_id), []).append(change)
    found = []
    for (source, identity_id), mine in by_record.items():
        at_commit = {c.commit.sha: c for c in mine}
        for detection in detections(mine):
            if not in_range(detection.at, since, until):
                continue
            change = at_commit[detection.commit]
            record = change.after or change.before or {}
            left_at = detection.left_at
            found.append(
                Leaver(
                    source=source,
                    identity_id=identity_id,
                    email=str(record.get("email") or ""),
                    username=str(record.get("username") or ""),
                    display_name=str(record.get("display_name") or ""),
                    status=detection.status,
                    detected_at=detection.at,
                    detected_commit=detection.commit,
                    left_at=left_at,
                )
            )
    found.sort(key=lambda x: (x.detected_at, x.source, x.email, x.identity_id))
    return found
