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

FINAL = frozenset({"done", "skipped"})
HEADER = "written by reconciler apply; one entry per action, appended as it happens"


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
    """The history file of one plan, safe to update from several worker threads."""

    def __init__(self, path: Path, header: Mapping[str, Any], entries: Sequence[Entry]) -> None:
        self.path = path
        self.header = dict(header)
        self.entries = {e.account_id: e for e in entries}
        self.lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path, date: str, plan_id: str, header: Mapping[str, Any]) -> Journal:
        existing = sorted(directory.glob(f"*-{plan_id}.yaml"))
        if existing:
            data = yamlio.load(existing[0])
            entries = [Entry.from_data(e) for e in data.get("actions") or ()]
            merged = {**header, **{k: v for k, v in data.items() if k != "actions"}}
            return cls(existing[0], merged, entries)
        return cls(directory / f"{date}-{plan_id}.yaml", header, [])

    def get(self, account_id: str) -> Entry | None:
        return self.entries.get(account_id)

    def record(self, entry: Entry) -> None:
        with self.lock:
            self.entries[entry.account_id] = entry
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
