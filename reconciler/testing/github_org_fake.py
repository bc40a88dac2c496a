"""A stateful fake of GitHub's organisation membership APIs, for tests of the `github`
connector (the pull-request forge has its own fake, `github_fake.py`).

It keeps one organisation: its users, owners and members, outside collaborators,
pending invitations, teams, and SAML identities at the organisation or the enterprise
level. REST answers follow the schemas of GitHub's OpenAPI description (validated in
tests against `tests/vendor/github/`); listings page with `Link` headers; every answer
carries GitHub's rate-limit headers; errors have GitHub's body (`message`,
`documentation_url`). GraphQL (`POST /graphql`) answers the two SAML queries the
connector sends, paged by cursor.

Fault switches make it answer as GitHub does on a bad day: a 429 storm, a 500 on one
page, a request that hangs until released, a truncated body, a `Link` that repeats, a
revoked token, the primary rate limit (403 with `X-RateLimit-Remaining: 0`), the
secondary one (403 with `Retry-After`), a token that cannot see private members.

Use it in-process through `httpx.WSGITransport(app=fake)`, or on 127.0.0.1 with
`serve_github_org`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from reconciler.testing.scim_server import serving

DOCS = "https://docs.github.com/rest"
WEB = "https://github.com"
API = "https://api.github.com"
RATE_LIMIT = 5000

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

REASONS = {
    200: "OK",
    204: "No Content",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


@dataclass
class User:
    """A GitHub user (or bot), whether or not it is in the organisation."""

    id: int
    login: str
    name: str | None = None
    type: str = "User"  # or "Bot"


@dataclass
class Team:
    id: int
    slug: str
    name: str
    members: set[str] = field(default_factory=set)  # logins


@dataclass
class Invitation:
    id: int
    login: str | None  # None for an invitation sent to an email address
    email: str | None
    role: str = "direct_member"  # or "admin", "billing_manager"
    created_at: str = "2026-11-01T09:00:00Z"


@dataclass
class SamlIdentity:
    name_id: str
    emails: list[str]
    login: str | None  # the linked GitHub user, None until they sign in


@dataclass
class Org:
    """The organisation's state; every field may be changed by a test."""

    login: str
    users: dict[str, User] = field(default_factory=dict)  # every known user, by login
    roles: dict[str, str] = field(default_factory=dict)  # member login → "admin"/"member"
    outside: set[str] = field(default_factory=set)  # outside collaborators' logins
    invitations: list[Invitation] = field(default_factory=list)
    teams: dict[str, Team] = field(default_factory=dict)  # by slug
    saml: list[SamlIdentity] | None = None  # None: the org has no identity provider
    enterprise: str | None = None  # the enterprise's slug
    enterprise_saml: list[SamlIdentity] | None = None


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class FakeGitHubOrg:
    """The WSGI app. `now` is its clock (Unix seconds), shared with a test's RetryPolicy."""

    org: Org
    token: str
    now: float = 1_800_000_000.0
    page_cap: int = 100  # largest page it gives, whatever per_page asks
    requests: list[str] = field(default_factory=list)
    # -- fault switches --
    storm: int = 0  # the next N requests get 429 with Retry-After
    fail_page: tuple[str, int] | None = None  # (path substring, page) → 500
    hang: str | None = None  # requests whose path holds this wait for `release`
    release: threading.Event = field(default_factory=threading.Event)
    truncate: str | None = None  # answers to paths holding this lose their second half
    repeat_link: str | None = None  # listings at paths holding this link to themselves
    repeat_cursor: bool = False  # GraphQL gives the first page's endCursor forever
    revoked: bool = False  # the token was revoked: every request is 401
    primary_limit: int = 0  # the next N requests hit the primary rate limit
    primary_reset_in: int = 30
    secondary_limit: int = 0  # the next N requests hit a secondary limit (403)
    hide_members: bool = False  # the token cannot see private members: lists are []
    graphql_forbidden: bool = False
    graphql_limit: int = 0  # the next N GraphQL queries hit GraphQL's rate limit
    remaining: int = RATE_LIMIT
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- state helpers --------------------------------------------------------------

    def user(self, login: str) -> User:
        return self.org.users[login]

    def add_user(self, login: str, *, name: str | None = None, type: str = "User") -> User:
        user = User(id=1000 + len(self.org.users) * 7, login=login, name=name, type=type)
        self.org.users[login] = user
        return user

    def owners(self) -> list[str]:
        return sorted(login for login, role in self.org.roles.items() if role == "admin")

    # -- WSGI -----------------------------------------------------------------------

    def __call__(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = unquote(environ.get("PATH_INFO", ""))
        query = environ.get("QUERY_STRING", "")
        self.requests.append(f"{method} {path}" + (f"?{query}" if query else ""))
        origin = f"{environ['wsgi.url_scheme']}://{environ['HTTP_HOST']}"
        headers: dict[str, str] = {}
        try:
            self._faults(path, environ)
            status, body, headers = self._route(method, path, parse_qs(query), environ, origin)
        except ApiError as error:
            status = error.status
            body = {"message": error.message, "documentation_url": DOCS, "status": str(status)}
            headers = error.headers
        return self._answer(start_response, status, body, headers, path)

    def _answer(
        self,
        start_response: StartResponse,
        status: int,
        body: object,
        headers: Mapping[str, str],
        path: str,
    ) -> list[bytes]:
        data = b"" if body is None else json.dumps(body).encode()
        if self.truncate is not None and self.truncate in path and data:
            data = data[: len(data) // 2]
        with self.lock:
            self.remaining = max(self.remaining - 1, 0)
            limits = {
                "X-RateLimit-Limit": str(RATE_LIMIT),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(int(self.now) + 3600),
                "X-RateLimit-Used": str(RATE_LIMIT - self.remaining),
                "X-RateLimit-Resource": "graphql" if path == "/graphql" else "core",
            }
        all_headers = {**limits, **headers, "X-GitHub-Request-Id": "F00D:1:2:3"}
        if data:
            all_headers["Content-Type"] = "application/json; charset=utf-8"
        all_headers["Content-Length"] = str(len(data))
        start_response(f"{status} {REASONS.get(status, 'Error')}", list(all_headers.items()))
        return [data]

    def _faults(self, path: str, environ: Mapping[str, Any]) -> None:
        if self.hang is not None and self.hang in path:
            self.release.wait(10)
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, given = auth.partition(" ")
        if self.revoked or scheme.lower() not in ("bearer", "token") or given != self.token:
            raise ApiError(401, "Bad credentials")
        with self.lock:
            if self.storm > 0:
                self.storm -= 1
                raise ApiError(
                    429,
                    "You have exceeded a secondary rate limit. Please wait a few minutes "
                    "before you try again.",
                    {"Retry-After": "1"},
                )
            if self.primary_limit > 0:
                self.primary_limit -= 1
                raise ApiError(
                    403,
                    "API rate limit exceeded for installation ID 4242.",
                    {
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(int(self.now) + self.primary_reset_in),
                    },
                )
            if self.secondary_limit > 0:
                self.secondary_limit -= 1
                raise ApiError(
                    403,
                    "You have exceeded a secondary rate limit. Please wait a few minutes "
                    "before you try again.",
                    {"Retry-After": "60"},
                )

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        environ: Mapping[str, Any],
        origin: str,
    ) -> tuple[int, object, dict[str, str]]:
        if method == "POST" and path == "/graphql":
            if self.graphql_limit > 0:
                # GraphQL's primary limit is a 200 with a RATE_LIMITED error.
                self.graphql_limit -= 1
                limited = {"type": "RATE_LIMITED", "message": "API rate limit exceeded."}
                reset = str(int(self.now) + self.primary_reset_in)
                headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
                return 200, {"errors": [limited]}, headers
            return 200, self._graphql(environ), {}
        match = re.fullmatch(r"/user/(\d+)", path)
        if match and method == "GET":
            return 200, self._public_user_json(self._user_by_id(int(match[1]))), {}
        match = re.fullmatch(r"/orgs/([^/]+)(/.*)", path)
        if not match:
            raise ApiError(404, "Not Found")
        if match[1].lower() != self.org.login.lower():
            raise ApiError(404, "Not Found")
        rest = match[2]
        if method == "GET":
            items = self._listing(rest, query)
            if items is not None:
                return self._page(items, path, query, origin)
            return 200, self._read(rest), {}
        if method == "DELETE":
            self._delete(rest)
            return 204, None, {}
        raise ApiError(404, "Not Found")

    # -- REST -----------------------------------------------------------------------

    def _listing(self, rest: str, query: Mapping[str, list[str]]) -> list[Any] | None:
        org = self.org
        if rest == "/members":
            role = query.get("role", ["all"])[0]
            if self.hide_members:
                return []
            logins = [login for login, has in org.roles.items() if role == "all" or has == role]
            return [self._user_json(org.users[login]) for login in sorted(logins)]
        if rest == "/outside_collaborators":
            return [self._user_json(org.users[login]) for login in sorted(org.outside)]
        if rest == "/invitations":
            return [self._invitation_json(invitation) for invitation in org.invitations]
        if rest == "/teams":
            return [self._team_json(team) for team in org.teams.values()]
        match = re.fullmatch(r"/teams/([^/]+)/members", rest)
        if match:
            team = self._team(match[1])
            return [self._user_json(org.users[login]) for login in sorted(team.members)]
        return None

    def _read(self, rest: str) -> object:
        match = re.fullmatch(r"/memberships/([^/]+)", rest)
        if match:
            return self._membership_json(match[1])
        match = re.fullmatch(r"/teams/([^/]+)/memberships/([^/]+)", rest)
        if match:
            team = self._team(match[1])
            if match[2] not in team.members:
                raise ApiError(404, "Not Found")
            return {
                "url": f"{API}/teams/{team.id}/memberships/{match[2]}",
                "role": "member",
                "state": "active",
            }
        raise ApiError(404, "Not Found")

    def _delete(self, rest: str) -> None:
        org = self.org
        match = re.fullmatch(r"/memberships/([^/]+)", rest)
        if match:
            login = match[1]
            if org.roles.get(login) == "admin" and len(self.owners()) == 1:
                raise ApiError(403, "You cannot remove the last owner of an organization.")
            org.roles.pop(login, None)
            for team in org.teams.values():
                team.members.discard(login)
            # Removing a membership also cancels a pending invitation (GitHub's docs).
            org.invitations = [i for i in org.invitations if i.login != login]
            return
        match = re.fullmatch(r"/outside_collaborators/([^/]+)", rest)
        if match:
            if match[1] in org.roles:
                raise ApiError(
                    422,
                    "You cannot specify an organization member to remove as an outside "
                    "collaborator.",
                )
            org.outside.discard(match[1])
            return
        match = re.fullmatch(r"/invitations/(\d+)", rest)
        if match:
            kept = [i for i in org.invitations if i.id != int(match[1])]
            if len(kept) == len(org.invitations):
                raise ApiError(404, "Not Found")
            org.invitations = kept
            return
        raise ApiError(404, "Not Found")

    def _page(
        self, items: list[Any], path: str, query: Mapping[str, list[str]], origin: str
    ) -> tuple[int, object, dict[str, str]]:
        page = int(query.get("page", ["1"])[0])
        per_page = min(int(query.get("per_page", ["30"])[0]), 100, self.page_cap)
        if self.fail_page is not None and self.fail_page[0] in path and self.fail_page[1] == page:
            raise ApiError(500, "Server Error")
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        last = max((len(items) + per_page - 1) // per_page, 1)
        headers: dict[str, str] = {}
        if page < last:
            target = page if self.repeat_link is not None and self.repeat_link in path else page + 1
            headers["Link"] = ", ".join(
                f'<{self._link(origin, path, query, number)}>; rel="{rel}"'
                for number, rel in ((target, "next"), (last, "last"))
            )
        return 200, chunk, headers

    @staticmethod
    def _link(origin: str, path: str, query: Mapping[str, list[str]], page: int) -> str:
        params = {key: values[0] for key, values in query.items()}
        params["page"] = str(page)
        return f"{origin}{path}?{urlencode(params)}"

    def _user_by_id(self, user_id: int) -> User:
        for user in self.org.users.values():
            if user.id == user_id:
                return user
        raise ApiError(404, "Not Found")

    def _team(self, slug: str) -> Team:
        team = self.org.teams.get(slug)
        if team is None:
            raise ApiError(404, "Not Found")
        return team

    # -- JSON shapes (components/schemas of GitHub's OpenAPI description) ------------

    def _user_json(self, user: User) -> dict[str, Any]:
        url = f"{API}/users/{user.login}"
        return {
            "login": user.login,
            "id": user.id,
            "node_id": base64.b64encode(f"04:User{user.id}".encode()).decode(),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{WEB}/{user.login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": user.type,
            "site_admin": False,
            "name": user.name,
            "user_view_type": "public",
        }

    def _public_user_json(self, user: User) -> dict[str, Any]:
        """A user as `GET /user/{account_id}` gives it to someone else: the public
        profile (GitHub's `public-user`)."""
        return {
            **self._user_json(user),
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "hireable": None,
            "bio": None,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2026-11-01T00:00:00Z",
        }

    def _organization_json(self) -> dict[str, Any]:
        login = self.org.login
        url = f"{API}/orgs/{login}"
        return {
            "login": login,
            "id": 9000,
            "node_id": "O_kgDOAAAjKA",
            "url": url,
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events",
            "hooks_url": f"{url}/hooks",
            "issues_url": f"{url}/issues",
            "members_url": f"{url}/members{{/member}}",
            "public_members_url": f"{url}/public_members{{/member}}",
            "avatar_url": "https://avatars.githubusercontent.com/u/9000?v=4",
            "description": None,
        }

    def _membership_json(self, login: str) -> dict[str, Any]:
        org = self.org
        role = org.roles.get(login)
        state = "active"
        if role is None:
            invited = [i for i in org.invitations if i.login == login]
            if not invited:
                raise ApiError(404, "Not Found")
            state = "pending"
            role = "admin" if invited[0].role == "admin" else "member"
        user = org.users.get(login)
        return {
            "url": f"{API}/orgs/{org.login}/memberships/{login}",
            "state": state,
            "role": role,
            "organization_url": f"{API}/orgs/{org.login}",
            "organization": self._organization_json(),
            "user": self._user_json(user) if user else None,
            "permissions": {"can_create_repository": True},
        }

    def _invitation_json(self, invitation: Invitation) -> dict[str, Any]:
        inviter = self.org.users[self.owners()[0]] if self.owners() else User(1, "ghost")
        return {
            "id": invitation.id,
            "login": invitation.login,
            "email": invitation.email,
            "role": invitation.role,
            "created_at": invitation.created_at,
            "failed_at": None,
            "failed_reason": None,
            "inviter": self._user_json(inviter),
            "team_count": 0,
            "node_id": base64.b64encode(f"OI{invitation.id}".encode()).decode(),
            "invitation_teams_url": f"{API}/organizations/9000/invitations/{invitation.id}/teams",
            "invitation_source": "member",
        }

    def _team_json(self, team: Team) -> dict[str, Any]:
        url = f"{API}/organizations/9000/team/{team.id}"
        return {
            "id": team.id,
            "node_id": base64.b64encode(f"T{team.id}".encode()).decode(),
            "url": url,
            "html_url": f"{WEB}/orgs/{self.org.login}/teams/{team.slug}",
            "name": team.name,
            "slug": team.slug,
            "description": None,
            "privacy": "closed",
            "notification_setting": "notifications_enabled",
            "permission": "pull",
            "members_url": f"{url}/members{{/member}}",
            "repositories_url": f"{url}/repos",
            "parent": None,
            "type": "organization",
        }

    # -- GraphQL --------------------------------------------------------------------

    def _graphql(self, environ: Mapping[str, Any]) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(length) or b"{}")
        query = str(request.get("query", ""))
        variables = request.get("variables") or {}
        first = int(re.search(r"first:\s*(\d+)", query)[1]) if "first:" in query else 100  # type: ignore[index]
        if "enterprise(" in query:
            return self._enterprise_answer(variables, first)
        if variables.get("org", "").lower() != self.org.login.lower():
            return _not_found("organization", "Organization", "login", variables.get("org"))
        if self.graphql_forbidden:
            return {
                "data": {"organization": None},
                "errors": [
                    {
                        "type": "FORBIDDEN",
                        "path": ["organization", "samlIdentityProvider"],
                        "message": "Resource not accessible by integration",
                    }
                ],
            }
        provider = self._provider(self.org.saml, variables, first)
        return {"data": {"organization": {"samlIdentityProvider": provider}}}

    def _enterprise_answer(self, variables: Mapping[str, Any], first: int) -> dict[str, Any]:
        slug = variables.get("enterprise")
        if self.org.enterprise is None or slug != self.org.enterprise:
            return _not_found("enterprise", "Enterprise", "slug", slug)
        provider = self._provider(self.org.enterprise_saml, variables, first)
        return {"data": {"enterprise": {"ownerInfo": {"samlIdentityProvider": provider}}}}

    def _provider(
        self, identities: list[SamlIdentity] | None, variables: Mapping[str, Any], first: int
    ) -> dict[str, Any] | None:
        if identities is None:
            return None
        login = variables.get("login")
        chosen = [i for i in identities if login is None or i.login == login]
        after = variables.get("after")
        start = int(base64.b64decode(after).decode().rpartition(":")[2]) if after else 0
        size = min(first, 100, self.page_cap)
        chunk = chosen[start : start + size]
        end = start + len(chunk)
        if self.repeat_cursor:
            end = min(size, len(chosen))
        cursor = base64.b64encode(f"cursor:v2:{end}".encode()).decode() if chunk else None
        return {
            "externalIdentities": {
                "edges": [{"node": self._identity_json(identity)} for identity in chunk],
                "pageInfo": {"hasNextPage": start + len(chunk) < len(chosen), "endCursor": cursor},
            }
        }

    def _identity_json(self, identity: SamlIdentity) -> dict[str, Any]:
        user = self.org.users.get(identity.login) if identity.login else None
        return {
            "samlIdentity": {
                "nameId": identity.name_id,
                "emails": [{"value": email} for email in identity.emails],
            },
            "user": {"login": user.login, "databaseId": user.id} if user else None,
        }


def _not_found(field_name: str, kind: str, key: str, value: object) -> dict[str, Any]:
    return {
        "data": {field_name: None},
        "errors": [
            {
                "type": "NOT_FOUND",
                "path": [field_name],
                "locations": [{"line": 2, "column": 3}],
                "message": f"Could not resolve to an {kind} with the {key} of '{value}'.",
            }
        ],
    }


def acme_org(login: str = "acme") -> Org:
    """An organisation to test with: two owners, three members (one a bot), an outside
    collaborator, two pending invitations, two teams, and SAML identities at the
    organisation level for all but one member."""
    org = Org(login=login)
    people = [
        (101, "octo-owner", "Olive Owner", "admin"),
        (102, "second-owner", None, "admin"),
        (103, "alice", "Alice Liddell", "member"),
        (104, "bob", None, "member"),
        (105, "deploy-bot", None, "member"),
        (106, "contractor", "Casey Contractor", None),
        (107, "invitee", None, None),
        (108, "stranger", None, None),
    ]
    for user_id, user_login, name, role in people:
        kind = "Bot" if user_login.endswith("-bot") else "User"
        org.users[user_login] = User(id=user_id, login=user_login, name=name, type=kind)
        if role is not None:
            org.roles[user_login] = role
    org.outside = {"contractor"}
    org.invitations = [
        Invitation(id=501, login="invitee", email=None),
        Invitation(id=502, login=None, email="newhire@acme.example"),
    ]
    org.teams = {
        "platform": Team(id=11, slug="platform", name="Platform", members={"alice", "octo-owner"}),
        "sre": Team(id=12, slug="sre", name="SRE", members={"alice", "bob"}),
    }
    org.saml = [
        SamlIdentity("olive@acme.example", ["olive@acme.example"], "octo-owner"),
        SamlIdentity("second@acme.example", ["second@acme.example"], "second-owner"),
        SamlIdentity("alice@acme.example", ["alice@acme.example"], "alice"),
        SamlIdentity("b0b-guid", ["bob@acme.example"], "bob"),
        SamlIdentity("unlinked@acme.example", ["unlinked@acme.example"], None),
    ]
    return org


@contextmanager
def serve_github_org(fake: FakeGitHubOrg) -> Iterator[str]:
    """Serve `fake` on 127.0.0.1; yields its base URL (REST root; GraphQL at /graphql)."""
    with serving(fake, name="github-org-fake") as origin:
        yield origin
