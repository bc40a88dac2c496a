"""Microsoft Entra ID (Azure AD) as an identity source, through Microsoft Graph v1.0.

The connector signs in as an app registration with the OAuth 2.0 client-credentials
grant (`POST {login_url}/{tenant}/oauth2/v2.0/token`, scope
`https://graph.microsoft.com/.default`) and keeps the token until shortly before it
expires. A 401 from Graph gets one fresh token and one retry; a second 401 is an error
naming the environment variable that holds the client secret.

Pulling reads `/v1.0/users` with `$select` of just the fields used and follows
`@odata.nextLink` exactly as Graph wrote it (the `$skiptoken` is Graph's, not ours). Graph
gives no total for a plain listing, so a pull is complete when a page arrives without a
nextLink; a nextLink seen twice, one pointing at another host, a user listed twice, a
page that is not a Graph collection, or a pull of no users at all fails the pull: none
of them proves the end of the list, and "no users" would read as "everyone left".

Users deleted from the directory are simply absent (the check makes them `missing`).
`accountEnabled: false` becomes `inactive_status`. Department and job title become the
identity's department and title.

Last sign-ins (`signInActivity`, option `sign_in_activity`) need AuditLog.Read.All and
an Entra ID P1 licence. A tenant without the licence answers 403
Authentication_RequestFromNonPremiumTenantOrB2CTenant: the connector then reads the page
again without it, logs that last sign-ins are unknown, and carries on. Last sign-ins
are offered only on accounts (`pull_accounts`), since identities have no such field.

Group membership is read only with `groups: true`, per group rather than per user: one
listing of `/groups`, then each group's `transitiveMembers/microsoft.graph.user` (users
in nested groups included), each paged like the users. Tenants have far fewer groups
than users, so this costs less than `/users/{id}/transitiveMemberOf` for every user;
`/groups?$expand=members` is not used because Graph expands at most 20 members per
group, which cannot be shown complete. A live lookup reads the one user's
`transitiveMemberOf`. Group names are the identities' groups and `pull_roles`' roles.

The connector only reads: it declares no deprovisioning modes.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
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
    read_json,
    redact,
    request_secrets,
    retry_policy,
    send,
    server_text,
)
from reconciler.connectors.scim import id_problem
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.model import Account, Identity, Role

log = logging.getLogger(__name__)

LOGIN_URL = "https://login.microsoftonline.com"
GRAPH_URL = "https://graph.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# Graph's largest page for /users, and its smaller one when signInActivity is selected.
MAX_PAGE_SIZE = 999
SIGN_IN_PAGE_SIZE = 500

# The fields read from a user, in the order sent.
USER_FIELDS = (
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "accountEnabled",
    "department",
    "jobTitle",
)
SIGN_IN_FIELD = "signInActivity"

# Graph's answer when signInActivity is asked of a tenant without an Entra ID P1 licence.
NON_PREMIUM_CODE = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
# Token endpoint errors that mean the app's id or secret is wrong, expired or revoked.
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})

# A token is renewed this long before Graph would refuse it (clocks drift, requests take
# time), or at half its life when it is shorter than twice this.
TOKEN_MARGIN = 300.0

# How much of a name from the server a message shows.
NAME_LIMIT = 80

_ENV_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["client_secret_env"],
    "allOf": [
        {"oneOf": [{"required": ["tenant_id"]}, {"required": ["tenant_id_env"]}]},
        {"oneOf": [{"required": ["client_id"]}, {"required": ["client_id_env"]}]},
    ],
    "properties": {
        "tenant_id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9.-]*$",
            "description": "The directory (tenant) id, a GUID, or a verified domain such "
            "as acme.onmicrosoft.com. Give this or tenant_id_env.",
        },
        "tenant_id_env": {
            **_ENV_NAME,
            "description": "Name of the environment variable holding the tenant id.",
        },
        "client_id": {
            "type": "string",
            "minLength": 1,
            "description": "The application (client) id of the app registration. Give "
            "this or client_id_env.",
        },
        "client_id_env": {
            **_ENV_NAME,
            "description": "Name of the environment variable holding the client id.",
        },
        "client_secret_env": {
            **_ENV_NAME,
            "description": "Name of the environment variable holding the app "
            "registration's client secret.",
        },
        "login_url": {
            "type": "string",
            "pattern": "^https?://",
            "default": LOGIN_URL,
            "description": "The Microsoft identity platform's base URL (another cloud's, "
            "e.g. https://login.microsoftonline.us).",
        },
        "graph_url": {
            "type": "string",
            "pattern": "^https?://",
            "default": GRAPH_URL,
            "description": "Microsoft Graph's base URL (another cloud's, e.g. "
            "https://graph.microsoft.us); /v1.0/users is read under it.",
        },
        "inactive_status": {
            "enum": ["deprovisioned", "suspended"],
            "default": "deprovisioned",
            "description": "What `accountEnabled: false` means for an identity.",
        },
        "sign_in_activity": {
            "type": "boolean",
            "default": False,
            "description": "Read each user's last sign-in (signInActivity). Needs the "
            "AuditLog.Read.All permission and an Entra ID P1 licence; without the licence "
            "last sign-ins are unknown and the pull goes on.",
        },
        "groups": {
            "type": "boolean",
            "default": False,
            "description": "Read group membership (direct and through nested groups) "
            "into each identity's groups: one listing of /groups, then one of each "
            "group's transitive user members. Needs GroupMember.Read.All.",
        },
        **http_options("Graph or the token endpoint"),
    },
}


@dataclass(frozen=True)
class EntraOptions:
    """The validated options of one Entra ID system, with defaults applied."""

    client_secret_env: str
    tenant_id: str | None = None
    tenant_id_env: str | None = None
    client_id: str | None = None
    client_id_env: str | None = None
    login_url: str = LOGIN_URL
    graph_url: str = GRAPH_URL
    inactive_status: Literal["deprovisioned", "suspended"] = "deprovisioned"
    sign_in_activity: bool = False
    groups: bool = False
    timeout: float = 30.0
    max_retries: int = 4
    max_requests_per_second: float | None = None

    @classmethod
    def from_mapping(cls, system: str, options: Mapping[str, Any]) -> EntraOptions:
        """Options with defaults applied; the mistakes that would otherwise pass or crash
        (an unknown key, no secret variable, no tenant or client id, or both forms) are
        checked again for callers that build a connector without the schema."""
        hint = "the name of the environment variable holding the app registration's client secret"
        check_options(system, "entra", options, OPTIONS_SCHEMA, {"client_secret_env": hint})
        for what in ("tenant_id", "client_id"):
            given = [key for key in (what, f"{what}_env") if options.get(key)]
            if len(given) != 1:
                raise ConfigError(
                    f"{system}: give exactly one of {what} and {what}_env (found {len(given)})"
                )
        return cls(
            client_secret_env=options["client_secret_env"],
            tenant_id=options.get("tenant_id"),
            tenant_id_env=options.get("tenant_id_env"),
            client_id=options.get("client_id"),
            client_id_env=options.get("client_id_env"),
            login_url=str(options.get("login_url", LOGIN_URL)).rstrip("/"),
            graph_url=str(options.get("graph_url", GRAPH_URL)).rstrip("/"),
            inactive_status=options.get("inactive_status", "deprovisioned"),
            sign_in_activity=bool(options.get("sign_in_activity", False)),
            groups=bool(options.get("groups", False)),
            timeout=float(options.get("timeout", 30)),
            max_retries=int(options.get("max_retries", 4)),
            max_requests_per_second=options.get("max_requests_per_second"),
        )


@dataclass(frozen=True)
class Credentials:
    """Who the connector signs in as (the secret is redacted from every message)."""

    tenant_id: str
    client_id: str
    client_secret: str
    secret_env: str  # the variable the secret came from, named in errors


# ---------------------------------------------------------------------------------------
# Requests


def token_request(client: httpx.Client, login_url: str, creds: Credentials) -> httpx.Request:
    """The client-credentials grant (RFC 6749 §4.4) at the tenant's v2.0 token endpoint."""
    url = f"{login_url}/{quote(creds.tenant_id, safe='')}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "scope": GRAPH_SCOPE,
    }
    return client.build_request("POST", url, data=form)


