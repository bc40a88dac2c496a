"""`reconciler diff`: accounts (or identities) added, removed and changed between two
points of the access repo's history, field by field, with no pulling."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, assert_never

from reconciler import revisions, snapshot
from reconciler.commands import EXIT_OK, SCHEMA_VERSION
from reconciler.config import CONFIG_FILE
from reconciler.diff import RecordChange, RecordDiff, describe, diff_records
from reconciler.errors import ConfigError, ReconcilerError, SnapshotError
from reconciler.git import Git
from reconciler.inert import terminal
from reconciler.markdown import Markdown, code, escape
from reconciler.output import OutputFormat, emit, emit_json
from reconciler.revisions import Revision
from reconciler.settings import load_settings

# The names reconciler.yaml allows for apps and identity sources; anything else could
# reach outside state/ when it becomes a path.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class DiffOptions:
    repo: Path
    app: str | None
    identities: str | None
    from_rev: str
    to_rev: str = "HEAD"
    format: OutputFormat = OutputFormat.TEXT


@dataclass(frozen=True)
class SnapshotDiff:
    """The diff of one snapshot between two revisions."""

    kind: str  # "app" or "identities"
    name: str
    old: Revision
    new: Revision
    diff: RecordDiff[Any]


@dataclass(frozen=True)
class _Kind:
    key: str  # the JSON key naming the snapshot, and the word in messages
    noun: str
    folder: str  # under state/
    files: Callable[[Git, Revision, str], dict[str, str]]
    reader: Callable[[Path, str], snapshot.Records[Any] | None]


APP = _Kind("app", "account", "apps", revisions.account_files, snapshot.read_accounts)
IDENTITIES = _Kind(
    "identities",
    "identity",
    "identities",
    revisions.identity_files,
    snapshot.read_identities,
)


def diff(options: DiffOptions) -> int:
    result = compute(options)
    match options.format:
        case OutputFormat.TEXT:
            emit(render_text(result))
        case OutputFormat.MARKDOWN:
            emit(render_markdown(result))
        case OutputFormat.JSON:
            emit_json(to_data(result))
        case _:
            assert_never(options.format)
    return EXIT_OK


def compute(options: DiffOptions) -> SnapshotDiff:
    if (options.app is None) == (options.identities is None):
        raise ConfigError("give either --app APP or --identities SOURCE")
    kind, name = (APP, options.app) if options.app is not None else (IDENTITIES, options.identities)
    assert name is not None
    if not NAME.fullmatch(name):
        raise ConfigError(f"{kind.key} name {name!r} must match {NAME.pattern}")
    git = Git.open(options.repo)
    main_branch = _main_branch(git)
    old = revisions.resolve(git, options.from_rev, main_branch)
    new = revisions.resolve(git, options.to_rev, main_branch)
    old_files = kind.files(git, old, name)
    new_files = kind.files(git, new, name)
    if not old_files and not new_files:
        known = revisions.names(git, new, kind.folder)
        raise ConfigError(
            f"unknown {kind.key} {name!r}: no snapshot of it at {old.spec} or {new.spec}; "
            f"snapshots at {new.spec}: {', '.join(known) or 'none'}"
        )
    for rev, found in ((old, old_files), (new, new_files)):
        if not found:
            raise ConfigError(
                f"{kind.key} {name!r} has no snapshot at {rev.spec} ({rev.short}, {rev.date}); "
                "give a revision at or after its first import"
            )
    old_files, new_files = _changed_files(old_files, new_files)
    if not old_files:
        return SnapshotDiff(kind.key, name, old, new, RecordDiff())
    reader = partial(_read, reader=kind.reader, name=name)
    before = revisions.read(git, old, old_files, reader)
    after = revisions.read(git, new, new_files, reader)
    try:
        # Records are decoded here, after their temporary copies are gone.
        changes = diff_records(before, after)
    except SnapshotError as exc:
        raise revisions.located(exc) from exc
    return SnapshotDiff(kind.key, name, old, new, changes)


def _read(
    root: Path, *, reader: Callable[[Path, str], snapshot.Records[Any] | None], name: str
) -> Mapping[str, Any]:
    return reader(root, name) or {}


def _changed_files(
    old: dict[str, str], new: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Only the files whose content differs, when both sides are laid out alike.

    An account's shard follows from its id, so an unchanged shard holds the same ids,
    unchanged, on both sides: skipping it leaves the diff as it is.
    """
    if old.keys() != new.keys():
        return old, new
    differ = {path for path in old if old[path] != new[path]}
    return (
        {p: b for p, b in old.items() if p in differ},
        {p: b for p, b in new.items() if p in differ},
    )


