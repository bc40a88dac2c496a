"""Okta as an identity source, through its management API (`/api/v1`).

**Who is listed.** `GET /api/v1/users` without a query leaves DEPROVISIONED users out,
and a leaver who is simply absent would read as a person who vanished. The connector
therefore lists with a `filter` naming every status of Okta's UserStatus
(`status eq "STAGED" or … or status eq "DEPROVISIONED"`): `filter` rather than
`search`, because Okta serves `search` from an eventually consistent copy while
`filter` reads current data. A filter that names statuses would silently drop a user in
any other one (the transitional ACTIVATING, or a status Okta adds one day), so a second
listing asks for exactly those, by `search` with Okta's documented stand-in for "not
equal" (`status lt "ACTIVE" or (status gt "ACTIVE" and status lt "DEPROVISIONED") or …
or status gt "SUSPENDED"`): normally one request and an empty page. A user it finds is
kept (unless the first listing had it already: its status changed between the two
reads, and the first read stands).

**Statuses.** Okta's eight user statuses (and the transitional ACTIVATING, which
Okta's description mentions but does not list) become ours:

| Okta status        | identity status | why                                            |
|--------------------|-----------------|------------------------------------------------|
| STAGED             | active          | created, not yet activated: a joiner           |
| PROVISIONED        | active          | activated, waiting for the user to set up      |
| ACTIVATING         | active          | being activated (transitional)                 |
| ACTIVE             | active          |                                                |
| RECOVERY           | active          | resetting a password: still employed           |
| LOCKED_OUT         | active          | too many failed sign-ins: still employed       |
| PASSWORD_EXPIRED   | active          | must change a password: still employed         |
| SUSPENDED          | suspended       | an admin suspended the user                    |
| DEPROVISIONED      | deprovisioned   | deactivated: the leaver                        |

A status outside this table fails the pull (or the lookup) with a message naming it:
guessing could make a leaver look active, or the reverse. `transitioningToStatus` is
not read: a user being deactivated is deprovisioned once Okta says so, at the next pull.
`statusChanged` becomes `status_changed_at` for suspended and deprovisioned users (when
they left); for active ones it is left out, as Okta moves it when an active user is,
say, locked out and unlocked. `lastLogin` is kept on accounts (`pull_accounts`) only:
identities carry no last sign-in. The profile's `login`, `email`, `displayName` (else
`firstName lastName`), `department` and `title` fill the identity.

**Paging.** Pages of `page_size` (≤ 200, Okta's maximum) are followed by the `after`
cursor of the `Link: <…>; rel="next"` header, taken from that link and never computed;
only the cursor is taken, so the token is never sent to whatever host a link names.
Okta gives no total: a pull is complete when a page comes without a next link. A next
link without a cursor, a cursor seen before, a user listed twice, a body that is not a
list of users, or a user without a usable id fails the pull.

**No users at all** fails the pull: a working org always has one (the token's own
admin), and Okta answers a token whose admin lacks an admin role with 200 and an empty
list, which must never read as "everyone left". (A token of an admin whose role covers
only some users lists only those: the check's shrink guard is what catches that.)

**Groups** (option `groups`, off by default) are read as `GET /api/v1/groups` and then
`GET /api/v1/groups/{id}/users` for each group: one listing per group (the built-in
Everyone costs as many pages as the users), rather than `GET
/api/v1/users/{id}/groups`, which would cost one request per user. Identities and
accounts then carry group names (`profile.name`), and `pull_roles` lists the groups.
A group listing without the built-in Everyone fails the pull: Okta hides it from a
Group Administrator's token, which sees only some groups, and partial memberships
would make role rules take roles from people who hold them. With `groups`, live lookups
also read `GET /api/v1/users/{id}/groups`, one request.

**Rate limits.** `http.send` retries a 429 after `X-Rate-Limit-Reset` (the connector
lets it wait up to a minute, Okta's window). Before it comes to that, when an answer's
`X-Rate-Limit-Remaining` falls to `rate_limit_reserve` of `X-Rate-Limit-Limit` (or to
0), the next request waits until the window resets, reckoned by Okta's own `Date`
header when present (so a skewed local clock does not matter) and never longer than a
minute. That leaves the rest of the window to the org's other integrations. Okta
counts per endpoint; the wait holds the connector's next request whatever its
endpoint, which can only be slower, never over the limit.

**Credentials.** An API token from the environment variable `token_env` names, sent as
`Authorization: SSWS <token>` (Okta's scheme, not Bearer); it is redacted from every
message. A 401 (E0000011) says the token is invalid, expired or revoked.

The connector only reads: it declares no deprovisioning modes.
"""

