"""The ldap connector against a real OpenLDAP slapd on 127.0.0.1.

One slapd serves the whole session (`directory`); each test gets its own subtree
`ou=tXXXX,dc=test` (`sub`). The AD dialect's parsing is tested here as pure functions,
and against a real Samba domain controller in test_ldap_ad.py.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("ldap3") is None and not os.environ.get("CI"):
    pytest.skip("ldap3 is not installed: pip install 'ldap3>=2.9'", allow_module_level=True)

import jsonschema
import ldap3  # type: ignore[import-untyped]

from reconciler.connectors import ldap
from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.ldap import OPTIONS_SCHEMA, LdapOptions
from reconciler.connectors.ldap_directory import (
    LdapConnector,
    account_expired,
    filetime_to_datetime,
    id_filter,
    id_text,
    last_login_time,
    uac_disabled,
    with_disabled_bit,
    without_disabled_bit,
)
from reconciler.errors import ConfigError, ConnectorError, PullError

from .contract import Expect, exercise_connector, exercise_failures, require
from .ldap_server import (
    CAPPED_DN,
    READER_DN,
    SIZE_LIMIT,
    WRITER_DN,
    Directory,
    Subtree,
    TlsFiles,
    slapd_missing,
    start_slapd,
)

HOSTILE = "*)(uid=*"
DISABLE = {"attribute": "employeeType", "value": "disabled"}


@pytest.fixture(scope="session")
def directory() -> Iterator[Directory]:
    """One slapd for the session; a missing server fails in CI and skips elsewhere."""
    require(slapd_missing(), "OpenLDAP")
    with start_slapd() as running:
        yield running


@pytest.fixture
def sub(directory: Directory) -> Iterator[Subtree]:
    subtree = Subtree(directory)
    try:
        yield subtree
    finally:
        subtree.close()


def build(
    sub: Subtree, *, bind_dn: str = WRITER_DN, password: str | None = None, **options: Any
) -> LdapConnector:
    """A connector built the way reconciler.yaml builds it, through the registry entry.
    `disable=None` leaves `disable` out."""
    settings: dict[str, Any] = {
        "url": sub.directory.url,
        "bind_dn": bind_dn,
        "password_env": "LDAP_PASSWORD",
        "base_dn": sub.base,
        "disable": DISABLE,
        **options,
    }
    if settings["disable"] is None:
        del settings["disable"]
    context = ConnectorContext(
        name="corp-ldap",
        options=settings,
        base_dir=Path("."),
        env={"LDAP_PASSWORD": password or sub.directory.passwords[bind_dn]},
    )
    made = ldap.TYPE.build(context)
    assert isinstance(made, LdapConnector)
    return made


def seed(sub: Subtree) -> dict[str, str]:
    """readers ⊂ staff; admins; five people, bob disabled. Name → DN."""
    dn = {
        "alice": sub.person("alice", mail="alice@acme.example", displayName="Alice L."),
        "bob": sub.person("bob", mail="bob@acme.example", employeeType="disabled"),
        "carol": sub.person("carol"),
        "dave": sub.person("dave", mail="dave@acme.example"),
        "erin": sub.person("erin"),
    }
    dn["readers"] = sub.group("readers", [dn["alice"], dn["carol"]], "Read-only access")
    dn["staff"] = sub.group("staff", [dn["readers"], dn["dave"], dn["erin"]], "Everyone")
    dn["admins"] = sub.group("admins", [dn["alice"], dn["dave"]])
    return dn


# -- The contract ---------------------------------------------------------------------


def test_ldap_meets_the_connector_contract(sub: Subtree) -> None:
    dn = seed(sub)
    directory = build(sub, display_name_attribute="displayName")
    assert directory.modes == {Mode.DISABLE, Mode.ENABLE, Mode.DELETE, Mode.REMOVE_ROLES}
    seen = exercise_connector(
        directory,
        Expect(
            accounts=5,
            identities=5,
            victim="dave",
            roles=("admins", "readers", "staff"),
            account_roles={
                "alice": ("admins", "readers", "staff"),
                "carol": ("readers", "staff"),
                "dave": ("admins", "staff"),
                "erin": ("staff",),
            },
            identity_groups={"alice": ("admins", "readers", "staff"), "bob": ()},
        ),
    )
    alice = seen.accounts["alice"]
    assert (alice.email, alice.display_name, alice.status) == (
        "alice@acme.example",
        "Alice L.",
        "active",
    )
    assert seen.accounts["bob"].status == "disabled"
    assert seen.identities["bob"].status == "deprovisioned"
    assert {r.name: r.description for r in seen.roles}["readers"] == "Read-only access"
    # The server's own memberOf (direct groups only) agrees with what was worked out.
    member_of = sub.read(dn["alice"], "memberOf")
    assert member_of is not None
    assert {v.split(",")[0].removeprefix("cn=") for v in member_of["memberOf"]} <= set(alice.roles)
    # dave's DN left every group before his entry went.
    assert sub.read(dn["dave"]) is None
    for group in ("staff", "admins"):
        found = sub.read(dn[group], "member")
        assert found is not None and dn["dave"] not in found["member"]
    directory.close()


def test_without_disable_it_is_an_app_that_deletes(sub: Subtree) -> None:
    seed(sub)
    directory = build(sub, disable=None)
    assert directory.modes == {Mode.DELETE, Mode.REMOVE_ROLES}
    seen = exercise_connector(directory, Expect(accounts=5, victim="erin"))
    assert seen.accounts["bob"].status == "active", "nothing marks an entry disabled"
    with pytest.raises(ConnectorError, match="mode not supported; set `disable`"):
        directory.deprovision(seen.accounts["alice"], Mode.DISABLE)
    bob = sub.person_dn("bob")
    before = sub.read(bob, "employeeType", "entryCSN")
    with pytest.raises(ConnectorError, match="nothing to undo; set `disable`"):
        directory.enable(seen.accounts["bob"])
    assert sub.read(bob, "employeeType", "entryCSN") == before


# -- What is read -----------------------------------------------------------------------


def test_nested_groups_count_transitively_and_a_cycle_ends(sub: Subtree) -> None:
    person = sub.person("person")
    a = sub.group("a", [person])
    b = sub.group("b", [a])
    sub.group("c", [b])
    # b and a are members of each other: a cycle must not loop or lose anything.
    sub.conn.modify(a, {"member": [("MODIFY_ADD", [b])]})
    directory = build(sub)
    [account] = directory.pull_accounts()
    assert account.roles == ("a", "b", "c")
    [identity] = directory.pull_identities()
    assert identity.groups == ("a", "b", "c")


def test_a_size_limit_fails_the_pull_instead_of_shortening_it(sub: Subtree) -> None:
    for n in range(SIZE_LIMIT + 2):
        sub.person(f"p{n}")
    # The reader may read everything: paging through small pages yields all of them.
    for page_size in (2, 500):
        paged = build(sub, bind_dn=READER_DN, page_size=page_size)
        assert len(list(paged.pull_accounts())) == SIZE_LIMIT + 2
    # The capped bind DN gets SIZE_LIMIT entries, then sizeLimitExceeded.
    for page_size in (2, 500):
        capped = build(sub, bind_dn=CAPPED_DN, page_size=page_size)
        for pull in (capped.pull_accounts, capped.pull_identities):
            with pytest.raises(PullError, match="sizeLimitExceeded") as caught:
                list(pull())
            text = str(caught.value)
            assert text.startswith("corp-ldap: ")
            assert f'olcLimits: dn.exact="{CAPPED_DN}"' in text and "size.prtotal" in text


def test_a_hostile_username_and_id_are_data(sub: Subtree) -> None:
    hostile = sub.person(HOSTILE, mail="odd@acme.example")
    plain = sub.person("plain")
    sub.group("both", [hostile, plain])
    directory = build(sub)
    accounts = {a.username: a for a in directory.pull_accounts()}
    assert set(accounts) == {HOSTILE, "plain"}
    assert accounts[HOSTILE].roles == ("both",)
    assert directory.lookup_account(HOSTILE) is None
    assert directory.lookup_identity("*") is None
    # With uid as the id, the filter holds the value escaped: it finds exactly one.
    by_uid = build(sub, id_attribute="uid")
    found = by_uid.lookup_account(HOSTILE)
    assert found is not None and found.username == HOSTILE
    assert by_uid.lookup_account("*") is None
    by_uid.deprovision(found, Mode.DELETE)
    assert sub.read(hostile) is None
    assert sub.read(plain) is not None
    assert [a.username for a in directory.pull_accounts()] == ["plain"]


def test_a_missing_base_dn_fails_the_pull(sub: Subtree) -> None:
    directory = build(sub, base_dn=f"ou=nowhere,{sub.base}")
    with pytest.raises(PullError, match=r"does not exist on the server; fix base_dn"):
        list(directory.pull_accounts())


# -- Disable and delete -----------------------------------------------------------------


def test_disable_writes_the_mark_and_an_identity_reads_as_inactive_status(
    sub: Subtree,
) -> None:
    entry = sub.person("frank")
    directory = build(sub, inactive_status="suspended")
    [account] = directory.pull_accounts()
    directory.deprovision(account, Mode.DISABLE)
    found = sub.read(entry, "employeeType")
    assert found is not None and found["employeeType"] == ["disabled"]
    identity = directory.lookup_identity(account.id)
    assert identity is not None and identity.status == "suspended"


def test_an_identity_carries_its_department_and_title(sub: Subtree) -> None:
    sub.person("grace", departmentNumber="Finance", title="Controller")
    sub.person("heidi")
    identities = {i.username: i for i in build(sub).pull_identities()}
    assert (identities["grace"].department, identities["grace"].title) == ("Finance", "Controller")
    assert (identities["heidi"].department, identities["heidi"].title) == ("", "")
    # Other attributes, when the directory keeps them elsewhere.
    other = build(sub, department_attribute="ou", title_attribute="description")
    assert {i.username: i.department for i in other.pull_identities()} == {"grace": "", "heidi": ""}


def test_the_probe_reads_the_base_dn_only(sub: Subtree) -> None:
    sub.person("ivan")
    assert "readable" in build(sub).probe(identity_source=True)
    with pytest.raises(ConnectorError, match="does not exist or the bind DN may not read it"):
        build(sub, base_dn=f"ou=nowhere,{sub.base}").probe(identity_source=True)


def test_delete_refuses_to_empty_a_group_and_changes_nothing(sub: Subtree) -> None:
    lonely = sub.person("lonely")
    other = sub.person("other")
    solo = sub.group("solo", [lonely])
    shared = sub.group("shared", [lonely, other])
    directory = build(sub)
    account = {a.username: a for a in directory.pull_accounts()}["lonely"]
    with pytest.raises(ConnectorError, match=r"last member of .*cn=solo.*nothing was changed"):
        directory.deprovision(account, Mode.DELETE)
    assert sub.read(lonely) is not None
    for group in (solo, shared):
        found = sub.read(group, "member")
        assert found is not None and lonely in found["member"]
    # Once the group has another member, the delete goes through.
    sub.conn.modify(solo, {"member": [("MODIFY_ADD", [other])]})
    directory.deprovision(account, Mode.DELETE)
    assert directory.lookup_account(account.id) is None
    assert sub.read(solo, "member") == {"member": [other]}


def test_a_read_only_bind_dn_is_told_it_may_not_write(sub: Subtree) -> None:
    entry = sub.person("gina")
    other = sub.person("other")
    team = sub.group("team", [entry, other])
    directory = build(sub, bind_dn=READER_DN)
    account = {a.username: a for a in directory.pull_accounts()}["gina"]
    with pytest.raises(ConnectorError, match=rf"bind DN '{READER_DN}' may not do this"):
        directory.deprovision(account, Mode.DISABLE)
    with pytest.raises(ConnectorError, match=rf"bind DN '{READER_DN}' may not do this"):
        directory.remove_roles(account, ["team"])
    assert sub.read(team, "member") == {"member": [entry, other]}
    found = sub.read(entry, "employeeType")
    assert found is not None and found.get("employeeType", []) == []
    live = directory.lookup_account(account.id)
    assert live is not None and live.status == "active"


def test_deprovisioning_an_id_that_cannot_be_one_is_refused(sub: Subtree) -> None:
    sub.person("jo")
    directory = build(sub)
    [account] = directory.pull_accounts()
    for mode in (Mode.DISABLE, Mode.DELETE):
        with pytest.raises(ConnectorError, match="the id is not a valid entryUUID"):
            directory.deprovision(account._replace(id="jo"), mode)
    with pytest.raises(ConnectorError, match="the id is not a valid entryUUID"):
        directory.enable(account._replace(id="jo"))
    assert directory.lookup_account(account.id) == account


def test_an_id_attribute_shared_by_two_users_fails_the_pull(sub: Subtree) -> None:
    sub.person("kim", mail="shared@acme.example")
    sub.person("lee", mail="shared@acme.example")
    directory = build(sub, id_attribute="mail")
    with pytest.raises(PullError, match=r"have the same mail 'shared@acme\.example'"):
        list(directory.pull_accounts())


# -- Enable ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "can_disable"),
    [({"disable": DISABLE}, True), ({}, False), ({"dialect": "ad"}, True)],
)
def test_enable_is_offered_exactly_when_disable_is(
    options: dict[str, Any], can_disable: bool
) -> None:
    required = {"url": "ldaps://ldap.example.com", "bind_dn": "cn=x", "base_dn": "dc=x"}
    parsed = LdapOptions.from_mapping("corp-ldap", {**required, **options}, Path("."))
    modes = LdapConnector("corp-ldap", parsed, password=None).modes
    assert (Mode.DISABLE in modes) is can_disable
    assert (Mode.ENABLE in modes) is can_disable


def stamp(sub: Subtree, dn: str) -> dict[str, list[str]] | None:
    """The entry's disable mark and its entryCSN, which every write to it changes."""
    return sub.read(dn, "employeeType", "entryCSN")