def _main_branch(git: Git) -> str:
    # A date is read on the main branch reconciler.yaml names. History is readable even
    # when today's configuration is broken, so a problem there falls back to "main".
    if not (git.root / CONFIG_FILE).exists():
        return "main"
    try:
        return load_settings(git.root).config.main_branch
    except ReconcilerError:
        return "main"


# --- output -----------------------------------------------------------------------------


def _label(record: Any, show: Callable[[object], str]) -> str:
    name = record.username or record.email
    return f"{show(name)} ({show(record.id)})" if name else show(record.id)


def _summary(result: SnapshotDiff) -> str:
    diff = result.diff
    counts = [(len(diff.added), "added"), (len(diff.removed), "removed")]
    counts.append((len(diff.changed), "changed"))
    return ", ".join(f"{n} {word}" for n, word in counts if n) or "no changes"


def _revision_text(rev: Revision) -> str:
    return f"{terminal(rev.spec, max_length=100)} ({rev.short}, {rev.date})"


def _change_text(change: RecordChange[Any]) -> str:
    return "; ".join(describe(change.details, terminal))


def render_text(result: SnapshotDiff) -> str:
    diff = result.diff
    lines = [
        f"{result.kind} {result.name}: {_revision_text(result.old)} → "
        f"{_revision_text(result.new)}: {_summary(result)}"
    ]
    if diff.added:
        lines.append("added:")
        lines += [f"  + {_label(r, terminal)}" for r in diff.added]
    if diff.removed:
        lines.append("removed:")
        lines += [f"  - {_label(r, terminal)}" for r in diff.removed]
    if diff.changed:
        lines.append("changed:")
        lines += [f"  ~ {_label(c.new, terminal)}: {_change_text(c)}" for c in diff.changed]
    return "\n".join(lines)


def _md(value: object) -> str:
    return escape(value)


def _revision_md(rev: Revision) -> Markdown:
    return Markdown(f"{code(rev.spec)} ({code(rev.short)}, {escape(rev.date)})")


def render_markdown(result: SnapshotDiff) -> str:
    diff = result.diff
    lines = [
        f"# {escape(result.kind)} {escape(result.name)}: {_revision_md(result.old)} → "
        f"{_revision_md(result.new)}",
        "",
        _summary(result).capitalize() + ".",
    ]
    for title, records in (("Added", diff.added), ("Removed", diff.removed)):
        if records:
            lines += ["", f"## {title} ({len(records)})", "", "| id | username | email |"]
            lines.append("|---|---|---|")
            lines += [
                f"| {escape(r.id)} | {escape(r.username)} | {escape(r.email)} |" for r in records
            ]
    if diff.changed:
        lines += ["", f"## Changed ({len(diff.changed)})", "", "| id | username | changes |"]
        lines.append("|---|---|---|")
        for change in diff.changed:
            # U+2212 MINUS SIGN: a "-" could read as a list marker.
            phrases = describe(change.details, _md, minus="\u2212")
            lines.append(
                f"| {escape(change.new.id)} | {escape(change.new.username)} "
                f"| {'; '.join(phrases)} |"
            )
    return "\n".join(lines)


def to_data(result: SnapshotDiff) -> dict[str, Any]:
    diff = result.diff
    return {
        "schema_version": SCHEMA_VERSION,
        result.kind: result.name,
        "from": result.old.to_data(),
        "to": result.new.to_data(),
        "counts": {
            "added": len(diff.added),
            "removed": len(diff.removed),
            "changed": len(diff.changed),
        },
        "added": [r.to_record() for r in diff.added],
        "removed": [r.to_record() for r in diff.removed],
        "changed": [
            {
                "id": c.new.id,
                "username": c.new.username,
                "changes": [f.to_data() for f in c.details],
            }
            for c in diff.changed
        ],
    }