def user_select(sign_in: bool) -> str:
    """The `$select` value: just the fields read, signInActivity when asked for."""
    return ",".join((*USER_FIELDS, SIGN_IN_FIELD) if sign_in else USER_FIELDS)


def page_headers(sign_in: bool) -> dict[str, str]:
    """`Prefer: odata.maxpagesize`: Graph's largest page for what is selected."""
    size = SIGN_IN_PAGE_SIZE if sign_in else MAX_PAGE_SIZE
    return {"Prefer": f"odata.maxpagesize={size}"}


def users_request(client: httpx.Client, *, sign_in: bool) -> httpx.Request:
    """The first page of `/v1.0/users`."""
    return client.build_request(
        "GET", "users", params={"$select": user_select(sign_in)}, headers=page_headers(sign_in)
    )


def next_page_request(client: httpx.Client, next_link: str, *, sign_in: bool) -> httpx.Request:
    """The page an `@odata.nextLink` points at, as Graph wrote it."""
    return client.build_request("GET", next_link, headers=page_headers(sign_in))


def without_sign_in(request: httpx.Request, client: httpx.Client) -> httpx.Request:
    """The same page with signInActivity taken out of `$select`."""
    url = request.url.copy_set_param("$select", user_select(False))
    return client.build_request("GET", url, headers=page_headers(False))


