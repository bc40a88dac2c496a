"""PostgreSQL: an app whose accounts are the cluster's login roles (psycopg 3).

What is an account. Every role that can log in (`rolcanlogin`), plus every NOLOGIN role
whose comment starts with `reconciler: disabled`, the marker a disable writes, so that a
disabled account stays visible as `disabled` instead of vanishing from the snapshot.
Roles named `pg_*` and the roles in `exclude_roles` are never accounts. A group role
(NOLOGIN, no marker) is not an account. The account id is the role's oid: a role renamed
keeps it, a role dropped and made again gets another.

- username: the role's name; email: the role's comment when that is an email address
  (after a disable, the comment that was there before); status `active` when the role can
  log in and `rolvaliduntil` is unset or in the future, else `disabled`.
- type: `service` for the role this connector connects as (the policy then protects it),
  `human` for every other role.
- roles: every role it is a member of, directly or through other roles (`pg_auth_members`,
  predefined `pg_*` roles included); a superuser also carries the role `(superuser)`, a
  marker no grant gives, so that reviewers see it. A superuser stays type `human`: if one
  leaves, the plan proposes it and the apply refuses it with what to do (remove SUPERUSER
  by hand first), rather than the policy hiding it as a service account.
- entitlements: what is granted to the role itself, read from the catalogs of every
  database in `databases` (`aclexplode` over the ACLs, `acldefault` when an object has
  never been granted on, so an owner's privileges always show): `database:D:PRIV`,
  `schema:D.S:PRIV`, `table:D.S.T:PRIV` (tables, views, materialized views, foreign
  tables), `sequence:D.S.Q:PRIV`, `column:D.S.T.C:PRIV`, and the role's attributes
  (`attribute:SUPERUSER`, `CREATEROLE`, `CREATEDB`, `REPLICATION`, `BYPASSRLS`). What it
  has through other roles shows as those roles. System schemas are left out.

The role catalogue (`pull_roles`) holds every role that some non-`pg_*` role belongs to,
directly or not (so every role an account shows), with its comment as description and its
own entitlements.

Deprovisioning. A superuser, the connecting role and `exclude_roles` are refused. The role
is found again by oid and must still have the snapshot's name (a renamed role, or an oid
reused by another role, is refused). Disable: in one transaction NOLOGIN, the marker
comment (the earlier comment kept after it) and REVOKE of each membership; then every
session of the role is ended (`pg_terminate_backend`). Delete: that disable first (so a
delete that fails half-way leaves a disabled account), then in every database of
`databases` `REASSIGN OWNED BY` the role `TO reassign_to` and `DROP OWNED BY` it, then
`DROP ROLE`. Both are safe to repeat; a role already gone is done. Identifiers always go
through `psycopg.sql.Identifier`, values are query parameters.

Removing roles (Mode.REMOVE_ROLES) from an account that stays: in one transaction the
role's current name is read by its oid (a renamed role is still the same account; a name
now worn by another role is never used), each requested role the account holds directly
is revoked, and the memberships and the name are read again before the commit. A role
it does not hold is skipped. If a membership stays (PostgreSQL 16 keeps one grant per
grantor and REVOKE drops only the connecting role's), or the connecting role may not
revoke it, nothing is changed and the error names the role and what to do. Afterwards
the roles are read back; a role still held (through another role it belongs to) is an
error naming that role. `(superuser)` is an attribute, not a membership: it is refused.
The connecting role and `exclude_roles` are refused, as for deprovisioning.

Enabling (Mode.ENABLE) undoes a disable: in one transaction the role's current name is
read by its oid (renamed or not; a name now worn by another role is never used), then
`ALTER ROLE … LOGIN` and the comment it had before the marker is put back (no comment if
it had none), and the role is read again by oid before the commit. Only a role carrying
the marker is changed: a role with LOGIN and no marker is done; a NOLOGIN role without
it was disabled by someone else and is refused, as is a superuser carrying the marker
(reconciler never disables one), a role whose VALID UNTIL has passed (it would stay
disabled; VALID UNTIL is left alone) and a role that is gone. Ended sessions need no
undoing; memberships the disable revoked were not recorded and are not granted again.
Afterwards the account must read back as active. The connecting role and
`exclude_roles` are refused, as for deprovisioning.

The connecting role needs CREATEROLE (or to be superuser) and `pg_signal_backend`; for
delete, membership in the roles whose objects it reassigns (in practice: superuser); to
remove roles, CREATEROLE or ADMIN OPTION on each role it takes; to enable, CREATEROLE.

Errors from psycopg become `ConnectorError` (`PullError` during a pull) naming the
system and the fix; the password is never part of a message.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, LiteralString

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from reconciler.connectors.base import ConnectorContext, Mode, secret_from_env
from reconciler.connectors.postgres import PostgresOptions
from reconciler.errors import ConnectorError, PullError
from reconciler.model import Account, Identity, Role, clean_text, sorted_names

DISABLED_MARKER = "reconciler: disabled"
SUPERUSER_ROLE = "(superuser)"
# How long ending one session may take before deprovisioning says it failed.
TERMINATE_WAIT_MS = 5000

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
OID = re.compile(r"[1-9][0-9]{0,9}")
MAX_OID = 2**32 - 1

# ---------------------------------------------------------------------------------------
# Catalog queries. Role names are never spliced in: values are parameters, identifiers
# `sql.Identifier`.

_ROLE_COLUMNS: LiteralString = """
    r.oid::bigint, r.rolname, r.rolcanlogin, r.rolsuper,
    (r.rolvaliduntil IS NULL OR r.rolvaliduntil > now()) AS valid,
    coalesce(shobj_description(r.oid, 'pg_authid'), '') AS comment,
    array_remove(ARRAY[
        CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
        CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
        CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
        CASE WHEN r.rolreplication THEN 'REPLICATION' END,
        CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END], NULL) AS attributes
