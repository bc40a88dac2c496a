"""LDAP (OpenLDAP or Active Directory): an identity source or an app (ldap3).

What is read. Users are the entries under `base_dn` that match `user_filter`; groups the
entries under `group_base_dn` that match `group_filter`, with their `member` DNs. Both
are read with Simple Paged Results (RFC 2696), and the result code of every page is
checked: OpenLDAP's size limit also caps paged searches in total, and a search it cut
short ends in `sizeLimitExceeded` after handing out the entries up to the limit, so a
pull that did not end in `success` fails instead of yielding a shorter list.

An account's roles (an identity's groups) are the `cn` of every group it is a member
of, directly or through groups that are members of groups, worked out from the groups'
`member` values (`group_memberships`); groups with the same `cn` in different places
count as one role. `memberOf` is not relied on, as not every server
keeps it and it is never transitive. AD's `member` ranges (`member;range=0-1499`) are
followed by ldap3 (`auto_range`); membership through a user's primaryGroupID (AD's
"Domain Users") is not in `member` and is not read. Search continuation references
(referrals) are not followed: entries in another naming context are not read.

Ids are `id_attribute` (entryUUID on OpenLDAP, objectGUID on AD, shown as the GUID's
usual text form), never the DN, which changes when an entry is moved or renamed. A
lookup searches by id with the value escaped (`id_filter`); an id that cannot be one
reads as gone, but only after the server has been reached, and deprovisioning one is
refused.

Disabled. OpenLDAP has no standard flag: an entry is disabled when `disable.attribute`
holds `disable.value` (for example pwdAccountLockedTime `000001010000Z` with the ppolicy
overlay, or an employeeType a login ACL checks); without `disable`, every entry is active
and accounts can only be deleted. AD: userAccountControl bit 0x2 (ACCOUNTDISABLE), or an
accountExpires in the past.

Last login. An account's `last_login` is read from `last_login_attribute`: AD's
lastLogonTimestamp by default, a FILETIME that AD replicates only when it is about 14
days old (ms-DS-Logon-Time-Sync-Interval), so it can be that stale by design; on
OpenLDAP, a GeneralizedTime the admin names (pwdLastSuccess, written on each bind with
olcLastBind, or the lastbind overlay's authTimestamp). No value, 0 or "never" is ''
(unknown), never a date.

Deprovisioning, both safe to repeat (an entry already gone is done), each read back:
- disable: OpenLDAP replaces `disable.attribute` with `disable.value`; AD reads
  userAccountControl and writes it back with bit 0x2 set.
- delete: the entry's DN is removed from the `member` of every group listing it, then
  the entry is deleted. A groupOfNames must keep at least one member (LAB-NOTES): when
  the account is the last member of one, the delete is refused before anything changes,
  naming the groups, rather than leaving an entry half removed.

Enabling undoes a disable, and is offered exactly when disabling is: OpenLDAP deletes
the values of `disable.attribute` that read as `disable.value` (as values, never a
replace of the attribute, so its other values stay); AD reads userAccountControl and
writes it back with bit 0x2 cleared, every other flag kept. An entry that already reads
as active is left alone, so a repeat is done; an entry gone is an error (nothing to
enable), and so is one that does not read back as active (AD: an accountExpires in
the past, which an enable does not touch, still reads as disabled).

Removing roles (the account stays), safe to repeat (a role not held, or an entry gone,
is done), read back: the user's DN is deleted, as one value, from the `member` of every
group with a role's name that lists it directly, so members someone adds meanwhile stay.
Only the user's own memberships are taken, never a nested group's or a parent's, so
when a role would still be held through a nested group, or a groupOfNames would be left
without members, the removal is refused before anything changes, saying which group and
what an admin can do. A role still held on reading back is an error too.

Errors become `ConnectorError` (`PullError` during a pull) naming the system and what to
fix. ldap3's exceptions are never chained to them: each is turned into text, with the
bind password removed, inside the handler, and raised from outside it.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from reconciler.connectors.base import ConnectorContext, Mode, secret_from_env
from reconciler.connectors.ldap import LdapOptions
from reconciler.errors import ConnectorError, PullError
from reconciler.model import Account, Identity, Role, clean_text, clean_time, sorted_names

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
# AD userAccountControl flag ACCOUNTDISABLE.
UAC_DISABLED = 0x2
# accountExpires values that mean "never" (0 and the largest FILETIME).
NEVER_EXPIRES = (0, 0x7FFFFFFFFFFFFFFF)
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
# Ids that are UUIDs on the server: a value that is not one cannot name an entry.
UUID_ATTRIBUTES = ("entryuuid", "objectguid")

# LDAP result codes (RFC 4511 §4.1.9) that have a fix the user can make.
SUCCESS = 0
TIME_LIMIT_EXCEEDED = 3
SIZE_LIMIT_EXCEEDED = 4
STRONGER_AUTH_REQUIRED = 8
NO_SUCH_ATTRIBUTE = 16
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS = 50
OBJECT_CLASS_VIOLATION = 65


# ---------------------------------------------------------------------------------------
# Pure parsing


def filetime_to_datetime(value: int) -> datetime | None:
    """A Windows FILETIME (100 ns ticks since 1601-01-01 UTC) as a UTC datetime; None
    for 0, negative, or beyond what datetime holds (AD's "never")."""
    if value <= 0:
        return None
    try:
        return FILETIME_EPOCH + timedelta(microseconds=value // 10)
    except OverflowError:
        return None


# RFC 4517 GeneralizedTime: YYYYMMDDHH[MM[SS]][(.|,)fraction](Z|+-HH[MM]).
GENERALIZED_TIME = re.compile(
    r"(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)?(\d\d)?(?:[.,](\d+))?(Z|[+-]\d\d(?:\d\d)?)?"
)


def generalized_time(text: str) -> datetime | None:
    """An LDAP GeneralizedTime (`20261120093000Z`, `202611201030+0100`, `…30.5Z`) as a
    UTC datetime; None when it is not one. A value without a zone is read as UTC."""
    match = GENERALIZED_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0),
            tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None
    if fraction:
        # The fraction is of the last unit given: second, minute or hour.
        unit = 1 if second else 60 if minute else 3600
        moment += timedelta(seconds=unit * int(fraction) / 10 ** len(fraction))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5] or 0))
        moment -= sign * offset
    return moment


