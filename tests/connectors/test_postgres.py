"""The postgres connector against a real PostgreSQL cluster on 127.0.0.1.

One cluster serves the whole session (`cluster`); each test gets its own database and
role names with its own prefix (`box`), all dropped when it ends.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("psycopg") is None and not os.environ.get("CI"):
    pytest.skip(
        "psycopg is not installed: pip install 'psycopg[binary]>=3.1'", allow_module_level=True
    )

import jsonschema
import psycopg
from psycopg import sql

from reconciler.connectors import postgres
from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.postgres import OPTIONS_SCHEMA, PostgresOptions
from reconciler.connectors.postgres_roles import (
    DISABLED_MARKER,
    SUPERUSER_ROLE,
    PostgresConnector,
)
from reconciler.errors import ConfigError, ConnectorError, PullError
from reconciler.model import Account

from .contract import Expect, exercise_connector, exercise_failures, require
from .postgres_server import Cluster, Sandbox, initdb_missing, start_cluster

HOSTILE = 'x"; DROP TABLE orders; --'


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """One cluster for the session; a missing server fails in CI and skips elsewhere."""
    require(initdb_missing(), "PostgreSQL")
    with start_cluster() as running:
        yield running


@pytest.fixture
def box(cluster: Cluster) -> Iterator[Sandbox]:
    sandbox = Sandbox(cluster, f"t{secrets.token_hex(3)}_")
    try:
        yield sandbox
    finally:
        sandbox.drop()


def build(
    box: Sandbox,
    *,
    user: str | None = None,
    password: str | None = None,
    **options: Any,
) -> PostgresConnector:
    """A connector built the way reconciler.yaml builds it, through the registry entry."""
    cluster = box.cluster
    context = ConnectorContext(
        name="pgapp",
        options={
            "host": cluster.host,
            "port": cluster.port,
            "database": box.database,
            "user": user or cluster.superuser,
            "password_env": "PG_PASSWORD",
            **options,
        },
        base_dir=Path("."),
        env={"PG_PASSWORD": password or cluster.password},
    )
    made = postgres.TYPE.build(context)
    assert isinstance(made, PostgresConnector)
    return made


def seed(box: Sandbox) -> dict[str, str]:
    """Groups readers ⊂ staff, four people and an excluded service role; name → role."""
    r = {s: box.role(s) for s in ("readers", "staff", "alice", "bob", "carol", "dave", "svc")}
    r["heir"] = box.role("heir")
    box.create_role(r["readers"], "NOLOGIN")
    box.create_role(r["staff"], "NOLOGIN")
    box.create_role(r["heir"], "NOLOGIN")
    for person in ("alice", "carol", "dave", "svc"):
        box.create_role(r[person], "LOGIN", password="pw-" + person)
    box.create_role(r["bob"], "LOGIN VALID UNTIL '2001-01-01'")
    box.run(
        f"""
        GRANT "{r["readers"]}" TO "{r["staff"]}";
        GRANT "{r["staff"]}" TO "{r["alice"]}", "{r["dave"]}";
        GRANT "{r["readers"]}" TO "{r["carol"]}";
        COMMENT ON ROLE "{r["alice"]}" IS 'alice@acme.example';
        COMMENT ON ROLE "{r["readers"]}" IS 'Read-only access to the app';
        CREATE TABLE orders (id int, amount numeric);
        GRANT SELECT ON orders TO "{r["readers"]}";
        GRANT CREATE ON SCHEMA public TO "{r["dave"]}";
        """
    )
    box.run(f'SET ROLE "{r["dave"]}"; CREATE TABLE public.dave_notes (note text)')
    return r


# -- The contract ---------------------------------------------------------------------


def test_postgres_meets_the_connector_contract(box: Sandbox) -> None:
    r = seed(box)
    pg = build(box, reassign_to=r["heir"], exclude_roles=[r["svc"]])
    assert pg.modes == {Mode.DISABLE, Mode.DELETE, Mode.REMOVE_ROLES, Mode.ENABLE}
    seen = exercise_connector(
        pg,
        Expect(
            accounts=5,  # alice, bob, carol, dave and the connecting superuser
            victim=r["dave"],
            roles=(r["readers"], r["staff"]),
            account_roles={
                r["alice"]: (r["readers"], r["staff"]),
                r["carol"]: (r["readers"],),
                r["dave"]: (r["readers"], r["staff"]),
                box.cluster.superuser: (SUPERUSER_ROLE,),
            },
        ),
    )
    alice = seen.accounts[r["alice"]]
    assert (alice.email, alice.status, alice.type) == ("alice@acme.example", "active", "human")
    assert seen.accounts[r["bob"]].status == "disabled", "VALID UNTIL in the past"
    admin = seen.accounts[box.cluster.superuser]
    assert admin.type == "service" and "attribute:SUPERUSER" in admin.entitlements
    assert r["svc"] not in seen.accounts
    readers = {role.name: role for role in seen.roles}[r["readers"]]
    assert readers.description == "Read-only access to the app"
    assert f"table:{box.database}.public.orders:SELECT" in readers.entitlements
    # dave's table went to the heir, in place.
    assert box.run("SELECT tableowner FROM pg_tables WHERE tablename = 'dave_notes'") == [
        (r["heir"],)
    ]
    pg.close()


# -- What is read -----------------------------------------------------------------------


def test_roles_are_transitive_through_nested_groups(box: Sandbox) -> None:
    a, b, c, person = (box.role(s) for s in ("a", "b", "c", "person"))
    for group in (a, b, c):
        box.create_role(group, "NOLOGIN")
    box.create_role(person)
    box.run(f'GRANT "{a}" TO "{b}"; GRANT "{b}" TO "{c}"; GRANT "{c}" TO "{person}"')
    pg = build(box)
    accounts = {x.username: x for x in pg.pull_accounts()}
    assert accounts[person].roles == (a, b, c)
    assert [role.name for role in pg.pull_roles()] == [a, b, c]
    looked_up = pg.lookup_account(accounts[person].id)
    assert looked_up is not None and looked_up.roles == (a, b, c)


def test_each_kind_of_privilege_is_an_entitlement(box: Sandbox) -> None:
    person, group = box.role("person"), box.role("group")
    box.create_role(person, "LOGIN CREATEDB")
    box.create_role(group, "NOLOGIN")
    db = box.database
    box.run(
        f"""
        CREATE SCHEMA app;
        CREATE TABLE app.orders (id int, amount numeric);
        CREATE SEQUENCE app.order_ids;
        GRANT CONNECT, TEMPORARY ON DATABASE "{db}" TO "{person}";
        GRANT USAGE ON SCHEMA app TO "{person}";
        GRANT SELECT, INSERT ON app.orders TO "{person}";
        GRANT UPDATE (amount) ON app.orders TO "{person}";
        GRANT USAGE ON SEQUENCE app.order_ids TO "{person}";
        GRANT DELETE ON app.orders TO "{group}";
        GRANT "{group}" TO "{person}";
        """
    )
    pg = build(box, databases=[db])
    account = {x.username: x for x in pg.pull_accounts()}[person]
    assert account.entitlements == (
        "attribute:CREATEDB",
        f"column:{db}.app.orders.amount:UPDATE",
        f"database:{db}:CONNECT",
        f"database:{db}:TEMPORARY",
        f"schema:{db}.app:USAGE",
        f"sequence:{db}.app.order_ids:USAGE",
        f"table:{db}.app.orders:INSERT",
        f"table:{db}.app.orders:SELECT",
    ), "only what is granted to the role itself; DELETE comes through its group"
    assert account.roles == (group,)


def test_a_pull_that_cannot_read_a_database_fails_whole(box: Sandbox) -> None:
    box.create_role(box.role("person"))
    pg = build(box, databases=[box.database, box.role("nonexistent")])
    with pytest.raises(PullError, match=r"pgapp: pulling accounts failed: .*does not exist"):
        list(pg.pull_accounts())


# -- Disable and delete -----------------------------------------------------------------


def test_disable_revokes_memberships_keeps_the_comment_and_ends_sessions(box: Sandbox) -> None:
    r = seed(box)
    pg = build(box)
    dave = {x.username: x for x in pg.pull_accounts()}[r["dave"]]
    box.run(f"COMMENT ON ROLE \"{r['dave']}\" IS 'dave@acme.example'")
    session = box.cluster.connect(box.database, user=r["dave"], password="pw-dave")
    assert session.execute("SELECT 1").fetchone() == (1,)

    pg.deprovision(dave, Mode.DISABLE)

    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT count(*) FROM orders")
    with pytest.raises(psycopg.OperationalError):
        box.cluster.connect(box.database, user=r["dave"], password="pw-dave")
    after = pg.lookup_account(dave.id)
    assert after is not None
    assert (after.status, after.roles, after.email) == ("disabled", (), "dave@acme.example")
    comment_sql = f"SELECT shobj_description('\"{r['dave']}\"'::regrole, 'pg_authid')"
    [(comment,)] = box.run(comment_sql)
    assert comment.startswith(DISABLED_MARKER) and comment.endswith("\ndave@acme.example")
    pg.deprovision(dave, Mode.DISABLE)
    assert box.run(comment_sql) == [(comment,)], "a repeat changes nothing"
    # Others keep theirs.
    alice = {x.username: x for x in pg.pull_accounts()}[r["alice"]]
    assert alice.roles == (r["readers"], r["staff"])


def test_delete_reassigns_owned_objects_in_every_database(box: Sandbox) -> None:
    victim, heir = box.role("victim"), box.role("heir")
    box.create_role(victim, "LOGIN")
    box.create_role(heir, "NOLOGIN")
    other = box.new_database("other")
    for db in (box.database, other):
        box.run(f'GRANT CREATE ON SCHEMA public TO "{victim}"', db)
        box.run(f'SET ROLE "{victim}"; CREATE TABLE kept (x int)', db)
    pg = build(box, databases=[box.database, other], reassign_to=heir)
    account = {x.username: x for x in pg.pull_accounts()}[victim]
    assert f"table:{other}.public.kept:SELECT" in account.entitlements

    pg.deprovision(account, Mode.DELETE)

    assert pg.lookup_account(account.id) is None
    for db in (box.database, other):
        assert box.run("SELECT tableowner FROM pg_tables WHERE tablename = 'kept'", db) == [(heir,)]
    pg.deprovision(account, Mode.DELETE)  # already gone: done


def test_delete_leaving_objects_in_an_unlisted_database_says_which_option(box: Sandbox) -> None:
    victim, heir = box.role("victim"), box.role("heir")
    box.create_role(victim, "LOGIN")
    box.create_role(heir, "NOLOGIN")
    other = box.new_database("other")
    box.run(f'GRANT CREATE ON SCHEMA public TO "{victim}"', other)
    box.run(f'SET ROLE "{victim}"; CREATE TABLE kept (x int)', other)
    pg = build(box, databases=[box.database], reassign_to=heir)
    account = {x.username: x for x in pg.pull_accounts()}[victim]
    with pytest.raises(ConnectorError, match="`databases`"):
        pg.deprovision(account, Mode.DELETE)
    assert pg.lookup_account(account.id) is not None


def test_delete_is_not_offered_without_reassign_to(box: Sandbox) -> None:
    person = box.create_role(box.role("person"))
    pg = build(box)
    assert pg.modes == {Mode.DISABLE, Mode.REMOVE_ROLES, Mode.ENABLE}
    account = {x.username: x for x in pg.pull_accounts()}[person]
    with pytest.raises(ConnectorError, match="reassign_to"):
        pg.deprovision(account, Mode.DELETE)


# -- Removing roles from an account that stays -------------------------------------------


def pulled(pg: PostgresConnector) -> dict[str, Account]:
    """Every account a pull yields, by username."""
    return {x.username: x for x in pg.pull_accounts()}


def test_lookup_roles_reads_what_a_pull_reads(box: Sandbox) -> None:
    r = seed(box)
    root = box.create_role(box.role("root"), "LOGIN SUPERUSER")
    box.run(f'GRANT "{r["readers"]}" TO "{root}"')
    pg = build(box, exclude_roles=[r["svc"]])
    accounts = pulled(pg)
    for name in (r["alice"], r["bob"], r["carol"], root, box.cluster.superuser):
        assert pg.lookup_roles(accounts[name].id) == accounts[name].roles, name
    assert pg.lookup_roles(accounts[r["alice"]].id) == (r["readers"], r["staff"]), "nested"
    assert pg.lookup_roles(accounts[root].id) == (SUPERUSER_ROLE, r["readers"])
    svc_oid = box.run(f"SELECT oid::text FROM pg_roles WHERE rolname = '{r['svc']}'")[0][0]
    assert pg.lookup_roles(svc_oid) is None, "an excluded role is no account"
    assert pg.lookup_roles("no-such-account-id") is None
    box.run(f'DROP ROLE "{r["bob"]}"')
    assert pg.lookup_roles(accounts[r["bob"]].id) is None


def test_remove_roles_revokes_only_the_roles_asked_for(box: Sandbox) -> None:
    r = seed(box)
    writers = box.create_role(box.role("writers"), "NOLOGIN")
    box.run(f'GRANT "{writers}" TO "{r["carol"]}", "{r["alice"]}"')
    pg = build(box)
    assert Mode.REMOVE_ROLES in pg.modes
    before = pulled(pg)
    carol = before[r["carol"]]
    assert carol.roles == (r["readers"], writers)

    pg.remove_roles(carol, [r["readers"]])

    assert pg.lookup_roles(carol.id) == (writers,)
    after = pulled(pg)
    assert after[r["carol"]].roles == (writers,)
    assert after[r["carol"]].status == "active", "the account stays"
    for other in (r["alice"], r["dave"]):
        assert after[other].roles == before[other].roles, other
    pg.remove_roles(carol, [r["readers"]])  # a repeat is harmless
    pg.remove_roles(carol, [r["staff"], box.role("no_such_group"), r["readers"]])
    assert pg.lookup_roles(carol.id) == (writers,), "roles not held change nothing"
    pg.remove_roles(carol, [])
    assert pg.lookup_roles(carol.id) == (writers,)


def test_remove_roles_from_a_dropped_role_is_done(box: Sandbox) -> None:
    r = seed(box)
    pg = build(box)
    carol = pulled(pg)[r["carol"]]
    box.run(f'DROP ROLE "{r["carol"]}"')
    pg.remove_roles(carol, [r["readers"]])
    assert pg.lookup_roles(carol.id) is None


def test_a_role_held_through_another_is_reported_not_hidden(box: Sandbox) -> None:
    r = seed(box)
    pg = build(box)
    alice = pulled(pg)[r["alice"]]
    assert alice.roles == (r["readers"], r["staff"]), "readers comes through staff"
    with pytest.raises(
        ConnectorError, match=rf"still a member of '{r['readers']}'.*through '{r['staff']}'"
    ):
        pg.remove_roles(alice, [r["readers"]])
    assert pg.lookup_roles(alice.id) == (r["readers"], r["staff"])
    pg.remove_roles(alice, [r["readers"], r["staff"]])  # both: nothing is left
    assert pg.lookup_roles(alice.id) == ()


def test_role_names_that_need_quoting_are_only_identifiers(box: Sandbox) -> None:
    sentinel = box.create_role(box.role("sentinel"), "NOLOGIN")
    group = box.create_role(box.role(f'Mixed "Case"; DROP ROLE {sentinel}; --'), "NOLOGIN")
    plain = box.create_role(box.role("plain"), "NOLOGIN")
    member = box.create_role(box.role(HOSTILE))
    with box.cluster.connect() as conn:
        for granted in (group, plain):
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), sql.Identifier(member))
            )
    pg = build(box)
    account = pulled(pg)[member]
    assert account.roles == tuple(sorted((group, plain)))

    pg.remove_roles(account, [group])

    assert pg.lookup_roles(account.id) == (plain,)
    exists = "SELECT rolname FROM pg_roles WHERE rolname = ANY(ARRAY[{}])"
    names = ", ".join(sql.Literal(n).as_string() for n in (sentinel, group, plain, member))
    assert len(box.run(exists.format(names))) == 4, "no role was dropped"


def test_a_renamed_role_loses_its_role_and_a_reused_name_is_not_touched(box: Sandbox) -> None:
    r = seed(box)
    renamed = box.role("carol_renamed")
    box.roles.append(renamed)
    pg = build(box)
    carol = pulled(pg)[r["carol"]]
    box.run(f'ALTER ROLE "{r["carol"]}" RENAME TO "{renamed}"')
    # Someone else now has carol's old name, and the same group.
    box.run(f'CREATE ROLE "{r["carol"]}" LOGIN; GRANT "{r["readers"]}" TO "{r["carol"]}"')

    pg.remove_roles(carol, [r["readers"]])

    now = pulled(pg)
    assert now[renamed].id == carol.id and now[renamed].roles == ()
    assert now[r["carol"]].id != carol.id and now[r["carol"]].roles == (r["readers"],)


def test_membership_granted_by_another_role_is_removed_or_reported(box: Sandbox) -> None:
    r = seed(box)
    operator = box.create_role(box.role("operator"), "LOGIN CREATEROLE", password="op-pw")
    box.run(f'GRANT "{r["readers"]}" TO "{operator}" WITH ADMIN OPTION')
    writers = box.create_role(box.role("writers"), "NOLOGIN")
    with box.cluster.connect(user=operator, password="op-pw") as conn:
        conn.execute(f'GRANT "{r["readers"]}" TO "{r["bob"]}"')
    box.run(f'GRANT "{writers}" TO "{r["bob"]}"')
    pg = build(box)  # the superuser did not grant bob's readers
    bob = pulled(pg)[r["bob"]]
    assert bob.roles == (r["readers"], writers)
    with box.cluster.connect() as conn:
        version = conn.info.server_version
    if version >= 160000:
        # One grant per grantor: the superuser's REVOKE leaves the operator's.
        with pytest.raises(ConnectorError, match=rf"'{r['readers']}' \(granted by '{operator}'\)"):
            pg.remove_roles(bob, [writers, r["readers"]])
        assert pg.lookup_roles(bob.id) == (r["readers"], writers), "nothing was changed"
    else:
        # PostgreSQL 15 keeps one grant per membership, whoever granted it.
        pg.remove_roles(bob, [writers, r["readers"]])
        assert pg.lookup_roles(bob.id) == ()


def test_a_connecting_role_without_the_right_is_told_what_it_lacks(box: Sandbox) -> None:
    r = seed(box)
    writers = box.create_role(box.role("writers"), "NOLOGIN")
    box.run(f'GRANT "{writers}" TO "{r["carol"]}"')
    deputy = box.create_role(box.role("deputy"), "LOGIN", password="deputy-pw")
    box.run(f'GRANT "{writers}" TO "{deputy}" WITH ADMIN OPTION')
    pg = build(box, user=deputy, password="deputy-pw")
    carol = pulled(pg)[r["carol"]]

    with pytest.raises(
        ConnectorError,
        match=rf"pgapp: .*'{deputy}' may not revoke .*'{r['readers']}'.*ADMIN OPTION",
    ):
        pg.remove_roles(carol, [writers, r["readers"]])
    assert pg.lookup_roles(carol.id) == (r["readers"], writers), "nothing was changed"

    pg.remove_roles(carol, [writers])  # ADMIN OPTION on writers is enough for writers
    assert pg.lookup_roles(carol.id) == (r["readers"],)


@pytest.mark.parametrize("which", ["connecting role", "excluded role"])
def test_remove_roles_refuses_protected_roles(box: Sandbox, which: str) -> None:
    r = seed(box)
    target = {"connecting role": box.cluster.superuser, "excluded role": r["svc"]}[which]
    box.run(f'GRANT "{r["readers"]}" TO "{target}"')
    account = pulled(build(box))[target]
    pg = build(box, exclude_roles=[r["svc"]])
    why = {"connecting role": "connects as", "excluded role": "exclude_roles"}[which]
    with pytest.raises(ConnectorError, match=rf"refusing to remove .*{target}.*{why}"):
        pg.remove_roles(account, [r["readers"]])
    assert pulled(build(box))[target].roles == account.roles, "nothing was changed"


def test_the_superuser_marker_is_not_a_role_to_revoke(box: Sandbox) -> None:
    r = seed(box)
    root = box.create_role(box.role("root"), "LOGIN SUPERUSER")
    box.run(f'GRANT "{r["readers"]}" TO "{root}"')
    pg = build(box)
    account = pulled(pg)[root]
    with pytest.raises(ConnectorError, match="NOSUPERUSER"):
        pg.remove_roles(account, [r["readers"], SUPERUSER_ROLE])
    assert pg.lookup_roles(account.id) == (SUPERUSER_ROLE, r["readers"]), "nothing was changed"


# -- Enabling what a disable disabled -------------------------------------------------------


@dataclass(frozen=True)
class RoleState:
    """A role as the catalog holds it, read as the superuser by oid."""

    name: str
    can_login: bool
    comment: str | None
    valid_until: Any
    version: str  # the catalog row's xmin: any write to the role changes it


def role_state(box: Sandbox, oid: str) -> RoleState | None:
    """The role with `oid` as it is now, or None when it is gone."""
    with box.cluster.connect() as conn:
        found = conn.execute(
            "SELECT rolname, rolcanlogin, shobj_description(oid, 'pg_authid'), rolvaliduntil,"
            " xmin::text FROM pg_authid WHERE oid = %s::oid",
            (oid,),
        ).fetchone()
    return RoleState(*found) if found else None


def can_log_in(box: Sandbox, role: str, password: str) -> bool:
    """Whether `role` can open a session with `password`."""
    try:
        with box.cluster.connect(box.database, user=role, password=password) as session:
            return bool(session.execute("SELECT true").fetchone())
    except psycopg.OperationalError:
        return False


def disabled_account(
    box: Sandbox, pg: PostgresConnector, role: str, comment: str | None = None
) -> Account:
    """Role `role` (made with password `pw`) given `comment`, then disabled by `pg`."""
    if comment is not None:
        with box.cluster.connect() as conn:
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    sql.Identifier(role), sql.Literal(comment)
                )
            )
    account = pulled(pg)[role]
    pg.deprovision(account, Mode.DISABLE)
    assert not can_log_in(box, role, "pw")
    return account


@pytest.mark.parametrize(
    "comment",
    [None, "dave@acme.example", "Dave, payroll\nsecond line"],
    ids=["no comment", "email", "two lines"],
)
def test_enable_undoes_a_disable(box: Sandbox, comment: str | None) -> None:
    r = seed(box)
    dave = box.create_role(box.role("dave2"), "LOGIN", password="pw")
    box.run(f'GRANT "{r["staff"]}" TO "{dave}"')
    pg = build(box)
    assert Mode.ENABLE in pg.modes
    account = disabled_account(box, pg, dave, comment)
    disabled = role_state(box, account.id)
    assert disabled is not None and (disabled.comment or "").startswith(DISABLED_MARKER)

    pg.enable(account)

    after = pg.lookup_account(account.id)
    assert after is not None and after.status == "active"
    assert after.email == ("dave@acme.example" if comment == "dave@acme.example" else "")
    assert after.roles == (), "memberships a disable revoked are not granted again"
    assert can_log_in(box, dave, "pw")
    state = role_state(box, account.id)
    assert state is not None and state.comment == comment, "the comment from before is back"
    assert pulled(pg)[dave].status == "active"


def test_enable_twice_changes_nothing_the_second_time(box: Sandbox) -> None:
    person = box.create_role(box.role("person"), "LOGIN", password="pw")
    pg = build(box)
    account = disabled_account(box, pg, person, "person@acme.example")
    pg.enable(account)
    first = role_state(box, account.id)

    pg.enable(account)

    assert role_state(box, account.id) == first, "the role was not written again"
    assert first is not None and (first.can_login, first.comment) == (True, "person@acme.example")


def test_enable_finishes_a_disable_undone_by_half(box: Sandbox) -> None:
    person = box.create_role(box.role("person"), "LOGIN", password="pw")
    pg = build(box)
    account = disabled_account(box, pg, person, "kept")
    box.run(f'ALTER ROLE "{person}" LOGIN')  # by hand; the marker stays

    pg.enable(account)

    state = role_state(box, account.id)
    assert state is not None and (state.can_login, state.comment) == (True, "kept")


def test_a_role_made_nologin_by_someone_else_is_not_enabled(box: Sandbox) -> None:
    person = box.create_role(box.role("person"), "LOGIN", password="pw")
    box.run(f"COMMENT ON ROLE \"{person}\" IS 'locked by the DBA'")
    pg = build(box)
    account = pulled(pg)[person]
    box.run(f'ALTER ROLE "{person}" NOLOGIN')
    before = role_state(box, account.id)

    with pytest.raises(ConnectorError, match=r"pgapp: .*not disabled by reconciler.*by hand"):
        pg.enable(account)

    assert role_state(box, account.id) == before, "nothing was changed"
    assert not can_log_in(box, person, "pw")


def test_an_enabled_role_without_the_marker_is_done(box: Sandbox) -> None:
    person = box.create_role(box.role("person"), "LOGIN", password="pw")
    box.run(f"COMMENT ON ROLE \"{person}\" IS 'person@acme.example'")
    pg = build(box)
    account = pulled(pg)[person]
    before = role_state(box, account.id)

    pg.enable(account)

    assert role_state(box, account.id) == before


def test_a_renamed_role_is_enabled_and_a_reused_name_is_not_touched(box: Sandbox) -> None:
    carol, renamed = box.role("carol"), box.role("carol_renamed")
    box.create_role(carol, "LOGIN", password="pw")
    box.roles.append(renamed)
    pg = build(box)
    account = disabled_account(box, pg, carol, "carol@acme.example")
    box.run(f'ALTER ROLE "{carol}" RENAME TO "{renamed}"')
    # Someone else now has carol's old name, and looks just as disabled by reconciler.
    box.run(
        f"""CREATE ROLE "{carol}" NOLOGIN PASSWORD 'pw';
        COMMENT ON ROLE "{carol}" IS '{DISABLED_MARKER} 2026-01-01T00:00:00Z\nnot carol'"""
    )
    stranger = box.run(f"SELECT oid::text FROM pg_roles WHERE rolname = '{carol}'")[0][0]
    untouched = role_state(box, stranger)

    pg.enable(account)

    state = role_state(box, account.id)
    assert state is not None
    assert (state.name, state.can_login, state.comment) == (renamed, True, "carol@acme.example")
    assert can_log_in(box, renamed, "pw")
    assert role_state(box, stranger) == untouched, "the role that took the old name"


def test_enabling_a_dropped_role_says_there_is_nothing_to_enable(box: Sandbox) -> None:
    person = box.create_role(box.role("person"), "LOGIN", password="pw")
    pg = build(box)
    account = disabled_account(box, pg, person)
    box.run(f'DROP ROLE "{person}"')
    with pytest.raises(ConnectorError, match=r"pgapp: .*nothing to enable"):
        pg.enable(account)
    with pytest.raises(ConnectorError, match="not a PostgreSQL oid"):
        pg.enable(Account.build(id="not-an-oid", username=person))


def test_enable_without_createrole_is_told_what_it_lacks(box: Sandbox) -> None:
    weak, person = box.role("weak"), box.role("person")
    box.create_role(weak, "LOGIN", password="weak-pw")
    box.create_role(person, "LOGIN", password="pw")
    account = disabled_account(box, build(box), person, "person@acme.example")
    before = role_state(box, account.id)
    pg = build(box, user=weak, password="weak-pw")

    with pytest.raises(ConnectorError, match=rf"pgapp: .*'{weak}' may not .*CREATEROLE"):
        pg.enable(account)

    assert role_state(box, account.id) == before, "nothing was changed"
    live = pg.lookup_account(account.id)
    assert live is not None and live.status == "disabled"


@pytest.mark.parametrize("which", ["connecting role", "excluded role"])
def test_enable_refuses_protected_roles(box: Sandbox, which: str) -> None:
    svc = box.create_role(box.role("svc"), "LOGIN", password="pw")
    target = {"connecting role": box.cluster.superuser, "excluded role": svc}[which]
    account = pulled(build(box))[target]
    if which == "excluded role":
        build(box).deprovision(account, Mode.DISABLE)
    before = role_state(box, account.id)
    pg = build(box, exclude_roles=[svc])
    why = {"connecting role": "connects as", "excluded role": "exclude_roles"}[which]
    with pytest.raises(ConnectorError, match=rf"refusing to enable .*{target}.*{why}"):
        pg.enable(account)
    assert role_state(box, account.id) == before, "nothing was changed"


def test_a_marked_superuser_is_not_enabled(box: Sandbox) -> None:
    person = box.create_role(box.role("person"), "LOGIN", password="pw")
    pg = build(box)
    account = disabled_account(box, pg, person)
    box.run(f'ALTER ROLE "{person}" SUPERUSER')
    before = role_state(box, account.id)
    with pytest.raises(ConnectorError, match=r"refusing to enable .*superuser"):
        pg.enable(account)
    assert role_state(box, account.id) == before


def test_a_past_valid_until_is_named_and_left_alone(box: Sandbox) -> None:
    person = box.create_role(box.role("person"), "LOGIN VALID UNTIL '2001-01-01'", password="pw")
    pg = build(box)
    account = disabled_account(box, pg, person, "person@acme.example")
    before = role_state(box, account.id)

    with pytest.raises(ConnectorError, match=r"pgapp: .*VALID UNTIL"):
        pg.enable(account)

    assert role_state(box, account.id) == before, "neither LOGIN nor VALID UNTIL changed"
    box.run(f"ALTER ROLE \"{person}\" VALID UNTIL 'infinity'")
    pg.enable(account)
    assert can_log_in(box, person, "pw")


def test_a_hostile_role_name_and_comment_are_enabled_as_data(box: Sandbox) -> None:
    sentinel = box.create_role(box.role("sentinel"), "NOLOGIN")
    box.create_role(HOSTILE, "LOGIN", password="pw")
    comment = f'it\'s "{sentinel}"\'; DROP ROLE "{sentinel}"; --'
    pg = build(box)
    account = disabled_account(box, pg, HOSTILE, comment)

    pg.enable(account)

    state = role_state(box, account.id)
    assert state is not None and (state.can_login, state.comment) == (True, comment)
    assert can_log_in(box, HOSTILE, "pw")
    assert box.run(f"SELECT 1 FROM pg_roles WHERE rolname = '{sentinel}'") == [(1,)]


# -- Safety -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["superuser", "connecting role", "excluded role"])
def test_protected_roles_are_refused(box: Sandbox, which: str) -> None:
    root, svc = box.role("root"), box.role("svc")
    box.create_role(root, "LOGIN SUPERUSER")
    box.create_role(svc, "LOGIN")
    pg = build(box, reassign_to=root)
    accounts = {x.username: x for x in pg.pull_accounts()}
    assert SUPERUSER_ROLE in accounts[root].roles
    name = {"superuser": root, "connecting role": box.cluster.superuser, "excluded role": svc}
    target = accounts[name[which]]
    why = {"superuser": "superuser", "connecting role": "connects as", "excluded role": "exclude"}
    guarded = build(box, reassign_to=root, exclude_roles=[svc])
    for mode in (Mode.DISABLE, Mode.DELETE):
        with pytest.raises(ConnectorError, match=rf"refusing to .*{target.username}.*{why[which]}"):
            guarded.deprovision(target, mode)
    live = pg.lookup_account(target.id)
    assert live is not None and live.status == "active"


def test_a_hostile_role_name_is_only_ever_an_identifier(box: Sandbox) -> None:
    heir = box.create_role(box.role("heir"), "NOLOGIN")
    box.create_role(HOSTILE, "LOGIN")
    box.run("CREATE TABLE orders (id int)")
    with box.cluster.connect(box.database) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON orders TO {}").format(sql.Identifier(HOSTILE)))
    pg = build(box, databases=[box.database], reassign_to=heir)
    account = {x.username: x for x in pg.pull_accounts()}[HOSTILE]
    assert f"table:{box.database}.public.orders:SELECT" in account.entitlements
    pg.deprovision(account, Mode.DISABLE)
    pg.deprovision(account, Mode.DELETE)
    assert pg.lookup_account(account.id) is None
    assert box.run("SELECT count(*) FROM orders") == [(0,)], "the table is still there"


def test_a_renamed_role_or_a_reused_oid_is_refused(box: Sandbox) -> None:
    old, new = box.role("old"), box.role("new")
    box.create_role(old, "LOGIN")
    box.roles.append(new)
    pg = build(box, reassign_to=box.cluster.superuser)
    account = {x.username: x for x in pg.pull_accounts()}[old]
    box.run(f'ALTER ROLE "{old}" RENAME TO "{new}"')
    for mode in (Mode.DISABLE, Mode.DELETE):
        with pytest.raises(ConnectorError, match=rf"oid {account.id} now belongs to role '{new}'"):
            pg.deprovision(account, mode)
    live = pg.lookup_account(account.id)
    assert live is not None and (live.username, live.status) == (new, "active")


# -- Failures -----------------------------------------------------------------------------


def test_a_wrong_password_is_refused_without_the_password(box: Sandbox) -> None:
    wrong = "Wr0ng-pa55word-Zq8vK3"
    pg = build(box, password=wrong)
    exercise_failures(pg, wrong, identities=False)
    victim = Account.build(id="16384", username="someone")
    attempts = [
        lambda: list(pg.pull_accounts()),
        pg.pull_roles,
        lambda: pg.lookup_account("16384"),
        lambda: pg.deprovision(victim, Mode.DISABLE),
        lambda: pg.lookup_roles("16384"),
        lambda: pg.remove_roles(victim, ["readers"]),
        lambda: pg.enable(victim),
    ]
    for attempt in attempts:
        with pytest.raises(ConnectorError) as caught:
            attempt()
        text = f"{caught.value} {caught.value!r}"
        # Nothing reachable from the error holds it either (psycopg's own error does).
        chained: BaseException | None = caught.value
        while chained is not None:
            assert wrong not in f"{chained!r} {getattr(chained, 'pgconn', '')!r}"
            chained = chained.__cause__ or chained.__context__
        assert "pgapp" in text and "PG_PASSWORD" in text and "pg_hba.conf" in text
        assert wrong not in text and box.cluster.password not in text
    with pytest.raises(PullError):
        list(pg.pull_accounts())


def test_an_unreachable_port_names_host_and_port(box: Sandbox) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    pg = build(box, port=closed_port, connect_timeout=2)
    exercise_failures(pg, box.cluster.password, identities=False)
    with pytest.raises(
        PullError, match=rf"pgapp: .*127\.0\.0\.1:{closed_port}.*check host and port"
    ):
        list(pg.pull_accounts())


def test_a_connecting_role_without_createrole_is_told_what_it_lacks(box: Sandbox) -> None:
    weak, person = box.role("weak"), box.role("person")
    box.create_role(weak, "LOGIN", password="weak-pw")
    box.create_role(person, "LOGIN")
    pg = build(box, user=weak, password="weak-pw")
    account = {x.username: x for x in pg.pull_accounts()}[person]
    with pytest.raises(ConnectorError, match=rf"role '{weak}' lacks a privilege.*CREATEROLE"):
        pg.deprovision(account, Mode.DISABLE)
    live = pg.lookup_account(account.id)
    assert live is not None and live.status == "active", "the failed disable changed nothing"


def test_a_createrole_role_with_pg_signal_backend_can_disable(box: Sandbox) -> None:
    r = seed(box)
    operator = box.create_role(box.role("operator"), "LOGIN CREATEROLE", password="op-pw")
    box.run(f'GRANT pg_signal_backend TO "{operator}"')
    pg = build(box, user=operator, password="op-pw")
    dave = {x.username: x for x in pg.pull_accounts()}[r["dave"]]
    session = box.cluster.connect(box.database, user=r["dave"], password="pw-dave")
    pg.deprovision(dave, Mode.DISABLE)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    after = pg.lookup_account(dave.id)
    assert after is not None and (after.status, after.roles) == ("disabled", ())


def test_a_lock_held_elsewhere_ends_in_statement_timeout(box: Sandbox) -> None:
    person = box.create_role(box.role("person"))
    pg = build(box, statement_timeout=1)
    account = {x.username: x for x in pg.pull_accounts()}[person]
    with box.cluster.connect() as holder:
        holder.execute("BEGIN")
        holder.execute(f'ALTER ROLE "{person}" CONNECTION LIMIT 5')
        with pytest.raises(ConnectorError, match="statement_timeout"):
            pg.deprovision(account, Mode.DISABLE)
        holder.execute("ROLLBACK")
    pg.deprovision(account, Mode.DISABLE)  # the connector recovers once the lock is gone
    after = pg.lookup_account(account.id)
    assert after is not None and after.status == "disabled"


# -- Options ------------------------------------------------------------------------------


def test_build_names_the_extra_when_psycopg_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "reconciler.connectors.postgres_roles")
    context = ConnectorContext(
        name="pgapp",
        options={"host": "db", "database": "app", "user": "reconciler"},
        base_dir=Path("."),
    )
    with pytest.raises(ConfigError, match=r"pip install 'access-reconciler\[postgres\]'"):
        postgres.TYPE.build(context)


def test_options_are_checked() -> None:
    jsonschema.Draft202012Validator.check_schema(OPTIONS_SCHEMA)
    defaults = {k: v.get("default") for k, v in OPTIONS_SCHEMA["properties"].items()}
    options = PostgresOptions.from_mapping(
        "pgapp", {"host": "h", "database": "d", "user": "u"}, Path(".")
    )
    assert (options.port, options.sslmode, options.connect_timeout) == (
        defaults["port"],
        defaults["sslmode"],
        defaults["connect_timeout"],
    )
    assert options.statement_timeout == defaults["statement_timeout"]
    assert options.databases is None and options.exclude_roles == frozenset()
    with_cert = PostgresOptions.from_mapping(
        "pgapp", {"host": "h", "database": "d", "user": "u", "sslrootcert": "ca.pem"}, Path("/repo")
    )
    assert with_cert.sslrootcert == Path("/repo/ca.pem")
    with pytest.raises(ConfigError, match=r"unknown option.*pasword_env"):
        PostgresOptions.from_mapping(
            "pgapp", {"host": "h", "database": "d", "user": "u", "pasword_env": "X"}, Path(".")
        )
    with pytest.raises(ConfigError, match="database is required"):
        PostgresOptions.from_mapping("pgapp", {"host": "h", "user": "u"}, Path("."))
    assert postgres.TYPE.secret_env_options == ("password_env",)
    context = ConnectorContext(
        name="pgapp",
        options={"host": "h", "database": "d", "user": "u", "password_env": "PG_PASSWORD"},
        base_dir=Path("."),
        env={},
    )
    with pytest.raises(ConfigError, match="environment variable PG_PASSWORD is not set"):
        postgres.TYPE.build(context)


def test_it_is_not_an_identity_source() -> None:
    options = PostgresOptions(host="127.0.0.1", database="d", user="u")
    pg = PostgresConnector("pgapp", options, password=None)
    with pytest.raises(PullError, match="not identities"):
        list(pg.pull_identities())
    with pytest.raises(ConnectorError, match="not identities"):
        pg.lookup_identity("1")


def test_a_server_that_never_answers_ends_in_connect_timeout() -> None:
    with socket.socket() as silent:
        # The kernel completes the TCP handshake; nothing ever answers libpq's startup.
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        options = PostgresOptions(
            host="127.0.0.1", port=port, database="d", user="u", connect_timeout=2
        )
        pg = PostgresConnector("pgapp", options, password=None)
        with pytest.raises(PullError, match=r"pgapp: .*connect_timeout \(2 s\)") as caught:
            list(pg.pull_accounts())
    assert "raise connect_timeout" in str(caught.value)


def test_the_probe_says_who_connects_and_refuses_a_role_that_cannot_disable(box: Sandbox) -> None:
    seed(box)
    said = build(box).probe(identity_source=False)
    assert f"connected as '{box.cluster.superuser}'" in said and "login roles" in said
    reader = box.create_role(box.role("reader"), "LOGIN", password="reader-pw")
    with pytest.raises(ConnectorError, match=rf"'{reader}'.*grant it CREATEROLE"):
        build(box, user=reader, password="reader-pw").probe(identity_source=False)
    with pytest.raises(ConnectorError, match="pgapp"):
        build(box, password="wrong-password").probe(identity_source=False)