"""
# Accounts: login roles, and roles a disable left NOLOGIN with the marker.
_ACCOUNT_FILTER: LiteralString = """
    r.rolname !~ '^pg_'
    AND (r.rolcanlogin
         OR starts_with(coalesce(shobj_description(r.oid, 'pg_authid'), ''),
                        'reconciler: disabled'))
"""
ACCOUNTS_SQL: LiteralString = (
    "SELECT " + _ROLE_COLUMNS + " FROM pg_roles r WHERE " + _ACCOUNT_FILTER + " ORDER BY r.oid"
)
# Any role but a predefined one: a role made NOLOGIN by someone else is still there,
# and must not read as deleted.
ACCOUNT_SQL: LiteralString = (
    "SELECT " + _ROLE_COLUMNS + " FROM pg_roles r WHERE r.oid = %s AND r.rolname !~ '^pg_'"
)
_CLOSURE: LiteralString = """
    WITH RECURSIVE closure(member, roleid) AS (
        SELECT member, roleid FROM pg_auth_members
        UNION
        SELECT c.member, m.roleid FROM closure c JOIN pg_auth_members m ON m.member = c.roleid
    )
"""
# Member oid → every role it belongs to, through any depth of nesting.
MEMBERSHIPS_SQL: LiteralString = (
    _CLOSURE
    + "SELECT c.member::bigint, g.rolname FROM closure c JOIN pg_roles g ON g.oid = c.roleid"
)
# The same for one member (%s: its oid).
MEMBERSHIPS_OF_SQL: LiteralString = """
    WITH RECURSIVE closure(roleid) AS (
        SELECT roleid FROM pg_auth_members WHERE member = %s
        UNION
        SELECT m.roleid FROM closure c JOIN pg_auth_members m ON m.member = c.roleid
    )
    SELECT g.rolname FROM closure c JOIN pg_roles g ON g.oid = c.roleid
"""
# The roles one member (%s: its oid) belongs to directly and whose closure holds the role
# named %s: what it is held through.
HELD_THROUGH_SQL: LiteralString = """
    WITH RECURSIVE closure(direct, roleid) AS (
        SELECT roleid, roleid FROM pg_auth_members WHERE member = %s
        UNION
        SELECT c.direct, m.roleid FROM closure c JOIN pg_auth_members m ON m.member = c.roleid
    )
    SELECT DISTINCT d.rolname FROM closure c
    JOIN pg_roles d ON d.oid = c.direct JOIN pg_roles g ON g.oid = c.roleid
    WHERE g.rolname = %s AND d.oid <> c.roleid
    ORDER BY d.rolname
"""
# Every role some role of the cluster's own belongs to (predefined roles granted only to
# other predefined roles, as pg_monitor's, are no one's role).
GROUPS_SQL: LiteralString = (
    _CLOSURE
    + """
    SELECT g.oid::bigint, g.rolname, coalesce(shobj_description(g.oid, 'pg_authid'), '')
    FROM pg_roles g
    WHERE g.oid IN (SELECT c.roleid FROM closure c JOIN pg_roles m ON m.oid = c.member
                    WHERE m.rolname !~ '^pg_')
    ORDER BY g.rolname
"""
)
DATABASE_PRIVILEGES_SQL: LiteralString = """
    SELECT a.grantee::bigint, 'database:' || d.datname || ':' || a.privilege_type
    FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
    WHERE a.grantee <> 0
"""
_USER_SCHEMA: LiteralString = """
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
"""
# Schema, table, sequence and column privileges of the connected database.
LOCAL_PRIVILEGES_SQL: LiteralString = (
    """
    SELECT a.grantee::bigint,
           'schema:' || current_database() || '.' || n.nspname || ':' || a.privilege_type
    FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
    WHERE a.grantee <> 0 AND """
    + _USER_SCHEMA
    + """
    UNION ALL
    SELECT a.grantee::bigint,
           CASE WHEN c.relkind = 'S' THEN 'sequence:' ELSE 'table:' END
           || current_database() || '.' || n.nspname || '.' || c.relname
           || ':' || a.privilege_type
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         aclexplode(coalesce(c.relacl,
                             acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char",
                                        c.relowner))) a
    WHERE a.grantee <> 0 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND """
    + _USER_SCHEMA
    + """
    UNION ALL
    SELECT a.grantee::bigint,
           'column:' || current_database() || '.' || n.nspname || '.' || c.relname
           || '.' || t.attname || ':' || a.privilege_type
    FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(t.attacl) a
    WHERE a.grantee <> 0 AND t.attnum > 0 AND NOT t.attisdropped AND """
    + _USER_SCHEMA
)
ALL_DATABASES_SQL: LiteralString = """
    SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname
"""
ROLE_BY_OID_SQL: LiteralString = """
    SELECT rolname, rolsuper, coalesce(shobj_description(oid, 'pg_authid'), ''), rolcanlogin
    FROM pg_roles WHERE oid = %s
"""
DIRECT_GROUPS_SQL: LiteralString = """
    SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
    WHERE m.member = %s ORDER BY g.rolname
"""
# A role's name by oid (predefined roles are never accounts), and whether it is the role
# this session runs as.
MEMBER_BY_OID_SQL: LiteralString = """
    SELECT rolname, rolname IN (current_user, session_user)
    FROM pg_roles WHERE oid = %s AND rolname !~ '^pg_'
"""
# Each direct membership of a member (%s: its oid) with who granted it.
DIRECT_GRANTS_SQL: LiteralString = """
    SELECT g.rolname, coalesce(gr.rolname, m.grantor::text)
    FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
    LEFT JOIN pg_roles gr ON gr.oid = m.grantor
    WHERE m.member = %s ORDER BY g.rolname
"""
# Who this session is and what it may do, and how many login roles there are.
PROBE_SQL: LiteralString = """
    SELECT r.rolname, r.rolsuper, r.rolcreaterole,
           (SELECT count(*) FROM pg_roles WHERE rolcanlogin AND rolname !~ '^pg_')
    FROM pg_roles r WHERE r.rolname = current_user
"""
TERMINATE_SQL: LiteralString = """
    SELECT pid, pg_terminate_backend(pid, %s) FROM pg_stat_activity
    WHERE usesysid = %s AND pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class _RoleRow:
    oid: int
    name: str
    can_login: bool
    superuser: bool
    valid: bool
    comment: str
    attributes: tuple[str, ...]

    @classmethod
    def of(cls, found: Sequence[Any]) -> _RoleRow:
        """From a row of `_ROLE_COLUMNS`."""
        oid, name, can_login, superuser, valid, comment, attributes = found
        return cls(oid, name, can_login, superuser, valid, comment, tuple(attributes))


def earlier_comment(comment: str) -> str:
    """The comment as it was before a disable added the marker (the whole comment when
    there is no marker)."""
    if not comment.startswith(DISABLED_MARKER):
        return comment
    _, _, rest = comment.partition("\n")
    return rest


def disabled_comment(comment: str, at: datetime) -> str:
    """The comment a disable leaves: the marker line, then the earlier comment."""
    if comment.startswith(DISABLED_MARKER):
        return comment  # already disabled: keep the first time and text
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    marker = f"{DISABLED_MARKER} {stamp} by access reconciler"
    return f"{marker}\n{comment}" if comment else marker


def account_roles(row: _RoleRow, memberships: Iterable[str]) -> tuple[str, ...]:
    """An account's roles: the roles it belongs to, directly or not, and `(superuser)`
    for a superuser; sorted as `Account.roles`."""
    superuser = (SUPERUSER_ROLE,) if row.superuser else ()
    return sorted_names([*memberships, *superuser])


def account_from_row(
    row: _RoleRow,
    *,
    roles: Iterable[str],
    entitlements: Iterable[str],
    connecting_user: str,
) -> Account:
    """An Account from a role's catalog row, its memberships and its privileges."""
    earlier = earlier_comment(row.comment).strip()
    return Account.build(
        id=str(row.oid),
        username=row.name,
        email=earlier if EMAIL.fullmatch(earlier) else "",
        display_name=row.name,
        status="active" if row.can_login and row.valid else "disabled",
        type="service" if row.name == connecting_user else "human",
        roles=account_roles(row, roles),
        entitlements=[*entitlements, *(f"attribute:{a}" for a in row.attributes)],
    )


def parse_oid(account_id: str) -> int | None:
    """The oid an account id names, or None if it cannot be one."""
    if not OID.fullmatch(account_id) or int(account_id) > MAX_OID:
        return None
    return int(account_id)