def user_request(client: httpx.Client, user_id: str, *, sign_in: bool) -> httpx.Request:
    """GET one user by its object id."""
    # Ids are opaque strings: quote everything so one cannot reach another path.
    path = f"users/{quote(user_id, safe='')}"
    return client.build_request("GET", path, params={"$select": user_select(sign_in)})


def groups_request(client: httpx.Client) -> httpx.Request:
    """The first page of `/v1.0/groups`: ids and names."""
    return client.build_request(
        "GET", "groups", params={"$select": "id,displayName"}, headers=page_headers(False)
    )


def members_request(client: httpx.Client, group_id: str) -> httpx.Request:
    """The first page of a group's users, direct and through nested groups."""
    path = f"groups/{quote(group_id, safe='')}/transitiveMembers/microsoft.graph.user"
    return client.build_request("GET", path, params={"$select": "id"}, headers=page_headers(False))


def member_of_request(client: httpx.Client, user_id: str) -> httpx.Request:
    """The first page of the groups one user is in, direct and through nested groups."""
    path = f"users/{quote(user_id, safe='')}/transitiveMemberOf/microsoft.graph.group"
    return client.build_request(
        "GET", path, params={"$select": "id,displayName"}, headers=page_headers(False)
    )


# ---------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True)
class Token:
    """An access token and when to stop using it (by the connector's clock)."""

    value: str
    renew_at: float


@dataclass(frozen=True)
class CollectionPage:
    """One page of a Graph collection (users, groups, members)."""

    items: tuple[Mapping[str, Any], ...]
    next_link: str | None


@dataclass(frozen=True)
class GraphError:
    """Graph's error body: `{"error": {"code", "message", "innerError": {...}}}`."""

    code: str
    message: str
    request_id: str


def parse_token(body: object, *, now: float) -> Token:
    """A token response (RFC 6749 §5.1) as a Token; ValueError if it is not one."""
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise ValueError("it has no access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ValueError("its token_type is not Bearer")
    lifetime = body.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)  # the v1.0 endpoint sent numbers as strings
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
        raise ValueError("its expires_in is not a positive whole number")
    margin = min(TOKEN_MARGIN, lifetime / 2)
    return Token(value=value, renew_at=now + lifetime - margin)


def token_error(body: object) -> tuple[str, str]:
    """`error` and `error_description` of a token endpoint error (RFC 6749 §5.2)."""
    if not isinstance(body, dict):
        return "", ""
    code = body.get("error")
    description = body.get("error_description")
    return (
        code if isinstance(code, str) else "",
        description if isinstance(description, str) else "",
    )


