"""The github connector (members of an organisation) against a stateful fake of GitHub's
REST and GraphQL APIs on 127.0.0.1 (reconciler/testing/github_org_fake.py), whose answers
are validated against the schema fragments in tests/vendor/github/."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.github import (
    OPTIONS_SCHEMA,
    SECONDARY_WAIT,
    TYPE,
    GitHubConnector,
    GitHubOptions,
    Member,
    account_from_member,
    next_link,
    owner_count_problem,
    parse_saml_page,
    parse_users,
    rate_limit_wait,
    saml_email,
    saml_query,
)
from reconciler.connectors.http import RetryPolicy, build_client
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.model import Account
from reconciler.testing.github_org_fake import (
    FakeGitHubOrg,
    Invitation,
    SamlIdentity,
    acme_org,
    serve_github_org,
)

from .contract import Expect, exercise_connector, exercise_failures

TOKEN = "ghs_T0kenForTests0123456789abcdefABCDEF"
TOKEN_ENV = "GITHUB_ORG_TOKEN"
VENDOR = Path(__file__).resolve().parent.parent / "vendor" / "github"
ACCOUNTS = 6  # 2 owners, 3 members, 1 outside collaborator


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((VENDOR / name).read_text())
    return loaded


REST = schema("rest.schema.json")
GRAPHQL = schema("graphql-saml.schema.json")


def validate_rest(body: object, definition: str) -> None:
    jsonschema.validate(body, {**REST, "$ref": f"#/$defs/{definition}"})


@pytest.fixture
def fake() -> FakeGitHubOrg:
    return FakeGitHubOrg(org=acme_org(), token=TOKEN)


@pytest.fixture
def url(fake: FakeGitHubOrg) -> Iterator[str]:
    with serve_github_org(fake) as served:
        yield served
        fake.release.set()


def options(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "org": "acme",
        "token_env": TOKEN_ENV,
        "api_url": url,
        "graphql_url": f"{url}/graphql",
        **extra,
    }


def connector(
    fake: FakeGitHubOrg,
    url: str,
    *,
    sleeps: list[float] | None = None,
    transport: httpx.BaseTransport | None = None,
    token: str = TOKEN,
    **extra: Any,
) -> GitHubConnector:
    """A connector on the fake sharing its clock, recording sleeps instead of sleeping."""
    opts = GitHubOptions.from_mapping("github", options(url, **extra))
    recorded = sleeps if sleeps is not None else []
    return GitHubConnector(
        "github",
        client=build_client("github", url, token=token, timeout=opts.timeout, transport=transport),
        options=opts,
        token=token,
        retry=RetryPolicy(
            max_attempts=opts.max_retries + 1,
            sleep=recorded.append,
            jitter=lambda: 0.5,
            clock=lambda: fake.now,
        ),
    )


def built(url: str, env: dict[str, str], **extra: Any) -> GitHubConnector:
    """A connector built the way reconciler.yaml builds it, through the registry entry."""
    context = ConnectorContext(
        name="github", options=options(url, **extra), base_dir=Path("."), env=env
    )
    made = TYPE.build(context)
    assert isinstance(made, GitHubConnector)
    made.retry = RetryPolicy(max_attempts=made.retry.max_attempts, sleep=lambda _: None)
    return made


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_login(accounts: Iterator[Account] | list[Account]) -> dict[str, Account]:
    return {account.username: account for account in accounts}


# --- the contract ---------------------------------------------------------------------


def test_github_meets_the_connector_contract(fake: FakeGitHubOrg, url: str) -> None:
    made = built(url, {TOKEN_ENV: TOKEN})
    seen = exercise_connector(
        made,
        Expect(
            accounts=ACCOUNTS,
            victim="bob",
            roles=("member", "outside_collaborator", "owner", "team:platform", "team:sre"),
            account_roles={
                "octo-owner": ("owner", "team:platform"),
                "alice": ("member", "team:platform", "team:sre"),
                "contractor": ("outside_collaborator",),
                "deploy-bot": ("member",),
            },
        ),
    )
    accounts = seen.accounts
    assert accounts["octo-owner"].id == "101"
    assert accounts["octo-owner"].email == "olive@acme.example"
    assert accounts["octo-owner"].display_name == "Olive Owner"
    assert accounts["bob"].email == "bob@acme.example"  # NameID is no address: first email
    assert accounts["deploy-bot"].type == "service"
    assert accounts["deploy-bot"].email == ""  # no SAML identity
    assert "invitee" not in accounts
    assert made.modes == frozenset({Mode.DELETE})
    assert TOKEN not in repr(made)
    made.close()


def test_a_github_org_that_cannot_be_used_fails_every_call_without_the_token(
    fake: FakeGitHubOrg, url: str
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    exercise_failures(built(nobody, {TOKEN_ENV: TOKEN}), TOKEN, identities=False)
    wrong = "ghs_wrong" + TOKEN
    exercise_failures(built(url, {TOKEN_ENV: wrong}), wrong, identities=False)


def test_without_teams_roles_are_the_org_roles_only(fake: FakeGitHubOrg, url: str) -> None:
    made = built(url, {TOKEN_ENV: TOKEN}, teams=False)
    assert [r.name for r in made.pull_roles()] == ["member", "outside_collaborator", "owner"]
    assert by_login(made.pull_accounts())["alice"].roles == ("member",)
    assert not any("/teams" in r for r in fake.requests)
    exercise_failures(built(url, {TOKEN_ENV: "nope"}, teams=False), "nope", identities=False)


def test_what_github_cannot_do_is_an_error_naming_the_system(fake: FakeGitHubOrg, url: str) -> None:
    made = connector(fake, url)
    bob = Account.build("104", "bob")
    for call in (
        lambda: made.deprovision(bob, Mode.DISABLE),
        lambda: made.remove_roles(bob, ["team:sre"]),
        lambda: made.enable(bob),
        lambda: made.lookup_identity("104"),
    ):
        with pytest.raises(ConnectorError, match=r"^github: "):
            call()
    with pytest.raises(PullError, match=r"^github: "):
        list(made.pull_identities())


def test_the_token_comes_from_the_environment_and_options_are_checked(url: str) -> None:
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        built(url, {})
    with pytest.raises(ConfigError, match="unknown option"):
        GitHubOptions.from_mapping("github", {**options(url), "password": "x"})
    jsonschema.Draft202012Validator.check_schema(OPTIONS_SCHEMA)
    assert OPTIONS_SCHEMA["additionalProperties"] is False
    assert TYPE.secret_env_options == ("token_env",)
    defaults = GitHubOptions.from_mapping("github", {"org": "acme", "token_env": TOKEN_ENV})
    assert (defaults.api_url, defaults.graphql_url, defaults.min_owners) == (
        "https://api.github.com",
        "https://api.github.com/graphql",
        2,
    )
    assert not defaults.allow_owner_removal


# --- the fake matches GitHub's description -------------------------------------------


def test_the_fakes_answers_match_githubs_schemas(fake: FakeGitHubOrg) -> None:
    client = httpx.Client(
        transport=httpx.WSGITransport(app=fake),
        base_url="http://fake",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    for path, definition in (
        ("/orgs/acme/members?role=admin", "simple-user-list"),
        ("/orgs/acme/members?role=member", "simple-user-list"),
        ("/orgs/acme/outside_collaborators", "outside-collaborator-list"),
        ("/orgs/acme/invitations", "organization-invitation-list"),
        ("/orgs/acme/teams", "team-list"),
        ("/orgs/acme/teams/sre/members", "team-member-list"),
        ("/orgs/acme/teams/sre/memberships/bob", "team-membership"),
        ("/orgs/acme/memberships/alice", "org-membership"),
        ("/orgs/acme/memberships/invitee", "org-membership"),
        ("/user/103", "user"),
        ("/orgs/acme/memberships/contractor", "basic-error"),
    ):
        validate_rest(client.get(path).json(), definition)
    fake.org.enterprise = "acme-corp"
    fake.org.enterprise_saml = fake.org.saml
    for query, variables in (
        (saml_query(enterprise=False, by_login=False), {"org": "acme", "after": None}),
        (saml_query(enterprise=False, by_login=True), {"org": "acme", "login": "alice"}),
        (saml_query(enterprise=True, by_login=False), {"enterprise": "acme-corp"}),
        (saml_query(enterprise=False, by_login=False), {"org": "nope"}),
    ):
        answer = client.post("/graphql", json={"query": query, "variables": variables})
        jsonschema.validate(answer.json(), GRAPHQL)
    fake.revoked = True
    validate_rest(client.get("/orgs/acme/members").json(), "basic-error")


def test_every_answer_carries_githubs_rate_limit_headers(fake: FakeGitHubOrg) -> None:
    client = httpx.Client(
        transport=httpx.WSGITransport(app=fake),
        base_url="http://fake",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    headers = client.get("/orgs/acme/members").headers
    assert int(headers["X-RateLimit-Remaining"]) == int(headers["X-RateLimit-Limit"]) - 1
    assert int(headers["X-RateLimit-Reset"]) > fake.now


# --- pure parts -----------------------------------------------------------------------


def test_next_link_reads_rel_next_exactly() -> None:
    header = (
        '<https://api.github.com/organizations/9/members?page=2&per_page=100>; rel="next", '
        '<https://api.github.com/organizations/9/members?page=5&per_page=100>; rel="last"'
    )
    assert next_link(header) == "https://api.github.com/organizations/9/members?page=2&per_page=100"
    assert next_link('<https://x/a?page=1>; rel="prev", <https://x/a?page=1>; rel="first"') is None
    assert next_link('<https://x/a?page=3>; rel="next last"') == "https://x/a?page=3"
    assert next_link(None) is None
    assert next_link("") is None


def test_users_parse_strictly() -> None:
    member = parse_users([{"id": 7, "login": "x", "type": "Bot"}], "member")[0]
    assert member == Member(id="7", login="x", name="", bot=True, role="member")
    bad: object
    for bad in ({"users": []}, [{"login": "x"}], [{"id": "7", "login": "x"}], [{"id": 7}]):
        with pytest.raises(ValueError):
            parse_users(bad, "member")


def test_account_roles_combine_org_role_and_teams() -> None:
    member = Member(id="5", login="eve", name="Eve", bot=False, role="owner")
    account = account_from_member(member, "eve@acme.example", ["sre", "platform"])
    assert account.roles == ("owner", "team:platform", "team:sre")
    assert (account.id, account.username, account.type) == ("5", "eve", "human")


def test_saml_email_prefers_an_address_nameid() -> None:
    assert saml_email({"samlIdentity": {"nameId": "a@x.example", "emails": []}}) == "a@x.example"
    node = {"samlIdentity": {"nameId": "0f3c-guid", "emails": [{"value": "b@x.example"}]}}
    assert saml_email(node) == "b@x.example"
    assert saml_email({"samlIdentity": None}) == ""


def test_saml_pages_without_a_provider_and_with_errors() -> None:
    page = parse_saml_page(
        {"data": {"organization": {"samlIdentityProvider": None}}}, enterprise=False
    )
    assert not page.configured and page.emails == {}
    with pytest.raises(ValueError, match="FORBIDDEN"):
        parse_saml_page(
            {"data": {"organization": None}, "errors": [{"type": "FORBIDDEN", "message": "no"}]},
            enterprise=False,
        )
    with pytest.raises(ValueError, match="ownerInfo"):
        parse_saml_page({"data": {"enterprise": {"ownerInfo": None}}}, enterprise=True)


def test_rate_limit_wait_reads_githubs_primary_and_secondary_limits() -> None:
    request = httpx.Request("GET", "https://api.github.com/orgs/acme/members")

    def answer(status: int, headers: dict[str, str], message: str = "") -> httpx.Response:
        return httpx.Response(status, headers=headers, json={"message": message}, request=request)

    now = 1_800_000_000.0
    primary = answer(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) + 42)})
    assert rate_limit_wait(primary, now=now) == 42
    assert rate_limit_wait(answer(403, {"Retry-After": "7"}), now=now) == 7
    secondary = answer(403, {}, "You have exceeded a secondary rate limit.")
    assert rate_limit_wait(secondary, now=now) == SECONDARY_WAIT
    assert rate_limit_wait(answer(403, {"X-RateLimit-Remaining": "12"}), now=now) is None
    assert rate_limit_wait(answer(200, {"X-RateLimit-Remaining": "0"}), now=now) is None


def test_owner_count_problem_keeps_min_owners() -> None:
    assert owner_count_problem(3, 2, "x") is None
    problem = owner_count_problem(2, 2, "x")
    assert problem is not None and "min_owners" in problem


# --- paging ---------------------------------------------------------------------------


def test_paging_follows_link_headers_at_100_per_page(fake: FakeGitHubOrg, url: str) -> None:
    for n in range(9):
        login = f"dev{n}"
        fake.add_user(login)
        fake.org.roles[login] = "member"
    fake.page_cap = 2
    pulled = by_login(connector(fake, url).pull_accounts())
    assert len(pulled) == ACCOUNTS + 9
    member_pages = [r for r in fake.requests if r.startswith("GET /orgs/acme/members?role=member")]
    assert len(member_pages) == 6  # 12 members, 2 a page
    assert "per_page=100" in member_pages[0]
    assert all("page=" in r for r in member_pages[1:])


def test_saml_identities_page_by_cursor(fake: FakeGitHubOrg, url: str) -> None:
    fake.page_cap = 2
    pulled = by_login(connector(fake, url).pull_accounts())
    assert pulled["second-owner"].email == "second@acme.example"
    assert pulled["bob"].email == "bob@acme.example"
    assert sum(1 for r in fake.requests if r == "POST /graphql") == 3  # 5 identities


def test_a_repeating_cursor_fails_the_pull(fake: FakeGitHubOrg, url: str) -> None:
    fake.page_cap = 2
    fake.repeat_cursor = True
    with pytest.raises(PullError, match="endCursor twice"):
        list(connector(fake, url).pull_accounts())


def test_a_repeating_link_fails_the_pull_instead_of_looping(fake: FakeGitHubOrg, url: str) -> None:
    fake.page_cap = 2
    fake.repeat_link = "/members"
    with pytest.raises(PartialPullError, match="same next link twice"):
        list(connector(fake, url).pull_accounts())
    assert len(fake.requests) < 10


def test_a_next_link_to_another_host_is_not_followed(fake: FakeGitHubOrg, url: str) -> None:
    class Elsewhere(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = self.inner.handle_request(request)
            link = response.headers.get("Link")
            if link:
                response.headers["Link"] = link.replace("127.0.0.1", "evil.example")
            return response

    fake.page_cap = 1
    with pytest.raises(PullError, match=r"evil\.example.*not sent there"):
        list(connector(fake, url, transport=Elsewhere()).pull_accounts())
    assert TOKEN not in str(fake.requests)


# --- emails from SAML -----------------------------------------------------------------


def test_enterprise_saml_gives_emails_when_the_org_has_none(fake: FakeGitHubOrg, url: str) -> None:
    fake.org.enterprise = "acme-corp"
    fake.org.enterprise_saml = [SamlIdentity("alice@corp.example", [], "alice")]
    fake.org.saml = None
    made = connector(fake, url, enterprise="acme-corp")
    pulled = by_login(made.pull_accounts())
    assert pulled["alice"].email == "alice@corp.example"
    assert pulled["bob"].email == ""
    assert made.lookup_account("103") is not None
    assert made.lookup_account("103").email == "alice@corp.example"  # type: ignore[union-attr]


def test_without_saml_emails_are_empty(
    fake: FakeGitHubOrg, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.org.saml = None
    with caplog.at_level(logging.INFO):
        pulled = list(connector(fake, url).pull_accounts())
    assert len(pulled) == ACCOUNTS
    assert all(account.email == "" for account in pulled)
    assert "no SAML identity provider" in caplog.text


def test_saml_that_cannot_be_read_fails_the_pull(fake: FakeGitHubOrg, url: str) -> None:
    fake.graphql_forbidden = True
    with pytest.raises(PartialPullError, match="Administration read"):
        list(connector(fake, url).pull_accounts())


def test_an_unknown_enterprise_fails_the_pull(fake: FakeGitHubOrg, url: str) -> None:
    fake.org.saml = None
    with pytest.raises(PullError, match="NOT_FOUND"):
        list(connector(fake, url, enterprise="other-corp").pull_accounts())


# --- invitations ----------------------------------------------------------------------


def test_invitations_are_listed_and_logged_never_accounts(
    fake: FakeGitHubOrg, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    made = connector(fake, url)
    with caplog.at_level(logging.WARNING):
        pulled = by_login(made.pull_accounts())
    assert "invitee" not in pulled
    assert "2 pending invitation(s)" in caplog.text and "newhire@acme.example" in caplog.text
    invitations = made.pending_invitations()
    assert [(i.id, i.login, i.email) for i in invitations] == [
        ("501", "invitee", ""),
        ("502", "", "newhire@acme.example"),
    ]
    assert made.lookup_account(str(fake.user("invitee").id)) is None


def test_deprovision_cancels_the_persons_invitation(fake: FakeGitHubOrg, url: str) -> None:
    fake.org.invitations.append(Invitation(id=503, login=None, email="bob@acme.example"))
    made = connector(fake, url)
    bob = by_login(made.pull_accounts())["bob"]
    made.deprovision(bob, Mode.DELETE)
    assert [i.id for i in fake.org.invitations] == [501, 502]
    assert "DELETE /orgs/acme/invitations/503" in fake.requests


def test_deprovision_of_an_invitee_cancels_the_invitation_only(
    fake: FakeGitHubOrg, url: str
) -> None:
    made = connector(fake, url)
    invitee = fake.user("invitee")
    made.deprovision(Account.build(str(invitee.id), "invitee"), Mode.DELETE)
    assert [i.id for i in fake.org.invitations] == [502]
    assert not any(r.startswith("DELETE /orgs/acme/memberships") for r in fake.requests)


# --- deprovisioning -------------------------------------------------------------------


def test_outside_collaborators_are_removed_as_collaborators(fake: FakeGitHubOrg, url: str) -> None:
    made = connector(fake, url)
    contractor = by_login(made.pull_accounts())["contractor"]
    made.deprovision(contractor, Mode.DELETE)
    assert "DELETE /orgs/acme/outside_collaborators/contractor" in fake.requests
    assert made.lookup_account(contractor.id) is None
    assert fake.org.outside == set()


def test_a_renamed_user_is_removed_under_their_new_login(fake: FakeGitHubOrg, url: str) -> None:
    made = connector(fake, url)
    bob = by_login(made.pull_accounts())["bob"]
    user = fake.org.users.pop("bob")
    user.login = "robert"
    fake.org.users["robert"] = user
    fake.org.roles["robert"] = fake.org.roles.pop("bob")
    made.deprovision(bob, Mode.DELETE)
    assert "robert" not in fake.org.roles


def test_owners_are_refused_unless_allowed(fake: FakeGitHubOrg, url: str) -> None:
    owner = Account.build("101", "octo-owner")
    with pytest.raises(ConnectorError, match="allow_owner_removal"):
        connector(fake, url).deprovision(owner, Mode.DELETE)
    assert "octo-owner" in fake.org.roles


def test_the_last_owners_are_never_removed(fake: FakeGitHubOrg, url: str) -> None:
    owner = Account.build("101", "octo-owner")
    with pytest.raises(ConnectorError, match=r"leave 1 owner\(s\), fewer than min_owners \(2\)"):
        connector(fake, url, allow_owner_removal=True).deprovision(owner, Mode.DELETE)
    assert "octo-owner" in fake.org.roles
    lenient = connector(fake, url, allow_owner_removal=True, min_owners=1)
    lenient.deprovision(owner, Mode.DELETE)
    assert fake.owners() == ["second-owner"]
    with pytest.raises(ConnectorError, match=r"leave 0 owner\(s\)"):
        lenient.deprovision(Account.build("102", "second-owner"), Mode.DELETE)
    assert fake.owners() == ["second-owner"]


def test_a_removal_github_does_not_perform_is_an_error(fake: FakeGitHubOrg, url: str) -> None:
    class Swallow(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "DELETE":
                return httpx.Response(204, request=request)
            return self.inner.handle_request(request)

    bob = Account.build("104", "bob")
    with pytest.raises(ConnectorError, match="still lists them"):
        connector(fake, url, transport=Swallow()).deprovision(bob, Mode.DELETE)


# --- faults ---------------------------------------------------------------------------


def test_a_500_on_page_3_of_5_fails_the_pull(fake: FakeGitHubOrg, url: str) -> None:
    for n in range(7):
        fake.add_user(f"dev{n}")
        fake.org.roles[f"dev{n}"] = "member"
    fake.page_cap = 2  # 10 members: 5 pages
    fake.fail_page = ("/members", 3)
    sleeps: list[float] = []
    with pytest.raises(PartialPullError, match="gave up after 5 attempts"):
        list(connector(fake, url, sleeps=sleeps).pull_accounts())
    assert len(sleeps) == 4


def test_a_429_storm_is_retried_then_fails_clearly(fake: FakeGitHubOrg, url: str) -> None:
    fake.storm = 3
    sleeps: list[float] = []
    pulled = list(connector(fake, url, sleeps=sleeps).pull_accounts())
    assert len(pulled) == ACCOUNTS and sleeps == [1.0, 1.0, 1.0]
    fake.storm = 100
    with pytest.raises(PullError, match=r"gave up after 5 attempts \(last: 429"):
        list(connector(fake, url).pull_accounts())


def test_the_primary_rate_limit_is_waited_out(fake: FakeGitHubOrg, url: str) -> None:
    fake.primary_limit = 1
    fake.primary_reset_in = 120
    sleeps: list[float] = []
    pulled = list(connector(fake, url, sleeps=sleeps).pull_accounts())
    assert len(pulled) == ACCOUNTS and sleeps == [120.0]


def test_a_primary_rate_limit_beyond_the_bound_fails_clearly(fake: FakeGitHubOrg, url: str) -> None:
    fake.primary_limit = 1
    fake.primary_reset_in = 3000
    sleeps: list[float] = []
    with pytest.raises(PullError, match=r"rate limit .* spent for another 3000s"):
        list(connector(fake, url, sleeps=sleeps, max_rate_limit_wait=900).pull_accounts())
    assert sleeps == []


def test_graphqls_rate_limit_is_waited_out(fake: FakeGitHubOrg, url: str) -> None:
    fake.graphql_limit = 1
    fake.primary_reset_in = 45
    sleeps: list[float] = []
    pulled = by_login(connector(fake, url, sleeps=sleeps).pull_accounts())
    assert pulled["alice"].email == "alice@acme.example" and sleeps == [45.0]


def test_a_deleted_user_is_done_and_their_old_login_is_left_alone(
    fake: FakeGitHubOrg, url: str
) -> None:
    made = connector(fake, url)
    bob = by_login(made.pull_accounts())["bob"]
    # Bob deletes his account; someone else takes the login "bob".
    fake.org.users["bob"].id = 999
    made.deprovision(bob, Mode.DELETE)
    assert fake.org.roles.get("bob") == "member"
    assert not any(r.startswith("DELETE") for r in fake.requests)


def test_a_secondary_rate_limit_403_is_waited_out(fake: FakeGitHubOrg, url: str) -> None:
    fake.secondary_limit = 2
    sleeps: list[float] = []
    assert len(list(connector(fake, url, sleeps=sleeps).pull_accounts())) == ACCOUNTS
    assert sleeps == [60.0, 60.0]


def test_a_rate_limit_that_never_lifts_gives_up(fake: FakeGitHubOrg, url: str) -> None:
    fake.secondary_limit = 100
    sleeps: list[float] = []
    with pytest.raises(PullError, match="rate limit"):
        list(connector(fake, url, sleeps=sleeps).pull_accounts())
    assert len(sleeps) == 3


def test_a_timeout_fails_the_pull(fake: FakeGitHubOrg, url: str) -> None:
    fake.hang = "/outside_collaborators"
    with pytest.raises(PartialPullError, match="Timeout"):
        list(connector(fake, url, timeout=0.2, max_retries=0).pull_accounts())
    fake.release.set()


def test_a_truncated_body_fails_the_pull(fake: FakeGitHubOrg, url: str) -> None:
    fake.truncate = "/teams"
    with pytest.raises(PartialPullError, match="not JSON"):
        list(connector(fake, url).pull_accounts())


def test_a_revoked_token_names_the_environment_variable(fake: FakeGitHubOrg, url: str) -> None:
    fake.revoked = True
    made = connector(fake, url)
    with pytest.raises(PullError, match=f"{TOKEN_ENV}.*revoked") as caught:
        list(made.pull_accounts())
    assert TOKEN not in str(caught.value)
    with pytest.raises(ConnectorError, match=TOKEN_ENV):
        made.lookup_account("103")


def test_a_token_that_sees_no_members_is_a_failed_pull(fake: FakeGitHubOrg, url: str) -> None:
    fake.hide_members = True
    with pytest.raises(PullError, match=r"no owner.*Members \(read\)") as caught:
        list(connector(fake, url).pull_accounts())
    assert not isinstance(caught.value, PartialPullError)
    with pytest.raises(ConnectorError, match="no owner"):
        connector(fake, url).probe(identity_source=False)


def test_probe_sees_the_owners(fake: FakeGitHubOrg, url: str) -> None:
    assert "owners are visible" in connector(fake, url).probe(identity_source=False)


def test_a_wrong_organisation_is_named(fake: FakeGitHubOrg, url: str) -> None:
    with pytest.raises(PullError, match="organisation nope does not exist"):
        list(connector(fake, url, org="nope").pull_accounts())


def test_requests_announce_githubs_api_version(url: str) -> None:
    made = built(url, {TOKEN_ENV: TOKEN})
    assert made.client.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert made.client.headers["Accept"] == "application/vnd.github+json"