class PostgresConnector:
    """A PostgreSQL cluster as an app; see the module docstring for what is read and done."""

    def __init__(self, name: str, options: PostgresOptions, *, password: str | None) -> None:
        self.name = name
        self.options = options
        self._password = password
        # ENABLE undoes DISABLE, which every cluster supports.
        modes = {Mode.DISABLE, Mode.REMOVE_ROLES, Mode.ENABLE}
        if options.reassign_to:
            modes.add(Mode.DELETE)
        self.modes = frozenset(modes)
        self._conn: psycopg.Connection[Any] | None = None

    @classmethod
    def from_context(cls, context: ConnectorContext) -> PostgresConnector:
        """Build from a `type: postgres` section of reconciler.yaml."""
        options = PostgresOptions.from_mapping(context.name, context.options, context.base_dir)
        password = secret_from_env(context, options.password_env, "the PostgreSQL password")
        return cls(context.name, options, password=password)

    # -- the Connector contract --

    def pull_accounts(self) -> Iterator[Account]:
        """Every account, read in full before the first is handed out."""
        with self._failing_as(PullError, "pulling accounts"):
            return iter(self._accounts())

    def pull_roles(self) -> list[Role]:
        """Every role an account can belong to, with its comment and own entitlements."""
        with self._failing_as(PullError, "pulling roles"):
            conn = self._main()
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                groups = conn.execute(GROUPS_SQL).fetchall()
                granted = self._entitlements(conn, self._databases(conn))
            return [
                Role(name=clean_text(name), description=clean_text(comment),
                     entitlements=tuple(sorted(set(granted.get(oid, ())))))
                for oid, name, comment in groups
            ]  # fmt: skip

    def pull_identities(self) -> Iterator[Identity]:
        """PostgreSQL roles are accounts, not people: it cannot be an identity source."""
        raise PullError(self.name, self._not_an_identity_source())

    def lookup_account(self, account_id: str) -> Account | None:
        """One role read live, or None if no role has that oid any more (or it is a
        predefined or excluded role). Any other role is read, even one a pull would not
        list (NOLOGIN without the marker), so that a role still there never reads as gone.

        Its roles, attributes and database privileges are read; schema, table and column
        privileges need a connection to every database and come only from a pull."""
        oid = parse_oid(account_id)
        if oid is None:
            return None
        with self._failing_as(ConnectorError, f"reading account {account_id}"):
            conn = self._main()
            with conn.transaction():
                row = self._account_row(conn, oid)
                if row is None:
                    return None
                roles = self._memberships(conn, oid)
                privileges = [p for g, p in conn.execute(DATABASE_PRIVILEGES_SQL) if g == oid]
            return account_from_row(
                row, roles=roles, entitlements=privileges, connecting_user=self.options.user
            )

    def lookup_identity(self, identity_id: str) -> Identity | None:
        """PostgreSQL roles are accounts, not people: it cannot be an identity source."""
        raise ConnectorError(self.name, self._not_an_identity_source())

    def deprovision(self, account: Account, mode: Mode) -> None:
        """Disable or delete the role; a role already gone is done."""
        what = f"{getattr(mode, 'value', mode)} account {account.username!r} (oid {account.id})"
        if mode not in self.modes:
            hint = (
                "set `reassign_to` to the role that should receive its objects"
                if mode is Mode.DELETE
                else "use disable or delete"
            )
            raise ConnectorError(self.name, f"cannot {what}: mode not supported; {hint}")
        oid = parse_oid(account.id)
        if oid is None:
            raise ConnectorError(self.name, f"cannot {what}: the id is not a PostgreSQL oid")
        with self._failing_as(ConnectorError, what):
            if self._refuse_or_gone(oid, account, what):
                return
            if mode is Mode.DISABLE:
                self._disable(oid, account.username)
            else:
                self._delete(oid, account.username)
        after = self.lookup_account(account.id)
        if mode is Mode.DISABLE and (after is None or after.status != "disabled"):
            raise ConnectorError(
                self.name, f"{what}: done, but the role does not read back as disabled; "
                "check it by hand",
            )  # fmt: skip
        if mode is Mode.DELETE and after is not None:
            raise ConnectorError(
                self.name, f"{what}: done, but the role still exists; check it by hand"
            )

    def probe(self, identity_source: bool) -> str:
        """Connect as a pull does and say what the connecting role may do: without
        CREATEROLE (or superuser) it may read, but not disable a role."""
        with self._failing_as(ConnectorError, "connecting"):
            conn = self._main()
            with conn.transaction():
                found = conn.execute(PROBE_SQL).fetchone()
        user, superuser, createrole, logins = found if found else ("?", False, False, 0)
        if not (superuser or createrole):
            raise ConnectorError(
                self.name,
                f"connected as {user!r}, which may read {logins} login roles but not "
                f"disable them: grant it CREATEROLE (and pg_signal_backend)",
            )
        return f"connected as {user!r}; {logins} login roles"

    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None:
        """The roles of one role read live, as `lookup_account` reads them (memberships
        through any depth of nesting, and `(superuser)`), or None when `lookup_account`
        would find no account."""
        oid = parse_oid(account_id)
        if oid is None:
            return None
        with self._failing_as(ConnectorError, f"reading the roles of account {account_id}"):
            conn = self._main()
            with conn.transaction():
                row = self._account_row(conn, oid)
                if row is None:
                    return None
                return account_roles(row, self._memberships(conn, oid))

    def remove_roles(self, account: Account, roles: Collection[str]) -> None:
        """Revoke `roles` from the role whose oid is the account id, which stays; a role
        it does not hold, or a role already gone, is done."""
        wanted = sorted(set(roles))
        what = (
            f"remove role(s) {', '.join(map(repr, wanted))} from account "
            f"{account.username!r} (oid {account.id})"
        )
        if SUPERUSER_ROLE in wanted:
            raise ConnectorError(
                self.name,
                f"cannot {what}: {SUPERUSER_ROLE} is the SUPERUSER attribute, not a "
                "membership; nothing was done: remove it by hand (ALTER ROLE … "
                "NOSUPERUSER), or leave it out of the roles to remove",
            )
        oid = parse_oid(account.id)
        if oid is None:
            raise ConnectorError(self.name, f"cannot {what}: the id is not a PostgreSQL oid")
        if not wanted:
            return
        with self._failing_as(ConnectorError, what):
            if self._revoke(oid, account, wanted, what) is None:
                return  # the role is gone: it holds nothing
        self._check_removed(oid, account, wanted, what)

    def enable(self, account: Account) -> None:
        """Undo a disable of the role whose oid is the account id: LOGIN again and the
        comment it had before, in one transaction. A role that can log in and carries no
        marker is done; ConnectorError, with nothing changed, when the role is gone, was
        made NOLOGIN by someone else, or cannot log in because its VALID UNTIL has passed."""
        what = f"enable account {account.username!r} (oid {account.id})"
        oid = parse_oid(account.id)
        if oid is None:
            raise ConnectorError(self.name, f"cannot {what}: the id is not a PostgreSQL oid")
        with self._failing_as(ConnectorError, what):
            self._enable(oid, account, what)
        after = self.lookup_account(account.id)
        if after is None or after.status != "active":
            raise ConnectorError(
                self.name,
                f"{what}: done, but the role does not read back as active (LOGIN, and VALID "
                "UNTIL unset or in the future); check it by hand",
            )

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- reading --

    def _accounts(self) -> list[Account]:
        conn = self._main()
        with conn.transaction():
            # One snapshot of the shared catalogs: roles and memberships agree.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            rows = [_RoleRow.of(found) for found in conn.execute(ACCOUNTS_SQL).fetchall()]
            memberships: dict[int, list[str]] = defaultdict(list)
            for member, group in conn.execute(MEMBERSHIPS_SQL).fetchall():
                memberships[member].append(group)
            granted = self._entitlements(conn, self._databases(conn))
        return [
            account_from_row(
                row,
                roles=memberships.get(row.oid, ()),
                entitlements=granted.get(row.oid, ()),
                connecting_user=self.options.user,
            )
            for row in rows
            if row.name not in self.options.exclude_roles
        ]

    def _account_row(self, conn: psycopg.Connection[Any], oid: int) -> _RoleRow | None:
        """The catalog row of the role with `oid`, or None when no account has it (gone,
        predefined, or excluded)."""
        found = conn.execute(ACCOUNT_SQL, (oid,)).fetchone()
        if found is None:
            return None
        row = _RoleRow.of(found)
        return None if row.name in self.options.exclude_roles else row

    def _memberships(self, conn: psycopg.Connection[Any], oid: int) -> list[str]:
        """Every role the role with `oid` belongs to, through any depth of nesting."""
        return [name for (name,) in conn.execute(MEMBERSHIPS_OF_SQL, (oid,)).fetchall()]

    def _databases(self, conn: psycopg.Connection[Any]) -> Sequence[str]:
        if self.options.databases is not None:
            return self.options.databases
        return [name for (name,) in conn.execute(ALL_DATABASES_SQL).fetchall()]

    def _entitlements(
        self, conn: psycopg.Connection[Any], databases: Sequence[str]
    ) -> dict[int, list[str]]:
        """Grantee oid → privileges, from the shared catalog and each database."""
        granted: dict[int, list[str]] = defaultdict(list)
        for grantee, privilege in conn.execute(DATABASE_PRIVILEGES_SQL).fetchall():
            granted[grantee].append(privilege)
        for database in databases:
            with self._connect(database) as local, local.transaction():
                local.execute("SET TRANSACTION READ ONLY")
                for grantee, privilege in local.execute(LOCAL_PRIVILEGES_SQL).fetchall():
                    granted[grantee].append(privilege)
        return granted

    # -- deprovisioning --

    def _refuse_or_gone(self, oid: int, account: Account, what: str) -> bool:
        """True if the role is gone (nothing to do); ConnectorError if it may not be
        touched; False to go on."""
        found = self._main().execute(ROLE_BY_OID_SQL, (oid,)).fetchone()
        if found is None:
            return True
        name, superuser = found[0], found[1]
        if name != account.username:
            raise ConnectorError(
                self.name,
                f"cannot {what}: oid {oid} now belongs to role {name!r}, not "
                f"{account.username!r} (renamed, or dropped and its oid reused); nothing "
                "was done: run a check to see the role as it is now",
            )
        why = None
        if name == self.options.user:
            why = "it is the role this connector connects as"
        elif name in self.options.exclude_roles:
            why = "it is listed in `exclude_roles`"
        elif superuser:
            why = (
                "it is a superuser; if the person left, remove SUPERUSER by hand "
                "(ALTER ROLE … NOSUPERUSER) and run the plan again"
            )
        if why:
            raise ConnectorError(self.name, f"refusing to {what}: {why}")
        return False

    def _disable(self, oid: int, role: str) -> None:
        conn = self._main()
        ident = sql.Identifier(role)
        with conn.transaction():
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
            current = conn.execute(ROLE_BY_OID_SQL, (oid,)).fetchone()
            comment = current[2] if current else ""
            wanted = disabled_comment(comment, datetime.now(UTC))
            if wanted != comment:
                conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(wanted)))
            for (group,) in conn.execute(DIRECT_GROUPS_SQL, (oid,)).fetchall():
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), ident))
            left = conn.execute(DIRECT_GROUPS_SQL, (oid,)).fetchall()
            if left:
                # PostgreSQL 16 keeps one grant per grantor; REVOKE drops only ours.
                groups = ", ".join(repr(g) for (g,) in left)
                raise ConnectorError(
                    self.name,
                    f"disable {role!r}: memberships in {groups} were granted by other "
                    "roles and remain; nothing was changed: revoke them by hand",
                )
        self._terminate(oid, role)

    def _delete(self, oid: int, role: str) -> None:
        # Disabled first, marker included: a delete that fails later (an object left in a
        # database not listed) leaves an account that reads as disabled, not one in use.
        self._disable(oid, role)
        conn = self._main()
        ident = sql.Identifier(role)
        assert self.options.reassign_to is not None, "delete is a mode only with reassign_to"
        heir = sql.Identifier(self.options.reassign_to)
        for database in self._databases(conn):
            # REASSIGN/DROP OWNED act only on the database they run in.
            with self._connect(database) as local, local.transaction():
                local.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(ident, heir))
                local.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        try:
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))
        except pg_errors.UndefinedObject:
            return  # dropped meanwhile: done
        except pg_errors.DependentObjectsStillExist as exc:
            raise ConnectorError(
                self.name,
                f"delete {role!r}: the role still owns objects or holds privileges in a "
                "database not in `databases` (PostgreSQL says: "
                f"{self._server_text(exc)}); add that database to `databases`",
            ) from exc

    def _revoke(self, oid: int, account: Account, roles: Sequence[str], what: str) -> str | None:
        """Revoke from the role with `oid` each of `roles` it holds directly, all in one
        transaction; the role's current name, or None when it is gone. ConnectorError,
        with nothing changed, when the role may not be touched, the connecting role lacks
        the right, or a membership stays."""
        conn = self._main()
        with conn.transaction():
            name = self._member_to_touch(conn, oid, account, what)
            if name is None:
                return None
            member = sql.Identifier(name)
            held = {group for (group,) in conn.execute(DIRECT_GROUPS_SQL, (oid,)).fetchall()}
            for group in (g for g in roles if g in held):
                try:
                    conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), member))
                except pg_errors.InsufficientPrivilege as exc:
                    raise ConnectorError(self.name, self._may_not_revoke(what, group)) from exc
            self._check_revoked(conn, oid, name, roles, what)
        return name

    def _member_to_touch(
        self, conn: psycopg.Connection[Any], oid: int, account: Account, what: str
    ) -> str | None:
        """The current name of the role with `oid` (renamed or not), None when it is gone;
        ConnectorError when it is the connecting role or an excluded one."""
        found = conn.execute(MEMBER_BY_OID_SQL, (oid,)).fetchone()
        if found is None:
            return None
        name, is_session_role = found
        why = None
        if is_session_role or self.options.user in (name, account.username):
            why = "it is the role this connector connects as"
        elif self.options.exclude_roles & {name, account.username}:
            why = "it is listed in `exclude_roles`"
        if why:
            raise ConnectorError(self.name, f"refusing to {what}: {why}")
        return str(name)

    def _check_revoked(
        self, conn: psycopg.Connection[Any], oid: int, name: str, roles: Sequence[str], what: str
    ) -> None:
        """ConnectorError (the transaction then rolls back) when the role was renamed
        while its memberships were revoked, or a membership in `roles` stays."""
        again = conn.execute(MEMBER_BY_OID_SQL, (oid,)).fetchone()
        if again is None or again[0] != name:
            # The name REVOKE used may have meant another role for a moment.
            raise ConnectorError(
                self.name,
                f"{what}: the role was renamed or dropped meanwhile; nothing was changed: "
                "run it again",
            )
        left = [
            (group, grantor)
            for group, grantor in conn.execute(DIRECT_GRANTS_SQL, (oid,)).fetchall()
            if group in roles
        ]
        if left:
            # PostgreSQL 16 keeps one grant per grantor; REVOKE drops only ours.
            grants = ", ".join(f"{g!r} (granted by {by!r})" for g, by in left)
            raise ConnectorError(
                self.name,
                f"{what}: memberships in {grants} remain after REVOKE as role "
                f"{self.options.user!r}; nothing was changed: revoke them as the role that "
                "granted them, or as a superuser with REVOKE … GRANTED BY that role",
            )

    def _may_not_revoke(self, what: str, group: str) -> str:
        user = self.options.user
        return (
            f"{what}: role {user!r} may not revoke membership in {group!r}; nothing was "
            f"changed: give {user!r} ADMIN OPTION on {group!r} (GRANT … WITH ADMIN OPTION) "
            "or CREATEROLE (a superuser role needs a superuser)"
        )

    def _check_removed(self, oid: int, account: Account, roles: Sequence[str], what: str) -> None:
        """ConnectorError naming each of `roles` the account still holds, and through
        which of its roles."""
        after = self.lookup_roles(account.id)
        still = [role for role in roles if role in (after or ())]
        if not still:
            return
        with self._failing_as(ConnectorError, what):
            conn = self._main()
            reasons = []
            for role in still:
                through = [d for (d,) in conn.execute(HELD_THROUGH_SQL, (oid, role)).fetchall()]
                via = (
                    f"it comes through {', '.join(map(repr, through))}: remove that role "
                    f"too, or REVOKE {role!r} FROM it"
                    if through
                    else "it was granted again meanwhile: run it again"
                )
                reasons.append(f"still a member of {role!r} after REVOKE; {via}")
        raise ConnectorError(self.name, f"{what}: {'; '.join(reasons)}")

    # -- enabling --

    def _enable(self, oid: int, account: Account, what: str) -> None:
        """In one transaction: find the role by oid, check that it is ours to enable,
        and if it carries the marker, give it LOGIN and its earlier comment back."""
        conn = self._main()
        with conn.transaction():
            name = self._member_to_touch(conn, oid, account, what)
            found = conn.execute(ACCOUNT_SQL, (oid,)).fetchone() if name is not None else None
            if found is None:
                raise ConnectorError(
                    self.name,
                    f"cannot {what}: no role has oid {oid} any more (it was dropped); there "
                    "is nothing to enable: run a check to see the cluster as it is now",
                )
            row = _RoleRow.of(found)
            if self._marked_for_enable(row, what):
                self._restore_login(conn, row, what)

    def _marked_for_enable(self, row: _RoleRow, what: str) -> bool:
        """True when the role carries the disable marker (there is a disable to undo),
        False when it is enabled already; ConnectorError when it is not ours to enable or
        would stay disabled."""
        marked = row.comment.startswith(DISABLED_MARKER)
        if not marked and not row.can_login:
            raise ConnectorError(
                self.name,
                f"cannot {what}: the role is NOLOGIN but was not disabled by reconciler (its "
                f"comment has no {DISABLED_MARKER!r} marker); nothing was changed: if it "
                "should log in again, enable it by hand (ALTER ROLE … LOGIN)",
            )
        if marked and row.superuser:
            raise ConnectorError(
                self.name,
                f"refusing to {what}: it is a superuser, and reconciler never disables one; "
                "nothing was changed: enable it by hand (ALTER ROLE … LOGIN) if it should "
                "log in again",
            )
        if not row.valid:
            raise ConnectorError(
                self.name,
                f"cannot {what}: its VALID UNTIL is in the past, so it could not log in "
                "even with LOGIN; nothing was changed: set a new VALID UNTIL by hand "
                "(ALTER ROLE … VALID UNTIL …) if it should log in again, then run it again",
            )
        return marked

    def _restore_login(self, conn: psycopg.Connection[Any], row: _RoleRow, what: str) -> None:
        """LOGIN and the comment from before the marker, then the role read again by oid:
        ConnectorError (the transaction then rolls back) unless both landed on it."""
        ident = sql.Identifier(row.name)
        earlier = earlier_comment(row.comment)
        try:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(ident))
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(earlier or None))
            )
        except pg_errors.InsufficientPrivilege as exc:
            user = self.options.user
            raise ConnectorError(
                self.name,
                f"{what}: role {user!r} may not alter role {row.name!r} "
                f"({self._server_text(exc)}); nothing was changed: give {user!r} CREATEROLE "
                "(a superuser role needs a superuser)",
            ) from exc
        again = conn.execute(ACCOUNT_SQL, (row.oid,)).fetchone()
        now = _RoleRow.of(again) if again is not None else None
        if now is None or (now.name, now.can_login, now.comment) != (row.name, True, earlier):
            # The name ALTER ROLE used may have meant another role for a moment.
            raise ConnectorError(
                self.name,
                f"{what}: the role was renamed, dropped or changed meanwhile; nothing was "
                "changed: run it again",
            )

    def _terminate(self, oid: int, role: str) -> None:
        # NOLOGIN stops new sessions only; open ones keep every privilege until ended.
        rows = self._main().execute(TERMINATE_SQL, (TERMINATE_WAIT_MS, oid)).fetchall()
        alive = [str(pid) for pid, ended in rows if not ended]
        if alive:
            raise ConnectorError(
                self.name,
                f"sessions of {role!r} (pid {', '.join(alive)}) did not end within "
                f"{TERMINATE_WAIT_MS // 1000} s; end them by hand (pg_terminate_backend)",
            )

    # -- connections and errors --

    def _main(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect(self.options.database)
        return self._conn

    def _connect(self, database: str) -> psycopg.Connection[Any]:
        options = self.options
        params: dict[str, Any] = {
            "host": options.host,
            "port": options.port,
            "dbname": database,
            "user": options.user,
            "sslmode": options.sslmode,
            "connect_timeout": options.connect_timeout,
            "application_name": "access-reconciler",
            "options": f"-c statement_timeout={options.statement_timeout * 1000}",
        }
        if self._password is not None:
            params["password"] = self._password
        if options.sslrootcert is not None:
            params["sslrootcert"] = str(options.sslrootcert)
        try:
            return psycopg.connect(autocommit=True, **params)
        except psycopg.Error as exc:
            problem = self._connect_problem(exc, database)
        # Raised outside the handler, so that nothing chains to psycopg's error: its
        # `pgconn` holds the connection parameters, password included.
        raise _Unreachable(problem)

    def _connect_problem(self, exc: psycopg.Error, database: str) -> str:
        where = f"{self.options.host}:{self.options.port}, database {database!r}"
        user = self.options.user
        # libpq gives no SQLSTATE for a failed connection: the server's FATAL text (in
        # English unless its lc_messages says otherwise) is all there is to tell by.
        text = str(exc)
        kind = exc.sqlstate
        if "authentication" in text or "pg_hba.conf" in text:
            kind = "28000"
        elif "does not exist" in text and "database" in text:
            kind = "3D000"
        elif "permission denied" in text:
            kind = "42501"
        match kind:
            case "28P01" | "28000":
                secret = (
                    f"the password in environment variable {self.options.password_env}"
                    if self.options.password_env
                    else "the password (set password_env)"
                )
                return (
                    f"{where}: the server refused role {user!r} ({self._server_text(exc)}); "
                    f"check {secret}, and that pg_hba.conf lets {user!r} connect from here"
                )
            case "3D000":
                return f"{where}: the database does not exist; fix `database` or `databases`"
            case "42501":
                return (
                    f"{where}: role {user!r} may not connect ({self._server_text(exc)}); "
                    "grant it CONNECT on the database, or leave the database out of `databases`"
                )
        if isinstance(exc, psycopg.errors.ConnectionTimeout):
            return (
                f"{where}: no answer within connect_timeout ({self.options.connect_timeout} s); "
                "check host, port and firewalls, or raise connect_timeout"
            )
        return (
            f"{where}: cannot connect ({self._server_text(exc)}); check host and port, "
            "and that the server is running and reachable from here"
        )

    def _server_text(self, exc: psycopg.Error) -> str:
        """What the server or libpq said, on one line, with the password removed."""
        diag = exc.diag.message_primary if exc.diag else None
        text = " ".join(str(diag or exc).split())
        if self._password:
            text = text.replace(self._password, "[REDACTED]")
        return text[:300]

    def _failing_as(self, error: type[ConnectorError], doing: str) -> _Translate:
        return _Translate(self, error, doing)

    def _not_an_identity_source(self) -> str:
        return (
            "a PostgreSQL cluster holds accounts, not identities: list it under `apps:`, "
            "not `identity_sources:`"
        )


class _Unreachable(Exception):
    """A connection failed; its text is the message already written for the user."""


class _Translate:
    """A context that turns psycopg errors into `error` (a ConnectorError class) with a
    message that names the system, what was being done and what to fix."""

    def __init__(
        self, connector: PostgresConnector, error: type[ConnectorError], doing: str
    ) -> None:
        self.connector = connector
        self.error = error
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        connector = self.connector
        if exc is None or (isinstance(exc, ConnectorError) and isinstance(exc, self.error)):
            return
        if isinstance(exc, ConnectorError):
            raise self.error(connector.name, str(exc).removeprefix(f"{connector.name}: ")) from exc
        if isinstance(exc, _Unreachable):
            raise self.error(connector.name, f"{self.doing} failed: {exc}") from None
        if not isinstance(exc, psycopg.Error):
            return
        if connector._conn is not None and connector._conn.broken:
            connector._conn = None  # reconnect next time
        said = connector._server_text(exc)
        user = connector.options.user
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            hint = (
                f"role {user!r} lacks a privilege this needs ({said}); give it CREATEROLE "
                "and pg_signal_backend (and, to delete, membership in the roles it "
                "deletes, or make it superuser)"
            )
        elif isinstance(exc, pg_errors.QueryCanceled):
            hint = (
                f"a statement ran longer than statement_timeout "
                f"({connector.options.statement_timeout} s), perhaps waiting for a lock "
                "held by another session; retry, or raise statement_timeout"
            )
        elif isinstance(exc, psycopg.OperationalError):
            hint = f"the connection failed ({said}); check that the server is up, then retry"
        else:
            hint = f"the server answered: {said}"
        raise self.error(connector.name, f"{self.doing} failed: {hint}") from exc
