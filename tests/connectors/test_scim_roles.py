"""Taking roles through SCIM (group memberships and `roles` values) on real servers:
only the account's own direct membership goes, and what cannot be taken is refused
before anything changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reconciler.connectors.base import Mode
from reconciler.connectors.scim import ScimConnector, remove_member_request
from reconciler.errors import ConnectorError
from reconciler.testing.django_scim_server import start_django_scim_server
from reconciler.testing.scim_server import ScimServer, SeedResult, list_groups, start_scim_server

from .test_scim import GROUPS, TOKEN, USERS, connector


@pytest.fixture
def scim2() -> Iterator[tuple[ScimServer, SeedResult]]:
    with start_scim_server(token=TOKEN) as server:
        yield server, server.seed(USERS, GROUPS)


def members(server: ScimServer) -> dict[str, list[str]]:
    return {
        group["displayName"]: sorted(m["value"] for m in group.get("members") or [])
        for group in list_groups(server.url, server.token)
    }


def account(scim: ScimConnector, seeded: SeedResult, name: str) -> Any:
    found = scim.lookup_account(seeded.users[name])
    assert found is not None
    return found


def test_roles_read_live_include_every_membership(scim2: tuple[ScimServer, SeedResult]) -> None:
    server, seeded = scim2
    scim = connector(server)
    assert Mode.REMOVE_ROLES in scim.modes
    # The user resource says only `admin`; /Groups says the rest (nested: staff).
    assert scim.lookup_roles(seeded.users["alice"]) == ("admin", "admins", "engineers", "staff")
    assert scim.lookup_roles("no-such-user") is None


def test_a_role_is_taken_from_one_account_and_no_one_else(
    scim2: tuple[ScimServer, SeedResult],
) -> None:
    server, seeded = scim2
    scim = connector(server)
    alice, dave = seeded.users["alice"], seeded.users["dave"]
    before = members(server)
    scim.remove_roles(account(scim, seeded, "alice"), ["admins", "admin", "engineers"])
    # `staff` came through engineers: taking engineers takes it too.
    assert scim.lookup_roles(alice) == ()
    after = members(server)
    assert after["admins"] == []
    assert after["engineers"] == [dave]
    assert after["staff"] == before["staff"]  # the nested group itself stays
    assert scim.lookup_roles(dave) == ("engineers", "staff")
    # Safe to repeat, and a role not held is no error.
    scim.remove_roles(account(scim, seeded, "alice"), ["admins", "never-held"])
    assert members(server) == after


def test_a_role_held_only_through_a_nested_group_is_refused_before_any_change(
    scim2: tuple[ScimServer, SeedResult],
) -> None:
    server, seeded = scim2
    scim = connector(server)
    before = members(server)
    with pytest.raises(ConnectorError, match="only through a nested group") as caught:
        scim.remove_roles(account(scim, seeded, "alice"), ["admins", "staff"])
    assert "nothing was changed" in str(caught.value)
    assert members(server) == before
    assert "admins" in (scim.lookup_roles(seeded.users["alice"]) or ())


def test_a_deleted_account_has_nothing_to_take(scim2: tuple[ScimServer, SeedResult]) -> None:
    server, seeded = scim2
    scim = connector(server)
    carol = account(scim, seeded, "carol")
    httpx.delete(
        f"{server.url}/Users/{carol.id}", headers={"Authorization": f"Bearer {TOKEN}"}
    ).raise_for_status()
    scim.remove_roles(carol, ["admins"])
    assert scim.lookup_roles(carol.id) is None


def test_a_server_that_cannot_remove_one_member_is_an_error_and_removes_no_one() -> None:
    # django-scim2 answers a filtered remove with 501. The unfiltered form some servers
    # take instead (`path: members` with a value) removes every member on a server that
    # follows RFC 7644 to the letter, so it is never sent.
    with start_django_scim_server(token=TOKEN) as server:
        seeded = server.seed(USERS, GROUPS[:2])
        scim = connector(server)
        before = members(server)
        with pytest.raises(ConnectorError, match="remove the role by hand"):
            scim.remove_roles(account(scim, seeded, "alice"), ["admins"])
        assert members(server) == before


@pytest.mark.parametrize("user_id", ['a"b', "a\\b", "x] or value pr [y"])
def test_a_member_filter_quotes_the_id(user_id: str) -> None:
    with httpx.Client(base_url="http://scim.invalid/v2/") as client:
        request = remove_member_request(client, "g/1", user_id)
    body = json.loads(request.content)
    (operation,) = body["Operations"]
    assert operation == {"op": "remove", "path": f"members[value eq {json.dumps(user_id)}]"}
    assert request.url.raw_path == b"/v2/Groups/g%2F1"
