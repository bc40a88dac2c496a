"""The members of a GitHub organisation as an app, through GitHub's REST and GraphQL APIs.

Accounts are the organisation's owners (`GET /orgs/{org}/members?role=admin`), members
(`role=member`) and outside collaborators (`GET /orgs/{org}/outside_collaborators`), keyed
by the user's numeric id; the username is the login. Roles are `owner`, `member` or
`outside_collaborator`, plus `team:<slug>` for every team (`GET /orgs/{org}/teams`,
`GET /orgs/{org}/teams/{slug}/members`) the account is in.

Pending invitations (`GET /orgs/{org}/invitations`) are never accounts: nobody has
accepted them yet. A pull logs them, and `pending_invitations()` lists them for a check
to report; deprovisioning a person also cancels an invitation sent to them.

Emails come from the organisation's SAML identities (GraphQL `organization {
samlIdentityProvider { externalIdentities } }`), or from the enterprise's when the
organisation has no identity provider of its own and the `enterprise` option names it.
Without SAML, emails are empty and correlation goes by username.

Every listing pages with `per_page=100` and follows `Link: rel="next"` exactly as GitHub
wrote it; a link seen twice or one pointing away from `api_url` fails the pull. A pull
that lists no owner fails too: every organisation has one, so an empty list means the
token cannot see private membership, and would read as "everyone left".

Deprovisioning (mode delete only: GitHub has no disable) removes the person from the
organisation. Owners are refused unless `allow_owner_removal` is set, and never when fewer
than `min_owners` would be left. The membership is read back afterwards.

Rate limits: `send` retries 429 and 5xx. GitHub's primary limit answers 403 with
`X-RateLimit-Remaining: 0`, and its secondary limit 403 with `Retry-After`; both are
waited out here (through the retry policy's `sleep`), up to `max_rate_limit_wait`
seconds per wait and `RATE_LIMIT_WAITS` waits per request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from reconciler.connectors.base import (
    Connector,
    ConnectorContext,
    ConnectorType,
    Mode,
    check_options,
    secret_from_env,
)
from reconciler.connectors.http import (
    PageCallback,
    RetryPolicy,
    build_client,
    describe_request,
    describe_status,
    http_options,
    parse_reset,
    parse_retry_after,
    read_json,
    redact,
    request_secrets,
    retry_policy,
    send,
    server_text,
)
from reconciler.errors import ConnectorError, PartialPullError, PullError
from reconciler.model import Account, Role

log = logging.getLogger(__name__)

API_URL = "https://api.github.com"
GRAPHQL_URL = "https://api.github.com/graphql"
API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"

PAGE_SIZE = 100
# GitHub asks to wait at least a minute after a secondary rate limit without Retry-After.
SECONDARY_WAIT = 60.0
# Waits for a rate limit per request before giving up.
RATE_LIMIT_WAITS = 3

OWNER = "owner"
MEMBER = "member"
OUTSIDE_COLLABORATOR = "outside_collaborator"
TEAM_PREFIX = "team:"

NAME_LIMIT = 80

_ENV_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_LOGIN = {"type": "string", "pattern": "^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$"}

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["org", "token_env"],
    "properties": {
        "org": {**_LOGIN, "description": "The organisation's login (github.com/<org>)."},
        "token_env": {
            **_ENV_NAME,
            "description": "Name of the environment variable holding a GitHub App "
            "installation token or a fine-grained personal access token with the "
            "organisation permission Members (read; read and write to deprovision), and "
            "Administration read for SAML identities.",
        },
        "enterprise": {
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9-]*$",
            "description": "The enterprise's slug, whose SAML identities give emails when "
            "the organisation has no identity provider of its own.",
        },
        "api_url": {
            "type": "string",
            "pattern": "^https?://",
            "default": API_URL,
            "description": "GitHub's REST API base URL (GitHub Enterprise Server: "
            "https://HOST/api/v3).",
        },
        "graphql_url": {
            "type": "string",
            "pattern": "^https?://",
            "default": GRAPHQL_URL,
            "description": "GitHub's GraphQL endpoint (GitHub Enterprise Server: "
            "https://HOST/api/graphql).",
        },
        "allow_owner_removal": {
            "type": "boolean",
            "default": False,
            "description": "Let a plan remove an organisation owner.",
        },
        "min_owners": {
            "type": "integer",
            "minimum": 1,
            "default": 2,
            "description": "Owners that must remain after a removal; a removal that "
            "would leave fewer is refused.",
        },
        "teams": {
            "type": "boolean",
            "default": True,
            "description": "Read team memberships as `team:<slug>` roles (one request per team).",
        },
        "max_rate_limit_wait": {
            "type": "number",
            "minimum": 0,
            "default": 900,
            "description": "Longest wait, in seconds, for a rate limit to reset; a "
            "longer one fails the pull or removal instead.",
        },
        **http_options("GitHub"),
    },
}


@dataclass(frozen=True)
class GitHubOptions:
    """The validated options of one GitHub organisation, with defaults applied."""

    org: str
    token_env: str
    enterprise: str | None = None
    api_url: str = API_URL
    graphql_url: str = GRAPHQL_URL
    allow_owner_removal: bool = False
    min_owners: int = 2
    teams: bool = True
    timeout: float = 30.0
    max_retries: int = 4
    max_requests_per_second: float | None = None
    max_rate_limit_wait: float = 900.0

    @classmethod
    def from_mapping(cls, system: str, options: Mapping[str, Any]) -> GitHubOptions:
        """Options with defaults applied; unknown keys and missing required ones are
        checked again for callers that build a connector without the schema."""
        check_options(system, "github", options, OPTIONS_SCHEMA)
        return cls(
            org=str(options["org"]),
            token_env=str(options["token_env"]),
            enterprise=options.get("enterprise") or None,
            api_url=str(options.get("api_url", API_URL)).rstrip("/"),
            graphql_url=str(options.get("graphql_url", GRAPHQL_URL)),
            allow_owner_removal=bool(options.get("allow_owner_removal", False)),
            min_owners=int(options.get("min_owners", 2)),
            teams=bool(options.get("teams", True)),
            timeout=float(options.get("timeout", 30)),
            max_retries=int(options.get("max_retries", 4)),
            max_requests_per_second=options.get("max_requests_per_second"),
            max_rate_limit_wait=float(options.get("max_rate_limit_wait", 900)),
        )


# ---------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Member:
    """A user the organisation lists, with how it lists them."""

    id: str
    login: str
    name: str
    bot: bool
    role: str  # OWNER, MEMBER or OUTSIDE_COLLABORATOR


@dataclass(frozen=True)
class Invitation:
    """A pending invitation: a login (when sent to a user) or an email, never an account."""

    id: str
    login: str
    email: str
    role: str
    created_at: str


@dataclass(frozen=True)
class SamlPage:
    """One page of SAML identities: login → email, and the cursor of the next page."""

    emails: Mapping[str, str]
    next_cursor: str | None
    configured: bool  # False when there is no identity provider at this level


@dataclass
class Listing:
    """What one pull has read so far, to say how far a failed pull got."""

    read: int = 0
    links: set[str] = field(default_factory=set)


# ---------------------------------------------------------------------------------------
# GraphQL queries

_IDENTITIES = """externalIdentities(first: {first}, after: $after{by_login}) {{
      edges {{ node {{
        samlIdentity {{ nameId emails {{ value }} }}
        user {{ login databaseId }}
      }} }}
      pageInfo {{ hasNextPage endCursor }}
    }}"""

ORG_QUERY = """query($org: String!, $after: String{login_var}) {{
  organization(login: $org) {{
    samlIdentityProvider {{
    {identities}
    }}
  }}
}}"""

ENTERPRISE_QUERY = """query($enterprise: String!, $after: String{login_var}) {{
  enterprise(slug: $enterprise) {{
    ownerInfo {{
      samlIdentityProvider {{
      {identities}
      }}
    }}
  }}
}}"""


def saml_query(*, enterprise: bool, by_login: bool) -> str:
    """The GraphQL query for SAML identities of the organisation or the enterprise,
    all of them or (`by_login`) only the one linked to `$login`."""
    identities = _IDENTITIES.format(
        first=1 if by_login else PAGE_SIZE, by_login=", login: $login" if by_login else ""
    )
    template = ENTERPRISE_QUERY if enterprise else ORG_QUERY
    return template.format(login_var=", $login: String!" if by_login else "", identities=identities)


# ---------------------------------------------------------------------------------------
# Requests


def list_request(client: httpx.Client, path: str, **params: str) -> httpx.Request:
    """The first page of a REST listing, at GitHub's largest page size."""
    return client.build_request("GET", path, params={**params, "per_page": str(PAGE_SIZE)})


