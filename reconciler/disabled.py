"""Since when accounts that reconciler disabled have stayed disabled (graded removal,
`deprovision.delete_after`): the accounts its applies disabled, as the journals under
`history/<app>/` record them, and the commit that began each one's current disabled
state in the history of the app's snapshot.

An I/O edge, like `gone`: everything is read from git at one revision, so that a check
and apply's rebuild of its plan at the plan's base commit judge it alike.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from reconciler import changeindex, yamlio
from reconciler.audit import indexed
from reconciler.audit.changes import indexed_changes
from reconciler.audit.timeline import ACCOUNT
from reconciler.errors import YamlError
from reconciler.git import Git, batch_contents
from reconciler.history import HISTORY_DIR

DISABLED = "disabled"


def disabled_since(
    git: Git, app: str, account_ids: Collection[str], rev: str = "HEAD"
) -> dict[str, datetime]:
    """For each of `account_ids` that an apply of reconciler disabled and that has stayed
    disabled since, by account id: the time of the snapshot commit that began its
    current disabled state, in the history up to `rev`. An account enabled again in the
    app and disabled by hand later counts from then; one that reconciler never disabled,
    or that the history does not show disabled, is left out (nothing proves how long)."""
    ours = disabled_by_reconciler(git, app, rev) & set(account_ids)
    if not ours:
        return {}

    def run(*args: str, stdin: bytes | None = None) -> bytes:
        return git.run_bytes(*args, input=stdin)

    keys = [changeindex.search_text(i) for i in ours]
    keep = indexed.naming(changeindex.tokens_of(ours))
    changes = indexed_changes(run, [f"state/apps/{app}"], keys, rev, keep)
    since: dict[str, datetime] = {}
    for change in changes:
        if change.kind != ACCOUNT or change.system != app or change.record_id not in ours:
            continue
        if _status(change.after) != DISABLED:
            since.pop(change.record_id, None)
        elif _status(change.before) != DISABLED:
            since[change.record_id] = change.commit.at
    return since


def disabled_by_reconciler(git: Git, app: str, rev: str = "HEAD") -> set[str]:
    """The ids of the accounts of `app` that journals at `rev` record as disabled by an
    apply (outcome `done`, mode `disable`). A journal that cannot be read proves nothing
    and is passed over: `audit verify` is what names it."""
    paths = [p for p in git.ls_tree(rev, f"{HISTORY_DIR}/{app}") if p.endswith(".yaml")]
    if not paths:
        return set()
    out = git.run_bytes(
        "cat-file", "--batch", input="".join(f"{rev}:{p}\n" for p in paths).encode()
    )
    found: set[str] = set()
    for path, blob in batch_contents(out, paths).items():
        try:
            data = yamlio.load_bytes(blob, path)
        except YamlError:
            continue
        actions = data.get("actions") if isinstance(data, Mapping) else None
        for entry in actions if isinstance(actions, list) else ():
            if not isinstance(entry, Mapping):
                continue
            account = entry.get("account")
            if (
                entry.get("outcome") == "done"
                and entry.get("mode") == "disable"
                and isinstance(account, Mapping)
            ):
                found.add(str(account.get("id", "")))
    found.discard("")
    return found


def _status(record: Mapping[str, Any] | None) -> object:
    return record.get("status") if record is not None else None