def test_enable_undoes_a_disable_and_repeats_harmlessly(sub: Subtree) -> None:
    entry = sub.person("nina")
    directory = build(sub)
    [account] = directory.pull_accounts()
    directory.deprovision(account, Mode.DISABLE)
    assert sub.read(entry, "employeeType") == {"employeeType": ["disabled"]}

    directory.enable(account)
    assert sub.read(entry, "employeeType") == {"employeeType": []}
    live = directory.lookup_account(account.id)
    assert live is not None and live.status == "active"
    identity = directory.lookup_identity(account.id)
    assert identity is not None and identity.status == "active"
    # A repeat finds nothing to undo and writes nothing.
    before = stamp(sub, entry)
    directory.enable(account)
    assert stamp(sub, entry) == before
    assert directory.lookup_account(account.id) == live


def test_enable_deletes_only_the_mark_and_leaves_an_active_entry_alone(sub: Subtree) -> None:
    # The mark is matched as a read matches it (any case) and deleted as stored; the
    # attribute's other values stay, so the attribute is never replaced.
    marked = sub.person("olga", employeeType=["contractor", "DISABLED"])
    active = sub.person("pete", employeeType=["contractor"])
    directory = build(sub)
    accounts = {a.username: a for a in directory.pull_accounts()}
    assert (accounts["olga"].status, accounts["pete"].status) == ("disabled", "active")

    before = stamp(sub, active)
    directory.enable(accounts["pete"])
    assert stamp(sub, active) == before

    directory.enable(accounts["olga"])
    assert sub.read(marked, "employeeType") == {"employeeType": ["contractor"]}
    live = directory.lookup_account(accounts["olga"].id)
    assert live is not None and live.status == "active"