def parse_collection(body: object) -> CollectionPage:
    """A Graph collection (`value`, `@odata.nextLink`) as a CollectionPage; ValueError if
    the body is not one. Ids are checked by the caller (`id_problem`)."""
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    if "value" not in body:
        raise ValueError("it has no value")
    items = body["value"]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError("its value is not a list of objects")
    next_link = body.get("@odata.nextLink")
    if next_link is not None and (not isinstance(next_link, str) or not next_link):
        raise ValueError("its @odata.nextLink is not a URL")
    return CollectionPage(items=tuple(items), next_link=next_link)


def parse_graph_error(body: object) -> GraphError | None:
    """Graph's error body, or None when the body is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    error = body["error"]
    inner = error.get("innerError")
    request_id = inner.get("request-id") if isinstance(inner, dict) else None
    return GraphError(
        code=str(error.get("code") or ""),
        message=str(error.get("message") or ""),
        request_id=request_id if isinstance(request_id, str) else "",
    )


def last_sign_in(user: Mapping[str, Any]) -> str:
    """`signInActivity.lastSignInDateTime`, or '' (unknown) when absent or null."""
    activity = user.get(SIGN_IN_FIELD)
    if not isinstance(activity, Mapping):
        return ""
    value = activity.get("lastSignInDateTime")
    return value if isinstance(value, str) else ""


def user_is_enabled(user: Mapping[str, Any]) -> bool:
    """`accountEnabled`; only an explicit false disables (null means Graph did not say)."""
    return user.get("accountEnabled") is not False


def group_name(group: Mapping[str, Any]) -> str:
    """A group's displayName, else its id (Graph lets a name be null)."""
    name = group.get("displayName")
    return name if isinstance(name, str) and name.strip() else str(group["id"])


def identity_from_user(
    user: Mapping[str, Any],
    *,
    inactive_status: str = "deprovisioned",
    groups: Collection[str] = (),
) -> Identity:
    """A Graph user as an Identity; ValueError if it has no usable id (`id_problem`)."""
    _require_id(user)
    return Identity.build(
        id=user["id"],
        email=user.get("mail") or "",
        username=user.get("userPrincipalName") or "",
        display_name=user.get("displayName") or "",
        status="active" if user_is_enabled(user) else inactive_status,
        groups=groups,
        department=user.get("department") or "",
        title=user.get("jobTitle") or "",
    )


def account_from_user(user: Mapping[str, Any]) -> Account:
    """A Graph user as an Account, with its last sign-in when Graph gave one; ValueError
    if it has no usable id."""
    _require_id(user)
    return Account.build(
        id=user["id"],
        username=user.get("userPrincipalName") or "",
        email=user.get("mail") or "",
        display_name=user.get("displayName") or "",
        status="active" if user_is_enabled(user) else "disabled",
        last_login=last_sign_in(user),
    )


def describe_user(user: Mapping[str, Any], secrets: Iterable[str], kind: str = "user") -> str:
    """`user with userPrincipalName 'alice@acme.example'`, for a user (or another
    directory object, `kind`) whose id is unusable."""
    for key in ("userPrincipalName", "displayName"):
        value = user.get(key)
        if isinstance(value, str) and value.strip():
            return f"{kind} with {key} {server_text(value, secrets, limit=NAME_LIMIT)!r}"
    return f"a {kind} with neither userPrincipalName nor displayName"


def _require_id(user: Mapping[str, Any]) -> None:
    problem = id_problem(user)
    if problem:
        raise ValueError(problem)


def same_origin(url: httpx.URL, base: httpx.URL) -> bool:
    """Whether `url` is on the scheme, host and port of `base`."""
    return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)


# ---------------------------------------------------------------------------------------
# The connector


