"""Keyed diff of two snapshots of accounts or identities (DESIGN §5).

Added and removed ids come from set differences; only records whose canonical form
changed are compared, and only those pairs go through DeepDiff for their field-level
detail (`field_changes`). A whole-snapshot deep diff is tens of times slower at 100k
accounts and pairs records wrongly when lists reorder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from reconciler.model import Account

SCALAR_FIELDS = ("username", "email", "display_name", "status", "type")
# Fields holding sorted, distinct names: compared as sets, reported as added / removed.
LIST_FIELDS = frozenset({"roles", "entitlements", "groups"})


class KeyedRecord(Protocol):
    """An account or an identity: an id and its snapshot record."""

    @property
    def id(self) -> str: ...

    def to_record(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=KeyedRecord)


@dataclass(frozen=True)
class FieldChange:
    """How one field of a record changed: a value from → to, or names added / removed."""

    field: str
    old: object = None
    new: object = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def is_list(self) -> bool:
        return bool(self.added or self.removed)

    def to_data(self) -> dict[str, object]:
        if self.is_list:
            return {"field": self.field, "added": list(self.added), "removed": list(self.removed)}
        return {"field": self.field, "from": self.old, "to": self.new}


_ABSENT = object()


def _comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    # Lists of names are sets in meaning; as sets DeepDiff reports names added and
    # removed, where as lists it would pair `viewer` with `admin` by position.
    return {
        key: frozenset(value) if key in LIST_FIELDS and isinstance(value, list) else value
        for key, value in record.items()
    }


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """The field-level difference of two versions of one record, in the record's field
    order. Meant for the few records whose line changed, never for a whole snapshot."""
    # Imported here: DeepDiff takes 0.2 s to import, and most runs compare no changed pair.
    from deepdiff import DeepDiff

    # Only the fields whose values differ: DeepDiff hashes all it is given, and a record
    # holds tens of entitlements that rarely change (3 times faster on the benchmark).
    fields = list(dict.fromkeys([*old, *new]))  # in the record's order
    differing = [k for k in fields if old.get(k, _ABSENT) != new.get(k, _ABSENT)]
    before = {k: old[k] for k in differing if k in old}
    after = {k: new[k] for k in differing if k in new}
    tree = DeepDiff(_comparable(before), _comparable(after), view="tree")
    scalars: dict[str, tuple[object, object]] = {}
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    for kind, levels in tree.items():
        for level in levels:
            name = str(level.path(output_format="list")[0])
            if kind == "set_item_added":
                added.setdefault(name, []).append(str(level.t2))
            elif kind == "set_item_removed":
                removed.setdefault(name, []).append(str(level.t1))
            else:
                # values_changed, type_changes, dictionary_item_added/removed: the
                # field's value as a whole, from → to (absent is None).
                scalars[name] = (_plain(old.get(name)), _plain(new.get(name)))
    order = {key: index for index, key in enumerate(fields)}
    changes = [
        FieldChange(
            name,
            added=tuple(sorted(added.get(name, ()))),
            removed=tuple(sorted(removed.get(name, ()))),
        )
        for name in added.keys() | removed.keys()
        if name not in scalars
    ]
    changes += [
        FieldChange(name, old=before, new=after) for name, (before, after) in scalars.items()
    ]
    return tuple(sorted(changes, key=lambda c: order.get(c.field, len(order))))


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple | frozenset | set) else value


def describe(
    changes: Iterable[FieldChange],
    show: Callable[[object], str],
    *,
    counted: frozenset[str] = frozenset(),
    minus: str = "-",
) -> list[str]:
    """Each change as a short phrase: `roles +admin -viewer`, `email old → new`.

    `show` escapes every value for where the phrase goes; names in `counted` fields are
    counted rather than listed (`entitlements +12 -3`).
    """
    phrases = []
    for change in changes:
        if change.is_list:
            if change.field in counted:
                signs = [("+", len(change.added)), (minus, len(change.removed))]
                parts = [f"{sign}{n}" for sign, n in signs if n]
            else:
                parts = [f"+{show(v)}" for v in change.added]
                parts += [f"{minus}{show(v)}" for v in change.removed]
            phrases.append(f"{change.field} {' '.join(parts)}")
        else:
            phrases.append(
                f"{change.field} {_shown(change.old, show)} → {_shown(change.new, show)}"
            )
    return phrases


def _shown(value: object, show: Callable[[object], str]) -> str:
    # An empty value would otherwise read as a missing word.
    return '""' if value in (None, "") else show(value)


@dataclass(frozen=True)
class RecordChange(Generic[R]):
    """One record present in both snapshots whose line differs."""

    old: R
    new: R

    @functools.cached_property
    def details(self) -> tuple[FieldChange, ...]:
        """What changed, field by field (DeepDiff over the two records)."""
        return field_changes(self.old.to_record(), self.new.to_record())


@dataclass(frozen=True)
class AccountChange(RecordChange[Account]):
    """One account present in both snapshots whose record differs."""

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


@dataclass(frozen=True)
class RecordDiff(Generic[R]):
    """Any keyed snapshot's diff (accounts or identities), records sorted by id."""

    added: tuple[R, ...] = ()
    removed: tuple[R, ...] = ()
    changed: tuple[RecordChange[R], ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff_records(old: Mapping[str, R], new: Mapping[str, R]) -> RecordDiff[R]:
    """What changed from `old` to `new`, both keyed by id (see `diff_accounts`)."""
    added, removed, pairs = _keyed(old, new)
    return RecordDiff(added, removed, tuple(RecordChange(a, b) for a, b in pairs))


def diff_accounts(old: Mapping[str, Account], new: Mapping[str, Account]) -> AccountDiff:
    """What changed from `old` to `new`, both keyed by account id.

    When both sides carry their records' canonical lines (`snapshot.Records`), equal
    lines prove equal records, so only the records whose line differs are decoded.
    """
    added, removed, pairs = _keyed(old, new)
    changed = tuple(AccountChange(a, b) for a, b in pairs)
    return AccountDiff(added=added, removed=removed, changed=changed)


def _keyed(
    old: Mapping[str, R], new: Mapping[str, R]
) -> tuple[tuple[R, ...], tuple[R, ...], list[tuple[R, R]]]:
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
    pairs = [(old[i], new[i]) for i in sorted(suspects)]
    return added, removed, [(a, b) for a, b in pairs if a != b]