from __future__ import annotations

import email.utils
import functools
import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

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
    describe_status,
    http_options,
    redact,
    request_secrets,
    retry_policy,
    send,
    server_text,
)
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.model import Account, Identity, IdentityStatus, Role, clean_text

log = logging.getLogger(__name__)

USERS_PATH = "/api/v1/users"
GROUPS_PATH = "/api/v1/groups"

# Okta's user statuses → ours (the table in the module docstring).
STATUSES: dict[str, IdentityStatus] = {
    "STAGED": "active",
    "PROVISIONED": "active",
    "ACTIVATING": "active",
    "ACTIVE": "active",
    "RECOVERY": "active",
    "LOCKED_OUT": "active",
    "PASSWORD_EXPIRED": "active",
    "SUSPENDED": "suspended",
    "DEPROVISIONED": "deprovisioned",
}
# The statuses Okta's UserStatus enum lists, which the listing asks for by name: the
# default listing leaves DEPROVISIONED out. ACTIVATING is not in the enum.
LISTED_STATUSES = (
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "LOCKED_OUT",
    "PASSWORD_EXPIRED",
    "SUSPENDED",
    "DEPROVISIONED",
)
EVERY_STATUS_FILTER = " or ".join(f'status eq "{status}"' for status in LISTED_STATUSES)


def _other_status_search(known: Collection[str]) -> str:
    # Okta's search has no `ne`; its documentation gives `(status lt "X" or status gt
    # "X")` for "not X". Every status outside `known` falls in one of the gaps between
    # them in sorted order.
    ordered = sorted(known)
    gaps = [f'status lt "{ordered[0]}"']
    gaps += [f'(status gt "{a}" and status lt "{b}")' for a, b in itertools.pairwise(ordered)]
    gaps.append(f'status gt "{ordered[-1]}"')
    return " or ".join(gaps)


# Users in any status the filter does not name: ACTIVATING, or one Okta adds one day.
OTHER_STATUS_SEARCH = _other_status_search(LISTED_STATUSES)

R = TypeVar("R", Identity, Account)
# `identity_from_user` or `account_from_user`.
Convert = Callable[[Mapping[str, Any], Collection[str]], R]

MAX_PAGE_SIZE = 200  # Okta's maximum `limit` for users
# Okta's rate-limit windows are a minute long: never wait longer for one to reset.
MAX_RATE_WAIT = 60.0
NAME_LIMIT = 80

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "token_env"],
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "The Okta org URL, e.g. https://acme.okta.com (no path: "
            "/api/v1/... is requested under it).",
        },
        "token_env": {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "Name of the environment variable holding an Okta API token "
            "(sent as `Authorization: SSWS <token>`). The admin who made it needs an admin "
            "role that can read users, e.g. Read-only Administrator.",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "default": MAX_PAGE_SIZE,
            "description": "Users asked for per page (`limit`); Okta's maximum is 200.",
        },
        "groups": {
            "type": "boolean",
            "default": False,
            "description": "Read group membership (GET /api/v1/groups, then each group's "
            "users: one listing per group) so identities carry group names for role rules.",
        },
        "rate_limit_reserve": {
            "type": "number",
            "minimum": 0,
            "maximum": 0.9,
            "default": 0.1,
            "description": "Share of each rate-limit window left to the org's other "
            "integrations: when X-Rate-Limit-Remaining falls to this share of "
            "X-Rate-Limit-Limit, wait for the window to reset. 0 waits only when the "
            "window is used up.",
        },
        **http_options("Okta"),
    },
}