def last_login_time(value: object) -> str:
    """A last-login value as the model writes times (`clean_time`), or '' (unknown):
    a FILETIME (AD's lastLogonTimestamp, as a number or its text), a GeneralizedTime
    (OpenLDAP), or a datetime (a library that already converted it). 0, AD's "never"
    and anything unreadable are ''."""
    if isinstance(value, datetime):
        return clean_time(value.isoformat())
    if isinstance(value, int) and not isinstance(value, bool):
        moment = filetime_to_datetime(value)
    else:
        raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        text = raw.strip()
        # A FILETIME of any date since 1900 has 17 digits or more; a GeneralizedTime has
        # at most 14 before its fraction and zone, so the two cannot be taken for each other.
        moment = generalized_time(text)
        if moment is None and text.lstrip("-").isdigit():
            moment = filetime_to_datetime(int(text))
        elif moment is None:
            return clean_time(text)  # ISO 8601, as a library prints a datetime
    return "" if moment is None else clean_time(moment.isoformat())


def account_expired(account_expires: int | None, now: datetime) -> bool:
    """Whether AD's accountExpires lies in the past (0 and 0x7FFFFFFFFFFFFFFF: never)."""
    if account_expires is None or account_expires in NEVER_EXPIRES:
        return False
    moment = filetime_to_datetime(account_expires)
    return moment is not None and moment <= now


def uac_disabled(user_account_control: int | None) -> bool:
    """Whether AD's userAccountControl has ACCOUNTDISABLE (0x2) set."""
    return user_account_control is not None and bool(user_account_control & UAC_DISABLED)


def with_disabled_bit(user_account_control: int) -> int:
    """userAccountControl with ACCOUNTDISABLE set and every other flag kept."""
    return user_account_control | UAC_DISABLED


def without_disabled_bit(user_account_control: int) -> int:
    """userAccountControl with ACCOUNTDISABLE cleared and every other flag kept."""
    return user_account_control & ~UAC_DISABLED


def disable_marks(values: Sequence[bytes], mark: str) -> list[bytes]:
    """The values, as stored, that mark an OpenLDAP entry disabled: those equal to the
    `disable` option's value, compared case-insensitively. Reading an entry and enabling
    it both use this, so what an enable deletes is what made the entry read as disabled."""
    wanted = mark.casefold()
    return [value for value in values if value.decode("utf-8", "replace").casefold() == wanted]