def test_a_mark_removed_meanwhile_is_done(sub: Subtree, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = sub.person("quinn", employeeType="disabled")
    directory = build(sub)
    [account] = directory.pull_accounts()
    # The connector reads the entry still marked; someone enables it before the write
    # (OpenLDAP answers the delete of a value already gone with noSuchAttribute).
    stale, live_user = directory._user(account.id), directory._user
    reads = iter([stale])
    monkeypatch.setattr(
        directory, "_user", lambda entry_id: next(reads, None) or live_user(entry_id)
    )
    sub.conn.modify(entry, {"employeeType": [(ldap3.MODIFY_DELETE, ["disabled"])]})
    directory.enable(account)
    assert sub.read(entry, "employeeType") == {"employeeType": []}
    live = directory.lookup_account(account.id)
    assert live is not None and live.status == "active"


def test_enabling_an_account_gone_is_an_error(sub: Subtree) -> None:
    seed(sub)
    directory = build(sub)
    accounts = {a.username: a for a in directory.pull_accounts()}
    bob = accounts["bob"]
    directory.deprovision(bob, Mode.DELETE)
    for gone in (bob, bob._replace(id="4b1c1d8e-0000-0000-0000-000000000000")):
        with pytest.raises(ConnectorError) as caught:
            directory.enable(gone)
        text = str(caught.value)
        assert text.startswith("corp-ldap: ") and "nothing to enable" in text
    assert directory.lookup_account(bob.id) is None


def test_an_enable_that_does_not_read_back_is_an_error(
    sub: Subtree, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = sub.person("rita", employeeType="disabled")
    directory = build(sub)
    [account] = directory.pull_accounts()
    # A server that answers success and keeps the mark.
    monkeypatch.setattr(directory, "_enable", lambda found: None)
    with pytest.raises(ConnectorError) as caught:
        directory.enable(account)
    text = str(caught.value)
    assert text.startswith("corp-ldap: ") and "does not read back as enabled" in text
    assert "check `disable` in reconciler.yaml" in text
    assert sub.read(entry, "employeeType") == {"employeeType": ["disabled"]}


def test_a_read_only_bind_dn_may_not_enable(sub: Subtree) -> None:
    marked = sub.person("sam", employeeType="disabled")
    active = sub.person("tess")
    reader = build(sub, bind_dn=READER_DN)
    accounts = {a.username: a for a in reader.pull_accounts()}
    before = stamp(sub, marked)
    with pytest.raises(ConnectorError, match=rf"bind DN '{READER_DN}' may not do this"):
        reader.enable(accounts["sam"])
    assert stamp(sub, marked) == before
    live = reader.lookup_account(accounts["sam"].id)
    assert live is not None and live.status == "disabled"
    # An account already enabled needs no write, so reading is enough.
    reader.enable(accounts["tess"])
    assert sub.read(active, "employeeType") == {"employeeType": []}


# -- Removing roles -------------------------------------------------------------------------


def members(sub: Subtree, *groups: str) -> dict[str, set[str]]:
    """Group DN → its member DNs, as the root DN reads them."""
    found = {group: sub.read(group, "member") for group in groups}
    return {group: set(entry["member"]) if entry else set() for group, entry in found.items()}


def stale_groups_once(monkeypatch: pytest.MonkeyPatch, directory: LdapConnector) -> None:
    """The connector's next read of the groups gets them as they are now, whatever
    happens before its write; later reads are live (someone else acts in between)."""
    stale = directory._groups()
    live = directory._groups
    reads = iter([stale])
    monkeypatch.setattr(directory, "_groups", lambda: next(reads, None) or live())


def test_remove_roles_takes_direct_memberships_and_repeats_harmlessly(sub: Subtree) -> None:
    dn = seed(sub)
    directory = build(sub)
    accounts = {a.username: a for a in directory.pull_accounts()}
    alice = accounts["alice"]
    # lookup_roles reads what a pull reads, nested groups included.
    for account in accounts.values():
        assert directory.lookup_roles(account.id) == account.roles
    groups = (dn["readers"], dn["staff"], dn["admins"])
    before = members(sub, *groups)

    directory.remove_roles(alice, ["admins"])
    assert directory.lookup_roles(alice.id) == ("readers", "staff")
    assert members(sub, *groups) == {
        **before,
        dn["admins"]: {dn["dave"]},  # the other member stays
    }
    # A repeat, and a role the account never held, change nothing and are no error.
    directory.remove_roles(alice, ["admins"])
    directory.remove_roles(alice, ["admins", "no-such-role", "dave-only"])
    directory.remove_roles(alice, [])
    assert members(sub, *groups)[dn["admins"]] == {dn["dave"]}
    dave = directory.lookup_account(accounts["dave"].id)
    assert dave is not None and dave.roles == ("admins", "staff")


def test_a_role_that_goes_with_a_direct_one_is_taken_too(sub: Subtree) -> None:
    dn = seed(sub)
    directory = build(sub)
    carol = {a.username: a for a in directory.pull_accounts()}["carol"]
    # carol holds staff only through readers: taking both leaves the nesting alone.
    directory.remove_roles(carol, ["readers", "staff"])
    assert directory.lookup_roles(carol.id) == ()
    assert members(sub, dn["readers"], dn["staff"]) == {
        dn["readers"]: {dn["alice"]},
        dn["staff"]: {dn["readers"], dn["dave"], dn["erin"]},
    }


def test_a_role_held_through_a_nested_group_is_refused_and_nothing_changes(
    sub: Subtree,
) -> None:
    dn = seed(sub)
    # alice is also a direct member of staff: that membership alone would not take it.
    sub.conn.modify(dn["staff"], {"member": [(ldap3.MODIFY_ADD, [dn["alice"]])]})
    directory = build(sub)
    alice = {a.username: a for a in directory.pull_accounts()}["alice"]
    groups = (dn["readers"], dn["staff"], dn["admins"])
    before = members(sub, *groups)
    for roles in (["staff"], ["admins", "staff"]):
        with pytest.raises(ConnectorError) as caught:
            directory.remove_roles(alice, roles)
        text = str(caught.value)
        assert text.startswith("corp-ldap: ") and "nothing was changed" in text
        assert f"'staff' is held through nested group '{dn['readers']}'" in text
        assert "by hand" in text and "change the rule" in text
        assert members(sub, *groups) == before
    assert directory.lookup_roles(alice.id) == ("admins", "readers", "staff")


def test_the_last_member_of_a_group_of_names_is_refused_and_nothing_changes(
    sub: Subtree,
) -> None:
    lonely = sub.person("lonely")
    other = sub.person("other")
    solo = sub.group("solo", [lonely])
    shared = sub.group("shared", [lonely, other])
    directory = build(sub)
    account = {a.username: a for a in directory.pull_accounts()}["lonely"]
    for roles in (["solo"], ["shared", "solo"]):
        with pytest.raises(ConnectorError) as caught:
            directory.remove_roles(account, roles)
        text = str(caught.value)
        assert f"group '{solo}' would be left without members" in text
        assert "nothing was changed" in text and "add another member" in text
        assert members(sub, solo, shared) == {solo: {lonely}, shared: {lonely, other}}
    directory.remove_roles(account, ["shared"])
    assert members(sub, solo, shared) == {solo: {lonely}, shared: {other}}
    assert directory.lookup_roles(account.id) == ("solo",)


def test_changes_made_meanwhile_survive_and_count(
    sub: Subtree, monkeypatch: pytest.MonkeyPatch
) -> None:
    dn = seed(sub)
    frank = sub.person("frank")
    directory = build(sub)
    alice = {a.username: a for a in directory.pull_accounts()}["alice"]
    stale_groups_once(monkeypatch, directory)
    # Between the connector's read and its write, someone adds frank to admins and
    # takes alice out of readers.
    sub.conn.modify(dn["admins"], {"member": [(ldap3.MODIFY_ADD, [frank])]})
    sub.conn.modify(dn["readers"], {"member": [(ldap3.MODIFY_DELETE, [dn["alice"]])]})
    directory.remove_roles(alice, ["admins", "readers"])
    assert members(sub, dn["admins"], dn["readers"]) == {
        dn["admins"]: {dn["dave"], frank},
        dn["readers"]: {dn["carol"]},
    }
    assert directory.lookup_roles(alice.id) == ()


def test_a_group_of_names_emptied_meanwhile_is_refused(
    sub: Subtree, monkeypatch: pytest.MonkeyPatch
) -> None:
    lonely = sub.person("lonely")
    other = sub.person("other")
    pair = sub.group("pair", [lonely, other])
    directory = build(sub)
    account = {a.username: a for a in directory.pull_accounts()}["lonely"]
    stale_groups_once(monkeypatch, directory)
    sub.conn.modify(pair, {"member": [(ldap3.MODIFY_DELETE, [other])]})
    with pytest.raises(ConnectorError, match=rf"group '{pair}' would be left without members"):
        directory.remove_roles(account, ["pair"])
    assert members(sub, pair) == {pair: {lonely}}


def test_a_membership_the_server_kept_is_found_on_reading_back(
    sub: Subtree, monkeypatch: pytest.MonkeyPatch
) -> None:
    dn = seed(sub)
    directory = build(sub)
    alice = {a.username: a for a in directory.pull_accounts()}["alice"]
    # A server that answers success and keeps the value.
    monkeypatch.setattr(directory, "_leave", lambda group, member: None)
    with pytest.raises(ConnectorError) as caught:
        directory.remove_roles(alice, ["admins"])
    text = str(caught.value)
    assert text.startswith("corp-ldap: ") and "done, but" in text
    assert f"'admins' is held as a direct member of '{dn['admins']}'" in text
    assert "check them by hand" in text


def test_roles_of_an_account_gone_are_none_and_removing_them_is_done(sub: Subtree) -> None:
    seed(sub)
    directory = build(sub)
    dave = {a.username: a for a in directory.pull_accounts()}["dave"]
    directory.deprovision(dave, Mode.DELETE)
    assert directory.lookup_roles(dave.id) is None
    directory.remove_roles(dave, ["admins"])
    assert directory.lookup_roles("4b1c1d8e-0000-0000-0000-000000000000") is None
    assert directory.lookup_roles(HOSTILE) is None


def test_removing_roles_by_an_id_that_cannot_be_one_is_refused(sub: Subtree) -> None:
    dn = seed(sub)
    directory = build(sub)
    alice = {a.username: a for a in directory.pull_accounts()}["alice"]
    with pytest.raises(ConnectorError, match="the id is not a valid entryUUID"):
        directory.remove_roles(alice._replace(id="alice"), ["admins"])
    assert members(sub, dn["admins"]) == {dn["admins"]: {dn["alice"], dn["dave"]}}


def test_a_hostile_username_leaves_only_its_own_group(sub: Subtree) -> None:
    hostile = sub.person(HOSTILE)
    plain = sub.person("plain")
    both = sub.group("both", [hostile, plain])
    by_uid = build(sub, id_attribute="uid")
    found = by_uid.lookup_account(HOSTILE)
    assert found is not None and found.roles == ("both",)
    by_uid.remove_roles(found, ["both"])
    assert members(sub, both) == {both: {plain}}
    assert by_uid.lookup_roles(HOSTILE) == ()


# -- Errors -------------------------------------------------------------------------------


def test_a_wrong_password_is_never_shown(sub: Subtree) -> None:
    entry = sub.person("hank")
    right = build(sub)
    [account] = right.pull_accounts()
    wrong = "Wr0ng-pa55word-for-tests"
    directory = build(sub, password=wrong)
    exercise_failures(directory, wrong, identities=True)
    attempts = [
        lambda: list(directory.pull_accounts()),
        lambda: list(directory.pull_identities()),
        directory.pull_roles,
        lambda: directory.lookup_account(account.id),
        lambda: directory.lookup_identity(account.id),
        lambda: directory.deprovision(account, Mode.DISABLE),
        lambda: directory.lookup_roles(account.id),
        lambda: directory.remove_roles(account, ["admins"]),
        lambda: directory.enable(account),
    ]
    for attempt in attempts:
        with pytest.raises(ConnectorError) as caught:
            attempt()
        chained: BaseException | None = caught.value
        while chained is not None:
            assert wrong not in f"{chained} {chained!r} {chained.args!r}"
            chained = chained.__cause__ or chained.__context__
        text = str(caught.value)
        assert "corp-ldap" in text and "LDAP_PASSWORD" in text and WRITER_DN in text
    with pytest.raises(PullError):
        list(directory.pull_accounts())
    assert sub.read(entry, "employeeType") == {"employeeType": []}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_an_unreachable_server_names_the_url(sub: Subtree) -> None:
    port = _closed_port()
    directory = build(sub, url=f"ldap://127.0.0.1:{port}", timeout=2)
    exercise_failures(directory, sub.directory.passwords[WRITER_DN], identities=True)
    with pytest.raises(PullError, match=rf"corp-ldap: .*127\.0\.0\.1:{port}.*check url"):
        list(directory.pull_accounts())
    with pytest.raises(ConnectorError, match="check url"):
        directory.lookup_account("4b1c1d8e-0000-0000-0000-000000000000")


def test_a_server_that_never_answers_ends_in_timeout(sub: Subtree) -> None:
    with socket.socket() as silent:
        # The kernel completes the TCP handshake; nothing ever answers the bind.
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        directory = build(sub, url=f"ldap://127.0.0.1:{port}", timeout=1)
        with pytest.raises(PullError, match=r"did not answer within timeout \(1 s\)"):
            list(directory.pull_accounts())


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls(directory: Directory) -> TlsFiles:
    require(
        "openssl not found: apt-get install openssl" if directory.tls is None else None,
        "openssl to test LDAPS and StartTLS",
    )
    assert directory.tls is not None
    return directory.tls


@pytest.mark.parametrize("how", ["ldaps", "start_tls"])
def test_tls_is_verified_against_ca_file(sub: Subtree, tls: TlsFiles, how: str) -> None:
    sub.person("ivy")
    secure = {"url": tls.ldaps_url} if how == "ldaps" else {"start_tls": True}
    trusted = build(sub, ca_file=str(tls.ca_file), **secure)
    assert [a.username for a in trusted.pull_accounts()] == ["ivy"]
    untrusted = build(sub, ca_file=str(tls.other_ca_file), **secure)
    with pytest.raises(PullError, match=r"corp-ldap: .*TLS .*failed.*chains to ca_file"):
        list(untrusted.pull_accounts())


def test_an_unreadable_ca_file_is_named(sub: Subtree, tls: TlsFiles) -> None:
    directory = build(sub, url=tls.ldaps_url, ca_file="/nonexistent/ca.pem")
    with pytest.raises(PullError, match=r"ca_file '/nonexistent/ca\.pem' cannot be read"):
        list(directory.pull_accounts())


# -- Options ------------------------------------------------------------------------------


def test_options_are_checked() -> None:
    jsonschema.Draft202012Validator.check_schema(OPTIONS_SCHEMA)
    validator = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)
    required = {"url": "ldaps://ldap.example.com", "bind_dn": "cn=x", "base_dn": "dc=x"}
    assert validator.is_valid(required)
    assert not validator.is_valid({**required, "url": "https://ldap.example.com"})
    assert not validator.is_valid({**required, "disable": {"attribute": "x"}})
    assert not validator.is_valid({**required, "pasword_env": "X"})
    options = LdapOptions.from_mapping("corp-ldap", required, Path("/repo"))
    defaults = {k: v.get("default") for k, v in OPTIONS_SCHEMA["properties"].items()}
    assert (options.group_filter, options.page_size, options.timeout) == (
        defaults["group_filter"],
        defaults["page_size"],
        defaults["timeout"],
    )
    assert (options.id_attribute, options.username_attribute) == ("entryUUID", "uid")
    assert options.user_filter == "(objectClass=inetOrgPerson)"
    assert options.groups_under == "dc=x" and options.disable is None
    ad = LdapOptions.from_mapping(
        "corp-ldap", {**required, "dialect": "ad", "ca_file": "ca.pem"}, Path("/repo")
    )
    assert (ad.id_attribute, ad.username_attribute) == ("objectGUID", "sAMAccountName")
    # AD's users are objectClass user; computer accounts are too, but not persons.
    assert ad.user_filter == "(&(objectCategory=person)(objectClass=user))"
    assert ad.ca_file == Path("/repo/ca.pem")
    assert LdapConnector("corp-ldap", ad, password=None).modes == {
        Mode.DISABLE,
        Mode.ENABLE,
        Mode.DELETE,
        Mode.REMOVE_ROLES,
    }
    with pytest.raises(ConfigError, match=r"unknown option.*pasword_env"):
        LdapOptions.from_mapping("corp-ldap", {**required, "pasword_env": "X"}, Path("."))
    with pytest.raises(ConfigError, match="base_dn is required"):
        LdapOptions.from_mapping("corp-ldap", {"url": "ldap://h", "bind_dn": "x"}, Path("."))
    with pytest.raises(ConfigError, match="dialect ad disables through userAccountControl"):
        LdapOptions.from_mapping(
            "corp-ldap", {**required, "dialect": "ad", "disable": DISABLE}, Path(".")
        )
    with pytest.raises(ConfigError, match="remove start_tls"):
        LdapOptions.from_mapping("corp-ldap", {**required, "start_tls": True}, Path("."))
    assert ldap.TYPE.secret_env_options == ("password_env",)
    context = ConnectorContext(
        name="corp-ldap",
        options={**required, "password_env": "LDAP_PASSWORD"},
        base_dir=Path("."),
        env={},
    )
    with pytest.raises(ConfigError, match="environment variable LDAP_PASSWORD is not set"):
        ldap.TYPE.build(context)


def test_build_names_the_extra_when_ldap3_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ldap3", None)
    monkeypatch.delitem(sys.modules, "reconciler.connectors.ldap_directory")
    context = ConnectorContext(
        name="corp-ldap",
        options={"url": "ldap://h", "bind_dn": "cn=x", "base_dn": "dc=x"},
        base_dir=Path("."),
    )
    with pytest.raises(ConfigError, match=r"pip install 'access-reconciler\[ldap\]'"):
        ldap.TYPE.build(context)


# -- The AD dialect, as pure parsing --------------------------------------------------------

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _filetime(moment: datetime) -> int:
    return int((moment - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds()) * 10**7


@pytest.mark.parametrize(
    ("uac", "disabled"),
    [
        (None, False),
        (0x200, False),  # NORMAL_ACCOUNT
        (0x202, True),  # NORMAL_ACCOUNT | ACCOUNTDISABLE
        (0x10200, False),  # DONT_EXPIRE_PASSWORD
        (0x10202, True),
        (0x2, True),
        (0x1, False),  # SCRIPT only
    ],
)
def test_user_account_control_bit_2_is_disabled(uac: int | None, disabled: bool) -> None:
    assert uac_disabled(uac) is disabled


@pytest.mark.parametrize(
    ("before", "after"), [(0x200, 0x202), (0x202, 0x202), (0x10200, 0x10202), (0, 0x2)]
)
def test_a_disable_sets_only_bit_2(before: int, after: int) -> None:
    assert with_disabled_bit(before) == after
    assert uac_disabled(with_disabled_bit(before))


@pytest.mark.parametrize(
    ("before", "after"),
    [(0x202, 0x200), (0x200, 0x200), (0x10222, 0x10220), (0x2, 0), (0x1, 0x1), (0x3, 0x1)],
)
def test_an_enable_clears_only_bit_2(before: int, after: int) -> None:
    assert without_disabled_bit(before) == after
    assert not uac_disabled(without_disabled_bit(before))
    # Disabling an enabled account and enabling it again gives back what it was.
    assert without_disabled_bit(with_disabled_bit(after)) == after


@pytest.mark.parametrize(
    ("account_expires", "expired"),
    [
        (None, False),
        (0, False),  # never
        (0x7FFFFFFFFFFFFFFF, False),  # never
        (_filetime(datetime(2020, 1, 1, tzinfo=UTC)), True),
        (_filetime(NOW), True),
        (_filetime(datetime(2030, 1, 1, tzinfo=UTC)), False),
    ],
)
def test_account_expires_in_the_past_is_disabled(
    account_expires: int | None, expired: bool
) -> None:
    assert account_expired(account_expires, NOW) is expired


@pytest.mark.parametrize(
    ("filetime", "moment"),
    [
        (0, None),
        (-5, None),
        (0x7FFFFFFFFFFFFFFF, None),  # past datetime's range: "never"
        (116_444_736_000_000_000, datetime(1970, 1, 1, tzinfo=UTC)),
        (133_801_632_000_000_000, datetime(2025, 1, 1, tzinfo=UTC)),
        (133_801_632_000_000_000 + 15, datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ],
)
def test_filetime_converts_to_utc(filetime: int, moment: datetime | None) -> None:
    assert filetime_to_datetime(filetime) == moment


def test_object_guid_is_read_and_searched_in_its_windows_byte_order() -> None:
    guid = "00112233-4455-6677-8899-aabbccddeeff"
    raw = bytes.fromhex("33221100554477668899aabbccddeeff")  # first three fields reversed
    assert id_text([raw], "objectGUID") == guid
    assert id_filter("objectGUID", guid) == (
        r"(objectGUID=\33\22\11\00\55\44\77\66\88\99\aa\bb\cc\dd\ee\ff)"
    )
    assert id_filter("objectGUID", "not-a-guid") is None
    assert id_filter("entryUUID", HOSTILE) is None
    assert id_filter("uid", HOSTILE) == r"(uid=\2a\29\28uid=\2a)"


# -- Last login -----------------------------------------------------------------------------


def _sign_in(sub: Subtree, dn: str, password: str) -> None:
    server = ldap3.Server(sub.directory.url, get_info=ldap3.NONE, connect_timeout=5)
    ldap3.Connection(server, dn, password, auto_bind=True, raise_exceptions=True).unbind()


def test_last_login_is_read_from_the_attribute_named(sub: Subtree) -> None:
    # The test server records each successful bind in pwdLastSuccess (olcLastBind).
    dn = seed(sub)
    sub.conn.modify(dn["alice"], {"userPassword": [(ldap3.MODIFY_REPLACE, ["alice-pw-1"])]})
    before = datetime.now(UTC).replace(microsecond=0)
    _sign_in(sub, dn["alice"], "alice-pw-1")
    after = datetime.now(UTC)
    stored = sub.read(dn["alice"], "pwdLastSuccess")
    assert stored is not None and stored["pwdLastSuccess"], "the server recorded no bind"

    accounts = {
        a.username: a for a in build(sub, last_login_attribute="pwdLastSuccess").pull_accounts()
    }
    signed_in = datetime.fromisoformat(accounts["alice"].last_login.replace("Z", "+00:00"))
    assert before <= signed_in <= after
    # Never signed in: unknown, not a date.
    assert accounts["carol"].last_login == ""
    # OpenLDAP has no last login by default: none is read unless an attribute is named.
    assert {a.last_login for a in build(sub).pull_accounts()} == {""}


@pytest.mark.parametrize(
    ("options", "attribute"),
    [
        ({}, None),
        ({"dialect": "ad"}, "lastLogonTimestamp"),
        ({"dialect": "ad", "last_login_attribute": None}, None),
        ({"last_login_attribute": "authTimestamp"}, "authTimestamp"),
    ],
)
def test_the_last_login_attribute_defaults_by_dialect(
    options: dict[str, Any], attribute: str | None
) -> None:
    required = {"url": "ldaps://ldap.example.com", "bind_dn": "cn=x", "base_dn": "dc=x"}
    assert jsonschema.Draft202012Validator(OPTIONS_SCHEMA).is_valid({**required, **options})
    parsed = LdapOptions.from_mapping("corp-ldap", {**required, **options}, Path("."))
    assert parsed.last_login_attribute == attribute


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # AD's lastLogonTimestamp: a FILETIME, as the server sends it or as a number.
        (b"133801632000000000", "2025-01-01T00:00:00Z"),
        (_filetime(datetime(2026, 11, 20, 9, 30, tzinfo=UTC)), "2026-11-20T09:30:00Z"),
        (b"0", ""),  # never signed in (or not since the attribute was set up)
        (b"9223372036854775807", ""),  # AD's "never"
        # GeneralizedTime (OpenLDAP pwdLastSuccess, authTimestamp).
        (b"20261120093000Z", "2026-11-20T09:30:00Z"),
        (b"20261120093000.123Z", "2026-11-20T09:30:00Z"),
        (b"20261120103000+0100", "2026-11-20T09:30:00Z"),
        (b"202611201030-01", "2026-11-20T11:30:00Z"),
        (b"2026112009.5Z", "2026-11-20T09:30:00Z"),  # a fraction of the hour
        (b"20261320093000Z", ""),  # month 13
        # A library that already turned the value into a datetime.
        (
            datetime(2026, 11, 20, 10, 30, tzinfo=timezone(timedelta(hours=1))),
            "2026-11-20T09:30:00Z",
        ),
        (b"", ""),
        (b"yesterday", ""),
    ],
)
def test_last_login_values_become_utc_or_unknown(value: object, expected: str) -> None:
    assert last_login_time(value) == expected
