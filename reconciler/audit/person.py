"""`reconciler audit person`: read one person's facts from git, then assemble the
timeline with the pure core."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from reconciler.audit.repository import AuditRepository
from reconciler.audit.timeline import ACCOUNT, IDENTITY, LineChange, PersonTimeline, person_timeline
from reconciler.config import Policy, Settings
from reconciler.correlate import normalise
from reconciler.errors import ReconcilerError

IDENTITIES = "state/identities"


class UnknownPerson(ReconcilerError):
    """Nobody in the access repo's history has that email, username or id."""


def identity_matches(record: Mapping[str, Any], query: str, aliases: Mapping[str, str]) -> bool:
    """Whether an identity record is the person asked for: by id, or by email or
    username normalised as correlation does."""
    if record.get("id") == query.strip():
        return True
    wanted = normalise(query, aliases)
    return any(
        normalise(str(record.get(key) or ""), aliases) == wanted for key in ("email", "username")
    )


def account_matches(
    record: Mapping[str, Any],
    identities: Sequence[Mapping[str, Any]],
    policy: Policy | None,
    query: str,
) -> bool:
    """Whether an account belongs to the person: linked to one of their identities by the
    app's match rules, or (for a person no identity source knows) named by the query."""
    aliases = policy.domain_aliases if policy else {}
    if not identities:
        return identity_matches(record, query, aliases)
    rules = policy.match if policy else ()
    for identity in identities:
        for rule in rules:
            mine = normalise(str(identity.get(rule.identity_field) or ""), aliases)
            theirs = normalise(str(record.get(rule.account_field) or ""), aliases)
            if mine and mine == theirs:
                return True
    return False


def _policy(settings: Settings, app: str) -> Policy | None:
    try:
        return settings.policy_for(app)
    except ReconcilerError:
        return None


def _keys(identities: Iterable[Mapping[str, Any]], query: str) -> list[str]:
    keys = {query.strip()}
    for identity in identities:
        for field in ("id", "email", "username"):
            value = str(identity.get(field) or "").strip()
            if value:
                keys.add(value)
    return sorted(keys)


def audit_person(
    repo: AuditRepository,
    settings: Settings,
    query: str,
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> PersonTimeline:
    apps = sorted(settings.config.apps)
    sources = {app: p.identity_source for app in apps if (p := _policy(settings, app))}
    all_aliases: dict[str, str] = {}
    for policy in settings.policies:
        all_aliases.update(policy.domain_aliases)

    # 1. The person's identities: at HEAD first (cheap), in history otherwise.
    identities: dict[tuple[str, str], dict[str, Any]] = {}
    for hit in repo.grep([query.strip()], IDENTITIES):
        _, path, line = hit.split(":", 2)
        if not line.startswith("- {") or path.endswith(".meta.yaml"):
            continue
        record = orjson.loads(line[2:])
        if isinstance(record, dict) and identity_matches(record, query, all_aliases):
            source = path.rsplit("/", 1)[-1].removesuffix(".yaml")
            identities[(source, str(record["id"]))] = record
    if not identities:
        for change in repo.line_changes([query.strip()], [IDENTITIES]):
            record = change.after or change.before or {}
            if identity_matches(record, query, all_aliases):
                identities[(change.system, change.record_id)] = dict(record)

    # 2. Every snapshot line that can be theirs, in one pickaxe pass.
    keys = _keys(identities.values(), query)
    present = set(repo.files("state/apps"))
    paths = [IDENTITIES]
    sharded = set()
    for app in apps:
        single = f"state/apps/{app}/accounts.yaml"
        if single in present or not any(
            p.startswith(f"state/apps/{app}/accounts/") for p in present
        ):
            paths.append(single)
        else:
            sharded.add(app)
    if sharded:
        # A big app's accounts are sharded by id: follow only the shards holding the
        # person at HEAD rather than diffing all 256 shards every day.
        for name in repo.grep(
            keys, *(f"state/apps/{a}/accounts" for a in sharded), names_only=True
        ):
            paths.append(name.split(":", 1)[1])
    changes = repo.line_changes(keys, paths)

    # 3. Keep the person's lines only, linked the way correlation links them.
    ids = {identity_id for _, identity_id in identities}
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for (source, _), record in identities.items():
        by_source.setdefault(source, []).append(record)
    mine: list[LineChange] = []
    for change in changes:
        record = change.after or change.before or {}
        if change.kind == IDENTITY:
            if change.record_id in ids or (
                not ids and identity_matches(record, query, all_aliases)
            ):
                mine.append(change)
            continue
        assert change.kind == ACCOUNT
        governing = _policy(settings, change.system)
        theirs = by_source.get(sources.get(change.system, ""), [])
        before, after = change.before or {}, change.after or {}
        if account_matches(before, theirs, governing, query) or account_matches(
            after, theirs, governing, query
        ):
            mine.append(change)
    if not mine:
        raise UnknownPerson(
            f"nobody with the email, username or id {query!r} appears in the snapshots' "
            "history; check the spelling, or run `reconciler check` if they were added "
            "since the last check"
        )

    account_ids = sorted({c.record_id for c in mine if c.kind == ACCOUNT})
    journals = repo.journals(keys=account_ids) if account_ids else []
    pending = repo.pending_plans()
    deadlines: dict[str, timedelta | None] = {
        app: p.deadline for app in apps if (p := _policy(settings, app))
    }
    return person_timeline(
        query,
        mine,
        journals,
        pending,
        sources=sources,
        deadlines=deadlines,
        now=now,
        since=since,
        until=until,
    )
