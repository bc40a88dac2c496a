"""The message of an identity import's commit: what changed in a line, then the index
of every identity whose line changed (`reconciler.changeindex`), which the audit reads.

Pure: no files, no git.
"""

from __future__ import annotations

from typing import Any

import orjson

from reconciler import changeindex
from reconciler.model import Identity
from reconciler.snapshot import Records


def identity_summary(source: str, old: Records[Identity], new: Records[Identity]) -> str:
    """The first line: how many identities are new, changed status (by the status they
    changed to), were updated otherwise, or dropped."""
    counts: dict[str, int] = {}
    for identity_id, line in new.lines.items():
        before_line = old.lines.get(identity_id)
        if before_line == line:
            continue
        identity = new[identity_id]
        if before_line is None:
            key = "new"
        elif old[identity_id].status != identity.status:
            key = identity.status
        else:
            key = "updated"
        counts[key] = counts.get(key, 0) + 1
    removed = len(old.keys() - new.keys())
    if removed:
        counts["dropped"] = removed
    parts = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no changes"
    return f"import identities {source}: {parts}"


def identity_import_message(source: str, old: Records[Identity], new: Records[Identity]) -> str:
    """The identity import's commit message: `identity_summary`, then the index of every
    identity whose line changed (`reconciler.changeindex`)."""
    return changeindex.with_index(identity_summary(source, old, new), identity_index(old, new))


def identity_index(old: Records[Identity], new: Records[Identity]) -> str:
    """The index paragraph of every identity whose line changed, both versions."""
    pairs: list[changeindex.Pair] = []
    for identity_id in old.keys() | new.keys():
        before, after = old.lines.get(identity_id), new.lines.get(identity_id)
        if before == after:
            continue
        # Decoded as `audit` reads lines: a line rewritten with the same record is no
        # change of that record.
        was = _as_read(old, identity_id) if before is not None else None
        now = _as_read(new, identity_id) if after is not None else None
        if was != now:
            pairs.append((was, now))
    return changeindex.of_changes(pairs)


def _as_read(records: Records[Identity], identity_id: str) -> dict[str, Any]:
    """The record as `audit` reads its line (the JSON after `- `)."""
    try:
        value = orjson.loads(records.lines[identity_id][2:])
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else records[identity_id].to_record()