class EntraConnector:
    """Microsoft Entra ID as an identity source, read through Microsoft Graph.

    `login` is the client for the token endpoint, `graph` the one for Graph (its base URL
    ends in /v1.0/). `clock` says when a token is due for renewal (tests share one with
    the fake). `on_page`, when set, is called after each page with its size.
    """

    modes: frozenset[Mode] = frozenset()

    def __init__(
        self,
        name: str,
        *,
        login: httpx.Client,
        graph: httpx.Client,
        options: EntraOptions,
        credentials: Credentials,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_page: PageCallback | None = None,
    ) -> None:
        self.name = name
        self.login = login
        self.graph = graph
        self.options = options
        self.credentials = credentials
        self.retry = retry or retry_policy(options.max_retries, options.max_requests_per_second)
        self.clock = clock
        self.on_page = on_page
        self._token: Token | None = None
        # Set once Graph refused signInActivity for want of a licence: not asked again.
        self._sign_in_refused = False

    def __repr__(self) -> str:
        return f"EntraConnector(name={self.name!r}, tenant={self.credentials.tenant_id!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What no message may show: the client secret and the current token."""
        token = (self._token.value,) if self._token else ()
        return (self.credentials.client_secret, *token)

    # -- Connector --------------------------------------------------------------------

    def pull_identities(self) -> Iterator[Identity]:
        """Every user as an Identity, with its groups when `groups` is on."""
        memberships = self._memberships() if self.options.groups else {}
        for user in self._pull_users():
            yield identity_from_user(
                user,
                inactive_status=self.options.inactive_status,
                groups=memberships.get(str(user["id"]), ()),
            )

    def pull_accounts(self) -> Iterator[Account]:
        """Every user as an Account, with last sign-ins when `sign_in_activity` is on
        and the tenant is licensed for them."""
        for user in self._pull_users():
            yield account_from_user(user)

    def pull_roles(self) -> list[Role]:
        """The groups' names when `groups` is on, else none; either way the token is
        fetched, so a system that cannot be used fails here as a pull would."""
        try:
            self._access_token()
        except ConnectorError as exc:
            raise PullError(self.name, _without_system(exc)) from exc
        if not self.options.groups:
            return []
        names = {group_name(g) for g in self._collection(groups_request(self.graph), "groups")}
        return [Role(name=name, description="", entitlements=()) for name in sorted(names)]

    def lookup_identity(self, identity_id: str) -> Identity | None:
        """The user read live as an identity, or None if Graph says it does not exist."""
        user = self._get_user(identity_id)
        if user is None:
            return None
        groups: list[str] = []
        if self.options.groups:
            request = member_of_request(self.graph, identity_id)
            try:
                groups = [group_name(g) for g in self._collection(request, "groups of a user")]
            except PullError as exc:
                raise ConnectorError(self.name, _without_system(exc)) from exc
        return identity_from_user(user, inactive_status=self.options.inactive_status, groups=groups)

    def lookup_account(self, account_id: str) -> Account | None:
        """The user read live as an account, or None if Graph says it does not exist."""
        user = self._get_user(account_id)
        return None if user is None else account_from_user(user)

    def deprovision(self, account: Account, mode: Mode) -> None:
        """Not done here: Entra ID is read as an identity source only."""
        raise self._read_only(f"{mode.value} account {account.id}")

    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None:
        """Not done here: group membership is not read."""
        raise self._read_only(f"read the roles of account {account_id}")

    def remove_roles(self, account: Account, roles: Collection[str]) -> None:
        """Not done here: Entra ID is read as an identity source only."""
        raise self._read_only(f"remove roles from account {account.id}")

    def enable(self, account: Account) -> None:
        """Not done here: Entra ID is read as an identity source only."""
        raise self._read_only(f"enable account {account.id}")

    def probe(self, identity_source: bool) -> str:
        """A token, then one page of users: the app may read users if Graph lists any."""
        request = self.graph.build_request("GET", "users", params={"$select": "id", "$top": "1"})
        response = self._send_graph(request)
        if response.status_code != 200:
            raise ConnectorError(self.name, f"list users: {self._error_text(response)}")
        try:
            page = parse_collection(self._json(response))
        except ValueError as exc:
            raise ConnectorError(self.name, f"list users: not a Graph collection: {exc}") from exc
        if not page.items:
            raise ConnectorError(self.name, f"list users: {self._no_users_text()}")
        return "signed in to Microsoft Graph; users are visible"

    def close(self) -> None:
        """Close both HTTP clients."""
        self.login.close()
        self.graph.close()

    # -- Token ------------------------------------------------------------------------

    def _access_token(self) -> str:
        """The cached token, or a new one when there is none or it is due for renewal."""
        if self._token is None or self.clock() >= self._token.renew_at:
            self._token = self._fetch_token()
        return self._token.value

    def _fetch_token(self) -> Token:
        creds = self.credentials
        request = token_request(self.login, self.options.login_url, creds)
        # Asking for a token twice has no effect beyond getting two: safe to repeat.
        response = send(
            self.login,
            request,
            system=self.name,
            retry=self.retry,
            idempotent=True,
            secrets=self.secrets,
        )
        at = describe_request(request)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200:
            try:
                return parse_token(body, now=self.clock())
            except ValueError as exc:
                raise ConnectorError(
                    self.name, f"{at}: the token endpoint's answer is not a token ({exc})"
                ) from exc
        code, description = token_error(body)
        detail = server_text(f"{code}: {description}" if code else "", self.secrets)
        text = f"{at} answered {describe_status(response)}" + (f": {detail}" if detail else "")
        if code in CLIENT_ERRORS:
            text += (
                f"; the app registration {creds.client_id!r} refused its credentials: "
                f"check the client secret in environment variable {creds.secret_env} "
                "(expired or rotated?) and the client id"
            )
        elif response.status_code in (400, 404):
            text += f"; check the tenant id {creds.tenant_id!r} and the login_url"
        raise ConnectorError(self.name, redact(text, self.secrets))

    # -- Sending ----------------------------------------------------------------------

    def _send_graph(self, request: httpx.Request) -> httpx.Response:
        """Send with the current token; on a 401, once more with a fresh one."""
        response = self._send_with_token(request)
        if response.status_code != 401:
            return response
        # Graph refused a token we thought valid (clocks disagree, or it was revoked):
        # one fresh token, one more try. A second 401 is the caller's to report.
        self._token = None
        return self._send_with_token(request)

    def _send_with_token(self, request: httpx.Request) -> httpx.Response:
        request.headers["Authorization"] = f"Bearer {self._access_token()}"
        return send(self.graph, request, system=self.name, retry=self.retry, secrets=self.secrets)

    def _json(self, response: httpx.Response) -> Any:
        return read_json(response, system=self.name, secrets=self.secrets)

    # -- Users ------------------------------------------------------------------------

    def _sign_in(self) -> bool:
        return self.options.sign_in_activity and not self._sign_in_refused

    def _get_user(self, user_id: str) -> Mapping[str, Any] | None:
        request = user_request(self.graph, user_id, sign_in=self._sign_in())
        response = self._send_page(request)
        at = describe_request(request)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ConnectorError(self.name, f"read user {user_id}: {self._error_text(response)}")
        body = self._json(response)
        if not isinstance(body, dict):
            raise ConnectorError(self.name, f"{at}: the answer is not a Graph user")
        problem = id_problem(body)
        if problem or body["id"] != user_id:
            # Acting on a user Graph did not mean would be acting on someone else.
            who = describe_user(body, self.secrets)
            reason = problem or "it is another user"
            raise ConnectorError(
                self.name,
                redact(
                    f"{at}: asked for user {user_id!r}, Graph answered with {who}, but "
                    f"{reason}; nothing is done with it: check what answers for Graph",
                    self.secrets,
                ),
            )
        return body

    def _send_page(self, request: httpx.Request) -> httpx.Response:
        """Send a request for users; if Graph refuses signInActivity for want of a
        licence, send it again without it and remember not to ask again."""
        response = self._send_graph(request)
        if response.status_code != 403 or SIGN_IN_FIELD not in str(request.url.params):
            return response
        error = parse_graph_error(_body(response))
        if error is None or error.code != NON_PREMIUM_CODE:
            return response
        self._sign_in_refused = True
        log.warning(
            "%s: Microsoft Graph refused signInActivity (%s): the tenant has no Entra ID "
            "P1 licence; last sign-ins are unknown, users are read without them",
            self.name,
            NON_PREMIUM_CODE,
        )
        return self._send_graph(without_sign_in(request, self.graph))

    def _pull_users(self) -> Iterator[Mapping[str, Any]]:
        """Every user; PullError unless the list is provably all, and never empty."""
        request = users_request(self.graph, sign_in=self._sign_in())
        count = 0
        for user in self._collection(request, "users", progress=True):
            count += 1
            yield user
        if not count:
            raise PullError(self.name, f"listing users failed: {self._no_users_text()}")

    def _memberships(self) -> dict[str, set[str]]:
        """User id → the names of every group it is in, directly or through nested
        groups: one listing of the groups, then one of each group's users."""
        groups = list(self._collection(groups_request(self.graph), "groups"))
        memberships: dict[str, set[str]] = {}
        for group in groups:
            name = group_name(group)
            request = members_request(self.graph, str(group["id"]))
            shown = server_text(name, self.secrets, limit=NAME_LIMIT)
            for member in self._collection(request, f"members of group {shown!r}"):
                memberships.setdefault(str(member["id"]), set()).add(name)
        return memberships

    def _collection(
        self, request: httpx.Request, what: str, *, progress: bool = False
    ) -> Iterator[Mapping[str, Any]]:
        """Every object of a Graph collection, page by page, following nextLinks; a
        PullError unless the listing ends with a page that has no nextLink."""
        sign_in = SIGN_IN_FIELD in str(request.url.params)
        links: set[str] = set()
        seen: set[str] = set()
        while True:
            at = describe_request(request)
            failed = functools.partial(self._pull_failed, what, len(seen))
            try:
                response = self._send_page(request)
                if response.status_code != 200:
                    raise failed(self._error_text(response))
                page = parse_collection(self._json(response))
            except ValueError as exc:
                raise failed(f"{at}: the answer is not a Graph collection ({exc})") from exc
            except PullError:
                raise
            except ConnectorError as exc:
                raise failed(_without_system(exc)) from exc
            for item in page.items:
                self._check_item(item, seen, what, at)
            yield from page.items
            if progress and self.on_page is not None:
                self.on_page(len(page.items))
            if page.next_link is None:
                return
            request = self._next_request(page.next_link, links, what, len(seen), at)
            if sign_in and self._sign_in_refused:
                request = without_sign_in(request, self.graph)

    def _check_item(self, item: Mapping[str, Any], seen: set[str], what: str, at: str) -> None:
        problem = id_problem(item)
        if problem:
            who = describe_user(item, self.secrets, "user" if what == "users" else "object")
            raise self._pull_failed(
                what,
                len(seen),
                f"{at}: {who}: {problem}; an object that cannot be told apart from others "
                "is never imported: check what answers for Graph",
            )
        item_id = str(item["id"])
        if item_id in seen:
            raise self._pull_failed(
                what,
                len(seen),
                f"{at}: Graph listed {item_id} twice (the directory changed during "
                "the pull, or paging went wrong); run the pull again",
            )
        seen.add(item_id)

    def _next_request(
        self, link: str, links: set[str], what: str, read: int, at: str
    ) -> httpx.Request:
        """The request for a nextLink; PullError if it repeats or leaves Graph's host."""
        if link in links:
            raise self._pull_failed(
                what,
                read,
                f"{at}: Graph sent the same @odata.nextLink twice; paging would never end",
            )
        links.add(link)
        try:
            url = httpx.URL(link)
        except httpx.InvalidURL as exc:
            raise self._pull_failed(what, read, f"{at}: @odata.nextLink is not a URL") from exc
        if not same_origin(url, self.graph.base_url):
            # The bearer token goes with the request: never to a host we were not given.
            shown = server_text(f"{url.scheme}://{url.host}", self.secrets, limit=NAME_LIMIT)
            raise self._pull_failed(
                what,
                read,
                f"{at}: @odata.nextLink points at {shown}, not at graph_url "
                f"{self.options.graph_url}; the token is not sent there",
            )
        return next_page_request(self.graph, link, sign_in=SIGN_IN_FIELD in link)

    # -- Messages ---------------------------------------------------------------------

    def _pull_failed(self, what: str, read: int, reason: str) -> PullError:
        if not read:
            return PullError(self.name, redact(f"listing {what} failed: {reason}", self.secrets))
        message = (
            f"listing {what} stopped after {read}: {reason}; nothing from this pull may be used"
        )
        return PartialPullError(self.name, redact(message, self.secrets))

    def _no_users_text(self) -> str:
        return (
            "Microsoft Graph answered with no users at all, which would read as "
            "everyone having left; the app registration "
            f"{self.credentials.client_id!r} probably lacks the User.Read.All application "
            "permission with admin consent: grant it, or check tenant_id"
        )

    def _error_text(self, response: httpx.Response) -> str:
        text = f"{describe_request(response.request)} answered {describe_status(response)}"
        error = parse_graph_error(_body(response))
        if error is not None:
            detail = f"{error.code}: {error.message}".strip(": ")
            text += f": {server_text(detail, self.secrets)}"
            if error.request_id:
                text += f" (request-id {server_text(error.request_id, self.secrets)})"
        env = self.credentials.secret_env
        if response.status_code == 401:
            text += (
                f"; Graph refused a fresh token too: check the client secret in "
                f"environment variable {env} and that the app registration is enabled"
            )
        elif response.status_code == 403:
            needs = "User.Read.All"
            if "group" in response.request.url.path.lower():
                needs += " and GroupMember.Read.All (for groups)"
            if SIGN_IN_FIELD in str(response.request.url.params):
                needs += " and AuditLog.Read.All (for sign_in_activity)"
            text += (
                f"; the app registration {self.credentials.client_id!r} lacks a "
                f"permission: grant it {needs} as application permissions, with admin "
                "consent"
            )
        return redact(text, (*self.secrets, *request_secrets(response.request)))

    def _read_only(self, action: str) -> ConnectorError:
        return ConnectorError(
            self.name,
            f"{action}: the entra connector only reads Entra ID as an identity source; "
            "do this in the Entra admin center",
        )


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _without_system(error: ConnectorError) -> str:
    return str(error).removeprefix(f"{error.system}: ")