def parse_int(values: Sequence[bytes]) -> int | None:
    """The first value as an integer, or None when absent or not a number."""
    if not values:
        return None
    try:
        return int(values[0].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None


def id_text(values: Sequence[bytes], attribute: str) -> str:
    """An entry's id as text: objectGUID's 16 bytes in the usual GUID form (its first
    three fields little-endian, as Windows shows it), anything else decoded."""
    if not values:
        return ""
    raw = values[0]
    if attribute.lower() == "objectguid" and len(raw) == 16:
        return str(uuid.UUID(bytes_le=raw))
    return raw.decode("utf-8", "replace").strip()


def id_filter(attribute: str, entry_id: str) -> str | None:
    """A filter matching the entry with this id, or None when the id cannot be one
    (a UUID attribute and a value that is not a UUID). Values are escaped: an id is
    data, never filter syntax."""
    kind = attribute.lower()
    if kind in UUID_ATTRIBUTES:
        try:
            parsed = uuid.UUID(entry_id)
        except ValueError:
            return None
        if kind == "objectguid":
            # objectGUID is matched as bytes, each escaped as \hh.
            escaped = "".join(f"\\{byte:02x}" for byte in parsed.bytes_le)
            return f"({attribute}={escaped})"
        return f"({attribute}={parsed})"
    if not entry_id:
        return None
    return f"({attribute}={escape_filter_chars(entry_id)})"


def dn_key(dn: str) -> str:
    """A DN in the form used to compare DNs: attribute types and values case-folded,
    spaces around separators dropped (group `member` values are often spelled unlike
    the entry's own DN)."""
    try:
        parts = parse_dn(dn)
    except ldap_errors.LDAPInvalidDnError:
        return dn.strip().lower()
    return ",".join(f"{kind.strip().lower()}={value.strip().lower()}" for kind, value, _ in parts)


@dataclass(frozen=True)
class LdapEntry:
    """A search result entry: its DN and raw values by lower-cased attribute name."""

    dn: str
    values: Mapping[str, Sequence[bytes]]

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> LdapEntry:
        raw = item.get("raw_attributes") or {}
        values: dict[str, list[bytes]] = {}
        for name, found in raw.items():
            # AD answers large multi-valued attributes as `member;range=0-1499`.
            base = name.split(";", 1)[0].lower()
            items = found if isinstance(found, list) else [found]
            values.setdefault(base, []).extend(
                v if isinstance(v, bytes) else str(v).encode() for v in items
            )
        return cls(dn=str(item.get("dn", "")), values=values)

    def get(self, attribute: str) -> Sequence[bytes]:
        return self.values.get(attribute.lower(), ())

    def text(self, attribute: str) -> str:
        found = self.get(attribute)
        return found[0].decode("utf-8", "replace") if found else ""

    def texts(self, attribute: str) -> list[str]:
        return [value.decode("utf-8", "replace") for value in self.get(attribute)]


@dataclass(frozen=True)
class LdapGroup:
    """A group as far as membership goes."""

    dn: str
    name: str
    description: str
    members: tuple[str, ...]  # member DNs as stored
    must_have_members: bool  # a groupOfNames: cannot lose its last member

    @property
    def role(self) -> str:
        """The role this group gives, spelt as `Account.roles` spells it."""
        return clean_text(self.name).strip()

    @classmethod
    def of(cls, entry: LdapEntry) -> LdapGroup:
        classes = {value.lower() for value in entry.texts("objectClass")}
        name = entry.text("cn")
        if not name:
            rdn = parse_dn(entry.dn)[0] if entry.dn else ("", entry.dn, "")
            name = rdn[1]
        return cls(
            dn=entry.dn,
            name=name,
            description=entry.text("description"),
            members=tuple(entry.texts("member")),
            must_have_members="groupofnames" in classes,
        )


def _containing(parents: Mapping[str, set[str]], key: str) -> set[str]:
    """Keys of every group that holds `key`, directly or through nested groups; a
    cycle of groups ends where it closes."""
    seen: set[str] = set()
    pending = list(parents.get(key, ()))
    while pending:
        found = pending.pop()
        if found not in seen:
            seen.add(found)
            pending.extend(parents.get(found, ()))
    return seen


def _parents(groups: Iterable[LdapGroup]) -> tuple[dict[str, set[str]], dict[str, LdapGroup]]:
    """member key → keys of the groups listing it, and group key → group."""
    parents: dict[str, set[str]] = defaultdict(set)
    by_key: dict[str, LdapGroup] = {}
    for group in groups:
        key = dn_key(group.dn)
        by_key[key] = group
        for member in group.members:
            parents[dn_key(member)].add(key)
    return parents, by_key


def group_memberships(groups: Iterable[LdapGroup]) -> Callable[[str], frozenset[str]]:
    """DN → names of every group it is in, directly or through nested groups (a group
    that is a member of a group). A cycle of groups ends where it closes."""
    parents, by_key = _parents(groups)

    def groups_of(dn: str) -> frozenset[str]:
        return frozenset(by_key[key].name for key in _containing(parents, dn_key(dn)))

    return groups_of


def roles_of(groups: Iterable[LdapGroup], dn: str) -> tuple[str, ...]:
    """The roles the entry `dn` holds, spelt and sorted as `Account.roles`."""
    return sorted_names(group_memberships(groups)(dn))


def direct_values(group: LdapGroup, dn: str) -> tuple[str, ...]:
    """The `member` values of `group` that name `dn` itself, spelt as stored."""
    key = dn_key(dn)
    return tuple(member for member in group.members if dn_key(member) == key)


def left_empty(group: LdapGroup, dn: str) -> bool:
    """Whether taking `dn` out of `group` would leave a groupOfNames without members,
    which it cannot be."""
    own = direct_values(group, dn)
    return group.must_have_members and bool(own) and len(own) == len(group.members)


def without_direct(groups: Iterable[LdapGroup], dn: str, roles: Collection[str]) -> list[LdapGroup]:
    """The groups as they are once `dn` is no longer a direct member of any group that
    gives one of `roles`; nested groups and other members stay."""
    key = dn_key(dn)
    return [
        replace(group, members=tuple(m for m in group.members if dn_key(m) != key))
        if group.role in roles
        else group
        for group in groups
    ]


def how_held(groups: Iterable[LdapGroup], dn: str, role: str) -> str:
    """Why `dn` holds `role`, for a message: the groups giving it that list `dn` itself,
    and the nested groups `dn` is in that are members of one."""
    parents, by_key = _parents(groups)
    inside = _containing(parents, dn_key(dn))
    direct: list[str] = []
    nested: list[str] = []
    for key in sorted(inside):
        group = by_key[key]
        if group.role != role:
            continue
        if direct_values(group, dn):
            direct.append(group.dn)
        nested += [
            by_key[dn_key(m)].dn
            for m in group.members
            if dn_key(m) in inside and dn_key(m) in by_key
        ]
    reasons = [f"through nested group {group!r}" for group in sorted(set(nested))]
    reasons += [f"as a direct member of {group!r}" for group in direct]
    return f"{role!r} is held {' and '.join(reasons)}" if reasons else f"{role!r} is held"


# ---------------------------------------------------------------------------------------
# The connector


class _Failure(Exception):
    """An LDAP operation failed; its text is the message already written for the user
    (no ldap3 object, no password)."""


class LdapConnector:
    """An LDAP directory as an identity source or an app; see the module docstring."""

    def __init__(self, name: str, options: LdapOptions, *, password: str | None) -> None:
        self.name = name
        self.options = options
        self._password = password
        # Nothing makes this connector read-only: group membership can always be written.
        modes = {Mode.DELETE, Mode.REMOVE_ROLES}
        if options.dialect == "ad" or options.disable is not None:
            # What can be disabled can be enabled: ENABLE undoes exactly what DISABLE does.
            modes |= {Mode.DISABLE, Mode.ENABLE}
        self.modes = frozenset(modes)
        self._conn: Any = None

    @classmethod
    def from_context(cls, context: ConnectorContext) -> LdapConnector:
        """Build from a `type: ldap` section of reconciler.yaml."""
        options = LdapOptions.from_mapping(context.name, context.options, context.base_dir)
        password = secret_from_env(context, options.password_env, "the bind password")
        return cls(context.name, options, password=password)

    # -- the Connector contract --

    def pull_accounts(self) -> Iterator[Account]:
        """Every user as an account, read in full before the first is handed out."""
        with self._failing_as(PullError, "pulling accounts"):
            groups_of = group_memberships(self._groups())
            users = self._users()
        return iter([self._account(entry, groups_of) for entry in users])

    def pull_roles(self) -> list[Role]:
        """Every group, with its description."""
        with self._failing_as(PullError, "pulling roles"):
            groups = self._groups()
        roles: dict[str, Role] = {}
        for group in groups:
            roles.setdefault(group.name, Role(name=group.name, description=group.description))
        return [roles[name] for name in sorted(roles)]

    def pull_identities(self) -> Iterator[Identity]:
        """Every user as an identity, read in full before the first is handed out."""
        with self._failing_as(PullError, "pulling identities"):
            groups_of = group_memberships(self._groups())
            users = self._users()
        return iter([self._identity(entry, groups_of) for entry in users])

    def lookup_account(self, account_id: str) -> Account | None:
        """One user read live, or None if no user has that id any more."""
        with self._failing_as(ConnectorError, f"reading account {account_id!r}"):
            entry = self._user(account_id)
            if entry is None:
                return None
            return self._account(entry, group_memberships(self._groups()))

    def lookup_identity(self, identity_id: str) -> Identity | None:
        """One user read live as an identity, or None if it no longer exists."""
        with self._failing_as(ConnectorError, f"reading identity {identity_id!r}"):
            entry = self._user(identity_id)
            if entry is None:
                return None
            return self._identity(entry, group_memberships(self._groups()))

    def deprovision(self, account: Account, mode: Mode) -> None:
        """Disable or delete the user; an entry already gone is done."""
        what = f"{getattr(mode, 'value', mode)} account {account.username!r} (id {account.id})"
        if mode not in self.modes:
            hint = (
                "set `disable` ({attribute, value}) to say how a disabled entry is marked"
                if mode is Mode.DISABLE
                else "use disable or delete"
            )
            raise ConnectorError(self.name, f"cannot {what}: mode not supported; {hint}")
        self._refuse_impossible_id(account.id, what)
        with self._failing_as(ConnectorError, what):
            entry = self._user(account.id)
            if entry is None:
                return
            if mode is Mode.DISABLE:
                self._disable(entry)
            else:
                self._delete(entry, what)
        after = self.lookup_account(account.id)
        if mode is Mode.DISABLE and (after is None or after.status != "disabled"):
            raise ConnectorError(
                self.name,
                f"{what}: done, but the entry does not read back as disabled; check "
                "`disable` in reconciler.yaml and the entry by hand",
            )
        if mode is Mode.DELETE and after is not None:
            raise ConnectorError(self.name, f"{what}: done, but the entry still exists")

    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None:
        """The roles the user holds, read live and worked out as an account's roles
        (nested groups included); None if no user has that id any more."""
        with self._failing_as(ConnectorError, f"reading the roles of account {account_id!r}"):
            entry = self._user(account_id)
            if entry is None:
                return None
            return roles_of(self._groups(), entry.dn)

    def remove_roles(self, account: Account, roles: Collection[str]) -> None:
        """Take `roles` from the user, which stays, then read them back. A role it no
        longer holds, or a user gone, is done. Refused before anything changes when a
        role would still be held (through a nested group) or a groupOfNames would be
        left without members."""
        wanted = frozenset(sorted_names(roles))
        what = (
            f"remove roles {', '.join(map(repr, sorted(wanted)))} from account "
            f"{account.username!r} (id {account.id})"
        )
        self._refuse_impossible_id(account.id, what)
        if not wanted:
            return
        with self._failing_as(ConnectorError, what):
            entry = self._user(account.id)
            if entry is None:
                return
            self._take_roles(entry.dn, wanted)
        still = sorted(wanted.intersection(self.lookup_roles(account.id) or ()))
        if still:
            with self._failing_as(ConnectorError, what):
                groups = self._groups()
            reasons = "; ".join(how_held(groups, entry.dn, role) for role in still)
            raise ConnectorError(
                self.name,
                f"{what}: done, but {reasons}; the groups changed meanwhile, or the "
                "server kept the membership: check them by hand, then apply again",
            )

    def enable(self, account: Account) -> None:
        """Undo a disable (see the module docstring), then read the user back; one that
        already reads as active is done. A ConnectorError when no user has the id any
        more (nothing to enable), or when the connector cannot disable."""
        what = f"enable account {account.username!r} (id {account.id})"
        if Mode.ENABLE not in self.modes:
            raise ConnectorError(
                self.name,
                f"cannot {what}: without `disable` ({{attribute, value}}) in "
                "reconciler.yaml no entry is ever disabled, so there is nothing to undo; "
                "set `disable` to say how a disabled entry is marked",
            )
        self._refuse_impossible_id(account.id, what)
        with self._failing_as(ConnectorError, what):
            entry = self._user(account.id)
            if entry is not None:
                self._enable(entry)
        after = self.lookup_account(account.id) if entry is not None else None
        if after is None:
            raise ConnectorError(
                self.name,
                f"cannot {what}: no user has this {self.options.id_attribute} any more, so "
                "there is nothing to enable; recreate the account by hand if it is needed",
            )
        if after.status != "active":
            hint = (
                "check the entry by hand: an accountExpires in the past also reads as "
                "disabled, and an enable leaves it alone"
                if self.options.dialect == "ad"
                else "check `disable` in reconciler.yaml and the entry by hand"
            )
            raise ConnectorError(
                self.name, f"{what}: done, but the entry does not read back as enabled; {hint}"
            )

    def probe(self, identity_source: bool) -> str:
        """Bind as a pull does and read the base DN's entry itself (one entry, not the
        users): the directory answers and the bind DN may read where users live."""
        with self._failing_as(ConnectorError, "reading the base DN"):
            conn = self._connection()
            self._call(
                f"reading {self.options.base_dn!r}",
                conn.search,
                self.options.base_dn,
                "(objectClass=*)",
                search_scope=ldap3.BASE,
                attributes=[],
            )
            if not conn.entries:
                raise _Failure(
                    f"base_dn {self.options.base_dn!r} does not exist or the bind DN may "
                    "not read it; fix base_dn or the bind DN's rights"
                )
        return f"bound as {self.options.bind_dn!r}; {self.options.base_dn!r} readable"

    def close(self) -> None:
        """Unbind."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # The connection is being thrown away either way.
            with contextlib.suppress(ldap_errors.LDAPException):
                conn.unbind()

    # -- reading --

    def _user_attributes(self) -> list[str]:
        o = self.options
        names = [o.id_attribute, o.username_attribute, o.email_attribute]
        names += [o.display_name_attribute, o.department_attribute, o.title_attribute]
        if o.last_login_attribute:
            names.append(o.last_login_attribute)
        if o.dialect == "ad":
            names += ["userAccountControl", "accountExpires"]
        elif o.disable is not None:
            names.append(o.disable.attribute)
        return list(dict.fromkeys(names))

    def _users(self) -> list[LdapEntry]:
        o = self.options
        users = self._search(o.base_dn, o.user_filter, self._user_attributes(), "users")
        seen: dict[str, str] = {}
        for entry in users:
            entry_id = id_text(entry.get(o.id_attribute), o.id_attribute)
            if not entry_id:
                raise _Failure(
                    f"user {entry.dn!r} has no {o.id_attribute}, so it cannot be told "
                    "apart from others; check `id_attribute`, and that the bind DN may "
                    "read it"
                )
            if entry_id in seen:
                raise _Failure(
                    f"users {seen[entry_id]!r} and {entry.dn!r} have the same "
                    f"{o.id_attribute} {entry_id!r}; set id_attribute to an attribute "
                    "unique to each user"
                )
            seen[entry_id] = entry.dn
        return users

    def _groups(self) -> list[LdapGroup]:
        o = self.options
        attributes = ["cn", "description", "member", "objectClass"]
        found = self._search(o.groups_under, o.group_filter, attributes, "groups")
        return [LdapGroup.of(entry) for entry in found]

    def _user(self, entry_id: str) -> LdapEntry | None:
        o = self.options
        # Connected first, so that "no such entry" is only ever said by a server that
        # could be asked, even for an id that cannot be one.
        self._connection()
        by_id = id_filter(o.id_attribute, entry_id)
        if by_id is None:
            return None
        found = self._search(
            o.base_dn, f"(&{o.user_filter}{by_id})", self._user_attributes(), "the user"
        )
        if len(found) > 1:
            raise _Failure(f"{len(found)} entries have {o.id_attribute} {entry_id!r}")
        return found[0] if found else None

    def _search(
        self, base: str, search_filter: str, attributes: list[str], what: str
    ) -> list[LdapEntry]:
        """Every entry of a paged subtree search; _Failure unless every page ends in
        success (a size limit cuts a paged search short with sizeLimitExceeded)."""
        conn = self._connection()
        entries: list[LdapEntry] = []
        cookie: bytes | None = None
        while True:
            self._call(
                f"searching {what} under {base!r}",
                conn.search,
                base,
                search_filter,
                ldap3.SUBTREE,
                attributes=attributes,
                paged_size=self.options.page_size,
                paged_cookie=cookie,
            )
            result = conn.result
            code = result.get("result")
            if code == NO_SUCH_OBJECT and not entries:
                raise _Failure(
                    f"searching {what}: {base!r} does not exist on the server; fix "
                    "base_dn or group_base_dn"
                )
            if code != SUCCESS:
                raise _Failure(self._result_problem(result, f"searching {what}", len(entries)))
            entries.extend(
                LdapEntry.of(item)
                for item in conn.response or ()
                if item.get("type") == "searchResEntry"
            )
            control = (result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
            cookie = (control.get("value") or {}).get("cookie")
            if not cookie:
                return entries

    def _is_disabled(self, entry: LdapEntry) -> bool:
        o = self.options
        if o.dialect == "ad":
            return uac_disabled(parse_int(entry.get("userAccountControl"))) or account_expired(
                parse_int(entry.get("accountExpires")), datetime.now(UTC)
            )
        if o.disable is None:
            return False
        return bool(disable_marks(entry.get(o.disable.attribute), o.disable.value))

    def _account(self, entry: LdapEntry, groups_of: Callable[[str], frozenset[str]]) -> Account:
        o = self.options
        return Account.build(
            id=id_text(entry.get(o.id_attribute), o.id_attribute),
            username=entry.text(o.username_attribute),
            email=entry.text(o.email_attribute),
            display_name=entry.text(o.display_name_attribute),
            status="disabled" if self._is_disabled(entry) else "active",
            roles=groups_of(entry.dn),
            last_login=self._last_login(entry),
        )

    def _last_login(self, entry: LdapEntry) -> str:
        attribute = self.options.last_login_attribute
        found = entry.get(attribute) if attribute else ()
        return last_login_time(found[0]) if found else ""

    def _identity(self, entry: LdapEntry, groups_of: Callable[[str], frozenset[str]]) -> Identity:
        o = self.options
        return Identity.build(
            id=id_text(entry.get(o.id_attribute), o.id_attribute),
            email=entry.text(o.email_attribute),
            username=entry.text(o.username_attribute),
            display_name=entry.text(o.display_name_attribute),
            status=o.inactive_status if self._is_disabled(entry) else "active",
            groups=groups_of(entry.dn),
            department=entry.text(o.department_attribute),
            title=entry.text(o.title_attribute),
        )

    # -- deprovisioning --

    def _disable(self, entry: LdapEntry) -> None:
        o = self.options
        if o.dialect == "ad":
            current = parse_int(entry.get("userAccountControl"))
            if current is None:
                raise _Failure(f"{entry.dn!r} has no readable userAccountControl")
            if with_disabled_bit(current) == current:
                return
            change = {
                "userAccountControl": [(ldap3.MODIFY_REPLACE, [str(with_disabled_bit(current))])]
            }
        else:
            assert o.disable is not None, "DISABLE is in modes only with `disable`"
            change = {o.disable.attribute: [(ldap3.MODIFY_REPLACE, [o.disable.value])]}
        self._modify(entry.dn, change, f"disabling {entry.dn!r}")

    def _enable(self, entry: LdapEntry) -> None:
        """Undo `_disable` on the entry as read; nothing is written when it carries no
        mark of a disable."""
        o = self.options
        doing = f"enabling {entry.dn!r}"
        if o.dialect == "ad":
            current = parse_int(entry.get("userAccountControl"))
            if current is None:
                raise _Failure(f"{entry.dn!r} has no readable userAccountControl")
            if without_disabled_bit(current) == current:
                return
            value = str(without_disabled_bit(current))
            self._modify(entry.dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [value])]}, doing)
            return
        assert o.disable is not None, "ENABLE is in modes only with `disable`"
        marks = disable_marks(entry.get(o.disable.attribute), o.disable.value)
        if not marks:
            return
        # The mark's values only, never a replace: other values of the attribute stay. A
        # mark someone removed meanwhile is answered noSuchAttribute: done, and read back.
        change = {o.disable.attribute: [(ldap3.MODIFY_DELETE, marks)]}
        self._modify(entry.dn, change, doing, done_if=(NO_SUCH_ATTRIBUTE, NO_SUCH_OBJECT))

    def _delete(self, entry: LdapEntry, what: str) -> None:
        listing = [group for group in self._groups() if direct_values(group, entry.dn)]
        # Checked before any change: a group left half edited is worse than a refusal.
        last = sorted(group.dn for group in listing if left_empty(group, entry.dn))
        if last:
            raise _Failure(
                f"it is the last member of {', '.join(repr(dn) for dn in last)}, and a "
                "groupOfNames cannot be left without members; nothing was changed: add "
                "another member to (or delete) the group, then deprovision again"
            )
        for group in listing:
            self._leave(group, entry.dn)
        conn = self._connection()
        self._call(f"deleting {entry.dn!r}", conn.delete, entry.dn)
        self._check(conn.result, f"deleting {entry.dn!r}", done_if=(NO_SUCH_OBJECT,))

    def _take_roles(self, dn: str, roles: frozenset[str]) -> None:
        """Take `dn` out of every group giving one of `roles` that lists it directly;
        nothing changes unless all of them can go."""
        groups = self._groups()
        leaving = [group for group in groups if group.role in roles and direct_values(group, dn)]
        # Checked before any change, on the groups as they will be: the user's own
        # memberships are all this may take, never a nested group's or a parent's.
        after = without_direct(groups, dn, roles)
        problems = [
            f"{how_held(after, dn, role)}, and only the account's own memberships are "
            f"taken: take the account out of that group (or that group out of {role!r}) "
            f"by hand, or change the rule so that it keeps {role!r}"
            for role in roles_of(after, dn)
            if role in roles
        ]
        problems += [
            f"group {group.dn!r} would be left without members, which a groupOfNames "
            "cannot be: add another member to it, or remove the group by hand, then "
            "apply again"
            for group in leaving
            if left_empty(group, dn)
        ]
        if problems:
            raise _Failure(f"nothing was changed: {'; '.join(problems)}")
        for group in leaving:
            self._leave(group, dn)

    def _leave(self, group: LdapGroup, dn: str) -> None:
        """Delete the `member` values of `group` that name `dn` itself, never the whole
        attribute, so that members added meanwhile stay; done when they are gone."""
        doing = f"removing {dn!r} from group {group.dn!r}"
        conn = self._connection()
        change = {"member": [(ldap3.MODIFY_DELETE, list(direct_values(group, dn)))]}
        self._call(doing, conn.modify, group.dn, change)
        result = dict(conn.result or {})
        if result.get("result") in (SUCCESS, NO_SUCH_OBJECT):
            return
        # A value removed meanwhile is answered noSuchAttribute by OpenLDAP and
        # unwillingToPerform by AD: ask the group whether it still lists the user.
        if not self._lists(group.dn, dn):
            return
        if result.get("result") == OBJECT_CLASS_VIOLATION and group.must_have_members:
            raise _Failure(
                f"{doing}: group {group.dn!r} would be left without members, which a "
                "groupOfNames cannot be (its other members were removed meanwhile): add "
                "another member to it, or remove the group by hand, then try again"
            )
        raise _Failure(self._result_problem(result, doing))

    def _lists(self, group_dn: str, dn: str) -> bool:
        """Whether group `group_dn` lists `dn` in its `member`, as the server compares
        DNs; False when the group is gone."""
        doing = f"reading the members of group {group_dn!r}"
        conn = self._connection()
        member_filter = f"(member={escape_filter_chars(dn)})"
        self._call(
            doing, conn.search, group_dn, member_filter, ldap3.BASE, attributes=ldap3.NO_ATTRIBUTES
        )
        self._check(conn.result, doing, done_if=(NO_SUCH_OBJECT,))
        return any(item.get("type") == "searchResEntry" for item in conn.response or ())

    def _refuse_impossible_id(self, account_id: str, what: str) -> None:
        """A ConnectorError, before the server is asked, when `account_id` cannot be a
        value of `id_attribute`."""
        if id_filter(self.options.id_attribute, account_id) is None:
            raise ConnectorError(
                self.name,
                f"cannot {what}: the id is not a valid {self.options.id_attribute}; "
                "was the snapshot taken with another id_attribute?",
            )

    def _modify(
        self, dn: str, change: Mapping[str, Any], doing: str, done_if: tuple[int, ...] = ()
    ) -> None:
        conn = self._connection()
        self._call(doing, conn.modify, dn, dict(change))
        self._check(conn.result, doing, done_if=done_if)

    # -- the connection and its errors --

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        o = self.options
        where = urlsplit(o.url)
        secure = where.scheme.lower() == "ldaps"
        tls = None
        if secure or o.start_tls:
            try:
                tls = ldap3.Tls(
                    ca_certs_file=str(o.ca_file) if o.ca_file else None,
                    validate=ssl.CERT_REQUIRED,
                )
            except ldap_errors.LDAPSSLConfigurationError:
                problem = f"ca_file {str(o.ca_file)!r} cannot be read; fix ca_file"
            else:
                problem = ""
            if problem:
                raise _Failure(problem)
        server = ldap3.Server(
            where.hostname or "",
            port=where.port,
            use_ssl=secure,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=o.timeout,
        )
        conn = ldap3.Connection(
            server,
            user=o.bind_dn,
            password=self._password,
            # ldap3 packs it into SO_RCVTIMEO as whole seconds.
            receive_timeout=max(1, math.ceil(o.timeout)),
            raise_exceptions=False,
            auto_referrals=False,
        )
        self._call("connecting", conn.open)
        if o.start_tls and not self._call("starting TLS", conn.start_tls):
            problem = self._result_problem(conn.result or {}, "starting TLS")
            raise _Failure(f"{problem}; check that the server offers StartTLS")
        self._call("binding", conn.bind)
        try:
            self._check(conn.result, "binding")
        except _Failure:
            with contextlib.suppress(ldap_errors.LDAPException):
                conn.unbind()
            raise
        self._conn = conn
        return conn

    def _call(self, doing: str, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run an ldap3 call; its exceptions become _Failure with a message, raised
        outside the handler so nothing chains to ldap3's error."""
        try:
            return operation(*args, **kwargs)
        except ldap_errors.LDAPException as exc:
            problem = self._exception_problem(exc, doing)
        self._conn = None  # reconnect next time
        raise _Failure(problem)

    def _exception_problem(self, exc: Exception, doing: str) -> str:
        o = self.options
        where = o.url
        said = self._clean(str(exc))
        tls_failed = isinstance(
            exc, ldap_errors.LDAPStartTLSError | ldap_errors.LDAPSSLConfigurationError
        ) or ("ssl" in said.lower() and isinstance(exc, ldap_errors.LDAPSocketOpenError))
        if tls_failed:
            return (
                f"{doing}: TLS with {where} failed ({said}); check that the server's "
                "certificate chains to ca_file (or a system CA) and names the host in url"
            )
        if isinstance(exc, ldap_errors.LDAPSocketOpenError):
            if "timed out" in said.lower():
                return (
                    f"{doing}: {where} did not answer within timeout ({o.timeout:g} s); "
                    "check url and firewalls, or raise timeout"
                )
            return (
                f"{doing}: cannot connect to {where} ({said}); check url, and that the "
                "server is running and reachable from here"
            )
        if isinstance(
            exc, ldap_errors.LDAPSocketReceiveError | ldap_errors.LDAPResponseTimeoutError
        ):
            return (
                f"{doing}: {where} did not answer within timeout ({o.timeout:g} s); "
                "retry, or raise timeout"
            )
        return f"{doing}: {type(exc).__name__}: {said}"

    def _check(
        self, result: Mapping[str, Any] | None, doing: str, done_if: tuple[int, ...] = ()
    ) -> None:
        code = (result or {}).get("result")
        if code == SUCCESS or code in done_if:
            return
        raise _Failure(self._result_problem(result or {}, doing))

    def _result_problem(self, result: Mapping[str, Any], doing: str, read: int = 0) -> str:
        o = self.options
        code = result.get("result")
        name = result.get("description") or f"result {code}"
        message = self._clean(str(result.get("message") or ""))
        said = f"{name} ({message})" if message else str(name)
        if code == SIZE_LIMIT_EXCEEDED:
            return (
                f"{doing}: the server stopped after {read} entries with sizeLimitExceeded: "
                f"its size limit for {o.bind_dn!r} is smaller than the directory, and "
                "paging does not lift it; nothing from this pull may be used: raise the "
                f'limit for this bind DN, e.g. OpenLDAP olcLimits: dn.exact="{o.bind_dn}" '
                "size=unlimited size.prtotal=unlimited"
            )
        if code == TIME_LIMIT_EXCEEDED:
            return (
                f"{doing}: the server's time limit ended the search ({said}); raise the "
                "limit for this bind DN, or narrow the filter"
            )
        if code == STRONGER_AUTH_REQUIRED:
            # AD domain controllers refuse a simple bind over plain LDAP by default.
            return (
                f"{doing}: the server refused a password sent unencrypted ({said}); use "
                "an ldaps:// url or start_tls, with ca_file if its certificate is not "
                "signed by a system CA"
            )
        if code == INVALID_CREDENTIALS:
            secret = (
                f"the password in environment variable {o.password_env}"
                if o.password_env
                else "the password (set password_env)"
            )
            return (
                f"{doing}: the server refused bind DN {o.bind_dn!r} ({said}); "
                f"check {secret} and bind_dn"
            )
        if code == INSUFFICIENT_ACCESS:
            return (
                f"{doing}: bind DN {o.bind_dn!r} may not do this ({said}); give it write "
                "access to the users and groups (OpenLDAP: an olcAccess `by dn.exact=... "
                "write` clause; AD: delegated control over the OUs)"
            )
        return f"{doing}: the server answered {said}"

    def _clean(self, text: str) -> str:
        """Server or library text on one line, without the password, cut short."""
        text = " ".join(text.split())
        if self._password:
            text = text.replace(self._password, "[REDACTED]")
        return text[:300]

    @contextlib.contextmanager
    def _failing_as(self, error: type[ConnectorError], doing: str) -> Iterator[None]:
        """Turn a `_Failure` into `error` naming the system and what was being done."""
        try:
            yield
        except _Failure as exc:
            raise error(self.name, f"{doing} failed: {exc}") from None
