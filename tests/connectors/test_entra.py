"""The entra connector against a stateful fake of Microsoft Graph and its token endpoint
on 127.0.0.1 (reconciler/testing/entra_fake.py), whose answers are validated against the
Graph schema fragments in tests/vendor/entra/."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.entra import (
    OPTIONS_SCHEMA,
    TYPE,
    Credentials,
    EntraConnector,
    EntraOptions,
    account_from_user,
    identity_from_user,
    parse_collection,
    parse_graph_error,
    parse_token,
    same_origin,
)
from reconciler.connectors.http import RetryPolicy, build_client
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.model import Account
from reconciler.testing.entra_fake import FakeGraph, Tenant, graph_user, serve_graph

from .contract import Expect, exercise_connector, exercise_failures

TENANT = "5f1c2b7e-0d8a-4c1e-9a55-3b0f1e2d4c6a"
CLIENT = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
SECRET = "Qx8Q~s3cret.VALUE-for_tests~"
SECRET_ENV = "ENTRA_CLIENT_SECRET"
VENDOR = Path(__file__).resolve().parent.parent / "vendor" / "entra"
FIELDS = "id,userPrincipalName,mail,displayName,accountEnabled,department,jobTitle"


def users() -> list[dict[str, Any]]:
    return [
        graph_user(
            "alice@acme.example",
            display_name="Alice Liddell",
            mail="alice@acme.example",
            department="Engineering",
            job_title="Staff Engineer",
            last_sign_in="2026-11-20T09:30:00Z",
        ),
        graph_user("bob@acme.example", mail="bob@acme.example", enabled=False),
        graph_user("carol@acme.onmicrosoft.com", display_name="Carol C."),
        graph_user(
            "dave@acme.example", mail="dave@acme.example", last_sign_in="2026-11-25T17:00:00Z"
        ),
    ]


def many_users(count: int) -> list[dict[str, Any]]:
    return [graph_user(f"user{n:03}@acme.example") for n in range(count)]


@pytest.fixture
def fake() -> FakeGraph:
    return FakeGraph(
        Tenant(tenant_id=TENANT, client_id=CLIENT, client_secret=SECRET, users=users())
    )


@pytest.fixture
def url(fake: FakeGraph) -> Iterator[str]:
    with serve_graph(fake) as served:
        yield served


def options(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret_env": SECRET_ENV,
        "login_url": url,
        "graph_url": url,
        **extra,
    }


def connector(
    fake: FakeGraph,
    url: str,
    *,
    sleeps: list[float] | None = None,
    transport: httpx.BaseTransport | None = None,
    secret: str = SECRET,
    on_page: Callable[[int], None] | None = None,
    **extra: Any,
) -> EntraConnector:
    """A connector on the fake sharing its clock, recording sleeps instead of sleeping."""
    opts = EntraOptions.from_mapping("entra", options(url, **extra))
    recorded = sleeps if sleeps is not None else []
    return EntraConnector(
        "entra",
        login=build_client("entra", url, token=None, timeout=opts.timeout, transport=transport),
        graph=build_client(
            "entra", f"{url}/v1.0", token=None, timeout=opts.timeout, transport=transport
        ),
        options=opts,
        credentials=Credentials(TENANT, str(opts.client_id), secret, SECRET_ENV),
        retry=RetryPolicy(max_attempts=opts.max_retries + 1, sleep=recorded.append),
        clock=lambda: fake.now,
        on_page=on_page,
    )


def built(url: str, env: dict[str, str], **extra: Any) -> EntraConnector:
    """A connector built the way reconciler.yaml builds it, through the registry entry."""
    context = ConnectorContext(
        name="entra", options=options(url, **extra), base_dir=Path("."), env=env
    )
    made = TYPE.build(context)
    assert isinstance(made, EntraConnector)
    # Built as configured, but never sleeping for real between attempts.
    made.retry = RetryPolicy(max_attempts=made.retry.max_attempts, sleep=lambda _: None)
    return made


def token_requests(fake: FakeGraph) -> int:
    return sum(1 for r in fake.requests if r.endswith("/oauth2/v2.0/token"))


def user_requests(fake: FakeGraph) -> list[str]:
    return [r for r in fake.requests if r.startswith("GET /v1.0/users")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the contract ---------------------------------------------------------------------


def test_entra_meets_the_connector_contract(fake: FakeGraph, url: str) -> None:
    made = built(url, {SECRET_ENV: SECRET})
    seen = exercise_connector(
        made, Expect(accounts=4, victim="dave@acme.example", identities=4, roles=())
    )
    alice = seen.identities["alice@acme.example"]
    assert (alice.email, alice.display_name, alice.department, alice.title) == (
        "alice@acme.example",
        "Alice Liddell",
        "Engineering",
        "Staff Engineer",
    )
    assert seen.identities["bob@acme.example"].status == "deprovisioned"
    assert seen.identities["carol@acme.onmicrosoft.com"].email == ""
    assert made.modes == frozenset()
    assert SECRET not in repr(made)
    made.close()


def test_an_entra_system_that_cannot_be_used_fails_every_call_without_the_secret(
    url: str,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    exercise_failures(built(nobody, {SECRET_ENV: SECRET}), SECRET, identities=True)
    exercise_failures(
        built(url, {SECRET_ENV: "wrong-" + SECRET}), "wrong-" + SECRET, identities=True
    )


def test_what_entra_cannot_do_is_an_error_naming_the_system(fake: FakeGraph, url: str) -> None:
    made = connector(fake, url)
    alice = Account.build(fake.user("alice@acme.example")["id"], "alice@acme.example")
    calls: list[Callable[[], object]] = [
        lambda: made.deprovision(alice, Mode.DISABLE),
        lambda: made.lookup_roles(alice.id),
        lambda: made.remove_roles(alice, ["x"]),
        lambda: made.enable(alice),
    ]
    for call in calls:
        with pytest.raises(ConnectorError, match=r"^entra: .*identity source"):
            call()


# --- requests, paging, mapping ---------------------------------------------------------


def test_paging_follows_next_links_and_selects_only_what_is_used(fake: FakeGraph, url: str) -> None:
    fake.tenant.users = many_users(7)
    fake.page_cap = 3
    pages: list[int] = []
    pulled = list(connector(fake, url, on_page=pages.append).pull_identities())
    assert sorted(i.username for i in pulled) == [f"user{n:03}@acme.example" for n in range(7)]
    assert pages == [3, 3, 1]
    listed = user_requests(fake)
    assert listed[0] == f"GET /v1.0/users?$select={FIELDS}"
    assert ["$skiptoken=" in r for r in listed] == [False, True, True]
    assert fake.prefer == ["odata.maxpagesize=999"] * 3


def test_sign_in_activity_is_selected_with_smaller_pages_and_becomes_last_login(
    fake: FakeGraph, url: str
) -> None:
    accounts = {a.username: a for a in connector(fake, url, sign_in_activity=True).pull_accounts()}
    assert accounts["alice@acme.example"].last_login == "2026-11-20T09:30:00Z"
    assert accounts["carol@acme.onmicrosoft.com"].last_login == ""  # never signed in
    assert user_requests(fake)[0].endswith(f"$select={FIELDS},signInActivity")
    assert fake.prefer == ["odata.maxpagesize=500"]


def test_a_tenant_without_p1_gives_unknown_last_logins_not_an_error(
    fake: FakeGraph, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.tenant.premium = False
    fake.tenant.users = users() + many_users(5)
    fake.page_cap = 4
    made = connector(fake, url, sign_in_activity=True)
    with caplog.at_level(logging.WARNING, logger="reconciler.connectors.entra"):
        accounts = list(made.pull_accounts())
    assert len(accounts) == 9
    assert all(a.last_login == "" for a in accounts)
    assert any("P1" in r.getMessage() and "unknown" in r.getMessage() for r in caplog.records)
    listed = user_requests(fake)
    # Refused once, then never asked again: not on later pages, not in lookups.
    assert sum("signInActivity" in r for r in listed) == 1
    assert made.lookup_account(accounts[0].id) is not None
    assert sum("signInActivity" in r for r in user_requests(fake)) == 1


def test_sign_in_activity_without_audit_log_rights_names_the_permission(
    fake: FakeGraph, url: str
) -> None:
    fake.fail_next(
        403,
        code="Authorization_RequestDenied",
        message="Insufficient privileges to complete the operation.",
        match="signInActivity",
    )
    with pytest.raises(PullError, match=re.escape("AuditLog.Read.All")):
        list(connector(fake, url, sign_in_activity=True).pull_accounts())


@pytest.mark.parametrize(
    ("enabled", "inactive_status", "status"),
    [
        (True, "deprovisioned", "active"),
        (False, "deprovisioned", "deprovisioned"),
        (False, "suspended", "suspended"),
        (None, "deprovisioned", "active"),  # Graph did not say: not a leaver
    ],
)
def test_account_enabled_maps_to_identity_status(
    enabled: bool | None, inactive_status: str, status: str
) -> None:
    user = {"id": "u1", "userPrincipalName": "u@acme.example", "accountEnabled": enabled}
    assert identity_from_user(user, inactive_status=inactive_status).status == status
    assert account_from_user(user).status == ("disabled" if enabled is False else "active")


def test_inactive_status_option_reaches_a_pull(fake: FakeGraph, url: str) -> None:
    pulled = {
        i.username: i.status
        for i in connector(fake, url, inactive_status="suspended").pull_identities()
    }
    assert pulled["bob@acme.example"] == "suspended"


def test_a_user_deleted_from_the_directory_vanishes_from_the_pull(
    fake: FakeGraph, url: str
) -> None:
    made = connector(fake, url)
    bob = fake.user("bob@acme.example")["id"]
    fake.delete("bob@acme.example")
    assert bob not in {i.id for i in made.pull_identities()}
    assert made.lookup_identity(bob) is None


# --- pulls that must fail ---------------------------------------------------------------


def test_zero_users_is_a_failed_pull_about_the_apps_permission(fake: FakeGraph, url: str) -> None:
    fake.rights = "empty"
    with pytest.raises(PullError, match=re.escape("User.Read.All")):
        list(connector(fake, url).pull_identities())


def test_an_app_without_rights_fails_the_pull_naming_the_permission(
    fake: FakeGraph, url: str
) -> None:
    fake.rights = "none"
    with pytest.raises(PullError, match=re.escape("User.Read.All")) as caught:
        list(connector(fake, url).pull_identities())
    assert "Authorization_RequestDenied" in str(caught.value)


def test_a_repeated_cursor_fails_the_pull_instead_of_looping(fake: FakeGraph, url: str) -> None:
    fake.tenant.users = many_users(6)
    fake.page_cap = 2
    fake.repeat_cursor = True
    with pytest.raises(PartialPullError, match=re.escape("same @odata.nextLink")):
        list(connector(fake, url).pull_identities())
    assert len(user_requests(fake)) <= 3


def test_a_500_on_page_3_of_5_is_a_failed_pull_after_retries(fake: FakeGraph, url: str) -> None:
    fake.tenant.users = many_users(10)
    fake.page_cap = 2
    fake.fail_page(3, 500)
    sleeps: list[float] = []
    with pytest.raises(PartialPullError, match="stopped after 4") as caught:
        list(connector(fake, url, sleeps=sleeps, max_retries=2).pull_identities())
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(sleeps) == 2


def test_a_429_storm_is_retried_as_told_then_fails_clearly(fake: FakeGraph, url: str) -> None:
    fake.rate_limit(retry_after=7, match="/v1.0/users", count=100)
    sleeps: list[float] = []
    with pytest.raises(PullError, match="429") as caught:
        list(connector(fake, url, sleeps=sleeps, max_retries=3).pull_identities())
    assert sleeps == [7.0, 7.0, 7.0]
    assert "gave up after 4 attempts" in str(caught.value)


def test_a_429_then_success_waits_as_told(fake: FakeGraph, url: str) -> None:
    fake.rate_limit(retry_after=3, match="/v1.0/users", count=1)
    sleeps: list[float] = []
    assert len(list(connector(fake, url, sleeps=sleeps).pull_identities())) == 4
    assert sleeps == [3.0]


@pytest.mark.parametrize("status", [503, 504])
def test_503_and_504_are_retried(fake: FakeGraph, url: str, status: int) -> None:
    fake.fail_next(status, code="ServiceNotAvailable", match="/v1.0/users", count=2)
    sleeps: list[float] = []
    assert len(list(connector(fake, url, sleeps=sleeps).pull_identities())) == 4
    assert len(sleeps) == 2


def test_a_slow_answer_times_out_and_is_retried(fake: FakeGraph, url: str) -> None:
    fake.slow(0.5, count=1)
    sleeps: list[float] = []
    pulled = list(connector(fake, url, sleeps=sleeps, timeout=0.1).pull_identities())
    assert len(pulled) == 4 and len(sleeps) == 1


def test_a_user_without_a_usable_id_fails_the_pull(fake: FakeGraph, url: str) -> None:
    fake.user("carol@acme.onmicrosoft.com")["id"] = None
    with pytest.raises(PullError, match=r"carol@acme\.onmicrosoft\.com.*its id is null"):
        list(connector(fake, url).pull_identities())


def test_a_truncated_body_fails_the_pull(fake: FakeGraph, url: str) -> None:
    fake.truncate()
    with pytest.raises(PullError, match="not JSON"):
        list(connector(fake, url).pull_identities())


def test_a_next_link_to_another_host_is_refused_and_not_followed(fake: FakeGraph, url: str) -> None:
    fake.page_cap = 2
    fake.foreign_next_link = "https://graph.attacker.example"
    seen: list[str] = []

    class Spy(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url.host))
            return super().handle_request(request)

    with pytest.raises(PartialPullError, match=re.escape("graph.attacker.example")):
        list(connector(fake, url, transport=Spy()).pull_identities())
    assert seen == ["127.0.0.1"] * len(seen)


# --- groups ----------------------------------------------------------------------------


def seed_groups(fake: FakeGraph) -> None:
    fake.add_group("engineers", ["alice@acme.example", "dave@acme.example"])
    fake.add_group("admins", ["alice@acme.example"])
    # Nested: engineers are staff too.
    fake.add_group("staff", ["engineers", "bob@acme.example"])


def test_groups_give_identities_their_direct_and_nested_groups(fake: FakeGraph, url: str) -> None:
    seed_groups(fake)
    made = built(url, {SECRET_ENV: SECRET}, groups=True)
    seen = exercise_connector(
        made,
        Expect(
            accounts=4,
            victim="dave@acme.example",
            identities=4,
            roles=("admins", "engineers", "staff"),
            identity_groups={
                "alice@acme.example": ("admins", "engineers", "staff"),
                "bob@acme.example": ("staff",),
                "carol@acme.onmicrosoft.com": (),
                "dave@acme.example": ("engineers", "staff"),
            },
        ),
    )
    live = made.lookup_identity(seen.identities["alice@acme.example"].id)
    assert live is not None and live.groups == ("admins", "engineers", "staff")
    members = [r for r in fake.requests if "/transitiveMembers/" in r]
    assert all(r.endswith("microsoft.graph.user?$select=id") for r in members)


def test_group_members_are_paged_to_the_end(fake: FakeGraph, url: str) -> None:
    fake.tenant.users = many_users(7)
    fake.page_cap = 2
    fake.add_group("everyone", [u["userPrincipalName"] for u in fake.tenant.users])
    pulled = list(connector(fake, url, groups=True).pull_identities())
    assert all(i.groups == ("everyone",) for i in pulled) and len(pulled) == 7


def test_a_failing_group_listing_fails_the_pull(fake: FakeGraph, url: str) -> None:
    seed_groups(fake)
    fake.fail_next(403, code="Authorization_RequestDenied", match="/transitiveMembers/")
    with pytest.raises(PullError, match=r"members of group 'engineers'.*403.*GroupMember"):
        list(connector(fake, url, groups=True).pull_identities())


def test_without_the_groups_option_no_group_is_read(fake: FakeGraph, url: str) -> None:
    seed_groups(fake)
    made = connector(fake, url)
    assert all(i.groups == () for i in made.pull_identities())
    assert made.pull_roles() == []
    assert not [r for r in fake.requests if "group" in r.lower()]


# --- tokens ---------------------------------------------------------------------------


def test_the_token_is_cached_then_renewed_before_it_expires(fake: FakeGraph, url: str) -> None:
    made = connector(fake, url)
    list(made.pull_identities())
    list(made.pull_identities())
    assert token_requests(fake) == 1
    fake.advance(3599 - 299)  # inside the renewal margin, before Graph would refuse it
    list(made.pull_identities())
    assert token_requests(fake) == 2
    first = fake.requests.index(next(r for r in fake.requests if "token" in r))
    assert fake.requests[first] == f"POST /{TENANT}/oauth2/v2.0/token"


def test_an_expired_token_gets_one_fresh_token_and_a_retry(fake: FakeGraph, url: str) -> None:
    made = connector(fake, url)
    list(made.pull_identities())
    made.clock = lambda: 0.0  # the connector's clock lags: it believes its token is fresh
    fake.advance(4000)
    assert len(list(made.pull_identities())) == 4
    assert token_requests(fake) == 2


def test_a_revoked_token_is_replaced_once(fake: FakeGraph, url: str) -> None:
    made = connector(fake, url)
    list(made.pull_identities())
    fake.revoke_tokens()
    assert len(list(made.pull_identities())) == 4
    assert token_requests(fake) == 2


def test_a_rotated_secret_is_a_clear_error_naming_the_env_var(fake: FakeGraph, url: str) -> None:
    made = connector(fake, url)
    list(made.pull_identities())
    fake.rotate_secret("the-new-secret")
    with pytest.raises(PullError, match=SECRET_ENV) as caught:
        list(made.pull_identities())
    assert "invalid_client" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert token_requests(fake) == 2  # one fresh token asked for, not a loop


def test_a_token_refused_twice_by_graph_names_the_env_var(fake: FakeGraph, url: str) -> None:
    fake.fail_next(401, code="InvalidAuthenticationToken", message="Invalid signature.", count=2)
    fake.faults[0].match = "GET /v1.0/users"
    with pytest.raises(PullError, match=f"401.*{SECRET_ENV}"):
        list(connector(fake, url).pull_identities())


def test_an_unknown_client_id_names_the_env_var_and_the_id(fake: FakeGraph, url: str) -> None:
    with pytest.raises(PullError, match="unauthorized_client") as caught:
        list(connector(fake, url, client_id="not-our-app").pull_identities())
    assert SECRET_ENV in str(caught.value) and "not-our-app" in str(caught.value)


def test_an_unknown_tenant_says_to_check_the_tenant(fake: FakeGraph, url: str) -> None:
    made = built(url, {SECRET_ENV: SECRET}, tenant_id="contoso.onmicrosoft.com")
    with pytest.raises(PullError, match=re.escape("tenant id 'contoso.onmicrosoft.com'")):
        list(made.pull_identities())


def test_a_token_endpoint_echoing_the_secret_never_reaches_a_message(
    fake: FakeGraph, url: str
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        body = {"error": "invalid_client", "error_description": f"AADSTS7000215: got {SECRET}"}
        return httpx.Response(401, json=body, request=request)

    made = connector(fake, url, transport=httpx.MockTransport(echo))
    with pytest.raises(PullError) as caught:
        list(made.pull_identities())
    assert SECRET not in str(caught.value) and SECRET_ENV in str(caught.value)


# --- lookups ---------------------------------------------------------------------------


def test_lookup_identity_reads_one_user_live(fake: FakeGraph, url: str) -> None:
    made = connector(fake, url)
    alice = fake.user("alice@acme.example")
    found = made.lookup_identity(alice["id"])
    assert found is not None and found.title == "Staff Engineer"
    fake.user("alice@acme.example")["accountEnabled"] = False
    again = made.lookup_identity(alice["id"])
    assert again is not None and again.status == "deprovisioned"
    assert made.lookup_identity("00000000-0000-0000-0000-000000000000") is None
    assert user_requests(fake)[0] == f"GET /v1.0/users/{alice['id']}?$select={FIELDS}"


def test_a_lookup_answered_with_another_user_is_an_error(fake: FakeGraph, url: str) -> None:
    alice, bob = fake.user("alice@acme.example"), fake.user("bob@acme.example")

    def swap(request: httpx.Request) -> httpx.Response:
        if "token" in request.url.path:
            body = {"token_type": "Bearer", "expires_in": 3599, "access_token": "tok-" + "x" * 20}
            return httpx.Response(200, json=body, request=request)
        return httpx.Response(200, json=bob, request=request)

    made = connector(fake, url, transport=httpx.MockTransport(swap))
    with pytest.raises(ConnectorError, match="another user"):
        made.lookup_identity(alice["id"])


# --- the vendor's schema ----------------------------------------------------------------


class Recording(httpx.HTTPTransport):
    """A real transport that keeps every answer's path, status and JSON body."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[str, int, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.answers.append((request.url.path, response.status_code, json.loads(response.content)))
        return response


