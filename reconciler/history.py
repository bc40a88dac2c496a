"""The per-plan journal in `history/<app>/<date>-<plan-id>.yaml` (DESIGN §9).

Every outcome is written as it happens, before the next action starts, so that a
crash or a rerun resumes where it stopped and never acts on an account twice.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler import yamlio
from reconciler.errors import PlanError
from reconciler.plan import RETURNED, ROLE_NOT_ALLOWED

FINAL = frozenset({"done", "skipped"})
HEADER = "written by reconciler apply; one entry per action, appended as it happens"
# Where journals live in an access repo: history/<app>/<date>-<plan-id>-<approval>.yaml
HISTORY_DIR = "history"


@dataclass(frozen=True)
class Entry:
    account_id: str
    username: str
    email: str
    mode: str
    reason: str
    outcome: str  # pending | done | skipped | failed | manual_pending
    detail: str = ""
    at: str = ""

    def to_data(self) -> dict[str, Any]:
        return {
            "account": {"id": self.account_id, "username": self.username, "email": self.email},
            "mode": self.mode,
            "reason": self.reason,
            "outcome": self.outcome,
            "detail": self.detail,
            "at": self.at,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Entry:
        account = data["account"]
        return cls(
            account_id=str(account["id"]),
            username=account.get("username", ""),
            email=account.get("email", ""),
            mode=data["mode"],
            reason=data["reason"],
            outcome=data["outcome"],
            detail=data.get("detail", ""),
            at=data.get("at", ""),
        )


class Journal:
    """The history file of one approval of one plan, safe to update from several worker
    threads.

    A journal belongs to the approval (the commit that brought the plan to main), not to
    the plan id: a rerun of the same approval resumes it, while a later approval of an
    identical plan starts a journal of its own and replays nothing.
    """

    def __init__(self, path: Path, header: Mapping[str, Any], entries: Sequence[Entry]) -> None:
        self.path = path
        self.header = dict(header)
        self.entries = {e.account_id: e for e in entries}
        self.lock = threading.Lock()

    @staticmethod
    def name(date: str, plan_id: str, approval_commit: str) -> str:
        return f"{date}-{plan_id}-{approval_commit[:12]}.yaml"

    @classmethod
    def open(
        cls,
        directory: Path,
        date: str,
        plan_id: str,
        approval_commit: str,
        header: Mapping[str, Any],
    ) -> Journal:
        """The journal of this approval, resumed if a run already started it."""
        existing = sorted(directory.glob(f"*-{plan_id}-{approval_commit[:12]}.yaml"))
        if not existing:
            path = directory / cls.name(date, plan_id, approval_commit)
            return cls(path, {**header, "approval_commit": approval_commit}, [])
        path = existing[0]
        data = yamlio.load(path)
        if not isinstance(data, dict) or data.get("approval_commit") != approval_commit:
            raise PlanError(
                f"{path}: not the journal of approval {approval_commit[:10]}; {_restore(path)}"
            )
        entries = entries_of(path, data)
        merged = {**header, **{k: v for k, v in data.items() if k != "actions"}}
        return cls(path, merged, entries)

    def get(self, account_id: str) -> Entry | None:
        return self.entries.get(account_id)

    def record(self, entry: Entry) -> None:
        with self.lock:
            self.entries[entry.account_id] = entry
            self._write()

    def note_run(self, by: str, at: str) -> None:
        """Record who ran (or resumed) the apply, and when."""
        with self.lock:
            runs = list(self.header.get("runs") or ())
            runs.append({"by": by, "at": at})
            self.header["runs"] = runs
            self._write()

    def finish(self, at: str) -> None:
        with self.lock:
            self.header["finished_at"] = at
            self._write()

    def _write(self) -> None:
        data = {**self.header, "actions": [e.to_data() for e in self.entries.values()]}
        yamlio.write(self.path, data, header=HEADER)

    def mark(self, account_id: str, outcome: str, detail: str, at: str) -> Entry:
        entry = replace(self.entries[account_id], outcome=outcome, detail=detail, at=at)
        self.record(entry)
        return entry


def _restore(path: Path) -> str:
    return f"restore it with `git checkout -- {path}`"


def entries_of(path: Path, data: Mapping[str, Any]) -> list[Entry]:
    """The action entries of the journal at `path`, read as `data`."""
    try:
        return [Entry.from_data(e) for e in data.get("actions") or ()]
    except (KeyError, TypeError, AttributeError) as exc:
        raise PlanError(f"{path}: an action entry is malformed ({exc}); {_restore(path)}") from exc


def journal_paths(root: Path, app: str, plan_id: str = "") -> list[Path]:
    """The journals of `app` in the access repo at `root` (of one plan when `plan_id`
    is given), in name order: by date."""
    pattern = f"*-{plan_id}-*.yaml" if plan_id else "*.yaml"
    return sorted((root / HISTORY_DIR / app).glob(pattern))


def read_entries(path: Path) -> list[Entry]:
    """The action entries of one journal file."""
    data = yamlio.load(path)
    if not isinstance(data, Mapping):
        raise PlanError(f"{path}: not a journal of reconciler apply; {_restore(path)}")
    return entries_of(path, data)


def done_accounts(root: Path, app: str, plan_id: str = "") -> frozenset[str]:
    """The ids of the accounts of `app` that applied plans (or one plan) removed: their
    journal entry's outcome is `done` (disabled, deleted, or removed by hand); an
    account whose roles were taken, or that was enabled again, is not one."""
    return frozenset(
        entry.account_id
        for path in journal_paths(root, app, plan_id)
        for entry in read_entries(path)
        if entry.outcome == "done" and entry.reason not in (ROLE_NOT_ALLOWED, RETURNED)
    )
