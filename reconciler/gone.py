"""Since when people have been gone from an identity source: the import commit that
first showed each one deprovisioned, suspended or missing, read from the history of the
source's snapshot with the audit's own rule (what `audit` calls detection).

Read from the messages that name these identities (the index of changed records), so a
long history costs what those commits say.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from reconciler import changeindex, snapshot
from reconciler.audit import indexed
from reconciler.audit.changes import indexed_changes
from reconciler.audit.timeline import gone_since as detections
from reconciler.git import Git


def gone_since(
    git: Git, source: str, identity_ids: Collection[str], rev: str = "HEAD"
) -> dict[str, datetime]:
    """Since when each of `identity_ids` has been gone from `source` in the history up
    to `rev`, by identity id; an identity that is not gone there is left out."""
    if not identity_ids:
        return {}

    def run(*args: str, stdin: bytes | None = None) -> bytes:
        return git.run_bytes(*args, input=stdin)

    keys = [changeindex.search_text(i) for i in identity_ids]
    path = snapshot.identity_paths(source)[0]
    # Only these identities' entries are decoded: a first import names everyone.
    keep = indexed.naming(changeindex.tokens_of(identity_ids))
    changes = indexed_changes(run, [path], keys, rev, keep)
    found = detections(c for c in changes if c.record_id in identity_ids)
    return {identity_id: detection.at for identity_id, detection in found.items()}
