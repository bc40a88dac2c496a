"""The data model: identities from an IdP, accounts and roles in an app (DESIGN §3).

Records are immutable; lists are sorted tuples so that equal data has one form.
Identity and Account are NamedTuples rather than frozen dataclasses: a check builds and
compares hundreds of thousands of them, and tuple construction is several times faster.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, get_args

IdentityStatus = Literal["active", "suspended", "deprovisioned", "missing"]
AccountStatus = Literal["active", "disabled"]
AccountType = Literal["human", "service"]

IDENTITY_STATUSES: tuple[str, ...] = get_args(IdentityStatus)
ACCOUNT_STATUSES: tuple[str, ...] = get_args(AccountStatus)
ACCOUNT_TYPES: tuple[str, ...] = get_args(AccountType)

# The field order of a snapshot record; it is part of the on-disk format.
ACCOUNT_FIELDS = (
    "id", "username", "email", "display_name", "status", "type", "roles", "entitlements",
)  # fmt: skip
IDENTITY_FIELDS = ("id", "email", "username", "display_name", "status", "groups")
# Written after IDENTITY_FIELDS, and only when the source gave them: a snapshot of a
# source that records no such value has the same lines as before.
STATUS_CHANGED_AT = "status_changed_at"
DEPARTMENT = "department"
TITLE = "title"
OPTIONAL_IDENTITY_FIELDS = (STATUS_CHANGED_AT, DEPARTMENT, TITLE)


def clean_text(value: object) -> str:
    """A string safe to store: NFC, no lone surrogates, no NUL; None becomes ''."""
    if value.__class__ is str:
        text: str = value
        if text.isascii():
            # The common case, and already NFC: only a NUL could be wrong.
            return text.replace("\x00", "") if "\x00" in text else text
    elif value is None:
        return ""
    else:
        text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from a broken JSON escape) cannot be stored as UTF-8.
        text = text.encode("utf-8", "replace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def clean_time(value: object) -> str:
    """An ISO 8601 time from a system (`2026-11-20T09:30:00.123+01:00`, `…Z`, a date) as
    the access repo writes times, in UTC to the second (`2026-11-20T08:30:00Z`); '' when
    absent or unreadable (a source's own time is a courtesy, never a reason to fail)."""
    if value is None or value == "":
        return ""
    text = str(value).strip()
    if len(text) == 20 and text[19] == "Z" and text[10] == "T" and text[13] == text[16] == ":":
        # Already in the form written here (a snapshot's, or most exports'): only check it.
        try:
            datetime.fromisoformat(text[:19])
        except ValueError:
            return ""
        return text
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return ""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sorted_names(values: Iterable[object] | None) -> tuple[str, ...]:
    """Distinct, cleaned, sorted names; empty ones dropped."""
    if values.__class__ is not list and values.__class__ is not tuple:
        values = list(values or ())
    if not values:
        return ()
    try:
        joined = "".join(values)  # type: ignore[arg-type]
    except TypeError:
        joined = "\x00"
    if joined.isascii() and "\x00" not in joined:
        names = set(map(str.strip, values))
    else:
        names = set(map(str.strip, map(clean_text, values)))
    names.discard("")
    return tuple(sorted(names))


class Identity(NamedTuple):
    """A person (or machine) as the identity provider knows them.

    `missing` is a tombstone: the identity was in a previous pull and is gone from the
    IdP now. Keeping it lets accounts linked to it be proposed for removal (reason
    `idp_missing`) instead of silently becoming unmatched.

    `status_changed_at` is the source's own time of its last status change (UTC, `…Z`),
    when the source records one ('' otherwise): for a leaver, when the source says they
    left. The audit shows it as "left at"; detection stays the check that first saw it.

    `department` and `title` are what the source says of the person's job ('' when it
    does not say), for role rules that admit people by them.
    """

    id: str
    email: str = ""
    username: str = ""
    display_name: str = ""
    status: IdentityStatus = "active"
    groups: tuple[str, ...] = ()
    status_changed_at: str = ""
    department: str = ""
    title: str = ""

    @classmethod
    def build(
        cls,
        id: object,
        email: object = "",
        username: object = "",
        display_name: object = "",
        status: str = "active",
        groups: Iterable[object] | None = (),
        status_changed_at: object = "",
        department: object = "",
        title: object = "",
    ) -> Identity:
        if status not in IDENTITY_STATUSES:
            raise ValueError(f"identity status {status!r} is not one of {IDENTITY_STATUSES}")
        return cls(
            clean_text(id),
            clean_text(email).strip(),
            clean_text(username).strip(),
            clean_text(display_name),
            status,  # type: ignore[arg-type]
            sorted_names(groups),
            clean_time(status_changed_at),
            clean_text(department).strip() if department else "",
            clean_text(title).strip() if title else "",
        )

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "email": self.email,
            "username": self.username,
            "display_name": self.display_name,
            "status": self.status,
            "groups": list(self.groups),
        }
        if self.status_changed_at:
            record[STATUS_CHANGED_AT] = self.status_changed_at
        if self.department:
            record[DEPARTMENT] = self.department
        if self.title:
            record[TITLE] = self.title
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Identity:
        fields = {
            k: record[k] for k in (*IDENTITY_FIELDS, *OPTIONAL_IDENTITY_FIELDS) if k in record
        }
        return cls.build(**fields)

    def settled(self, previous: Mapping[str, Any] | None) -> Identity:
        """This identity as the snapshot keeps it, given its `previous` record there: the
        source's status time is taken only when the status changed (or the identity is
        new), else the previous record's is kept, so a source that moves its modification
        time on every edit (SCIM `meta.lastModified`) does not rewrite a line whose status
        stayed the same."""
        if previous is None or previous.get("status") != self.status:
            return self
        kept = previous.get(STATUS_CHANGED_AT)
        kept = kept if isinstance(kept, str) else ""
        return self if kept == self.status_changed_at else self._replace(status_changed_at=kept)