@dataclass(frozen=True)
class OktaOptions:
    """The validated options of one Okta org, with defaults applied."""

    url: str
    token_env: str
    timeout: float = 30.0
    page_size: int = MAX_PAGE_SIZE
    groups: bool = False
    rate_limit_reserve: float = 0.1
    max_retries: int = 4
    max_requests_per_second: float | None = None

    @classmethod
    def from_mapping(cls, system: str, options: Mapping[str, Any]) -> OktaOptions:
        """Options with defaults applied; reconciler.yaml was validated against
        OPTIONS_SCHEMA already, but an unknown key, a missing url or token_env, and an
        org URL with a path are checked again for callers that build directly."""
        examples = {"url": "e.g. https://acme.okta.com", "token_env": "e.g. OKTA_TOKEN"}
        check_options(system, "okta", options, OPTIONS_SCHEMA, examples)
        url = options["url"]
        try:
            path = httpx.URL(url).path
        except httpx.InvalidURL as exc:
            raise ConfigError(f"{system}: url {url!r} is not a valid URL: {exc}") from exc
        if path.strip("/"):
            raise ConfigError(
                f"{system}: url {url!r} has a path; give the Okta org URL alone, "
                "e.g. https://acme.okta.com"
            )
        return cls(
            url=url,
            token_env=options["token_env"],
            timeout=float(options.get("timeout", 30)),
            page_size=int(options.get("page_size", MAX_PAGE_SIZE)),
            groups=bool(options.get("groups", False)),
            rate_limit_reserve=float(options.get("rate_limit_reserve", 0.1)),
            max_retries=int(options.get("max_retries", 4)),
            max_requests_per_second=options.get("max_requests_per_second"),
        )


# ---------------------------------------------------------------------------------------
# Requests


def users_request(client: httpx.Client, *, limit: int, after: str | None) -> httpx.Request:
    """One page of every user, DEPROVISIONED included (`EVERY_STATUS_FILTER`)."""
    params = {"limit": str(limit), "filter": EVERY_STATUS_FILTER}
    if after is not None:
        params["after"] = after
    return client.build_request("GET", USERS_PATH, params=params)


def other_statuses_request(client: httpx.Client, *, limit: int, after: str | None) -> httpx.Request:
    """One page of the users in a status `EVERY_STATUS_FILTER` does not name
    (`OTHER_STATUS_SEARCH`); normally none."""
    params = {"limit": str(limit), "search": OTHER_STATUS_SEARCH}
    if after is not None:
        params["after"] = after
    return client.build_request("GET", USERS_PATH, params=params)


def groups_request(client: httpx.Client, *, limit: int, after: str | None) -> httpx.Request:
    """One page of every group."""
    return client.build_request("GET", GROUPS_PATH, params=_page_params(limit, after))


def group_users_request(
    client: httpx.Client, group_id: str, *, limit: int, after: str | None
) -> httpx.Request:
    """One page of a group's users."""
    path = f"{GROUPS_PATH}/{quote(group_id, safe='')}/users"
    return client.build_request("GET", path, params=_page_params(limit, after))


def user_request(client: httpx.Client, user_id: str) -> httpx.Request:
    """One user. Okta also takes a login here: callers check the id that comes back."""
    return client.build_request("GET", f"{USERS_PATH}/{quote(user_id, safe='')}")


def user_groups_request(client: httpx.Client, user_id: str) -> httpx.Request:
    """The groups of one user (not paged)."""
    return client.build_request("GET", f"{USERS_PATH}/{quote(user_id, safe='')}/groups")


def _page_params(limit: int, after: str | None) -> dict[str, str]:
    params = {"limit": str(limit)}
    if after is not None:
        params["after"] = after
    return params


# ---------------------------------------------------------------------------------------
# Responses


def next_cursor(response: httpx.Response) -> str | None:
    """The `after` cursor of the response's `Link: <…>; rel="next"`, or None when there
    is no next link (the last page). ValueError for a next link without a cursor."""
    link = response.links.get("next")
    if link is None:
        return None
    try:
        after = httpx.URL(link.get("url", "")).params.get("after")
    except httpx.InvalidURL as exc:
        raise ValueError(f"its next link is not a URL ({exc})") from exc
    if not isinstance(after, str) or not after:
        raise ValueError("its next link has no `after` cursor")
    return after


def parse_list(body: object) -> list[Mapping[str, Any]]:
    """A listing's body: a JSON array of objects; ValueError if it is not one."""
    if not isinstance(body, list):
        kind = "an object" if isinstance(body, dict) else type(body).__name__
        raise ValueError(f"the answer is {kind}, not a list")
    if not all(isinstance(item, dict) for item in body):
        raise ValueError("an item of the list is not an object")
    return body


