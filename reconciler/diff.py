"""Keyed diff of two account snapshots (DESIGN §5).

Added and removed ids come from set differences; only records whose canonical form
changed are compared field by field. A whole-snapshot deep diff is tens of times
slower at 100k accounts and pairs records wrongly when lists reorder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.model import Account

SCALAR_FIELDS = ("username", "email", "display_name", "status", "type")


@dataclass(frozen=True)
class AccountChange:
    """One account present in both snapshots whose record differs."""

    old: Account
    new: Account

    @property
    def fields(self) -> tuple[str, ...]:
        changed = [f for f in SCALAR_FIELDS if getattr(self.old, f) != getattr(self.new, f)]
        changed += [
            f for f in ("roles", "entitlements") if getattr(self.old, f) != getattr(self.new, f)
        ]
        return tuple(changed)

    @property
    def roles_added(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.new.roles) - set(self.old.roles)))

    @property
    def roles_removed(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.old.roles) - set(self.new.roles)))

    @property
    def entitlements_added(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.new.entitlements) - set(self.old.entitlements)))

    @property
    def entitlements_removed(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.old.entitlements) - set(self.new.entitlements)))


@dataclass(frozen=True)
class AccountDiff:
    added: tuple[Account, ...] = ()
    removed: tuple[Account, ...] = ()
    changed: tuple[AccountChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    @property
    def role_changes(self) -> tuple[AccountChange, ...]:
        return tuple(c for c in self.changed if {"roles", "entitlements"} & set(c.fields))


def diff_accounts(old: Mapping[str, Account], new: Mapping[str, Account]) -> AccountDiff:
    """What changed from `old` to `new`, both keyed by account id.

    When both sides carry their records' canonical lines (`snapshot.Records`), equal
    lines prove equal records, so only the records whose line differs are decoded.
    """
    old_lines: Mapping[str, bytes] | None = getattr(old, "lines", None)
    new_lines: Mapping[str, bytes] | None = getattr(new, "lines", None)
    if old_lines is not None and new_lines is not None:
        old_ids, new_ids = set(old_lines), set(new_lines)
        suspects = [i for i in old_ids & new_ids if old_lines[i] != new_lines[i]]
    else:
        old_ids, new_ids = set(old), set(new)
        suspects = list(old_ids & new_ids)
    added = tuple(new[i] for i in sorted(new_ids - old_ids))
    removed = tuple(old[i] for i in sorted(old_ids - new_ids))
    changed = tuple(AccountChange(old[i], new[i]) for i in sorted(suspects) if old[i] != new[i])
    return AccountDiff(added=added, removed=removed, changed=changed)