def saml_request(
    client: httpx.Client,
    url: str,
    options: GitHubOptions,
    *,
    enterprise: bool,
    after: str | None,
    login: str | None = None,
) -> httpx.Request:
    """A GraphQL request for one page of SAML identities."""
    variables: dict[str, Any] = {"after": after}
    if enterprise:
        variables["enterprise"] = options.enterprise
    else:
        variables["org"] = options.org
    if login is not None:
        variables["login"] = login
    query = saml_query(enterprise=enterprise, by_login=login is not None)
    return client.build_request("POST", url, json={"query": query, "variables": variables})


def org_path(org: str, *parts: str) -> str:
    """`orgs/{org}/...` with every part escaped for a URL path."""
    return "/".join(["orgs", quote(org, safe=""), *(quote(part, safe="") for part in parts)])


# ---------------------------------------------------------------------------------------
# Parsing

_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")
_REL = re.compile(r'rel\s*=\s*"?([^";]*)"?')


def next_link(header: str | None) -> str | None:
    """The `rel="next"` URL of a `Link` header (RFC 8288), or None."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        for rel in _REL.finditer(match.group(2)):
            if "next" in rel.group(1).split():
                return match.group(1)
    return None


def parse_user(value: object) -> tuple[str, str, str, bool]:
    """A simple-user's (id, login, name, is a bot); ValueError if it is not one."""
    if not isinstance(value, dict):
        raise ValueError("a user is not a JSON object")
    user_id = value.get("id")
    login = value.get("login")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        raise ValueError(f"a user's id is {user_id!r}, not a positive integer")
    if not isinstance(login, str) or not login:
        raise ValueError(f"user {user_id} has no login")
    name = value.get("name")
    return str(user_id), login, name if isinstance(name, str) else "", value.get("type") == "Bot"


