"""The ldap connector's `ad` dialect against a real Active Directory DC (Samba).

One DC serves the module (`dc`, see samba_server for how it is started); each test gets
its own `OU=tXXXX` (`ou`). The DC requires TLS for a simple bind, as AD does by default,
so connectors use StartTLS (or LDAPS) with the test CA as ca_file.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("ldap3") is None and not os.environ.get("CI"):
    pytest.skip("ldap3 is not installed: pip install 'ldap3>=2.9'", allow_module_level=True)

import ldap3  # type: ignore[import-untyped]

from reconciler.connectors import ldap
from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.ldap_directory import LdapConnector
from reconciler.errors import ConnectorError, PullError

from .contract import Expect, exercise_connector, exercise_failures, require
from .samba_server import (
    ACCOUNTDISABLE,
    ACTIVE_USER,
    ADMIN_DN,
    DONT_EXPIRE_PASSWORD,
    READER_DN,
    DomainController,
    OrganizationalUnit,
    filetime,
    samba_missing,
    start_samba_dc,
)
from .test_ldap import stale_groups_once

NEVER = 0x7FFFFFFFFFFFFFFF
PAST = filetime(datetime(2020, 1, 1, tzinfo=UTC))
FUTURE = filetime(datetime(2099, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def dc() -> Iterator[DomainController]:
    """One Samba DC for the module; a missing Samba fails in CI and skips elsewhere."""
    require(samba_missing(), "Samba (an AD domain controller)")
    with start_samba_dc() as running:
        yield running


@pytest.fixture
def ou(dc: DomainController) -> Iterator[OrganizationalUnit]:
    unit = OrganizationalUnit(dc)
    try:
        yield unit
    finally:
        unit.close()


def build(
    ou: OrganizationalUnit,
    *,
    bind_dn: str = ADMIN_DN,
    password: str | None = None,
    **options: Any,
) -> LdapConnector:
    """A connector built the way reconciler.yaml builds it, through the registry entry:
    dialect ad, StartTLS with the test CA, everything else at its default."""
    settings: dict[str, Any] = {
        "dialect": "ad",
        "url": ou.dc.url,
        "start_tls": True,
        "ca_file": str(ou.dc.ca_file),
        "bind_dn": bind_dn,
        "password_env": "AD_PASSWORD",
        "base_dn": ou.base,
        **options,
    }
    if password is None:
        password = ou.dc.admin_password if bind_dn == ADMIN_DN else ou.dc.reader_password
    context = ConnectorContext(
        name="corp-ad", options=settings, base_dir=Path("."), env={"AD_PASSWORD": password}
    )
    made = ldap.TYPE.build(context)
    assert isinstance(made, LdapConnector)
    return made


def seed(ou: OrganizationalUnit) -> dict[str, str]:
    """readers ⊂ staff; admins; a computer; six people (erin an inetOrgPerson, AD's
    subclass of user), three of them not active (bob disabled, carol expired, frank
    disabled though his expiry is years away). Name → DN."""
    dn = {
        "alice": ou.user("alice", mail="alice@acme.example", display_name="Alice L."),
        "bob": ou.user("bob", control=ACTIVE_USER | ACCOUNTDISABLE),
        "carol": ou.user("carol", expires=PAST),
        "dave": ou.user("dave", mail="dave@acme.example", expires=0),
        "erin": ou.user("erin", expires=NEVER, object_class="inetOrgPerson"),
        "frank": ou.user("frank", control=ACTIVE_USER | ACCOUNTDISABLE, expires=FUTURE),
        "pc": ou.computer("pc"),
    }
    dn["readers"] = ou.group("readers", [dn["alice"], dn["carol"]], "Read-only access")
    dn["staff"] = ou.group("staff", [dn["readers"], dn["dave"], dn["erin"], dn["pc"]])
    dn["admins"] = ou.group("admins", [dn["alice"], dn["dave"]])
    return dn


# -- The contract ---------------------------------------------------------------------


def test_ad_meets_the_connector_contract(ou: OrganizationalUnit) -> None:
    dn = seed(ou)
    name = ou.username
    directory = build(ou, display_name_attribute="displayName")
    assert directory.modes == {Mode.DISABLE, Mode.ENABLE, Mode.DELETE, Mode.REMOVE_ROLES}
    seen = exercise_connector(
        directory,
        Expect(
            accounts=6,  # the computer account is not a person
            identities=6,
            victim=name("dave"),
            roles=("admins", "readers", "staff"),
            account_roles={
                name("alice"): ("admins", "readers", "staff"),
                name("carol"): ("readers", "staff"),
                name("dave"): ("admins", "staff"),
                name("erin"): ("staff",),
                name("bob"): (),
            },
            identity_groups={name("alice"): ("admins", "readers", "staff")},
        ),
    )
    status = {username: a.status for username, a in seen.accounts.items()}
    assert status == {
        name("alice"): "active",
        name("bob"): "disabled",  # userAccountControl 0x2
        name("carol"): "disabled",  # accountExpires in the past
        name("dave"): "active",  # accountExpires 0: never
        name("erin"): "active",  # accountExpires 0x7FFFFFFFFFFFFFFF: never
        name("frank"): "disabled",
    }
    assert seen.identities[name("carol")].status == "deprovisioned"
    alice = seen.accounts[name("alice")]
    assert (alice.email, alice.display_name) == ("alice@acme.example", "Alice L.")
    assert {r.name: r.description for r in seen.roles}["readers"] == "Read-only access"
    # An id is the objectGUID in AD's own text form: the DC finds the entry by it.
    found = ou.read(f"<GUID={alice.id}>", "sAMAccountName")
    assert found == {"sAMAccountName": [name("alice")]}
    # The delete left nothing of dave behind: no entry, no group listing him.
    dave = seen.accounts[name("dave")]
    assert ou.read(f"<GUID={dave.id}>") is None
    for group in ("staff", "admins"):
        members = ou.read(dn[group], "member")
        assert members is not None and dn["dave"] not in members["member"]
    directory.close()


def test_a_disable_sets_only_bit_2_of_user_account_control(ou: OrganizationalUnit) -> None:
    entry = ou.user("gina", control=ACTIVE_USER | DONT_EXPIRE_PASSWORD)
    directory = build(ou, inactive_status="suspended")
    [account] = directory.pull_accounts()
    assert account.status == "active"
    directory.deprovision(account, Mode.DISABLE)
    found = ou.read(entry, "userAccountControl")
    assert found == {
        "userAccountControl": [str(ACTIVE_USER | DONT_EXPIRE_PASSWORD | ACCOUNTDISABLE)]
    }
    identity = directory.lookup_identity(account.id)
    assert identity is not None and identity.status == "suspended"


# -- Enable -------------------------------------------------------------------------------


def stamp(ou: OrganizationalUnit, dn: str) -> dict[str, list[str]] | None:
    """The entry's userAccountControl, accountExpires and uSNChanged, which every write
    to it changes."""
    return ou.read(dn, "userAccountControl", "accountExpires", "uSNChanged")


def test_enable_clears_only_bit_2_and_repeats_harmlessly(ou: OrganizationalUnit) -> None:
    entry = ou.user("gina", control=ACTIVE_USER | DONT_EXPIRE_PASSWORD)
    directory = build(ou)
    [account] = directory.pull_accounts()
    directory.deprovision(account, Mode.DISABLE)
    live = directory.lookup_account(account.id)
    assert live is not None and live.status == "disabled"

    directory.enable(account)
    found = ou.read(entry, "userAccountControl")
    assert found == {"userAccountControl": [str(ACTIVE_USER | DONT_EXPIRE_PASSWORD)]}
    live = directory.lookup_account(account.id)
    assert live is not None and live.status == "active"
    identity = directory.lookup_identity(account.id)
    assert identity is not None and identity.status == "active"
    # A repeat finds bit 2 clear and writes nothing.
    before = stamp(ou, entry)
    directory.enable(account)
    assert stamp(ou, entry) == before


def test_enable_undoes_any_disable_and_leaves_an_active_account_alone(
    ou: OrganizationalUnit,
) -> None:
    dn = seed(ou)
    directory = build(ou)
    accounts = {a.username: a for a in directory.pull_accounts()}
    # Disabled by hand with other flags set, and disabled though expiring years away.
    for name in ("bob", "frank"):
        directory.enable(accounts[ou.username(name)])
        assert ou.read(dn[name], "userAccountControl") == {"userAccountControl": [str(ACTIVE_USER)]}
    assert ou.read(dn["frank"], "accountExpires") == {"accountExpires": [str(FUTURE)]}
    for name in ("alice", "dave", "erin"):
        before = stamp(ou, dn[name])
        directory.enable(accounts[ou.username(name)])
        assert stamp(ou, dn[name]) == before
    status = {a.username: a.status for a in directory.pull_accounts()}
    assert status == {
        **{ou.username(name): "active" for name in ("alice", "bob", "dave", "erin", "frank")},
        ou.username("carol"): "disabled",
    }


def test_an_expired_account_is_not_enabled_and_the_message_says_why(
    ou: OrganizationalUnit,
) -> None:
    # accountExpires is not what a disable writes, so an enable leaves it alone.
    entry = ou.user("carol", control=ACTIVE_USER | ACCOUNTDISABLE, expires=PAST)
    directory = build(ou)
    [account] = directory.pull_accounts()
    with pytest.raises(ConnectorError) as caught:
        directory.enable(account)
    text = str(caught.value)
    assert text.startswith("corp-ad: ") and "does not read back as enabled" in text
    assert "accountExpires" in text
    assert ou.read(entry, "userAccountControl", "accountExpires") == {
        "userAccountControl": [str(ACTIVE_USER)],
        "accountExpires": [str(PAST)],
    }


def test_enabling_an_account_gone_is_an_error(ou: OrganizationalUnit) -> None:
    ou.user("hank", control=ACTIVE_USER | ACCOUNTDISABLE)
    directory = build(ou)
    [account] = directory.pull_accounts()
    directory.deprovision(account, Mode.DELETE)
    for gone in (account, account._replace(id="4b1c1d8e-0000-0000-0000-000000000000")):
        with pytest.raises(ConnectorError) as caught:
            directory.enable(gone)
        text = str(caught.value)
        assert text.startswith("corp-ad: ") and "nothing to enable" in text
    with pytest.raises(ConnectorError, match="the id is not a valid objectGUID"):
        directory.enable(account._replace(id=account.username))


def test_a_user_without_delegated_rights_may_not_enable(ou: OrganizationalUnit) -> None:
    disabled = ou.user("ivan", control=ACTIVE_USER | DONT_EXPIRE_PASSWORD | ACCOUNTDISABLE)
    active = ou.user("jill")
    reader = build(ou, bind_dn=READER_DN)
    accounts = {a.username: a for a in reader.pull_accounts()}
    before = stamp(ou, disabled)
    with pytest.raises(ConnectorError, match=rf"bind DN '{READER_DN}' may not do this"):
        reader.enable(accounts[ou.username("ivan")])
    assert stamp(ou, disabled) == before
    # An account already enabled needs no write, so reading is enough.
    before = stamp(ou, active)
    reader.enable(accounts[ou.username("jill")])
    assert stamp(ou, active) == before


# -- What is read -----------------------------------------------------------------------


def test_paged_reads_cross_page_boundaries(ou: OrganizationalUnit) -> None:
    people = [ou.user(f"p{n}") for n in range(7)]
    for n in range(5):
        ou.group(f"g{n}", people[n : n + 2])
    whole = build(ou)
    expected = {a.username: a for a in whole.pull_accounts()}
    assert set(expected) == {ou.username(f"p{n}") for n in range(7)}
    for page_size in (1, 2, 3):
        paged = build(ou, page_size=page_size)
        assert {a.username: a for a in paged.pull_accounts()} == expected
        assert len(paged.pull_roles()) == 5
    assert expected[ou.username("p1")].roles == ("g0", "g1")


def test_nested_groups_count_transitively_across_units(ou: OrganizationalUnit) -> None:
    person = ou.user("person")
    a = ou.group("a", [person])
    b = ou.group("b", [a])
    ou.group("c", [b])
    # b and a are members of each other: a cycle must not loop or lose anything.
    ou.conn.modify(a, {"member": [("MODIFY_ADD", [b])]})
    directory = build(ou)
    [account] = directory.pull_accounts()
    assert account.roles == ("a", "b", "c")
    # Groups outside base_dn count only when group_base_dn reaches them.
    people_only = build(ou, base_dn=ou.people)
    [account] = people_only.pull_accounts()
    assert account.roles == ()
    everywhere = build(ou, base_dn=ou.people, group_base_dn=ou.base)
    [identity] = everywhere.pull_identities()
    assert identity.groups == ("a", "b", "c")


def test_lookup_reads_only_users_by_guid(ou: OrganizationalUnit) -> None:
    ou.user("hank")
    ou.computer("pc")
    group = ou.group("team", [])
    directory = build(ou)
    [account] = directory.pull_accounts()
    live = directory.lookup_account(account.id)
    assert live == account
    found = ou.read(group, "objectGUID")
    assert found is not None
    group_guid = found["objectGUID"][0].strip("{}")
    # A group's GUID is not a user's; a GUID nobody has, and no GUID at all, are gone.
    assert directory.lookup_account(group_guid) is None
    assert directory.lookup_account("4b1c1d8e-0000-0000-0000-000000000000") is None
    assert directory.lookup_identity(account.username) is None


# -- Removing roles -------------------------------------------------------------------------


def members(ou: OrganizationalUnit, *groups: str) -> dict[str, set[str]]:
    """Group DN → its member DNs, as Administrator reads them."""
    found = {group: ou.read(group, "member") for group in groups}
    return {
        group: set(entry.get("member", [])) if entry else set() for group, entry in found.items()
    }


def test_remove_roles_takes_only_direct_memberships(ou: OrganizationalUnit) -> None:
    dn = seed(ou)
    directory = build(ou)
    accounts = {a.username: a for a in directory.pull_accounts()}
    alice, carol = accounts[ou.username("alice")], accounts[ou.username("carol")]
    for account in accounts.values():
        assert directory.lookup_roles(account.id) == account.roles
    groups = (dn["readers"], dn["staff"], dn["admins"])
    before = members(ou, *groups)

    # staff comes only through readers: refused, and no group changes.
    with pytest.raises(ConnectorError) as caught:
        directory.remove_roles(alice, ["admins", "staff"])
    text = str(caught.value)
    assert text.startswith("corp-ad: ") and "nothing was changed" in text
    assert f"'staff' is held through nested group '{dn['readers']}'" in text
    assert members(ou, *groups) == before

    directory.remove_roles(alice, ["admins"])
    directory.remove_roles(alice, ["admins", "no-such-role"])  # a repeat is done
    assert directory.lookup_roles(alice.id) == ("readers", "staff")
    assert members(ou, *groups) == {**before, dn["admins"]: {dn["dave"]}}
    # An AD group may be left empty.
    directory.remove_roles(carol, ["readers"])
    directory.remove_roles(alice, ["readers"])
    assert members(ou, dn["readers"])[dn["readers"]] == set()
    assert directory.lookup_roles(alice.id) == ()
    assert members(ou, dn["staff"]) == {dn["staff"]: before[dn["staff"]]}


def test_changes_made_meanwhile_survive_and_count(
    ou: OrganizationalUnit, monkeypatch: pytest.MonkeyPatch
) -> None:
    dn = seed(ou)
    gina = ou.user("gina")
    directory = build(ou)
    alice = {a.username: a for a in directory.pull_accounts()}[ou.username("alice")]
    stale_groups_once(monkeypatch, directory)
    # Between the connector's read and its write, someone adds gina to admins and
    # takes alice out of readers (AD refuses to delete a value already gone).
    ou.conn.modify(dn["admins"], {"member": [(ldap3.MODIFY_ADD, [gina])]})
    ou.conn.modify(dn["readers"], {"member": [(ldap3.MODIFY_DELETE, [dn["alice"]])]})
    directory.remove_roles(alice, ["admins", "readers"])
    assert members(ou, dn["admins"], dn["readers"]) == {
        dn["admins"]: {dn["dave"], gina},
        dn["readers"]: {dn["carol"]},
    }
    assert directory.lookup_roles(alice.id) == ()
    directory.deprovision(alice, Mode.DELETE)
    assert directory.lookup_roles(alice.id) is None
    directory.remove_roles(alice, ["admins"])


# -- Errors -------------------------------------------------------------------------------


def test_a_wrong_password_names_the_system_and_is_never_shown(ou: OrganizationalUnit) -> None:
    ou.user("ivy")
    [account] = build(ou).pull_accounts()
    wrong = "Wr0ng-pa55word-for-tests"
    directory = build(ou, password=wrong)
    exercise_failures(directory, wrong, identities=True)
    with pytest.raises(PullError) as caught:
        list(directory.pull_accounts())
    text = str(caught.value)
    assert text.startswith("corp-ad: ")
    assert "refused bind DN" in text and ADMIN_DN in text and "AD_PASSWORD" in text
    with pytest.raises(ConnectorError, match="refused bind DN"):
        directory.deprovision(account, Mode.DISABLE)
    with pytest.raises(ConnectorError, match="refused bind DN"):
        directory.enable(account)
    live = build(ou).lookup_account(account.id)
    assert live is not None and live.status == "active"


def test_a_simple_bind_without_tls_is_refused_with_the_fix(ou: OrganizationalUnit) -> None:
    # A DC as shipped refuses a password over plain LDAP; the message says what to use.
    directory = build(ou, start_tls=False, ca_file=None)
    with pytest.raises(PullError, match=r"corp-ad: .*use an ldaps:// url or start_tls"):
        list(directory.pull_accounts())


def test_ldaps_works_as_well_as_start_tls(ou: OrganizationalUnit) -> None:
    ou.user("jo")
    directory = build(ou, url=ou.dc.ldaps_url, start_tls=False)
    assert [a.username for a in directory.pull_accounts()] == [ou.username("jo")]


def test_a_user_without_delegated_rights_is_told_it_may_not_write(
    ou: OrganizationalUnit,
) -> None:
    entry = ou.user("kim")
    team = ou.group("team", [entry])
    directory = build(ou, bind_dn=READER_DN)
    [account] = directory.pull_accounts()
    assert account.roles == ("team",), "an ordinary user may read users and groups"
    for mode in (Mode.DISABLE, Mode.DELETE):
        with pytest.raises(ConnectorError, match=rf"bind DN '{READER_DN}' may not do this"):
            directory.deprovision(account, mode)
    with pytest.raises(ConnectorError, match=rf"bind DN '{READER_DN}' may not do this"):
        directory.remove_roles(account, ["team"])
    assert ou.read(entry, "userAccountControl") == {"userAccountControl": [str(ACTIVE_USER)]}
    assert ou.read(team, "member") == {"member": [entry]}


def test_last_login_is_read_from_last_logon_timestamp(ou: OrganizationalUnit) -> None:
    signed_in = ou.user("lena")
    ou.user("max")
    password = f"Pw-{secrets.token_hex(8)}-A1!"
    ou.conn.modify(
        signed_in,
        {
            "unicodePwd": [(ldap3.MODIFY_REPLACE, [f'"{password}"'.encode("utf-16-le")])],
            "userAccountControl": [(ldap3.MODIFY_REPLACE, ["512"])],
        },
    )
    before = datetime.now(UTC).replace(microsecond=0)
    ou.dc.admin().rebind(user=signed_in, password=password)  # the DC records the sign-in
    after = datetime.now(UTC)

    pulled = {a.username: a.last_login for a in build(ou).pull_accounts()}
    moment = datetime.fromisoformat(pulled[ou.username("lena")].replace("Z", "+00:00"))
    assert before <= moment <= after
    assert pulled[ou.username("max")] == ""  # never signed in: unknown, not a date
    without = build(ou, last_login_attribute=None).pull_accounts()
    assert {a.last_login for a in without} == {""}
