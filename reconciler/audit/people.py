"""Many people's timelines from one read of the history, for the evidence pack.

`audit person` reads one person's lines; a year's evidence pack needs every leaver's,
tens of thousands of them. Reading the history once serves them all: the identity
sources' and every app's index of changed records (messages, not diffs; commits
without an index are diffed), every journal once, the pending plans once. Each person's
lines are then picked the way `audit person` picks them (their identity, and the
accounts the app's match rules link to it) and the same pure core builds the timeline.

The index holds each version's id, email, username and status: what detection,
removal and exceptions are decided on. Apps matched on another field cannot be read
this way; for them `audit person` runs per person.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from reconciler.audit.changes import snapshot_of
from reconciler.audit.person import (
    IDENTITIES,
    UnknownPerson,
    _keys,
    _narrowable,
    _policy,
    account_matches,
    audit_person,
)
from reconciler.audit.repository import AuditRepository
from reconciler.audit.timeline import (
    ACCOUNT,
    IDENTITY,
    Journal,
    Leaver,
    LineChange,
    PersonTimeline,
    leavers,
    left_at_of,
    person_timeline,
)
from reconciler.changeindex import tokens_of
from reconciler.config import Settings
from reconciler.correlate import normalise


def identity_history(repo: AuditRepository) -> list[LineChange]:
    """Every identity source's line changes, from their index of changed records: read
    once for a pack, by `period_leavers` and `timelines`."""
    return repo.indexed_changes([IDENTITIES])


def period_leavers(
    repo: AuditRepository, identity_changes: Sequence[LineChange], since: datetime, until: datetime
) -> list[Leaver]:
    """Everyone first shown gone within [since, until] in `identity_changes`; their name
    and the source's own time of leaving (which the index does not hold) from the
    identity snapshots at the repository's revision."""
    found = leavers(identity_changes, since, until)
    missing = {(p.source, p.identity_id) for p in found if not p.display_name}
    if not missing:
        return found
    records: dict[tuple[str, str], Mapping[str, Any]] = {}
    for path in repo.files(IDENTITIES):
        where = snapshot_of(path)
        raw = repo.show(repo.rev, path) if where is not None else None
        for line in (raw or b"").split(b"\n"):
            if not line.startswith(b"- {"):
                continue
            try:
                record = orjson.loads(line[2:])
            except orjson.JSONDecodeError:
                continue
            key = (where[0], str(record.get("id"))) if where and isinstance(record, dict) else None
            if key in missing:
                records[key] = record
    return [
        replace(
            p,
            display_name=str(record.get("display_name") or ""),
            left_at=p.left_at or left_at_of(record),
        )
        if (record := records.get((p.source, p.identity_id))) is not None
        else p
        for p in found
    ]


def timelines(
    repo: AuditRepository,
    settings: Settings,
    people: Sequence[Leaver],
    identity_changes: Sequence[LineChange],
    *,
    now: datetime,
    journals: Callable[[], Sequence[Journal]] | None = None,
) -> list[tuple[Leaver, PersonTimeline]]:
    """Each leaver's timeline, as `audit person` would give it, from one read.
    `journals` gives every journal (`repo.journals` when None: a caller that started
    reading them earlier passes what collects them)."""
    apps = sorted(settings.config.apps)
    policies = {app: p for app in apps if (p := _policy(settings, app))}
    if not all(_narrowable(policies.get(app)) for app in apps):
        return [(leaver, _one(repo, settings, leaver, now)) for leaver in people]

    identity_lines: dict[tuple[str, str], list[LineChange]] = defaultdict(list)
    wanted = {(p.source, p.identity_id) for p in people}
    for change in identity_changes:
        if (change.system, change.record_id) in wanted:
            identity_lines[(change.system, change.record_id)].append(change)

    # Every key a leaver's accounts can carry, and whose they are.
    keys_of: dict[tuple[str, str], list[str]] = {}
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for leaver in people:
        who = (leaver.source, leaver.identity_id)
        record = _latest(identity_lines.get(who, ()), leaver)
        keys = _keys([record], leaver.identity_id, list(policies.values()))
        keys_of[who] = keys
        for key in keys:
            owners[key].add(who)

    named = tokens_of(owners)

    def theirs(tokens: Sequence[str]) -> bool:  # a leaver's email or username
        return tokens[2] in named or tokens[3] in named

    paths = [
        p for app in apps for p in (f"state/apps/{app}/accounts.yaml", f"state/apps/{app}/accounts")
    ]
    candidates: dict[tuple[str, str], list[LineChange]] = defaultdict(list)
    for change in repo.indexed_changes(paths, keep=theirs):
        seen: set[tuple[str, str]] = set()
        for version in (change.before, change.after):
            for field in ("email", "username"):
                value = normalise(str((version or {}).get(field) or ""), {})
                for who in owners.get(value, ()):
                    if who not in seen:
                        seen.add(who)
                        candidates[who].append(change)

    journals_by_account: dict[tuple[str, str], list[Journal]] = defaultdict(list)
    for journal in (journals or repo.journals)():
        for action in journal.actions:
            journals_by_account[(journal.app, action.account_id)].append(journal)
    pending = repo.pending_plans()
    sources = {app: p.identity_source for app, p in policies.items()}
    deadlines: dict[str, timedelta | None] = {app: p.deadline for app, p in policies.items()}

    found = []
    for leaver in people:
        who = (leaver.source, leaver.identity_id)
        identity = identity_lines.get(who, [])
        record = _latest(identity, leaver)
        mine: list[LineChange] = list(identity)
        for change in candidates.get(who, ()):
            if change.kind != ACCOUNT or sources.get(change.system) != leaver.source:
                continue
            policy = policies.get(change.system)
            if account_matches(change.before or {}, [record], policy, "") or account_matches(
                change.after or {}, [record], policy, ""
            ):
                mine.append(change)
        mine.sort(key=lambda c: c.commit.at)  # stable: each list is in commit order
        accounts = {(c.system, c.record_id) for c in mine if c.kind == ACCOUNT}
        theirs_applied = {
            id(j): j for key in sorted(accounts) for j in journals_by_account.get(key, ())
        }
        timeline = person_timeline(
            leaver.identity_id,
            [c for c in mine if c.kind in (IDENTITY, ACCOUNT)],
            list(theirs_applied.values()),
            pending,
            sources=sources,
            deadlines=deadlines,
            now=now,
            with_events=False,
        )
        found.append((leaver, timeline))
    return found


def _latest(changes: Sequence[LineChange], leaver: Leaver) -> Mapping[str, Any]:
    """The identity's record as its last change left it (the leaver's own fields when
    none was read)."""
    for change in reversed(changes):
        if change.after is not None:
            return change.after
    return {"id": leaver.identity_id, "email": leaver.email, "username": leaver.username}


def _one(
    repo: AuditRepository, settings: Settings, leaver: Leaver, now: datetime
) -> PersonTimeline:
    try:
        return audit_person(repo, settings, leaver.identity_id, now=now)
    except UnknownPerson:
        return PersonTimeline(leaver.identity_id, (), (), (), (), ())