def vendor_schema(name: str, definition: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((VENDOR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{definition}"})


def test_the_fakes_answers_match_graphs_published_schema(fake: FakeGraph, url: str) -> None:
    fake.tenant.users = users() + many_users(3)
    fake.page_cap = 3
    seed_groups(fake)
    recording = Recording()
    made = connector(fake, url, transport=recording, sign_in_activity=True, groups=True)
    list(made.pull_accounts())
    list(made.pull_identities())
    made.pull_roles()
    made.lookup_identity(fake.user("alice@acme.example")["id"])
    made.lookup_identity("missing")
    fake.rate_limit(match="/v1.0/users")
    list(made.pull_identities())
    fake.tenant.premium = False
    list(connector(fake, url, transport=recording, sign_in_activity=True).pull_accounts())
    fake.rotate_secret("rotated")
    with pytest.raises(PullError):
        list(made.pull_identities())

    validators = {
        "page": vendor_schema("graph-users.schema.json", "microsoft.graph.userCollectionResponse"),
        "user": vendor_schema("graph-users.schema.json", "microsoft.graph.user"),
        "groups": vendor_schema(
            "graph-users.schema.json", "microsoft.graph.groupCollectionResponse"
        ),
        "error": vendor_schema("graph-users.schema.json", "microsoft.graph.ODataErrors.ODataError"),
        "token": vendor_schema("token-response.schema.json", "success"),
        "token_error": vendor_schema("token-response.schema.json", "error"),
    }
    kinds: set[str] = set()
    for path, status, body in recording.answers:
        if path.endswith("/token"):
            kind = "token" if status == 200 else "token_error"
        elif status != 200:
            kind = "error"
        elif path == "/v1.0/groups" or path.endswith("/microsoft.graph.group"):
            kind = "groups"
        else:
            kind = "page" if path.endswith(("/users", "/microsoft.graph.user")) else "user"
        validators[kind].validate(body)
        kinds.add(kind)
    assert kinds == set(validators)
    statuses = {status for _, status, _ in recording.answers}
    assert {200, 401, 403, 404, 429} <= statuses


# --- pure parts -------------------------------------------------------------------------


def test_parse_token_renews_before_expiry() -> None:
    token = parse_token({"token_type": "Bearer", "expires_in": 3599, "access_token": "a"}, now=10)
    assert token.renew_at == 10 + 3599 - 300
    short = parse_token({"token_type": "Bearer", "expires_in": "60", "access_token": "a"}, now=0)
    assert short.renew_at == 30


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"token_type": "Bearer", "expires_in": 3599},
        {"token_type": "mac", "expires_in": 3599, "access_token": "a"},
        {"token_type": "Bearer", "expires_in": 0, "access_token": "a"},
        {"token_type": "Bearer", "access_token": "a"},
    ],
)
def test_parse_token_refuses_what_is_not_a_usable_token(body: object) -> None:
    with pytest.raises(ValueError):
        parse_token(body, now=0)


