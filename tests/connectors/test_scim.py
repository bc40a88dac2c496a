"""The SCIM connector against real SCIM servers on 127.0.0.1.

Tests taking `start_server` (or `directory`) run against both scim2-server and
django-scim2, two independent implementations (tests/connectors/conftest.py); the few
that depend on what only one of them does say which.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import httpx
import jsonschema
import pytest

from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.http import RetryPolicy, build_client
from reconciler.connectors.scim import (
    ERROR_SCHEMA,
    OPTIONS_SCHEMA,
    TYPE,
    MemberKind,
    ScimConnector,
    ScimGroup,
    ScimMember,
    ScimOptions,
    account_from_user,
    ambiguous_member_ids,
    group_memberships,
    id_problem,
    identity_from_user,
    parse_group,
    parse_list_page,
)
from reconciler.errors import (
    ConfigError,
    ConnectorError,
    PartialPullError,
    PullError,
    ReconcilerError,
)
from reconciler.model import Account, Identity
from reconciler.testing.django_scim_server import start_django_scim_server
from reconciler.testing.scim_server import (
    Middleware,
    ScimServer,
    SeedResult,
    StartServer,
    start_scim_server,
)

from .contract import Expect, exercise_connector, exercise_failures

TOKEN = "s3cret-T0KEN-for-tests"

USERS: list[dict[str, Any]] = [
    {
        "userName": "alice",
        "displayName": "Alice Liddell",
        "userType": "Employee",
        "emails": [
            {"value": "alice@home.example", "type": "home"},
            {"value": "alice@acme.example", "type": "work", "primary": True},
        ],
        "roles": [{"value": "admin"}],
        "entitlements": [{"value": "repo:payments:write"}],
    },
    {
        "userName": "bob",
        "name": {"givenName": "Bob", "familyName": "Builder"},
        "active": False,
        "emails": [{"value": "bob@acme.example"}],
    },
    {"userName": "carol", "name": {"formatted": "Carol C."}},
    {"userName": "deploy-bot", "userType": "Service"},
    {"userName": "dave", "displayName": "Dave", "emails": [{"value": "dave@acme.example"}]},
]
GROUPS: list[dict[str, Any]] = [
    {"displayName": "engineers", "members": ["alice", "dave"]},
    {"displayName": "admins", "members": ["alice"]},
    # Nested: engineers are staff too (RFC 7643 counts indirect membership).
    {"displayName": "staff", "members": ["engineers", "bob"]},
]
# django-scim2 has no nested groups.
FLAT_GROUPS: list[dict[str, Any]] = [*GROUPS[:2], {"displayName": "staff", "members": ["bob"]}]


def groups_for(server: ScimServer) -> list[dict[str, Any]]:
    """GROUPS as far as the server can hold them."""
    return FLAT_GROUPS if server.implementation == "django-scim2" else GROUPS


class Faults(httpx.BaseTransport):
    """The real server behind a fault injector: `rule` may answer or raise instead."""

    def __init__(self, rule: Callable[[httpx.Request], httpx.Response | None]) -> None:
        self.rule = rule
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []
        self.statuses: list[tuple[str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.rule(request)
        response = answer if answer is not None else self.inner.handle_request(request)
        self.statuses.append((request.method, response.status_code))
        return response

    def close(self) -> None:
        self.inner.close()


def is_users_page(request: httpx.Request, *, first: bool) -> bool:
    if request.method != "GET" or not request.url.path.endswith("/Users"):
        return False
    return bool(request.url.params.get("startIndex") == "1") == first


def rewrite_answers(
    endpoint: str, change: Callable[[dict[str, Any], httpx.Request], None]
) -> Callable[[httpx.Request], httpx.Response | None]:
    """A Faults rule: GETs under `endpoint` go to the real server, and `change` edits the
    JSON answer in place before the connector sees it (a server that lies)."""
    inner = httpx.HTTPTransport()

    def rule(request: httpx.Request) -> httpx.Response | None:
        if request.method != "GET" or f"/{endpoint}" not in request.url.path:
            return None
        response = inner.handle_request(request)
        response.read()
        body = json.loads(response.content)
        change(body, request)
        return httpx.Response(response.status_code, json=body)

    return rule


def connector(
    server: ScimServer,
    *,
    transport: httpx.BaseTransport | None = None,
    sleeps: list[float] | None = None,
    on_page: Callable[[int], None] | None = None,
    **options: Any,
) -> ScimConnector:
    """A connector on `server`, optionally behind a transport, recording its sleeps."""
    opts = ScimOptions.from_mapping("app", {"url": server.url, **options})
    client = build_client(
        "app", server.url, token=server.token, timeout=opts.timeout, transport=transport
    )
    recorded = sleeps if sleeps is not None else []
    retry = RetryPolicy(max_attempts=opts.max_retries + 1, sleep=recorded.append)
    secrets = (server.token,) if server.token else ()
    return ScimConnector("app", client, opts, retry=retry, secrets=secrets, on_page=on_page)


def built(server: ScimServer, env: dict[str, str], **options: Any) -> ScimConnector:
    """A connector built the way reconciler.yaml builds it, through the registry entry."""
    context = ConnectorContext(
        name="app", options={"url": server.url, **options}, base_dir=Path("."), env=env
    )
    made = TYPE.build(context)
    assert isinstance(made, ScimConnector)
    return made


@pytest.fixture
def directory(start_server: StartServer) -> Iterator[tuple[ScimServer, SeedResult]]:
    """A token-protected server holding USERS and GROUPS, once per SCIM implementation."""
    with start_server(token=TOKEN) as server:
        yield server, server.seed(USERS, groups_for(server))


@pytest.fixture
def scim2_directory() -> Iterator[tuple[ScimServer, SeedResult]]:
    """A scim2-server holding USERS and GROUPS, for what only it keeps (userType)."""
    with start_scim_server(token=TOKEN) as server:
        yield server, server.seed(USERS, GROUPS)


def test_scim_meets_the_connector_contract(directory: tuple[ScimServer, SeedResult]) -> None:
    server, _ = directory
    # django-scim2 keeps userName, name, one email and active, and has no nested groups.
    full = server.implementation != "django-scim2"
    staff = ("staff",) if full else ()
    scim = built(server, {"SCIM_TOKEN": TOKEN}, token_env="SCIM_TOKEN", page_size=2)
    seen = exercise_connector(
        scim,
        Expect(
            accounts=5,
            identities=5,
            victim="dave",
            roles=("admins", "engineers", "staff"),
            account_roles={
                "alice": ("admin", "admins", "engineers", "staff")
                if full
                else ("admins", "engineers"),
                "dave": ("engineers", *staff),
                "carol": (),
            },
            identity_groups={"alice": ("admins", "engineers", *staff), "bob": ("staff",)},
        ),
    )
    assert seen.accounts["alice"] == Account.build(
        id=seen.accounts["alice"].id,
        username="alice",
        email="alice@acme.example",
        display_name="Alice Liddell" if full else "alice",
        roles=seen.accounts["alice"].roles,
        entitlements=["repo:payments:write"] if full else [],
    )
    bob = seen.accounts["bob"]
    assert (bob.status, bob.display_name, bob.email) == (
        "disabled",
        "Bob Builder",
        "bob@acme.example",
    )
    assert seen.accounts["carol"].display_name == ("Carol C." if full else "carol")
    assert seen.accounts["deploy-bot"].type == ("service" if full else "human")
    assert seen.identities["bob"].status == "deprovisioned"
    scim.close()


# -- Membership: users and groups that share ids ----------------------------------------

PEOPLE: list[dict[str, Any]] = [{"userName": "alice"}, {"userName": "bob"}, {"userName": "carol"}]
# Seeded in this order, django-scim2 numbers them like PEOPLE: admins is 1 like alice,
# staff 2 like bob, contractors 3 like carol, who is in no group.
OWN_GROUPS: list[dict[str, Any]] = [
    {"displayName": "admins", "members": ["bob"]},
    {"displayName": "staff", "members": ["alice"]},
    {"displayName": "contractors", "members": []},
]


@pytest.mark.parametrize("trouble", ["nothing listening", "token refused"])
def test_a_scim_server_that_cannot_be_used_fails_every_call_without_the_token(
    directory: tuple[ScimServer, SeedResult], trouble: str
) -> None:
    server, _ = directory
    wrong = "Wr0ng-T0KEN-nobody-has"
    if trouble == "nothing listening":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        url = re.sub(r"//127\.0\.0\.1:\d+", f"//127.0.0.1:{closed}", server.url)
        scim = built(server, {"SCIM_TOKEN": TOKEN}, token_env="SCIM_TOKEN", url=url, max_retries=0)
        exercise_failures(scim, TOKEN, identities=True)
    else:
        scim = built(server, {"SCIM_TOKEN": wrong}, token_env="SCIM_TOKEN", max_retries=0)
        exercise_failures(scim, wrong, identities=True)


def _groups_with_user_ids(
    seeded: SeedResult, *, strip: bool
) -> Callable[[dict[str, Any], httpx.Request], None]:
    """Give each of OWN_GROUPS the id of the user in the same place of PEOPLE, as
    servers with per-table ids do (on django-scim2 they already have it); with `strip`,
    members also lose `type` and `$ref`, which RFC 7643 lets a server leave out."""
    same = dict(zip(seeded.groups.values(), seeded.users.values(), strict=True))

    def change(body: dict[str, Any], request: httpx.Request) -> None:
        for group in body.get("Resources", []):
            group["id"] = same[group["id"]]
            for member in group.get("members", []):
                if strip:
                    member.pop("type", None)
                    member.pop("$ref", None)

    return change


@pytest.mark.parametrize("members_say", ["type or $ref", "nothing"])
def test_a_user_gets_no_roles_from_a_group_that_shares_its_id(
    start_server: StartServer, members_say: str
) -> None:
    with start_server() as server:
        seeded = server.seed(PEOPLE, OWN_GROUPS)
        if server.implementation == "django-scim2":
            # No rewriting needed: user N and group N both exist on this server.
            assert list(seeded.users.values()) == list(seeded.groups.values())
        change = _groups_with_user_ids(seeded, strip=members_say == "nothing")
        scim = connector(server, transport=Faults(rewrite_answers("Groups", change)))
        roles = {a.username: a.roles for a in scim.pull_accounts()}
        groups = {i.username: i.groups for i in scim.pull_identities()}
    # Alice is user 1 and not in admins (group 1); carol is user 3 and in no group.
    expected = {"alice": ("staff",), "bob": ("admins",), "carol": ()}
    assert roles == expected
    assert groups == expected


def test_an_untyped_member_that_is_only_a_group_is_a_nested_group(
    scim2_directory: tuple[ScimServer, SeedResult],
) -> None:
    # Without type or $ref, "engineers" in staff is a group's id and no user's.
    server, _ = scim2_directory

    def strip(body: dict[str, Any], request: httpx.Request) -> None:
        for group in body.get("Resources", []):
            for member in group.get("members", []):
                member.pop("type", None)
                member.pop("$ref", None)

    scim = connector(server, transport=Faults(rewrite_answers("Groups", strip)), page_size=2)
    roles = {a.username: a.roles for a in scim.pull_accounts()}
    assert roles["dave"] == ("engineers", "staff")
    assert roles["bob"] == ("staff",)


@pytest.mark.parametrize("pull", ["accounts", "identities", "roles"])
def test_a_group_whose_members_cannot_be_read_fails_the_pull(
    directory: tuple[ScimServer, SeedResult], pull: str
) -> None:
    server, _ = directory

    def spoil_admins(body: dict[str, Any], request: httpx.Request) -> None:
        for group in body.get("Resources", []):
            if group["displayName"] == "admins":
                group["members"].append({"value": None, "display": "someone"})

    scim = connector(server, transport=Faults(rewrite_answers("Groups", spoil_admins)))
    pulls = {"accounts": scim.pull_accounts, "identities": scim.pull_identities}
    with pytest.raises(PullError, match="displayName 'admins'"):
        list(pulls[pull]()) if pull in pulls else scim.pull_roles()


# -- Ids: a record without a usable id is never imported or acted on --------------------

MISSING = object()
UNUSABLE_IDS = {
    "null": None,
    "missing": MISSING,
    "empty": "",
    "blank": "  ",
    "a number": 7,
    "a NUL inside": "ca\x00rol",
}


def _set_id(resource: dict[str, Any], value: object) -> None:
    if value is MISSING:
        resource.pop("id", None)
    else:
        resource["id"] = value


@pytest.mark.parametrize("pull", ["accounts", "identities"])
@pytest.mark.parametrize("bad_id", UNUSABLE_IDS.values(), ids=UNUSABLE_IDS.keys())
def test_a_user_without_a_usable_id_fails_the_pull(
    directory: tuple[ScimServer, SeedResult], bad_id: object, pull: str
) -> None:
    server, _ = directory

    def spoil_carol(body: dict[str, Any], request: httpx.Request) -> None:
        for user in body.get("Resources", []):
            if user.get("userName") == "carol":
                _set_id(user, bad_id)

    scim = connector(server, transport=Faults(rewrite_answers("Users", spoil_carol)), page_size=2)
    read: list[Account | Identity] = []
    with pytest.raises(PullError) as caught:
        read.extend(scim.pull_accounts() if pull == "accounts" else scim.pull_identities())
    message = str(caught.value)
    assert message.startswith("app: ")
    assert "'carol'" in message, "the user is named"
    assert "fix or remove it on the server" in message, "the message says what to do"
    assert "carol" not in {r.username for r in read}
    assert not {"None", "", "  ", "7", "carol"} & {r.id for r in read}


LIVE_ANSWERS = ["another user", *UNUSABLE_IDS]


@pytest.mark.parametrize("lookup", ["account", "identity"])
@pytest.mark.parametrize("answer", LIVE_ANSWERS)
def test_a_lookup_answered_with_another_or_an_unusable_user_is_an_error(
    directory: tuple[ScimServer, SeedResult], answer: str, lookup: str
) -> None:
    server, seeded = directory
    alice, bob = seeded.users["alice"], seeded.users["bob"]
    inner = httpx.HTTPTransport()

    def lie(request: httpx.Request) -> httpx.Response | None:
        if request.method != "GET" or not request.url.path.endswith(f"/Users/{alice}"):
            return None
        if answer == "another user":
            # GET /Users/{alice} answered with bob, as a confused proxy or cache would.
            request.url = request.url.copy_with(path=request.url.path[: -len(alice)] + bob)
            return None
        response = inner.handle_request(request)
        response.read()
        body = json.loads(response.content)
        _set_id(body, UNUSABLE_IDS[answer])
        return httpx.Response(200, json=body)

    scim = connector(server, transport=Faults(lie))
    find = scim.lookup_account if lookup == "account" else scim.lookup_identity
    with pytest.raises(ConnectorError) as caught:
        find(alice)
    message = str(caught.value)
    assert "'bob'" in message if answer == "another user" else "'alice'" in message
    # Every other user is still read as it is.
    assert find(seeded.users["dave"]) is not None


def test_inactive_status_and_service_types_are_configurable(
    scim2_directory: tuple[ScimServer, SeedResult],
) -> None:
    server, _ = scim2_directory
    scim = connector(server, inactive_status="suspended", service_user_types=["Employee"])
    identities = {i.username: i for i in scim.pull_identities()}
    accounts = {a.username: a for a in scim.pull_accounts()}
    assert identities["bob"].status == "suspended"
    assert (accounts["alice"].type, accounts["deploy-bot"].type) == ("service", "human")


def test_filter_option_selects_users(directory: tuple[ScimServer, SeedResult]) -> None:
    server, _ = directory
    scim = connector(server, filter='userName eq "alice"')
    assert [a.username for a in scim.pull_accounts()] == ["alice"]


def test_invalid_filter_is_a_pull_error_naming_the_option(
    directory: tuple[ScimServer, SeedResult],
) -> None:
    server, _ = directory
    with pytest.raises(PullError, match=r"400 Bad Request.*check `filter`") as caught:
        list(connector(server, filter="userType eq").pull_accounts())
    assert not isinstance(caught.value, PartialPullError)


# -- Reading members (no server) ---------------------------------------------------------

U, G, UNSTATED = MemberKind.USER, MemberKind.GROUP, MemberKind.UNSTATED


@pytest.mark.parametrize(
    ("member", "kind"),
    [
        ({"value": "1", "type": "User"}, U),
        ({"value": "1", "type": "Group"}, G),
        ({"value": "1", "type": "group"}, G),
        ({"value": "1", "$ref": "https://idp.example/scim/v2/Users/1"}, U),
        ({"value": "1", "$ref": "https://idp.example/scim/v2/Groups/1"}, G),
        ({"value": "1", "$ref": "../Groups/1"}, G),
        ({"value": "1", "type": "User", "$ref": "https://idp.example/v2/Users/1"}, U),
        ({"value": "1", "display": "Alice"}, UNSTATED),
        ({"value": "1", "type": "Device"}, UNSTATED),
        ({"value": "1", "$ref": "https://idp.example/v2/Devices/1"}, UNSTATED),
        ({"value": 7, "type": "User"}, U),
    ],
)
def test_parse_group_reads_what_a_member_is(member: dict[str, Any], kind: MemberKind) -> None:
    group = parse_group({"id": "g1", "displayName": "admins", "members": [member]})
    assert group.members == (ScimMember(id=str(member["value"]), kind=kind),)


@pytest.mark.parametrize(
    "resource",
    [
        {"id": "g1", "members": [{"value": "1", "type": "User", "$ref": "/v2/Groups/1"}]},
        {"id": "g1", "members": [{"value": None}]},
        {"id": "g1", "members": [{"value": ""}]},
        {"id": "g1", "members": [{"value": {"id": "1"}}]},
        {"id": "g1", "members": [{"type": "User"}]},
        {"id": "g1", "members": ["1"]},
        {"id": "g1", "members": {"value": "1"}},
        {"id": None, "members": []},
    ],
)
def test_parse_group_refuses_members_it_cannot_read(resource: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        parse_group(resource)


def group(id: str, name: str, *members: tuple[str, MemberKind]) -> ScimGroup:
    return ScimGroup(id, name, tuple(ScimMember(m, kind) for m, kind in members))


@pytest.mark.parametrize(
    ("groups", "user_ids", "expected"),
    [
        pytest.param(
            # django-scim2: user 1 is in group 2, user 2 in group 1.
            [group("1", "admins", ("2", U)), group("2", "staff", ("1", U))],
            {"1", "2"},
            {"1": {"staff"}, "2": {"admins"}},
            id="typed users whose ids are group ids",
        ),
        pytest.param(
            [group("1", "admins", ("2", UNSTATED)), group("2", "staff", ("1", UNSTATED))],
            {"1", "2"},
            {"1": {"staff"}, "2": {"admins"}},
            id="untyped members that are users too are users",
        ),
        pytest.param(
            [group("e", "engineers", ("u1", U)), group("s", "staff", ("e", G), ("u2", U))],
            {"u1", "u2"},
            {"u1": {"engineers", "staff"}, "u2": {"staff"}},
            id="typed nested group",
        ),
        pytest.param(
            [group("e", "engineers", ("u1", U)), group("s", "staff", ("e", UNSTATED))],
            {"u1"},
            {"u1": {"engineers", "staff"}},
            id="untyped member that is only a group is a nested group",
        ),
        pytest.param(
            [group("a", "a", ("b", G), ("u1", U)), group("b", "b", ("a", G), ("u2", U))],
            {"u1", "u2"},
            {"u1": {"a", "b"}, "u2": {"a", "b"}},
            id="a cycle of nested groups ends",
        ),
        pytest.param(
            [group("1", "admins", ("9", G), ("2", U))],
            {"2"},
            {"2": {"admins"}},
            id="a nested group that does not exist adds nobody",
        ),
        pytest.param(
            [group("1", "admins", ("gone", U))],
            {"2"},
            {"gone": {"admins"}},
            id="a member that is no longer a user is harmless",
        ),
    ],
)
def test_group_memberships(
    groups: list[ScimGroup], user_ids: set[str], expected: dict[str, set[str]]
) -> None:
    assert group_memberships(groups, user_ids) == {k: frozenset(v) for k, v in expected.items()}


def test_only_untyped_members_with_a_group_id_need_the_users() -> None:
    groups = [
        group("1", "admins", ("1", U), ("2", UNSTATED), ("3", UNSTATED), ("4", G)),
        group("2", "staff"),
    ]
    assert ambiguous_member_ids(groups) == {"2"}


@pytest.mark.parametrize(
    ("body", "total", "resources"),
    [
        ({"totalResults": 0}, 0, 0),
        ({"totalResults": 2, "Resources": [{"id": "1"}, {"id": "2"}]}, 2, 2),
        # Read as it is: the connector, not the parser, refuses a missing total.
        ({"Resources": [{"id": "1"}]}, None, 1),
    ],
)
def test_parse_list_page(body: dict[str, Any], total: int | None, resources: int) -> None:
    page = parse_list_page(body)
    assert (page.total, len(page.resources)) == (total, resources)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"totalResults": "5", "Resources": []},
        {"totalResults": True, "Resources": []},
        {"totalResults": 1.5, "Resources": []},
        {"totalResults": -1, "Resources": []},
        {"totalResults": 1, "Resources": {"id": "1"}},
        {"totalResults": 1, "Resources": ["1"]},
    ],
)
def test_parse_list_page_refuses_what_is_not_a_list_response(body: object) -> None:
    with pytest.raises(ValueError):
        parse_list_page(body)


@pytest.mark.parametrize(
    ("resource", "usable"),
    [
        ({"id": "2819c223-7f76-453a-919d-413861904646"}, True),
        ({"id": "1"}, True),
        ({}, False),
        ({"id": None}, False),
        ({"id": ""}, False),
        ({"id": " \t"}, False),
        ({"id": 1}, False),
        ({"id": True}, False),
        ({"id": ["1"]}, False),
        ({"id": "a\x00b"}, False),
        ({"id": "e\u0301"}, False),  # not NFC: stored, it would become another id
    ],
)
def test_id_problem(resource: dict[str, Any], usable: bool) -> None:
    assert (id_problem(resource) is None) == usable
    if not usable:
        # The record builders refuse it too, rather than store "None", "1" or "".
        with pytest.raises(ValueError):
            account_from_user({**resource, "userName": "x"})
        with pytest.raises(ValueError):
            identity_from_user({**resource, "userName": "x"})


# -- Paging ---------------------------------------------------------------------------

BIG = 1001  # one more than scim2-server returns in a page, whatever count asks


@pytest.fixture(scope="module")
def big_directory() -> Iterator[ScimServer]:
    """BIG users, all in one group whose members span two /Bulk batches."""
    with start_scim_server() as server:
        users = [{"userName": f"user{i:05d}"} for i in range(BIG)]
        everyone = {"displayName": "everyone", "members": [u["userName"] for u in users]}
        server.seed(users, [everyone])
        yield server


@pytest.mark.parametrize(("page_size", "pages"), [(1000, [1000, 1]), (5000, [1000, 1])])
def test_paging_reads_every_user_exactly_once(
    big_directory: ScimServer, page_size: int, pages: list[int]
) -> None:
    # page_size 5000 is beyond what the options allow: it shows that paging follows what
    # the server returns (it caps count at 1000), not what was asked for.
    seen_pages: list[int] = []
    scim = connector(big_directory, on_page=seen_pages.append)
    scim.options = ScimOptions(url=big_directory.url, page_size=page_size)
    accounts = list(scim.pull_accounts())
    assert sorted(a.username for a in accounts) == [f"user{i:05d}" for i in range(BIG)]
    assert len({a.id for a in accounts}) == BIG
    assert all(a.roles == ("everyone",) for a in accounts)
    assert seen_pages == pages


def _second_page_fault(kind: str) -> Callable[[httpx.Request], httpx.Response | None]:
    def rule(request: httpx.Request) -> httpx.Response | None:
        if not is_users_page(request, first=False):
            return None
        if kind == "500":
            return httpx.Response(500, json={"detail": "boom"})
        if kind == "garbled":
            return httpx.Response(200, content=b'{"totalResults": 5, "Resour')
        if kind == "empty":
            return httpx.Response(200, json={"totalResults": 5, "Resources": []})
        if kind == "shrunk":
            return httpx.Response(200, json={"totalResults": 4, "Resources": []})
        raise AssertionError(kind)

    return rule


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("500", r"gave up after 3 attempts \(last: 500 Internal Server Error\)"),
        ("garbled", "not a SCIM list"),
        ("empty", r"empty page before totalResults \(5\)"),
        ("shrunk", "totalResults changed from 5 to 4"),
    ],
)
def test_a_failing_second_page_is_a_partial_pull(
    directory: tuple[ScimServer, SeedResult], kind: str, message: str
) -> None:
    server, _ = directory
    sleeps: list[float] = []
    scim = connector(
        server,
        transport=Faults(_second_page_fault(kind)),
        sleeps=sleeps,
        page_size=2,
        max_retries=2,
    )
    read: list[Account] = []
    with pytest.raises(PartialPullError, match=message) as caught:
        read.extend(scim.pull_accounts())
    assert "after 2 of 5" in str(caught.value)
    assert len(read) == 2  # the first page, never presented as complete
    assert len(sleeps) == (2 if kind == "500" else 0)


def test_a_server_ignoring_start_index_is_caught(directory: tuple[ScimServer, SeedResult]) -> None:
    server, _ = directory

    def first_page_always(request: httpx.Request) -> httpx.Response | None:
        if is_users_page(request, first=False):
            request.url = request.url.copy_merge_params({"startIndex": "1"})
        return None

    scim = connector(server, transport=Faults(first_page_always), page_size=2)
    with pytest.raises(PartialPullError, match="twice"):
        list(scim.pull_accounts())


def _drop_total(*, first_page: bool) -> Callable[[dict[str, Any], httpx.Request], None]:
    def change(body: dict[str, Any], request: httpx.Request) -> None:
        if first_page or request.url.params.get("startIndex") != "1":
            body.pop("totalResults", None)

    return change


@pytest.mark.parametrize("first_page", [True, False], ids=["every page", "a later page"])
def test_a_pull_without_total_results_fails(
    directory: tuple[ScimServer, SeedResult], first_page: bool
) -> None:
    server, _ = directory
    rule = rewrite_answers("Users", _drop_total(first_page=first_page))
    scim = connector(server, transport=Faults(rule), page_size=2)
    read: list[Account] = []
    with pytest.raises(PullError, match="did not send totalResults") as caught:
        read.extend(scim.pull_accounts())
    assert "cannot be shown complete" in str(caught.value)
    assert len(read) == (0 if first_page else 2)


def test_a_lost_last_page_without_total_results_is_not_taken_for_the_end(
    directory: tuple[ScimServer, SeedResult],
) -> None:
    # The incident: an IdP that omits totalResults answered its last page empty, and
    # the short page was taken for the end: everyone on it looked deleted.
    server, _ = directory

    def lose_the_last_page(body: dict[str, Any], request: httpx.Request) -> None:
        body.pop("totalResults", None)
        if request.url.params.get("startIndex") == "5":
            body["Resources"] = []

    scim = connector(server, transport=Faults(rewrite_answers("Users", lose_the_last_page)))
    scim.options = ScimOptions(url=server.url, page_size=2)
    with pytest.raises(PullError, match="totalResults"):
        list(scim.pull_accounts())


@pytest.mark.parametrize("claimed", [0, 3])
def test_more_users_than_total_results_fails_the_pull(
    directory: tuple[ScimServer, SeedResult], claimed: int
) -> None:
    server, _ = directory

    def understate(body: dict[str, Any], request: httpx.Request) -> None:
        body["totalResults"] = claimed

    scim = connector(server, transport=Faults(rewrite_answers("Users", understate)), page_size=2)
    with pytest.raises(PullError, match=rf"more than the {claimed} its totalResults says"):
        list(scim.pull_accounts())


# -- Retries, timeouts, credentials -----------------------------------------------------


def test_429_with_retry_after_then_success(directory: tuple[ScimServer, SeedResult]) -> None:
    server, _ = directory
    answered: list[int] = []

    def limited(request: httpx.Request) -> httpx.Response | None:
        if is_users_page(request, first=True) and not answered:
            answered.append(429)
            return httpx.Response(429, headers={"Retry-After": "7"})
        return None

    sleeps: list[float] = []
    scim = connector(server, transport=Faults(limited), sleeps=sleeps)
    assert len(list(scim.pull_accounts())) == 5
    assert sleeps == [7.0]


def test_5xx_is_retried_with_backoff(directory: tuple[ScimServer, SeedResult]) -> None:
    server, _ = directory
    failures = iter([502, 503])

    def flaky(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/Groups"):
            status = next(failures, None)
            return httpx.Response(status) if status else None
        return None

    sleeps: list[float] = []
    scim = connector(server, transport=Faults(flaky), sleeps=sleeps)
    assert len(scim.pull_roles()) == 3
    assert len(sleeps) == 2 and all(0 <= s <= 1.0 for s in sleeps)


def _slow_users(seconds: float, times: int) -> Callable[[Any], Any]:
    """WSGI middleware: the first `times` listings of /Users take `seconds`."""
    remaining = [times]
    lock = threading.Lock()

    def middleware(app: Any) -> Any:
        def slow(environ: Any, start_response: Any) -> Any:
            if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].endswith("/Users"):
                with lock:
                    wait = remaining[0] > 0
                    remaining[0] -= 1
                if wait:
                    time.sleep(seconds)
            return app(environ, start_response)

        return slow

    return middleware


def test_a_timeout_is_retried(start_server: StartServer) -> None:
    with start_server(middleware=_slow_users(0.5, times=1)) as server:
        server.seed(USERS[:2], [])
        sleeps: list[float] = []
        scim = connector(server, sleeps=sleeps, timeout=0.1)
        assert len(list(scim.pull_accounts())) == 2
        assert len(sleeps) == 1


def test_a_server_that_keeps_timing_out_fails_the_pull(start_server: StartServer) -> None:
    with start_server(middleware=_slow_users(0.3, times=2)) as server:
        scim = connector(server, timeout=0.1, max_retries=1)
        with pytest.raises(PullError, match=r"gave up after 2 attempts \(last: ReadTimeout"):
            list(scim.pull_accounts())


@pytest.mark.parametrize("env", [{}, {"SCIM_TOKEN": ""}])
def test_a_token_missing_from_the_environment_is_a_config_error(
    scim_server: ScimServer, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError, match="environment variable SCIM_TOKEN is not set"):
        built(scim_server, env, token_env="SCIM_TOKEN")


def test_a_wrong_token_is_a_clear_error_without_the_token(
    directory: tuple[ScimServer, SeedResult],
) -> None:
    server, seeded = directory
    wrong = "wr0ng-T0KEN-value"
    scim = built(server, {"SCIM_TOKEN": wrong}, token_env="SCIM_TOKEN")
    with pytest.raises(PullError, match=r"401 Unauthorized.*environment variable SCIM_TOKEN") as e:
        list(scim.pull_accounts())
    assert not isinstance(e.value, PartialPullError)
    dave = Account.build(id=seeded.users["dave"], username="dave")
    with pytest.raises(ConnectorError, match="environment variable SCIM_TOKEN") as e2:
        scim.deprovision(dave, Mode.DELETE)
    for error in (e.value, e2.value):
        assert wrong not in str(error) and TOKEN not in str(error)


# A token with no common word in it, so that any 6 characters of it in a message are a leak.
ECHOED_TOKEN = "Zq8vK3mXp9WtR2nB7yLcH4jD"


def _echo_authorization(where: str) -> Middleware:
    """WSGI middleware: every GET under /Users answers with the request's Authorization
    header in the body (`body`: 200 and HTML), in a SCIM error's detail (`detail`: 403),
    placed so that a cut at 120 characters falls inside the token, or in the reason
    phrase of its status line."""
    echo_prefix = "Authorization: Bearer "
    padding = 110 - len(echo_prefix)

    def middleware(app: WSGIApplication) -> WSGIApplication:
        def echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if environ["REQUEST_METHOD"] != "GET" or "/Users" not in environ["PATH_INFO"]:
                return app(environ, start_response)
            echoed = f"Authorization: {environ.get('HTTP_AUTHORIZATION', '')} was refused"
            if where == "body":
                start_response("200 OK", [("Content-Type", "text/html")])
                return [("<" * padding + echoed).encode()]
            if where == "status line":
                start_response(f"403 {echoed}", [("Content-Type", "text/plain")])
                return [b""]
            error = {"schemas": [ERROR_SCHEMA], "status": "403", "detail": "D" * padding + echoed}
            start_response("403 Forbidden", [("Content-Type", "application/scim+json")])
            return [json.dumps(error).encode()]

        return echo

    return middleware


@pytest.mark.parametrize("where", ["body", "detail", "status line"])
def test_a_token_echoed_by_the_server_never_reaches_a_message(
    start_server: StartServer, where: str
) -> None:
    with start_server(token=ECHOED_TOKEN, middleware=_echo_authorization(where)) as server:
        messages = []
        scim = connector(server)
        scim.secrets = ()  # the token is hidden as the request's credential all the same
        for attempt in (lambda: list(scim.pull_accounts()), lambda: scim.lookup_account("1")):
            with pytest.raises(ConnectorError) as caught:
                attempt()
            messages.append(str(caught.value))
    leaks = {
        ECHOED_TOKEN[i : i + 6]
        for i in range(len(ECHOED_TOKEN) - 5)
        if any(ECHOED_TOKEN[i : i + 6] in message for message in messages)
    }
    assert not leaks, messages
    assert all("[REDACTED]" in message for message in messages[1:] if where == "body")


def test_options_are_checked() -> None:
    jsonschema.Draft202012Validator.check_schema(OPTIONS_SCHEMA)
    defaults = {k: v.get("default") for k, v in OPTIONS_SCHEMA["properties"].items()}
    options = ScimOptions(url="http://x")
    assert defaults["page_size"] == options.page_size
    assert defaults["timeout"] == options.timeout
    assert tuple(defaults["service_user_types"]) == options.service_user_types
    assert defaults["inactive_status"] == options.inactive_status
    assert defaults["max_retries"] == options.max_retries
    with pytest.raises(ConfigError, match=r"unknown option.*tokne_env"):
        ScimOptions.from_mapping("app", {"url": "http://x", "tokne_env": "X"})
    with pytest.raises(ConfigError, match="url is required"):
        ScimOptions.from_mapping("app", {})
    assert TYPE.secret_env_options == ("token_env",)


# -- Deprovisioning -----------------------------------------------------------------------


def test_disable_accepts_204_and_200(scim2_directory: tuple[ScimServer, SeedResult]) -> None:
    # scim2-server answers 204, or 200 with ?attributes; django-scim2 always 200 (contract).
    server, seeded = scim2_directory

    def ask_for_a_body(request: httpx.Request) -> httpx.Response | None:
        # With ?attributes=active scim2-server answers the PATCH 200 with a body.
        if request.method == "PATCH":
            request.url = request.url.copy_merge_params({"attributes": "active"})
        return None

    for rule, name, status in ((lambda r: None, "alice", 204), (ask_for_a_body, "dave", 200)):
        transport = Faults(rule)
        scim = connector(server, transport=transport)
        account = Account.build(id=seeded.users[name], username=name)
        scim.deprovision(account, Mode.DISABLE)
        assert ("PATCH", status) in transport.statuses
        live = scim.lookup_account(account.id)
        assert live is not None and live.status == "disabled"


def test_disable_answered_200_but_still_active_is_an_error(
    directory: tuple[ScimServer, SeedResult],
) -> None:
    server, seeded = directory

    def ignore(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PATCH":
            return httpx.Response(200, json={"id": seeded.users["dave"], "active": True})
        return None

    scim = connector(server, transport=Faults(ignore))
    with pytest.raises(ConnectorError, match="still active"):
        scim.deprovision(Account.build(id=seeded.users["dave"], username="dave"), Mode.DISABLE)


def test_the_test_server_helpers_and_a_clean_stop(start_server: StartServer) -> None:
    before = set(threading.enumerate())
    with start_server() as server:
        ids = server.seed(USERS, FLAT_GROUPS)
        server.set_active(ids.users["alice"], False)
        server.delete_user(ids.users["carol"])
        server.delete_user(ids.users["carol"])  # already gone: fine
        users = {u["userName"]: u for u in server.list_users()}
    assert sorted(users) == ["alice", "bob", "dave", "deploy-bot"]
    assert users["alice"]["active"] is False
    assert set(threading.enumerate()) <= before, "stop() joins every server thread"


def test_one_django_scim2_server_at_a_time_each_starting_empty() -> None:
    with start_django_scim_server() as server:
        assert server.seed(PEOPLE[:1]).users == {"alice": "1"}
        with pytest.raises(ReconcilerError, match="already running"), start_django_scim_server():
            pass
        with pytest.raises(ReconcilerError, match="hold users only"):
            server.seed(PEOPLE[1:2], [{"displayName": "a"}, {"displayName": "b", "members": ["a"]}])
    with start_django_scim_server() as server:
        assert server.list_users() == []
        assert server.seed(PEOPLE[:1]).users == {"alice": "1"}


def test_seeding_reports_failed_operations(start_server: StartServer) -> None:
    with start_server() as server:
        server.seed(USERS[:1])
        with pytest.raises(ReconcilerError, match="409"):
            server.seed(USERS[:2])


def test_an_inactive_users_last_modified_is_its_status_time() -> None:
    user = {
        "id": "u1",
        "userName": "bob",
        "active": False,
        "meta": {"lastModified": "2026-11-20T09:30:00.250+01:00"},
    }
    assert identity_from_user(user).status_changed_at == "2026-11-20T08:30:00Z"
    # An active user's lastModified moves with every edit: it says nothing of a status.
    assert identity_from_user({**user, "active": True}).status_changed_at == ""
    assert identity_from_user({"id": "u2", "active": False}).status_changed_at == ""
    assert identity_from_user({**user, "meta": {"lastModified": "soon"}}).status_changed_at == ""


def test_a_deactivated_user_from_a_real_server_has_a_status_time(
    scim2_directory: tuple[ScimServer, SeedResult],
) -> None:
    server, seeded = scim2_directory
    before = {i.username: i for i in connector(server).pull_identities()}
    assert before["alice"].status == "active" and before["alice"].status_changed_at == ""
    server.set_active(seeded.users["alice"], False)
    try:
        alice = {i.username: i for i in connector(server).pull_identities()}["alice"]
        assert alice.status == "deprovisioned"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", alice.status_changed_at)
    finally:
        server.set_active(seeded.users["alice"], True)