def id_problem(resource: Mapping[str, Any]) -> str | None:
    """Why the resource's `id` cannot be used as its id, or None if it can: a missing,
    empty or non-string id, or one that storing would change, would be kept (and
    matched) as some other id."""
    value = resource.get("id")
    if value is None:
        return "it has no id"
    if not isinstance(value, str):
        return "its id is not a string"
    if not value.strip():
        return "its id is empty"
    if clean_text(value) != value:
        return "its id holds characters that cannot be stored unchanged"
    return None


def identity_status(user: Mapping[str, Any]) -> IdentityStatus:
    """Our status for an Okta user (the table in the module docstring); ValueError for
    a status outside it."""
    status = user.get("status")
    if isinstance(status, str) and status in STATUSES:
        return STATUSES[status]
    shown = repr(status)[:NAME_LIMIT] if isinstance(status, str) else "missing"
    raise ValueError(
        f"its status is {shown}, which this connector does not know; rather than guess "
        "whether the person left, nothing is read: report the status to reconciler's "
        "maintainers"
    )


def _profile(user: Mapping[str, Any]) -> Mapping[str, Any]:
    profile = user.get("profile")
    return profile if isinstance(profile, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def display_name(profile: Mapping[str, Any]) -> str:
    """`displayName`, else `firstName lastName`."""
    if _text(profile.get("displayName")).strip():
        return _text(profile["displayName"])
    parts = [_text(profile.get(key)).strip() for key in ("firstName", "lastName")]
    return " ".join(part for part in parts if part)


def identity_from_user(user: Mapping[str, Any], groups: Collection[str] = ()) -> Identity:
    """An Okta user as an Identity; ValueError for an unusable id or an unknown status."""
    problem = id_problem(user)
    if problem:
        raise ValueError(problem)
    status = identity_status(user)
    profile = _profile(user)
    return Identity.build(
        id=user["id"],
        email=_text(profile.get("email")),
        username=_text(profile.get("login")),
        display_name=display_name(profile),
        status=status,
        groups=groups,
        status_changed_at="" if status == "active" else user.get("statusChanged"),
        department=_text(profile.get("department")),
        title=_text(profile.get("title")),
    )


def account_from_user(user: Mapping[str, Any], groups: Collection[str] = ()) -> Account:
    """An Okta user as an account of Okta itself: active when its identity would be,
    else disabled; its groups as roles; `lastLogin` as its last sign-in."""
    identity = identity_from_user(user, groups)
    return Account.build(
        id=identity.id,
        username=identity.username,
        email=identity.email,
        display_name=identity.display_name,
        status="active" if identity.status == "active" else "disabled",
        type="human",
        roles=identity.groups,
        last_login=user.get("lastLogin") or "",
    )


def group_name(group: Mapping[str, Any]) -> str:
    """A group's `profile.name`, else its id."""
    profile = group.get("profile")
    name = profile.get("name") if isinstance(profile, dict) else None
    return name if isinstance(name, str) and name.strip() else str(group.get("id"))


def okta_error_detail(response: httpx.Response, secrets: Iterable[str] = ()) -> str:
    """`errorSummary (errorCode E…, errorId …): causes` from Okta's error body, or ''.
    The server's text is redacted (the request's own credentials included), then cut."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    summary = _text(body.get("errorSummary")).strip()
    code = _text(body.get("errorCode")).strip()
    error_id = _text(body.get("errorId")).strip()
    causes = [
        _text(cause.get("errorSummary")).strip()
        for cause in body.get("errorCauses") or []
        if isinstance(cause, dict)
    ]
    ids = [f"errorCode {code}"] if code else []
    ids += [f"errorId {error_id}"] if error_id else []
    text = summary + (f" ({', '.join(ids)})" if ids else "")
    if any(causes):
        text += ": " + "; ".join(cause for cause in causes if cause)
    return server_text(text.strip(), (*secrets, *request_secrets(response.request)))


@dataclass(frozen=True)
class RateLimit:
    """What an answer's X-Rate-Limit headers say."""

    limit: int
    remaining: int
    reset: float  # Unix time the window resets

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> RateLimit | None:
        """The three headers, or None when one is absent or not a number."""
        try:
            return cls(
                limit=int(headers["X-Rate-Limit-Limit"]),
                remaining=int(headers["X-Rate-Limit-Remaining"]),
                reset=float(headers["X-Rate-Limit-Reset"]),
            )
        except (KeyError, ValueError):
            return None


def rate_limit_wait(headers: httpx.Headers, *, reserve: float, now: float) -> float:
    """Seconds to wait before the next request so that `reserve` (a share) of the
    window's requests stays with others; 0 when enough remain or the headers do not say.
    The reset is compared with the answer's own `Date` when it has one (Okta's clock),
    else with `now` (ours); the wait is at most one window (`MAX_RATE_WAIT`)."""
    rate = RateLimit.from_headers(headers)
    if rate is None or rate.limit <= 0:
        return 0.0
    if rate.remaining > math.ceil(rate.limit * reserve) and rate.remaining > 0:
        return 0.0
    server_now = now
    date = headers.get("Date")
    if date:
        try:
            server_now = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            server_now = now
    return min(max(rate.reset - server_now, 0.0), MAX_RATE_WAIT)


# ---------------------------------------------------------------------------------------
# The connector


class OktaConnector:
    """An Okta org as an identity source (and, read-only, as an app whose accounts are
    Okta's users).

    `on_page`, when set, is called after each page of users with its size (progress).
    """

    modes: frozenset[Mode] = frozenset()

    def __init__(
        self,
        name: str,
        client: httpx.Client,
        options: OktaOptions,
        *,
        retry: RetryPolicy | None = None,
        secrets: Iterable[str] = (),
        on_page: PageCallback | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.options = options
        # A 429's X-Rate-Limit-Reset may be up to a window away: wait for it in full.
        self.retry = retry or retry_policy(
            options.max_retries, options.max_requests_per_second, max_delay=MAX_RATE_WAIT
        )
        self.secrets = tuple(secrets)
        self.on_page = on_page
        # When the next request may go (`retry.clock` time), by the last rate-limit headers.
        self._resume_at = 0.0

    def __repr__(self) -> str:
        return f"OktaConnector({self.name!r}, url={self.options.url!r})"

    # -- Connector --------------------------------------------------------------------

    def pull_identities(self) -> Iterator[Identity]:
        """Every user, DEPROVISIONED included, as an Identity (with group names when
        `groups` is on)."""
        return self._pull_converted(identity_from_user)

    def pull_accounts(self) -> Iterator[Account]:
        """Every user as an account of Okta itself, with its last sign-in."""
        return self._pull_converted(account_from_user)

    def pull_roles(self) -> list[Role]:
        """The groups as roles, sorted by name, when `groups` is on; else none."""
        if not self.options.groups:
            return []
        names = {clean_text(group_name(group)) for group in self._pull_groups()}
        return [Role(name=name) for name in sorted(names)]

    def lookup_identity(self, identity_id: str) -> Identity | None:
        """The user read live (`GET /api/v1/users/{id}`), or None if Okta says 404."""
        user = self._get_user(identity_id)
        return None if user is None else self._convert_live(identity_from_user, user)

    def lookup_account(self, account_id: str) -> Account | None:
        """The user read live as an account, or None if Okta says 404."""
        user = self._get_user(account_id)
        return None if user is None else self._convert_live(account_from_user, user)

    def deprovision(self, account: Account, mode: Mode) -> None:
        """Never: the connector only reads Okta."""
        raise self._read_only(f"{getattr(mode, 'value', mode)} account {account.id}")

    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None:
        """The user's groups read live (empty without `groups`), or None if gone."""
        account = self.lookup_account(account_id)
        return None if account is None else account.roles

    def remove_roles(self, account: Account, roles: Collection[str]) -> None:
        """Never: the connector only reads Okta."""
        raise self._read_only(f"take roles from account {account.id}")

    def enable(self, account: Account) -> None:
        """Never: the connector only reads Okta."""
        raise self._read_only(f"enable account {account.id}")

    def probe(self, identity_source: bool) -> str:
        """One user asked for (and one group, with `groups`): the token must see one,
        as a pull of none fails; says how much of the rate-limit window is left."""
        response = self._send(users_request(self.client, limit=1, after=None))
        if response.status_code != 200:
            raise ConnectorError(self.name, f"list users: {self._error_text(response)}")
        try:
            users = parse_list(self._json(response))
        except ValueError as exc:
            raise ConnectorError(self.name, f"list users: {exc}") from exc
        if not users:
            raise ConnectorError(self.name, self._no_users_text())
        seen = "the token reads users"
        if self.options.groups:
            groups = self._send(groups_request(self.client, limit=1, after=None))
            if groups.status_code != 200:
                raise ConnectorError(self.name, f"list groups: {self._error_text(groups)}")
            seen += " and groups"
        rate = RateLimit.from_headers(response.headers)
        if rate is not None:
            seen += f"; {rate.remaining} of {rate.limit} requests left in this minute's window"
        return seen

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    # -- Internals --------------------------------------------------------------------

    def _send(self, request: httpx.Request) -> httpx.Response:
        # Wait first if the last answer left too little of its rate-limit window, so that
        # the last page of a pull costs no wait.
        pause = self._resume_at - self.retry.clock()
        if pause > 0:
            log.info(
                "%s: few requests left in Okta's rate-limit window; waiting %.1fs for it "
                "to reset before %s",
                self.name,
                pause,
                describe(request),
            )
            self.retry.sleep(pause)
        response = send(
            self.client, request, system=self.name, retry=self.retry, secrets=self.secrets
        )
        now = self.retry.clock()
        wait = rate_limit_wait(response.headers, reserve=self.options.rate_limit_reserve, now=now)
        self._resume_at = now + wait
        return response

    def _json(self, response: httpx.Response) -> object:
        try:
            return response.json()
        except ValueError as exc:
            snippet = server_text(response.text, self._hidden(response.request))
            raise ValueError(f"the answer is not JSON ({snippet!r})") from exc

    def _hidden(self, request: httpx.Request) -> tuple[str, ...]:
        return (*self.secrets, *request_secrets(request))

    def _convert_live(self, convert: Convert[R], user: Mapping[str, Any]) -> R:
        groups = self._user_groups(str(user["id"])) if self.options.groups else ()
        try:
            return convert(user, groups)
        except ValueError as exc:
            who = describe_user(user, self.secrets)
            raise ConnectorError(self.name, redact(f"read {who}: {exc}", self.secrets)) from exc

    def _pull_converted(self, convert: Convert[R]) -> Iterator[R]:
        """Every user converted, memberships first; a user that cannot be converted (an
        unknown status) fails the pull."""
        memberships = self._memberships()
        for read, user in enumerate(self._pull_users()):
            try:
                yield convert(user, memberships.get(str(user["id"]), ()))
            except ValueError as exc:
                who = describe_user(user, self.secrets)
                reason = f"{who} ({user['id']}): {exc}"
                raise self._pull_failed("users", read, reason) from exc

    def _get_user(self, user_id: str) -> Mapping[str, Any] | None:
        request = user_request(self.client, user_id)
        response = self._send(request)
        if response.status_code == 404:
            return None
        at = describe(request)
        if response.status_code != 200:
            raise ConnectorError(self.name, f"read user {user_id}: {self._error_text(response)}")
        try:
            body = self._json(response)
        except ValueError as exc:
            raise ConnectorError(self.name, f"{at}: {exc}") from exc
        if not isinstance(body, dict):
            raise ConnectorError(self.name, f"{at}: the answer is not an Okta user")
        problem = id_problem(body)
        if problem:
            who = describe_user(body, self._hidden(request))
            raise ConnectorError(self.name, redact(f"{at}: {who}: {problem}", self.secrets))
        if body["id"] != user_id:
            # Okta answers a login (or `me`) with that user: acting on the user it sent
            # instead of the one asked for would be acting on someone else.
            who = describe_user(body, self._hidden(request))
            raise ConnectorError(
                self.name,
                redact(
                    f"{at}: asked for user {user_id!r}, Okta answered with another user "
                    f"({who}); ids are Okta's user ids (00u…), not logins",
                    self.secrets,
                ),
            )
        return body

    def _user_groups(self, user_id: str) -> list[str]:
        request = user_groups_request(self.client, user_id)
        response = self._send(request)
        if response.status_code != 200:
            raise ConnectorError(
                self.name, f"read the groups of user {user_id}: {self._error_text(response)}"
            )
        try:
            groups = parse_list(self._json(response))
        except ValueError as exc:
            raise ConnectorError(self.name, f"{describe(request)}: {exc}") from exc
        return [group_name(group) for group in groups]

    def _memberships(self) -> dict[str, set[str]]:
        """User id → names of its groups, read group by group; empty without `groups`."""
        memberships: dict[str, set[str]] = defaultdict(set)
        if not self.options.groups:
            return memberships
        for group in list(self._pull_groups()):
            name = group_name(group)
            path = f"{GROUPS_PATH}/{group['id']}/users"
            what = f"the users of group {server_text(name, self.secrets, limit=NAME_LIMIT)!r}"
            for member in self._pull(
                functools.partial(group_users_request, self.client, str(group["id"])),
                what=what,
                kind="user",
                endpoint=path,
            ):
                memberships[str(member["id"])].add(name)
        return memberships

    def _pull_groups(self) -> Iterator[Mapping[str, Any]]:
        """Every group; PullError when the built-in Everyone is not among them: Okta
        hides it only from a token whose admin holds a group-scoped role (or none), which
        sees only some groups, so the memberships read would be partial."""
        built_in = False
        for group in self._pull(
            functools.partial(groups_request, self.client),
            what="groups",
            kind="group",
            endpoint=GROUPS_PATH,
        ):
            built_in = built_in or group.get("type") == "BUILT_IN"
            yield group
        if not built_in:
            raise PullError(
                self.name,
                "Okta's group listing lacks the built-in group Everyone, which it hides "
                "from tokens whose admin may see only some groups (a Group Administrator) "
                "or none: group memberships read this way would be partial. Give the admin "
                f"who created the token in {self.options.token_env} an admin role over the "
                "whole org (Read-only Administrator is enough), or set `groups: false`. "
                "Nothing from this pull is used",
            )

    def _pull_users(self) -> Iterator[Mapping[str, Any]]:
        """Every user: the listing of the statuses Okta documents, then the users in any
        other status (a search, normally empty), so that none can drop out unseen."""
        seen: set[str] = set()
        for user in self._pull(
            functools.partial(users_request, self.client),
            what="users",
            kind="user",
            endpoint=USERS_PATH,
            progress=True,
        ):
            seen.add(str(user["id"]))
            yield user
        for user in self._pull(
            functools.partial(other_statuses_request, self.client),
            what="users in other statuses",
            kind="user",
            endpoint=USERS_PATH,
            progress=True,
        ):
            # Listed already: its status changed between the two reads; the first stands.
            if str(user["id"]) not in seen:
                seen.add(str(user["id"]))
                yield user
        if not seen:
            raise PullError(self.name, self._no_users_text())

    def _pull(
        self,
        page_request: Callable[..., httpx.Request],
        *,
        what: str,
        kind: str,
        endpoint: str,
        progress: bool = False,
    ) -> Iterator[Mapping[str, Any]]:
        """Every item of a listing, page by page, following the next link's cursor;
        PullError when the listing cannot be shown complete."""
        seen: set[str] = set()
        cursors: set[str] = set()
        after: str | None = None
        while True:
            request = page_request(limit=self.options.page_size, after=after)
            at = describe(request)
            failed = functools.partial(self._pull_failed, what, len(seen))
            try:
                response = self._send(request)
            except ConnectorError as exc:
                raise failed(str(exc).removeprefix(f"{exc.system}: ")) from exc
            if response.status_code != 200:
                raise failed(self._error_text(response))
            try:
                items = parse_list(self._json(response))
                after = next_cursor(response)
            except ValueError as exc:
                raise failed(f"{at}: {exc}") from exc
            for item in items:
                problem = id_problem(item)
                if problem:
                    who = describe_user(item, self._hidden(request)) if kind == "user" else kind
                    raise failed(
                        f"{at}: {who}: {problem}; a record that cannot be told apart from "
                        "others is never imported or acted on: fix it in Okta, then pull again"
                    )
                item_id = str(item["id"])
                if item_id in seen:
                    raise failed(
                        f"{at}: Okta listed {kind} {item_id} twice (the data changed under "
                        "the pull, or the cursor went back); run the pull again"
                    )
                seen.add(item_id)
            yield from items
            if progress and self.on_page is not None:
                self.on_page(len(items))
            if after is None:
                return
            if after in cursors:
                raise failed(
                    f"{at}: the next link of {endpoint} gave a cursor already followed; "
                    "the listing would never end"
                )
            cursors.add(after)

    def _pull_failed(self, what: str, read: int, reason: str) -> PullError:
        if not read:
            return PullError(self.name, redact(f"listing {what} failed: {reason}", self.secrets))
        message = (
            f"listing {what} stopped after {read}: {reason}; nothing from this pull may be used"
        )
        return PartialPullError(self.name, redact(message, self.secrets))

    def _no_users_text(self) -> str:
        return (
            "Okta listed no users at all, which a working org never does (the token's own "
            "admin is a user): Okta answers a token whose admin holds no admin role with an "
            "empty list instead of an error. Give the admin who created the token in "
            f"{self.options.token_env} an admin role that can read users (Read-only "
            "Administrator is enough), or use a token of such an admin. Nothing from this "
            "pull is used"
        )

    def _error_text(self, response: httpx.Response) -> str:
        text = f"{describe(response.request)} answered {describe_status(response)}"
        detail = okta_error_detail(response, self.secrets)
        if detail:
            text += f": {detail}"
        if response.status_code == 401:
            text += (
                f"; the API token in {self.options.token_env} is invalid, expired or revoked "
                "(Okta expires tokens unused for 30 days): create a new one and export it there"
            )
        elif response.status_code == 403:
            text += (
                f"; the admin who created the token in {self.options.token_env} lacks an admin "
                "role that may read this (Read-only Administrator is enough)"
            )
        elif response.status_code == 400:
            text += "; Okta refused the request as asked: report it to reconciler's maintainers"
        return redact(text, self._hidden(response.request))

    def _read_only(self, action: str) -> ConnectorError:
        return ConnectorError(
            self.name,
            f"cannot {action}: the okta connector only reads Okta (an identity source); "
            "deactivate or change the user in Okta itself",
        )


def describe(request: httpx.Request) -> str:
    """`GET /api/v1/users?limit=200&after=… (filter: every status)`: enough to find the
    call in Okta's system log, without the long status expressions it always carries."""
    kept = [(k, v) for k, v in request.url.params.multi_items() if k not in ("filter", "search")]
    text = f"{request.method} {request.url.path}"
    if kept:
        text += "?" + urlencode(kept, quote_via=quote)
    for key, expression, label in (
        ("filter", EVERY_STATUS_FILTER, "every status"),
        ("search", OTHER_STATUS_SEARCH, "other statuses"),
    ):
        value = request.url.params.get(key)
        if value is not None:
            text += f" ({key}: {label if value == expression else value})"
    return text


def describe_user(user: Mapping[str, Any], secrets: Iterable[str]) -> str:
    """`user with login 'alice@acme.com'`: a user named for people by what Okta sent
    (redacted, then cut)."""
    login = _profile(user).get("login")
    if isinstance(login, str) and login.strip():
        return f"user with login {server_text(login, secrets, limit=NAME_LIMIT)!r}"
    return "a user without a login"


def okta_client(
    system: str, options: OktaOptions, token: str, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The HTTP client for one org: JSON, and the token under Okta's own scheme,
    `Authorization: SSWS <token>` (not Bearer, so `build_client` gets no token and the
    header is set here; `send` redacts it all the same). `transport` is for tests."""
    return build_client(
        system,
        options.url,
        token=None,
        timeout=options.timeout,
        headers={"Accept": "application/json", "Authorization": f"SSWS {token}"},
        transport=transport,
    )


def build(context: ConnectorContext) -> Connector:
    """An OktaConnector from a system's section of reconciler.yaml."""
    options = OktaOptions.from_mapping(context.name, context.options)
    token = secret_from_env(context, options.token_env, "the Okta API token")
    assert token is not None  # token_env is required
    client = okta_client(context.name, options, token)
    return OktaConnector(context.name, client, options, secrets=(token,))


TYPE = ConnectorType(
    name="okta",
    options_schema=OPTIONS_SCHEMA,
    build=build,
    secret_env_options=("token_env",),
    description="An Okta org's users (management API), as an identity source.",
)