def parse_users(body: object, role: str) -> list[Member]:
    """A page of simple-users as members holding `role`; ValueError if not one."""
    if not isinstance(body, list):
        raise ValueError("the answer is not a JSON list")
    members = []
    for value in body:
        user_id, login, name, bot = parse_user(value)
        members.append(Member(id=user_id, login=login, name=name, bot=bot, role=role))
    return members


def parse_teams(body: object) -> list[tuple[str, str]]:
    """A page of teams as (slug, name); ValueError if not one."""
    if not isinstance(body, list):
        raise ValueError("the answer is not a JSON list")
    teams = []
    for team in body:
        slug = team.get("slug") if isinstance(team, dict) else None
        if not isinstance(slug, str) or not slug:
            raise ValueError("a team has no slug")
        name = team.get("name")
        teams.append((slug, name if isinstance(name, str) else slug))
    return teams


def parse_invitations(body: object) -> list[Invitation]:
    """A page of organization-invitations; ValueError if not one."""
    if not isinstance(body, list):
        raise ValueError("the answer is not a JSON list")
    invitations = []
    for value in body:
        if not isinstance(value, dict) or not isinstance(value.get("id"), int):
            raise ValueError("an invitation has no numeric id")
        invitations.append(
            Invitation(
                id=str(value["id"]),
                login=_text(value.get("login")),
                email=_text(value.get("email")),
                role=_text(value.get("role")),
                created_at=_text(value.get("created_at")),
            )
        )
    return invitations


def parse_membership(body: object) -> tuple[str, str]:
    """An org-membership's (state, role); ValueError if it is not one."""
    if not isinstance(body, dict):
        raise ValueError("the answer is not a JSON object")
    state, role = body.get("state"), body.get("role")
    if not isinstance(state, str) or not isinstance(role, str):
        raise ValueError("the membership has no state or role")
    return state, role


def saml_email(node: Mapping[str, Any]) -> str:
    """The email of a SAML identity: its NameID when that is an address (the usual
    setting of Entra ID, Okta and Google), else its first email."""
    saml = node.get("samlIdentity")
    if not isinstance(saml, dict):
        return ""
    name_id = _text(saml.get("nameId"))
    if "@" in name_id:
        return name_id
    emails = saml.get("emails")
    for entry in emails if isinstance(emails, list) else ():
        value = _text(entry.get("value") if isinstance(entry, dict) else None)
        if value:
            return value
    return ""


def parse_saml_page(body: object, *, enterprise: bool) -> SamlPage:
    """A GraphQL answer for SAML identities; ValueError if it is an error or not one."""
    if not isinstance(body, dict):
        raise ValueError("the answer is not a JSON object")
    errors = body.get("errors")
    if errors:
        raise ValueError(graphql_errors(errors))
    data = body.get("data")
    scope = (
        data.get("enterprise" if enterprise else "organization") if isinstance(data, dict) else None
    )
    if not isinstance(scope, dict):
        raise ValueError(
            "GraphQL answered without the " + ("enterprise" if enterprise else "organization")
        )
    if enterprise:
        scope = scope.get("ownerInfo")
        if not isinstance(scope, dict):
            # Only enterprise owners see ownerInfo.
            raise ValueError("the enterprise's ownerInfo is null: the token is not an owner's")
    provider = scope.get("samlIdentityProvider")
    if provider is None:
        return SamlPage(emails={}, next_cursor=None, configured=False)
    try:
        connection = provider["externalIdentities"]
        edges = connection["edges"]
        info = connection["pageInfo"]
    except (KeyError, TypeError) as exc:
        raise ValueError("externalIdentities lacks edges or pageInfo") from exc
    emails: dict[str, str] = {}
    for edge in edges:
        node = edge.get("node") if isinstance(edge, dict) else None
        user = node.get("user") if isinstance(node, dict) else None
        # An identity not linked to a GitHub user belongs to no account.
        if isinstance(user, dict) and isinstance(user.get("login"), str):
            emails[user["login"].lower()] = saml_email(node)  # type: ignore[arg-type]
    cursor = info.get("endCursor") if info.get("hasNextPage") else None
    if info.get("hasNextPage") and not isinstance(cursor, str):
        raise ValueError("pageInfo says there is a next page but gives no endCursor")
    return SamlPage(emails=emails, next_cursor=cursor, configured=True)