class Account(NamedTuple):
    """An account in an app, keyed by the app's own stable id.

    `last_login` is when the account last signed in, as the app says now (UTC, `…Z`),
    or '' when the app does not say: unknown, which is never the same as any date (a
    rule about inactivity must not read it as "never signed in"). It is live data only:
    it changes every day for everyone who works, so it is never written to a snapshot
    (DESIGN §3): `to_record` leaves it out. It is for rules a check evaluates on what it
    pulled, and for a plan to record as evidence. Some apps lag themselves: Active
    Directory's lastLogonTimestamp is replicated only when it is about 14 days old
    (ms-DS-Logon-Time-Sync-Interval).
    """

    id: str
    username: str = ""
    email: str = ""
    display_name: str = ""
    status: AccountStatus = "active"
    type: AccountType = "human"
    roles: tuple[str, ...] = ()
    entitlements: tuple[str, ...] = ()
    last_login: str = ""

    @classmethod
    def build(
        cls,
        id: object,
        username: object = "",
        email: object = "",
        display_name: object = "",
        status: str = "active",
        type: str = "human",
        roles: Iterable[object] | None = (),
        entitlements: Iterable[object] | None = (),
        last_login: object = "",
    ) -> Account:
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"account status {status!r} is not one of {ACCOUNT_STATUSES}")
        if type not in ACCOUNT_TYPES:
            raise ValueError(f"account type {type!r} is not one of {ACCOUNT_TYPES}")
        return cls(
            clean_text(id),
            clean_text(username).strip(),
            clean_text(email).strip(),
            clean_text(display_name),
            status,  # type: ignore[arg-type]
            type,  # type: ignore[arg-type]
            sorted_names(roles),
            sorted_names(entitlements),
            clean_time(last_login) if last_login else "",
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "display_name": self.display_name,
            "status": self.status,
            "type": self.type,
            "roles": list(self.roles),
            "entitlements": list(self.entitlements),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Account:
        return cls.build(**{k: record[k] for k in ACCOUNT_FIELDS if k in record})


@dataclass(frozen=True, slots=True)
class Role:
    """A role in an app's catalogue."""

    name: str
    description: str = ""
    entitlements: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "entitlements": list(self.entitlements),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Role:
        return cls(
            name=clean_text(record.get("name")),
            description=clean_text(record.get("description")),
            entitlements=sorted_names(record.get("entitlements")),
        )