@pytest.mark.parametrize(
    "body",
    [[], {"values": []}, {"value": {}}, {"value": [1]}, {"value": [], "@odata.nextLink": 3}],
)
def test_parse_collection_refuses_what_is_not_a_collection(body: object) -> None:
    with pytest.raises(ValueError):
        parse_collection(body)


def test_parse_graph_error_reads_code_message_and_request_id() -> None:
    body = {"error": {"code": "X", "message": "m", "innerError": {"request-id": "r1"}}}
    error = parse_graph_error(body)
    assert error is not None and (error.code, error.message, error.request_id) == ("X", "m", "r1")
    assert parse_graph_error({"error": "invalid_client"}) is None


def test_same_origin_compares_scheme_host_and_port() -> None:
    base = httpx.URL("https://graph.microsoft.com/v1.0/")
    assert same_origin(httpx.URL("https://graph.microsoft.com/v1.0/users?$skiptoken=x"), base)
    assert not same_origin(httpx.URL("http://graph.microsoft.com/v1.0/users"), base)
    assert not same_origin(httpx.URL("https://graph.microsoft.com:8443/v1.0/users"), base)
    assert not same_origin(httpx.URL("https://evil.example/v1.0/users"), base)


# --- options ---------------------------------------------------------------------------


def test_an_example_configuration_is_valid_and_mistakes_are_not() -> None:
    validator = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)
    good = {"tenant_id": TENANT, "client_id_env": "ENTRA_CLIENT_ID", "client_secret_env": "S"}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "tenant_id_env": "T"})  # both forms
    assert not validator.is_valid({"tenant_id": TENANT, "client_secret_env": "S"})  # no client
    assert validator.is_valid({**good, "groups": True, "sign_in_activity": True})
    assert not validator.is_valid({**good, "page_size": 10})


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"tenant_id": TENANT, "client_id": CLIENT}, "client_secret_env"),
        ({"client_id": CLIENT, "client_secret_env": SECRET_ENV}, "tenant_id"),
        (
            {
                "tenant_id": TENANT,
                "tenant_id_env": "T",
                "client_id": CLIENT,
                "client_secret_env": "S",
            },
            "tenant_id",
        ),
        ({**options("http://x"), "page_size": 10}, "page_size"),
    ],
)
def test_options_are_checked_when_built_directly(given: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        EntraOptions.from_mapping("entra", given)


def test_a_secret_missing_from_the_environment_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=SECRET_ENV):
        built(url, {})


def test_tenant_and_client_ids_may_come_from_the_environment(fake: FakeGraph, url: str) -> None:
    env = {SECRET_ENV: SECRET, "ENTRA_TENANT_ID": TENANT, "ENTRA_CLIENT_ID": CLIENT}
    context = ConnectorContext(
        name="entra",
        options={
            "tenant_id_env": "ENTRA_TENANT_ID",
            "client_id_env": "ENTRA_CLIENT_ID",
            "client_secret_env": SECRET_ENV,
            "login_url": url,
            "graph_url": url,
        },
        base_dir=Path("."),
        env=env,
    )
    made = TYPE.build(context)
    assert len(list(made.pull_identities())) == 4
    with pytest.raises(ConfigError, match="ENTRA_TENANT_ID"):
        TYPE.build(ConnectorContext("entra", context.options, Path("."), {SECRET_ENV: SECRET}))


def test_probe_says_whether_users_are_visible(fake: FakeGraph, url: str) -> None:
    assert "users are visible" in connector(fake, url).probe(True)
    fake.rights = "empty"
    with pytest.raises(ConnectorError, match=re.escape("User.Read.All")):
        connector(fake, url).probe(True)