def graphql_errors(errors: object) -> str:
    """GraphQL's `errors` as one line: each error's type and message."""
    parts = []
    for error in errors if isinstance(errors, list) else [errors]:
        if isinstance(error, dict):
            kind = _text(error.get("type"))
            message = _text(error.get("message"))
            parts.append(f"{kind}: {message}" if kind else message)
    return "; ".join(parts) or "GraphQL answered with errors"


def rate_limit_wait(response: httpx.Response, *, now: float) -> float | None:
    """How long GitHub asked us to wait before repeating, when `response` is a rate
    limit `send` does not retry (a 403, or GraphQL's 200 with a RATE_LIMITED error), or
    None when it is not one."""
    if response.status_code == 200 and not _graphql_rate_limited(response):
        return None
    if response.status_code not in (200, 403, 429):
        return None
    headers = response.headers
    if headers.get("X-RateLimit-Remaining") == "0":
        reset = parse_reset(headers.get("X-RateLimit-Reset", ""), now=now)
        return max(reset, 1.0) if reset is not None else SECONDARY_WAIT
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        delay = parse_retry_after(retry_after, now=now)
        if delay is not None:
            return delay
    if "secondary rate limit" in _message(response).lower():
        return SECONDARY_WAIT
    return None


def _graphql_rate_limited(response: httpx.Response) -> bool:
    if "graphql" not in response.headers.get("X-RateLimit-Resource", "graphql"):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    return isinstance(errors, list) and any(
        isinstance(error, dict) and error.get("type") == "RATE_LIMITED" for error in errors
    )


def account_from_member(member: Member, email: str, teams: Iterable[str]) -> Account:
    """The account of an organisation member or outside collaborator."""
    return Account.build(
        id=member.id,
        username=member.login,
        email=email,
        display_name=member.name,
        type="service" if member.bot else "human",
        roles=[member.role, *(TEAM_PREFIX + slug for slug in teams)],
    )


def owner_count_problem(owners: int, min_owners: int, login: str) -> str | None:
    """Why removing owner `login` must not happen, given the owners there are now."""
    left = owners - 1
    if left < min_owners:
        return (
            f"removing owner {login} would leave {left} owner(s), fewer than min_owners "
            f"({min_owners}); add another owner first or lower min_owners"
        )
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return _text(body.get("message")) if isinstance(body, dict) else ""


# ---------------------------------------------------------------------------------------
# The connector


