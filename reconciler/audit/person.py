"""`reconciler audit person`: read one person's facts from git, then assemble the
timeline with the pure core."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from reconciler.audit.changes import snapshot_of
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


# Account fields the index of changed records names (`reconciler.changeindex`): an app
# matched on these alone is searched through the index; any other field, by pickaxe.
INDEXED_FIELDS = frozenset({"id", "email", "username"})


def _alias_variants(value: str, aliases: Mapping[str, str]) -> set[str]:
    """`value` (normalised) at each domain that `aliases` maps onto its domain."""
    local, at, domain = value.rpartition("@")
    if not at:
        return set()
    return {f"{local}@{alias}" for alias, target in aliases.items() if target == domain}


def _keys(
    identities: Iterable[Mapping[str, Any]], query: str, policies: Sequence[Policy] = ()
) -> list[str]:
    """What a line (or an index entry) of the person holds: the query and their
    identities' id, email, username and every field a match rule compares, as they are
    and normalised under each policy's domain aliases, with the aliased domains."""
    fields = {"id", "email", "username"}
    fields.update(rule.identity_field for policy in policies for rule in policy.match)
    # Each distinct set of domain aliases once (every app's policy is often the same).
    distinct = {tuple(sorted(p.domain_aliases.items())) for p in policies if p.domain_aliases}
    alias_sets: list[Mapping[str, str]] = [{}, *(dict(pairs) for pairs in sorted(distinct))]
    values = [query]
    for identity in identities:
        values += [str(identity.get(field) or "") for field in sorted(fields)]
    keys = set()
    for value in values:
        keys.add(value.strip())
        for aliases in alias_sets:
            normalised = normalise(value, aliases)
            keys.add(normalised)
            keys.update(_alias_variants(normalised, aliases))
    keys.discard("")
    return sorted(keys)


def _identity_snapshot(path: str) -> tuple[str, str] | None:
    """`snapshot_of` for identity sources' snapshots only."""
    found = snapshot_of(path)
    return found if found is not None and found[1] == IDENTITY else None


def _narrowable(policy: Policy | None) -> bool:
    """Whether the app's accounts can be found through the index of changed records:
    its match rules compare only fields the index names."""
    return policy is None or all(rule.account_field in INDEXED_FIELDS for rule in policy.match)


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
    policies = [p for app in apps if (p := _policy(settings, app))]
    if not identities:
        # Gone from every source's snapshot: their lines in history, through the index.
        query_keys = _keys((), query, policies)
        found = repo.chosen_line_changes(query_keys, _identity_snapshot)
        for change in found:
            record = change.after or change.before or {}
            if identity_matches(record, query, all_aliases):
                identities[(change.system, change.record_id)] = dict(record)

    # 2. Every snapshot line that can be theirs: the records the index of changed
    # records names with one of their keys (and every commit with no index), read whole.
    keys = _keys(identities.values(), query, policies)
    present = set(repo.files("state/apps"))
    fallback = []
    sharded = set()
    for app in apps:
        single = f"state/apps/{app}/accounts.yaml"
        if _narrowable(_policy(settings, app)):
            continue
        if single in present or not any(
            p.startswith(f"state/apps/{app}/accounts/") for p in present
        ):
            fallback.append(single)
        else:
            sharded.add(app)
    if sharded:
        # A big app matched on another field is searched by pickaxe: follow only the
        # shards holding the person at HEAD rather than diffing all 256 shards every day.
        for name in repo.grep(
            keys, *(f"state/apps/{a}/accounts" for a in sharded), names_only=True
        ):
            fallback.append(name.split(":", 1)[1])
    changes = repo.chosen_line_changes(keys, fallback=fallback)

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
    account_apps = sorted({c.system for c in mine if c.kind == ACCOUNT})
    journals = repo.journals(*account_apps, keys=account_ids) if account_ids else []
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