def _setting(context: ConnectorContext, value: str | None, variable: str | None, what: str) -> str:
    if value:
        return value
    found = secret_from_env(context, variable, what)
    assert found is not None  # EntraOptions requires one of the two
    return found.strip()


def build(context: ConnectorContext) -> Connector:
    """An EntraConnector from a system's section of reconciler.yaml."""
    options = EntraOptions.from_mapping(context.name, context.options)
    secret = secret_from_env(context, options.client_secret_env, "the app's client secret")
    assert secret is not None
    credentials = Credentials(
        tenant_id=_setting(context, options.tenant_id, options.tenant_id_env, "the tenant id"),
        client_id=_setting(context, options.client_id, options.client_id_env, "the client id"),
        client_secret=secret,
        secret_env=options.client_secret_env,
    )
    headers = {"Accept": "application/json"}
    login = build_client(
        context.name, options.login_url, token=None, timeout=options.timeout, headers=headers
    )
    graph = build_client(
        context.name,
        f"{options.graph_url}/v1.0",
        token=None,
        timeout=options.timeout,
        headers=headers,
    )
    return EntraConnector(
        context.name, login=login, graph=graph, options=options, credentials=credentials
    )


TYPE = ConnectorType(
    name="entra",
    options_schema=OPTIONS_SCHEMA,
    build=build,
    secret_env_options=("client_secret_env",),
    description="Microsoft Entra ID (Azure AD) users through Microsoft Graph, as an "
    "identity source.",
)