class GitHubConnector:
    """The members of one GitHub organisation as an app's accounts.

    `client` is the REST client (base URL `api_url`); GraphQL goes to `graphql_url` through
    the same client. `on_page`, when set, is called after each page with its size.
    """

    modes: frozenset[Mode] = frozenset({Mode.DELETE})

    def __init__(
        self,
        name: str,
        *,
        client: httpx.Client,
        options: GitHubOptions,
        token: str,
        retry: RetryPolicy | None = None,
        on_page: PageCallback | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.options = options
        self.token = token
        self.retry = retry or retry_policy(options.max_retries, options.max_requests_per_second)
        self.on_page = on_page

    def __repr__(self) -> str:
        return f"GitHubConnector(name={self.name!r}, org={self.options.org!r})"

    # -- Connector --------------------------------------------------------------------

    def pull_accounts(self) -> Iterator[Account]:
        """Every owner, member and outside collaborator, read whole before the first
        is yielded; pending invitations are logged, never yielded."""
        listing = Listing()
        members = self._members(listing)
        teams = self._team_members(listing) if self.options.teams else {}
        emails = self._saml_emails(listing, login=None)
        invitations = self._invitations(listing)
        if invitations:
            # Invitees' addresses come from the server: shown as server text, cut short.
            shown = server_text(
                ", ".join(_invitee(i) for i in invitations[:10]), self._secrets(), limit=400
            )
            log.warning(
                "%s: %d pending invitation(s) to organisation %s, not accounts until accepted: %s",
                self.name,
                len(invitations),
                self.options.org,
                shown,
            )
        for member in members:
            yield account_from_member(
                member, emails.get(member.login.lower(), ""), teams.get(member.login, ())
            )

    def pull_roles(self) -> list[Role]:
        """`owner`, `member`, `outside_collaborator` and one `team:<slug>` per team."""
        roles = [
            Role(OWNER, "Organisation owner"),
            Role(MEMBER, "Organisation member"),
            Role(OUTSIDE_COLLABORATOR, "Outside collaborator on some repositories"),
        ]
        listing = Listing()
        if not self.options.teams:
            # Still read something, so that an organisation that cannot be used fails
            # here as a pull would.
            self._owners(listing)
            return sorted(roles, key=lambda role: role.name)
        for slug, team_name in self._list_all(
            list_request(self.client, org_path(self.options.org, "teams")),
            "teams",
            listing,
            parse_teams,
        ):
            roles.append(Role(TEAM_PREFIX + slug, team_name))
        return sorted(roles, key=lambda role: role.name)

    def pull_identities(self) -> Iterator[Any]:
        """Not done here: the github connector reads an app, not an identity source."""
        raise PullError(self.name, "the github connector reads accounts, not identities")

    def lookup_account(self, account_id: str) -> Account | None:
        """The account read live: the user by id, their membership of the organisation
        (or their place among its outside collaborators), teams and SAML email; None
        when the user or their place in the organisation is gone."""
        user = self._user(account_id)
        if user is None:
            return None
        user_id, login, name, bot = user
        role = self._role_of(login)
        if role is None:
            return None
        member = Member(id=user_id, login=login, name=name, bot=bot, role=role)
        teams = self._teams_of(login) if self.options.teams else []
        try:
            emails = self._saml_emails(Listing(), login=login)
        except PullError as exc:
            raise ConnectorError(self.name, _without_system(exc)) from exc
        return account_from_member(member, emails.get(login.lower(), ""), teams)

    def lookup_identity(self, identity_id: str) -> Any:
        """Not done here: the github connector reads an app, not an identity source."""
        raise ConnectorError(self.name, "the github connector reads accounts, not identities")

    def deprovision(self, account: Account, mode: Mode) -> None:
        """Remove the person from the organisation and cancel their pending invitation.
        Safe to repeat: a person already gone is done."""
        if mode is not Mode.DELETE:
            raise ConnectorError(
                self.name,
                f"{mode.value} account {account.id}: GitHub organisations can only remove "
                "a member (mode delete); there is no disabled membership",
            )
        user = self._user(account.id)
        if user is None:
            # GitHub drops a deleted user from every organisation, and their old login
            # may belong to someone else by now: only an invitation by email is left.
            self._cancel_invitations("", account.email)
            return
        login = user[1]
        role = self._role_of(login)
        if role == OWNER:
            self._check_owner_removal(login)
        if role in (OWNER, MEMBER):
            self._delete(org_path(self.options.org, "memberships", login), f"remove {login}")
        elif role == OUTSIDE_COLLABORATOR:
            self._delete(
                org_path(self.options.org, "outside_collaborators", login),
                f"remove outside collaborator {login}",
            )
        self._cancel_invitations(login, account.email)
        if self._role_of(login) is not None:
            raise ConnectorError(
                self.name,
                f"removed {login} from organisation {self.options.org}, but GitHub still "
                "lists them; check the organisation's people page and run apply again",
            )

    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None:
        """The roles of the account read live, or None when it is gone."""
        account = self.lookup_account(account_id)
        return None if account is None else account.roles

    def remove_roles(self, account: Account, roles: Collection[str]) -> None:
        """Not done here: the connector removes people, not their teams."""
        raise ConnectorError(
            self.name,
            f"remove roles from account {account.id}: the github connector only removes "
            "people from the organisation (mode delete); change teams on GitHub",
        )

    def enable(self, account: Account) -> None:
        """Not done here: GitHub has no disabled membership to undo."""
        raise ConnectorError(
            self.name,
            f"enable account {account.id}: GitHub has no disabled membership; invite the "
            "person to the organisation again",
        )

    def probe(self, identity_source: bool) -> str:
        """One page of owners: the token sees private membership if GitHub lists one."""
        request = self.client.build_request(
            "GET", org_path(self.options.org, "members"), params={"role": "admin", "per_page": "1"}
        )
        response = self._send(request)
        if response.status_code != 200:
            raise ConnectorError(self.name, f"list owners: {self._error_text(response)}")
        if not self._parsed(parse_users, self._json(response), "list owners", OWNER):
            raise ConnectorError(self.name, f"list owners: {self._no_owners_text()}")
        return f"organisation {self.options.org}: owners are visible"

    def pending_invitations(self) -> list[Invitation]:
        """The organisation's pending invitations, for a check to report: people invited
        who have no account yet (never deprovisioned as accounts)."""
        return self._invitations(Listing())

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    # -- Reading ----------------------------------------------------------------------

    def _members(self, listing: Listing) -> list[Member]:
        org = self.options.org
        owners = self._owners(listing)
        members = self._list_all(
            list_request(self.client, org_path(org, "members"), role="member"),
            "members",
            listing,
            lambda body: parse_users(body, MEMBER),
        )
        outside = self._list_all(
            list_request(self.client, org_path(org, "outside_collaborators")),
            "outside collaborators",
            listing,
            lambda body: parse_users(body, OUTSIDE_COLLABORATOR),
        )
        everyone: dict[str, Member] = {}
        for member in (*owners, *members, *outside):
            if member.id in everyone:
                raise self._pull_failed(
                    listing,
                    f"GitHub listed user {member.login} ({member.id}) twice (the "
                    "organisation changed during the pull?); run the pull again",
                )
            everyone[member.id] = member
        return list(everyone.values())

    def _owners(self, listing: Listing) -> list[Member]:
        """Every owner; PullError when there is none, since every organisation has one."""
        owners: list[Member] = self._list_all(
            list_request(self.client, org_path(self.options.org, "members"), role="admin"),
            "owners",
            listing,
            lambda body: parse_users(body, OWNER),
        )
        if not owners:
            raise PullError(self.name, f"listing owners failed: {self._no_owners_text()}")
        return owners

    def _team_members(self, listing: Listing) -> dict[str, list[str]]:
        """login → slugs of the teams they are in."""
        org = self.options.org
        teams = self._list_all(
            list_request(self.client, org_path(org, "teams")), "teams", listing, parse_teams
        )
        found: dict[str, list[str]] = {}
        for slug, _ in teams:
            for member in self._list_all(
                list_request(self.client, org_path(org, "teams", slug, "members")),
                f"members of team {slug}",
                listing,
                lambda body: parse_users(body, MEMBER),
            ):
                found.setdefault(member.login, []).append(slug)
        return found

    def _invitations(self, listing: Listing) -> list[Invitation]:
        return self._list_all(
            list_request(self.client, org_path(self.options.org, "invitations")),
            "pending invitations",
            listing,
            parse_invitations,
        )

    def _list_all(
        self,
        request: httpx.Request,
        what: str,
        listing: Listing,
        parse: Any,
    ) -> list[Any]:
        """Every item of a paged REST listing; PullError unless the last page is reached."""
        items: list[Any] = []
        while True:
            at = describe_request(request)
            try:
                response = self._send(request)
            except ConnectorError as exc:
                raise self._pull_failed(listing, f"listing {what}: {_without_system(exc)}") from exc
            if response.status_code != 200:
                raise self._pull_failed(listing, f"listing {what}: {self._error_text(response)}")
            try:
                page = parse(self._json(response))
            except ValueError as exc:
                raise self._pull_failed(
                    listing, f"{at}: not a GitHub listing of {what} ({exc})"
                ) from exc
            except ConnectorError as exc:
                raise self._pull_failed(listing, _without_system(exc)) from exc
            items.extend(page)
            listing.read += len(page)
            if self.on_page is not None:
                self.on_page(len(page))
            link = next_link(response.headers.get("Link"))
            if link is None:
                return items
            request = self._next_request(link, listing, at)

    def _next_request(self, link: str, listing: Listing, at: str) -> httpx.Request:
        """The request for a `rel="next"` link; PullError if it repeats or leaves api_url."""
        if link in listing.links:
            raise self._pull_failed(
                listing, f"{at}: GitHub sent the same next link twice; paging would never end"
            )
        listing.links.add(link)
        try:
            url = httpx.URL(link)
        except httpx.InvalidURL as exc:
            raise self._pull_failed(listing, f"{at}: the next link is not a URL") from exc
        base = self.client.base_url
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            # The token goes with the request: never to a host we were not given.
            shown = server_text(f"{url.scheme}://{url.host}", self._secrets(), limit=NAME_LIMIT)
            raise self._pull_failed(
                listing,
                f"{at}: the next link points at {shown}, not at api_url "
                f"{self.options.api_url}; the token is not sent there",
            )
        return self.client.build_request("GET", url)

    def _saml_emails(self, listing: Listing, *, login: str | None) -> dict[str, str]:
        """login (lower case) → email from SAML: the organisation's identity provider,
        else the enterprise's when `enterprise` is set, else none."""
        emails, configured = self._saml_level(listing, enterprise=False, login=login)
        if configured:
            return emails
        if self.options.enterprise:
            emails, configured = self._saml_level(listing, enterprise=True, login=login)
            if configured:
                return emails
        if login is None:
            log.info(
                "%s: organisation %s has no SAML identity provider%s; emails are empty and "
                "accounts are matched by username",
                self.name,
                self.options.org,
                f" and neither has enterprise {self.options.enterprise}"
                if self.options.enterprise
                else "",
            )
        return {}

    def _saml_level(
        self, listing: Listing, *, enterprise: bool, login: str | None
    ) -> tuple[dict[str, str], bool]:
        emails: dict[str, str] = {}
        cursors: set[str] = set()
        after: str | None = None
        what = "SAML identities of " + (
            f"enterprise {self.options.enterprise}"
            if enterprise
            else f"organisation {self.options.org}"
        )
        while True:
            request = saml_request(
                self.client,
                self.options.graphql_url,
                self.options,
                enterprise=enterprise,
                after=after,
                login=login,
            )
            try:
                response = self._send(request, idempotent=True)
            except ConnectorError as exc:
                raise self._pull_failed(listing, f"reading {what}: {_without_system(exc)}") from exc
            if response.status_code != 200:
                raise self._pull_failed(listing, f"reading {what}: {self._error_text(response)}")
            try:
                page = parse_saml_page(self._json(response), enterprise=enterprise)
            except ValueError as exc:
                detail = server_text(str(exc), self._secrets())
                raise self._pull_failed(
                    listing,
                    f"reading {what}: {detail}; without them emails would be lost and "
                    "accounts matched wrongly: the token needs the organisation's "
                    "Administration read permission (admin:org for a classic token"
                    + (", and an enterprise owner's read:enterprise" if enterprise else "")
                    + ")",
                ) from exc
            except ConnectorError as exc:
                raise self._pull_failed(listing, _without_system(exc)) from exc
            if not page.configured:
                return {}, False
            emails.update(page.emails)
            if page.next_cursor is None or login is not None:
                return emails, True
            if page.next_cursor in cursors:
                raise self._pull_failed(
                    listing, f"reading {what}: GraphQL sent the same endCursor twice"
                )
            cursors.add(page.next_cursor)
            after = page.next_cursor

    # -- Live reads -------------------------------------------------------------------

    def _user(self, account_id: str) -> tuple[str, str, str, bool] | None:
        """User `account_id` now as (id, login, name, is a bot), or None when there is
        no such user."""
        if not account_id.isdigit():
            return None  # GitHub's user ids are numbers; nothing else names a user
        what = f"read user {account_id}"
        body = self._get(f"user/{account_id}", what=what)
        if body is None:
            return None
        user: tuple[str, str, str, bool] = self._parsed(parse_user, body, what)
        if user[0] != account_id:
            raise ConnectorError(
                self.name,
                f"asked GitHub for user {account_id}, it answered with user {user[0]}; "
                "nothing is done with it: check what answers at api_url",
            )
        return user

    def _role_of(self, login: str) -> str | None:
        """OWNER, MEMBER or OUTSIDE_COLLABORATOR for `login` now, or None when they
        are not in the organisation (a pending invitation is not being in it)."""
        what = f"read the membership of {login}"
        body = self._get(org_path(self.options.org, "memberships", login), what=what)
        if body is not None:
            state, role = self._parsed(parse_membership, body, what)
            if state == "active" and role in ("admin", "member"):
                return OWNER if role == "admin" else MEMBER
            return None
        for collaborator in self._read_all(
            org_path(self.options.org, "outside_collaborators"),
            "outside collaborators",
            lambda page: parse_users(page, OUTSIDE_COLLABORATOR),
        ):
            if collaborator.login.lower() == login.lower():
                return OUTSIDE_COLLABORATOR
        return None

    def _teams_of(self, login: str) -> list[str]:
        found = []
        teams: list[tuple[str, str]] = self._read_all(
            org_path(self.options.org, "teams"), "teams", parse_teams
        )
        for slug, _ in teams:
            path = org_path(self.options.org, "teams", slug, "memberships", login)
            body = self._get(path, what=f"read {login}'s membership of team {slug}")
            if body is not None and self._parsed(parse_membership, body, path)[0] == "active":
                found.append(slug)
        return found

    def _read_all(self, path: str, what: str, parse: Any, **params: str) -> list[Any]:
        """A whole listing for a live read: its PullError becomes a ConnectorError."""
        try:
            items = self._list_all(
                list_request(self.client, path, **params), what, Listing(), parse
            )
        except PullError as exc:
            raise ConnectorError(self.name, _without_system(exc)) from exc
        return items

    def _owner_count(self) -> int:
        owners: list[Member] = self._read_all(
            org_path(self.options.org, "members"),
            "owners",
            lambda page: parse_users(page, OWNER),
            role="admin",
        )
        return len(owners)

    def _check_owner_removal(self, login: str) -> None:
        if not self.options.allow_owner_removal:
            raise ConnectorError(
                self.name,
                f"{login} is an owner of organisation {self.options.org}; owners are not "
                "removed unless allow_owner_removal is true: demote them on GitHub first, "
                "or set the option",
            )
        problem = owner_count_problem(self._owner_count(), self.options.min_owners, login)
        if problem:
            raise ConnectorError(self.name, problem)

    def _cancel_invitations(self, login: str, email: str) -> None:
        try:
            invitations = self._invitations(Listing())
        except PullError as exc:
            raise ConnectorError(self.name, _without_system(exc)) from exc
        for invitation in invitations:
            by_login = bool(invitation.login) and invitation.login.lower() == login.lower()
            by_email = bool(email) and invitation.email.lower() == email.lower()
            if by_login or by_email:
                self._delete(
                    org_path(self.options.org, "invitations", invitation.id),
                    f"cancel the invitation of {_invitee(invitation)}",
                )

    # -- Sending ----------------------------------------------------------------------

    def _get(self, path: str, *, what: str) -> Any:
        """The JSON of a GET, None on 404, ConnectorError on any other failure."""
        response = self._send(self.client.build_request("GET", path))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ConnectorError(self.name, f"{what}: {self._error_text(response)}")
        return self._json(response)

    def _delete(self, path: str, what: str) -> None:
        """A DELETE; a 404 means it is already gone."""
        response = self._send(self.client.build_request("DELETE", path))
        if response.status_code not in (200, 202, 204, 404):
            raise ConnectorError(self.name, f"{what}: {self._error_text(response)}")

    def _send(self, request: httpx.Request, *, idempotent: bool | None = None) -> httpx.Response:
        """Send through `send`, then wait out a rate limit GitHub answers with 403."""
        for waited in range(RATE_LIMIT_WAITS + 1):
            response = send(
                self.client,
                request,
                system=self.name,
                retry=self.retry,
                idempotent=idempotent,
                secrets=self._secrets(),
            )
            wait = rate_limit_wait(response, now=self.retry.clock())
            if wait is None:
                return response
            at = describe_request(request)
            if wait > self.options.max_rate_limit_wait or waited == RATE_LIMIT_WAITS:
                raise ConnectorError(
                    self.name,
                    f"{at}: GitHub's rate limit for this token is spent for another "
                    f"{wait:.0f}s ({describe_status(response)}); run again later, or raise "
                    "max_rate_limit_wait",
                )
            log.info("%s: %s: rate limited; waiting %.0fs", self.name, at, wait)
            self.retry.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, response: httpx.Response) -> Any:
        return read_json(response, system=self.name, secrets=self._secrets())

    def _parsed(self, parse: Any, body: object, what: str, *args: Any) -> Any:
        try:
            result = parse(body, *args)
        except ValueError as exc:
            raise ConnectorError(
                self.name, f"{what}: GitHub's answer is not what its API describes ({exc})"
            ) from exc
        return result

    def _secrets(self) -> tuple[str, ...]:
        return (self.token,)

    # -- Messages ---------------------------------------------------------------------

    def _pull_failed(self, listing: Listing, reason: str) -> PullError:
        if not listing.read:
            return PullError(self.name, redact(f"pull failed: {reason}", self._secrets()))
        message = (
            f"pull stopped after {listing.read} record(s): {reason}; nothing from this pull "
            "may be used"
        )
        return PartialPullError(self.name, redact(message, self._secrets()))

    def _no_owners_text(self) -> str:
        return (
            f"GitHub listed no owner of organisation {self.options.org}, which would read "
            "as everyone having left; the token cannot see private membership: it needs "
            "the organisation permission Members (read), from an App installed on the "
            "organisation or a fine-grained token whose resource owner is the organisation "
            f"(environment variable {self.options.token_env})"
        )

    def _error_text(self, response: httpx.Response) -> str:
        text = f"{describe_request(response.request)} answered {describe_status(response)}"
        message = _message(response)
        if message:
            text += f": {server_text(message, self._secrets())}"
        env = self.options.token_env
        org = self.options.org
        if response.status_code == 401:
            text += (
                f"; GitHub refused the token in environment variable {env} (expired or "
                "revoked?): issue a new one"
            )
        elif response.status_code == 403:
            text += (
                f"; the token in environment variable {env} lacks a permission: it needs "
                f"Members read (and write, to remove people) on organisation {org}, and "
                "Administration read for SAML identities"
            )
        elif response.status_code == 404:
            text += (
                f"; organisation {org} does not exist or the token in environment "
                f"variable {env} cannot see it"
            )
        return redact(text, (*self._secrets(), *request_secrets(response.request)))


def _invitee(invitation: Invitation) -> str:
    return invitation.login or invitation.email or f"invitation {invitation.id}"


def _without_system(error: ConnectorError) -> str:
    return str(error).removeprefix(f"{error.system}: ")


def build(context: ConnectorContext) -> Connector:
    """A GitHubConnector from a system's section of reconciler.yaml."""
    options = GitHubOptions.from_mapping(context.name, context.options)
    token = secret_from_env(
        context, options.token_env, "a GitHub App installation token or fine-grained token"
    )
    assert token is not None
    client = build_client(
        context.name,
        options.api_url,
        token=token.strip(),
        timeout=options.timeout,
        headers={"Accept": ACCEPT, "X-GitHub-Api-Version": API_VERSION},
    )
    return GitHubConnector(context.name, client=client, options=options, token=token.strip())


TYPE = ConnectorType(
    name="github",
    options_schema=OPTIONS_SCHEMA,
    build=build,
    secret_env_options=("token_env",),
    description="The members, outside collaborators and teams of a GitHub organisation, "
    "with emails from its SAML identities; deprovisioning removes people from it.",
)
