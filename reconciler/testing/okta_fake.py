"""A small stateful fake of Okta's management API (users and groups), for tests of the
`okta` connector.

Users, their statuses and profiles, groups and memberships are state, not canned
answers: a test changes a user's status and the next listing shows it. Answers follow
Okta's published OpenAPI description (`okta/okta-management-openapi-spec`, whose User,
Group and Error schemas `tests/vendor/okta` holds and the tests validate answers
against) and Okta's documented behaviour:

- `GET /api/v1/users` pages by an opaque `after` cursor that only the `Link: <…>;
  rel="next"` header gives (a client that makes one up gets 400); `limit` defaults to
  200 and is capped at 200; the listing is ordered by id, so paging is stable while
  users change. Without `filter`, DEPROVISIONED users are left out, as Okta's default
  listing does; `filter` takes Okta's filter grammar (`eq` on status, id,
  profile.login, profile.email, profile.firstName, profile.lastName; also `gt` `ge`
  `lt` `le` on lastUpdated; `and`, `or`, parentheses) and includes them; so does
  `search` (`eq` `sw` `lt` `le` `gt` `ge` on status, id, the times and any profile
  attribute, values case-insensitive; served from current data, where Okta's lags a
  little). `q` is not implemented (400, saying so), nor are `co` and `pr` (400
  E0000031, as for any expression the fake does not take).
- `GET /api/v1/users/{id}` by id or login; `me` is the token's own user (`token_user`).
  404 E0000007.
- `GET /api/v1/users/{id}/groups`, `GET /api/v1/groups` (limit ≤ 10000) and
  `GET /api/v1/groups/{id}/users` (limit default and cap 1000). The BUILT_IN group
  Everyone holds every user.
- `Authorization: SSWS <token>`; anything else (a Bearer token, no header) is 401
  E0000011. A token whose admin has no admin role gets 200 with an empty list from
  every listing and 403 E0000006 for one user, as Okta answers such a token.
- Every answer carries `X-Rate-Limit-Limit`, `-Remaining` and `-Reset` (Unix seconds)
  and a `Date`; a bucket per endpoint allows `rate_limit` requests per 60-second
  window and answers 429 E0000047 beyond it. The clock is injectable, so a test can
  let a client's sleeps move time forward instead of sleeping.
- Errors have Okta's shape: errorCode, errorSummary, errorLink, errorId, errorCauses.

Fault switches: `fail_next` (any status, Okta-shaped or raw body), `next_link_origin`
(next links point at another host), `repeat_cursor` (the next link gives back the
cursor it was asked with), `drop_next_link` (a proxy that loses the Link header),
`null_ids` (users listed with a null id), `echo_authorization` (error summaries
repeat the Authorization header, as a debugging proxy would).

Use it in-process through `httpx.WSGITransport(app=fake)`, or on 127.0.0.1 with
`serve_okta`.
"""

from __future__ import annotations

import email.utils
import json
import operator
import random
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from reconciler.testing.scim_server import serving

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

# Okta's user statuses (UserStatus in the OpenAPI description).
OKTA_STATUSES = (
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "LOCKED_OUT",
    "PASSWORD_EXPIRED",
    "SUSPENDED",
    "DEPROVISIONED",
)
RATE_WINDOW = 60  # seconds: Okta's rate limits are per minute
DEFAULT_RATE_LIMIT = 600

USERS_LIMIT = (200, 200)  # (default, maximum) of `limit` on /api/v1/users
GROUPS_LIMIT = (10_000, 10_000)
GROUP_USERS_LIMIT = (1000, 1000)

# Properties Okta's `filter` accepts on users, and the only one that takes inequalities.
FILTER_PROPERTIES = frozenset(
    {"status", "lastUpdated", "id", "profile.login", "profile.email"}
    | {"profile.firstName", "profile.lastName"}
)
ORDERED_PROPERTY = "lastUpdated"
# Top-level properties Okta's `search` accepts on users (besides any profile attribute).
SEARCH_PROPERTIES = frozenset(
    {"id", "status", "created", "activated", "statusChanged", "lastUpdated"}
)

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
# Okta's error codes and summaries for the statuses the fake answers.
ERRORS = {
    400: ("E0000001", "Api validation failed"),
    401: ("E0000011", "Invalid token provided"),
    403: ("E0000006", "You do not have permission to perform the requested action"),
    404: ("E0000007", "Not found: Resource not found"),
    405: ("E0000022", "The endpoint does not support the provided HTTP method"),
    429: ("E0000047", "API call exceeded rate limit due to too many requests."),
    500: ("E0000009", "Internal Server Error"),
    502: ("E0000009", "Internal Server Error"),
    503: ("E0000010", "Service is temporarily unavailable"),
}
INVALID_SEARCH = ("E0000031", "Invalid search criteria.")


def okta_time(moment: float) -> str:
    """A Unix time as Okta writes times: `2026-11-20T09:30:00.000Z`."""
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class OktaError(Exception):
    """An answer in Okta's error shape."""

    def __init__(
        self,
        status: int,
        summary: str | None = None,
        *,
        code: str | None = None,
        causes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        default_code, default_summary = ERRORS.get(status, ("E0000009", "Internal Server Error"))
        self.status = status
        self.code = code or default_code
        self.summary = summary or default_summary
        self.causes = tuple(causes)
        self.headers = dict(headers or {})
        self.body = body
        super().__init__(self.summary)


@dataclass
class OktaUser:
    """One user as the fake keeps it."""

    id: str
    status: str
    profile: dict[str, Any]
    created: float
    last_updated: float
    activated: float | None = None
    status_changed: float | None = None
    last_login: float | None = None
    password_changed: float | None = None
    type_id: str = "oty1162QAr8hJjTaq0g4"

    def to_json(self, origin: str) -> dict[str, Any]:
        """The user as Okta's User schema has it."""

        def when(value: float | None) -> str | None:
            return None if value is None else okta_time(value)

        return {
            "id": self.id,
            "status": self.status,
            "created": okta_time(self.created),
            "activated": when(self.activated),
            "statusChanged": when(self.status_changed),
            "lastLogin": when(self.last_login),
            "lastUpdated": okta_time(self.last_updated),
            "passwordChanged": when(self.password_changed),
            "type": {"id": self.type_id},
            "profile": dict(self.profile),
            "credentials": {"password": {}, "provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": {"self": {"href": f"{origin}/api/v1/users/{self.id}"}},
        }


@dataclass
class OktaGroup:
    """One group: Okta-managed, imported from an app, or built in (Everyone)."""

    id: str
    name: str
    description: str
    type: str  # OKTA_GROUP | APP_GROUP | BUILT_IN
    members: list[str]  # user ids; ignored for BUILT_IN (Everyone holds every user)
    created: float

    def to_json(self, origin: str) -> dict[str, Any]:
        if self.type == "APP_GROUP":
            object_class = "okta:windows_security_principal"
        else:
            object_class = "okta:user_group"
        return {
            "id": self.id,
            "created": okta_time(self.created),
            "lastUpdated": okta_time(self.created),
            "lastMembershipUpdated": okta_time(self.created),
            "objectClass": [object_class],
            "type": self.type,
            "profile": {"name": self.name, "description": self.description},
            "_links": {
                "self": {"href": f"{origin}/api/v1/groups/{self.id}"},
                "users": {"href": f"{origin}/api/v1/groups/{self.id}/users"},
            },
        }


@dataclass
class Fault:
    """An answer to give instead of the real one, to the next `count` matching requests."""

    error: OktaError
    match: str  # a substring of "METHOD /path?query"
    count: int


@dataclass
class Bucket:
    """One endpoint's rate-limit window."""

    limit: int
    start: float = 0.0
    used: int = 0


@dataclass
class FakeOkta:
    """One Okta org, served as WSGI.

    `tokens` maps each API token to whether its admin holds an admin role; the token
    in `token` is added as an admin's. `rate_limit` is the requests a minute each
    endpoint allows, `rate_limits` overrides it per endpoint ("/api/v1/users",
    "/api/v1/users/{id}", "/api/v1/groups", …).
    """

    token: str = "00okta-test-token-0123456789abcdef"
    clock: Callable[[], float] = field(default=time.time, repr=False)
    rate_limit: int = DEFAULT_RATE_LIMIT
    rate_limits: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, bool] = field(default_factory=dict)
    seed: int = 7

    # Fault switches.
    next_link_origin: str | None = None
    repeat_cursor: bool = False
    drop_next_link: bool = False
    null_ids: set[str] = field(default_factory=set)  # logins listed with a null id
    echo_authorization: bool = False

    # What was asked, for assertions: "METHOD /path?query" and the Authorization headers.
    requests: list[str] = field(default_factory=list)
    seen_authorization: list[str] = field(default_factory=list)
    # Requests that reached the org, by origin (`Host`), to prove none went elsewhere.
    hosts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens.setdefault(self.token, True)
        self.users: dict[str, OktaUser] = {}
        self.groups: dict[str, OktaGroup] = {}
        self.faults: list[Fault] = []
        self._random = random.Random(self.seed)
        self._cursors: dict[str, tuple[str, str]] = {}  # cursor → (path, last id)
        self._buckets: dict[str, Bucket] = {}
        self._errors = 0
        self._lock = threading.RLock()
        self.everyone = self.add_group(
            "Everyone", description="All users in your organization", type="BUILT_IN"
        )
        self.token_user: str | None = None

    # --- state for tests --------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        alphabet = string.ascii_letters + string.digits
        while True:
            candidate = prefix + "".join(self._random.choice(alphabet) for _ in range(14)) + "0g4"
            if candidate not in self.users and candidate not in self.groups:
                return candidate

    def add_user(
        self,
        login: str,
        *,
        status: str = "ACTIVE",
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        display_name: str | None = None,
        department: str | None = None,
        title: str | None = None,
        last_login: float | None = None,
        status_changed: float | None = None,
        profile: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a user in `status`; its id, which sorts at random among the others."""
        if status not in OKTA_STATUSES:
            raise ValueError(f"{status!r} is not an Okta user status")
        with self._lock:
            if self._by_login(login) is not None:
                raise ValueError(f"login {login!r} is taken")
            now = self.clock()
            given = first_name if first_name is not None else login.split("@")[0].title()
            data: dict[str, Any] = {
                "firstName": given,
                "lastName": last_name if last_name is not None else "Tester",
                "mobilePhone": None,
                "secondEmail": None,
                "login": login,
                "email": email if email is not None else login,
            }
            for key, value in (
                ("displayName", display_name),
                ("department", department),
                ("title", title),
            ):
                if value is not None:
                    data[key] = value
            data.update(profile or {})
            user = OktaUser(
                id=self._new_id("00u"),
                status=status,
                profile=data,
                created=now,
                last_updated=now,
                activated=None if status in ("STAGED", "PROVISIONED") else now,
                status_changed=status_changed if status_changed is not None else now,
                last_login=last_login,
            )
            self.users[user.id] = user
            return user.id

    def set_status(self, user_id: str, status: str, *, at: float | None = None) -> None:
        """Change a user's status, as a lifecycle operation would; `at` is its time.
        Any string is taken, so a test can show a status Okta may add one day."""
        with self._lock:
            user = self.users[user_id]
            now = self.clock() if at is None else at
            user.status = status
            user.status_changed = now
            user.last_updated = now

    def update_profile(self, user_id: str, **changes: Any) -> None:
        """Change profile attributes (None removes one)."""
        with self._lock:
            user = self.users[user_id]
            for key, value in changes.items():
                if value is None:
                    user.profile.pop(key, None)
                else:
                    user.profile[key] = value
            user.last_updated = self.clock()

    def delete_user(self, user_id: str) -> None:
        """Delete a user for good (Okta deletes only DEPROVISIONED users; the fake
        does not insist): it is gone from every listing and group."""
        with self._lock:
            del self.users[user_id]
            for group in self.groups.values():
                if user_id in group.members:
                    group.members.remove(user_id)

    def add_group(
        self,
        name: str,
        members: Iterable[str] = (),
        *,
        description: str = "",
        type: str = "OKTA_GROUP",
    ) -> str:
        """Create a group with the users of ids `members`; its id."""
        with self._lock:
            group = OktaGroup(
                id=self._new_id("00g"),
                name=name,
                description=description,
                type=type,
                members=list(dict.fromkeys(members)),
                created=self.clock(),
            )
            self.groups[group.id] = group
            return group.id

    def add_member(self, group_id: str, user_id: str) -> None:
        with self._lock:
            members = self.groups[group_id].members
            if user_id not in members:
                members.append(user_id)

    def remove_member(self, group_id: str, user_id: str) -> None:
        with self._lock:
            members = self.groups[group_id].members
            if user_id in members:
                members.remove(user_id)

    def group_members(self, group: OktaGroup) -> list[str]:
        """The ids of a group's users; Everyone holds every user."""
        if group.type == "BUILT_IN":
            return list(self.users)
        return [user_id for user_id in group.members if user_id in self.users]

    def fail_next(
        self,
        status: int,
        *,
        match: str = "",
        count: int = 1,
        summary: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer the next `count` requests whose "METHOD /path?query" contains `match`
        with `status`: an Okta error body, or `body` as it is."""
        error = OktaError(status, summary, code=code, headers=headers, body=body)
        self.faults.append(Fault(error, match, count))

    # --- WSGI -------------------------------------------------------------------------

    def __call__(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        raw_path = environ.get("PATH_INFO", "")
        query_string = environ.get("QUERY_STRING", "")
        target = f"{method} {raw_path}" + (f"?{query_string}" if query_string else "")
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        scheme = environ.get("wsgi.url_scheme", "http")
        origin = f"{scheme}://{environ.get('HTTP_HOST', 'localhost')}"
        with self._lock:
            self.requests.append(target)
            self.seen_authorization.append(authorization)
            self.hosts.append(origin)
            bucket_name = _bucket_name(raw_path)
            extra: dict[str, str] = {}
            links: list[str] = []
            try:
                scheme_name, _, token = authorization.partition(" ")
                if scheme_name != "SSWS" or token not in self.tokens:
                    summary = None
                    if self.echo_authorization:
                        summary = f"Invalid token provided (Authorization: {authorization})"
                    raise OktaError(401, summary)
                self._take(bucket_name)
                fault = next((f for f in self.faults if f.match in target), None)
                if fault is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    error = fault.error
                    if self.echo_authorization and error.body is None:
                        summary = f"{error.summary} (Authorization: {authorization})"
                        error = OktaError(
                            error.status, summary, code=error.code, headers=error.headers
                        )
                    raise error
                if method != "GET":
                    raise OktaError(405)
                query = parse_qs(query_string, keep_blank_values=True)
                payload, links = self._route(raw_path, query, origin, admin=self.tokens[token])
                status = 200
                data = json.dumps(payload).encode()
            except OktaError as exc:
                status = exc.status
                extra = exc.headers
                data = exc.body if exc.body is not None else json.dumps(self._error(exc)).encode()
            headers = [
                ("Content-Type", "application/json"),
                ("Date", email.utils.formatdate(self.clock(), usegmt=True)),
                *self._rate_headers(bucket_name).items(),
            ]
            headers = [(k, v) for k, v in headers if k not in extra] + list(extra.items())
            headers += [("Link", link) for link in links]
            headers.append(("Content-Length", str(len(data))))
        start_response(f"{status} {REASONS.get(status, '')}".strip(), headers)
        return [data]

    def _error(self, exc: OktaError) -> dict[str, Any]:
        self._errors += 1
        return {
            "errorCode": exc.code,
            "errorSummary": exc.summary,
            "errorLink": exc.code,
            "errorId": f"oae{self._errors:019d}",
            "errorCauses": [{"errorSummary": cause} for cause in exc.causes],
        }

    # --- rate limits ------------------------------------------------------------------

    def _bucket(self, name: str) -> Bucket:
        bucket = self._buckets.get(name)
        now = self.clock()
        if bucket is None:
            bucket = self._buckets[name] = Bucket(self.rate_limits.get(name, self.rate_limit), now)
        if now >= bucket.start + RATE_WINDOW:
            bucket.start, bucket.used = now, 0
        return bucket

    def _take(self, name: str) -> None:
        bucket = self._bucket(name)
        if bucket.used >= bucket.limit:
            raise OktaError(429)
        bucket.used += 1

    def _rate_headers(self, name: str) -> dict[str, str]:
        bucket = self._bucket(name)
        reset = int(-(-(bucket.start + RATE_WINDOW) // 1))  # the window's end, rounded up
        return {
            "X-Rate-Limit-Limit": str(bucket.limit),
            "X-Rate-Limit-Remaining": str(max(bucket.limit - bucket.used, 0)),
            "X-Rate-Limit-Reset": str(reset),
        }

    def remaining(self, name: str = "/api/v1/users") -> int:
        """Requests left in the current window of one endpoint."""
        with self._lock:
            bucket = self._bucket(name)
            return bucket.limit - bucket.used

    # --- routes -----------------------------------------------------------------------

    def _route(
        self,
        raw_path: str,
        query: Mapping[str, list[str]],
        origin: str,
        *,
        admin: bool,
    ) -> tuple[Any, list[str]]:
        path = unquote(raw_path)
        if path == "/api/v1/users":
            if "q" in query:
                raise OktaError(400, "the fake does not implement `q`; use filter or search")
            if "filter" in query and "search" in query:
                raise _invalid()
            users = self._listing(query) if admin else []
            rows = [(u.id, self._listed(u, origin)) for u in users]
            return self._page(rows, query, raw_path, origin, USERS_LIMIT)
        if path == "/api/v1/groups":
            groups = sorted(self.groups.values(), key=lambda g: g.id) if admin else []
            rows = [(g.id, g.to_json(origin)) for g in groups]
            return self._page(rows, query, raw_path, origin, GROUPS_LIMIT)
        match = re.fullmatch(r"/api/v1/groups/([^/]+)/users", path)
        if match:
            group = self.groups.get(match.group(1))
            if group is None:
                raise OktaError(404, f"Not found: Resource not found: {match.group(1)} (UserGroup)")
            members = sorted(self.group_members(group)) if admin else []
            rows = [(m, self._listed(self.users[m], origin)) for m in members]
            return self._page(rows, query, raw_path, origin, GROUP_USERS_LIMIT)
        match = re.fullmatch(r"/api/v1/users/([^/]+)(/groups)?", path)
        if match:
            key, sub = match.group(1), match.group(2)
            user = self._find_user(key)
            # A token without an admin role may read only its own user, known or not.
            if not admin and (user is None or user.id != self.token_user):
                raise OktaError(403)
            if user is None:
                raise OktaError(404, f"Not found: Resource not found: {key} (User)")
            if sub:
                held = [g for g in self.groups.values() if user.id in self.group_members(g)]
                return [g.to_json(origin) for g in sorted(held, key=lambda g: g.id)], []
            return user.to_json(origin), []
        raise OktaError(404, f"Not found: Resource not found: {path}")

    def _listed(self, user: OktaUser, origin: str) -> dict[str, Any]:
        record = user.to_json(origin)
        if user.profile.get("login") in self.null_ids:
            record["id"] = None
        return record

    def _find_user(self, key: str) -> OktaUser | None:
        if key == "me":
            return self.users.get(self.token_user or "")
        return self.users.get(key) or self._by_login(key)

    def _by_login(self, login: str) -> OktaUser | None:
        folded = login.casefold()
        return next(
            (u for u in self.users.values() if str(u.profile.get("login")).casefold() == folded),
            None,
        )

    def _listing(self, query: Mapping[str, list[str]]) -> list[OktaUser]:
        users = sorted(self.users.values(), key=lambda u: u.id)
        if "filter" in query:
            test = parse_filter(query["filter"][0])
        elif "search" in query:
            test = parse_filter(query["search"][0], search=True)
        else:
            # Okta's default listing leaves out DEPROVISIONED users.
            return [u for u in users if u.status != "DEPROVISIONED"]
        return [u for u in users if test(u)]

    def _page(
        self,
        rows: list[tuple[str, dict[str, Any]]],
        query: Mapping[str, list[str]],
        path: str,
        origin: str,
        limits: tuple[int, int],
    ) -> tuple[list[dict[str, Any]], list[str]]:
        default, maximum = limits
        text = query.get("limit", [str(default)])[0]
        try:
            limit = int(text)
        except ValueError:
            raise OktaError(
                400, "Api validation failed: limit", causes=["limit: not a number"]
            ) from None
        if limit < 1:
            raise OktaError(400, "Api validation failed: limit", causes=["limit: must be >= 1"])
        limit = min(limit, maximum)
        after = query.get("after", [None])[0]
        if after is not None:
            known = self._cursors.get(after)
            if known is None or known[0] != path:
                raise OktaError(
                    400, "Api validation failed: after", causes=["after: not a valid cursor"]
                )
            rows = [row for row in rows if row[0] > known[1]]
        chunk = rows[:limit]
        others = {k: v[0] for k, v in sorted(query.items()) if k not in ("after", "limit")}
        self_query = {"limit": str(limit), **others, **({"after": after} if after else {})}
        links = [f'<{origin}{path}?{urlencode(self_query, quote_via=quote)}>; rel="self"']
        if len(rows) > limit and not self.drop_next_link:
            cursor = after if self.repeat_cursor and after else self._cursor(path, chunk[-1][0])
            next_query = {"limit": str(limit), **others, "after": cursor}
            next_origin = self.next_link_origin or origin
            links.append(
                f'<{next_origin}{path}?{urlencode(next_query, quote_via=quote)}>; rel="next"'
            )
        return [record for _, record in chunk], links

    def _cursor(self, path: str, last_id: str) -> str:
        # Opaque on purpose: a client must take it from the Link header, never compute it.
        cursor = "".join(self._random.choice(string.ascii_letters) for _ in range(24))
        self._cursors[cursor] = (path, last_id)
        return cursor


def _bucket_name(path: str) -> str:
    """The rate-limit bucket of a path, as Okta names endpoints in its rate-limit docs."""
    for pattern, name in (
        (r"/api/v1/users/?", "/api/v1/users"),
        (r"/api/v1/users/[^/]+/groups", "/api/v1/users/{id}/groups"),
        (r"/api/v1/users/[^/]+", "/api/v1/users/{id}"),
        (r"/api/v1/groups/?", "/api/v1/groups"),
        (r"/api/v1/groups/[^/]+/users", "/api/v1/groups/{id}/users"),
    ):
        if re.fullmatch(pattern, path):
            return name
    return "/api/v1"


# --- Okta's filter grammar --------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([A-Za-z_.]+))')
_COMPARISONS: dict[str, Callable[[str, str], bool]] = {
    "eq": operator.eq,
    "sw": str.startswith,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}

UserTest = Callable[[OktaUser], bool]


def parse_filter(expression: str, *, search: bool = False) -> UserTest:
    """A test of users from an Okta `filter` expression (or, with `search`, a `search`
    one); OktaError 400 E0000031 when the expression is not one Okta accepts. `and`
    binds tighter than `or`; operators are case-insensitive, property names
    case-sensitive. A filter takes `eq` on FILTER_PROPERTIES (and inequalities on
    lastUpdated), with values case-sensitive; a search takes `eq` `sw` `lt` `le` `gt`
    `ge` on any of SEARCH_PROPERTIES or profile attribute, with values case-insensitive
    (`co` and `pr` are not implemented)."""
    tokens = list(_tokens(expression))
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise _invalid()
        position += 1
        return tokens[position - 1]

    def disjunction() -> UserTest:
        tests = [conjunction()]
        while (word := peek()) is not None and word == ("word", "or"):
            take()
            tests.append(conjunction())
        return lambda user: any(test(user) for test in tests)

    def conjunction() -> UserTest:
        tests = [term()]
        while (word := peek()) is not None and word == ("word", "and"):
            take()
            tests.append(term())
        return lambda user: all(test(user) for test in tests)

    def term() -> UserTest:
        kind, text = take()
        if kind == "(":
            inner = disjunction()
            if take()[0] != ")":
                raise _invalid()
            return inner
        if kind != "name":
            raise _invalid()
        known = text in SEARCH_PROPERTIES or text.startswith("profile.")
        if not (known if search else text in FILTER_PROPERTIES):
            raise _invalid()
        op_kind, op = take()
        if op_kind != "word" or op not in _COMPARISONS:
            raise _invalid()
        if not search and op != "eq" and (op == "sw" or text != ORDERED_PROPERTY):
            raise _invalid()
        value_kind, value = take()
        if value_kind != "string":
            raise _invalid()
        compare = _COMPARISONS[op]
        fold: Callable[[str], str] = str.casefold if search else str

        def test(user: OktaUser) -> bool:
            held = _property(user, text)
            return held is not None and compare(fold(held), fold(value))

        return test

    test = disjunction()
    if position != len(tokens):
        raise _invalid()
    return test


def _tokens(expression: str) -> Iterator[tuple[str, str]]:
    position = 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise _invalid()
        position = match.end()
        opening, closing, string_value, word = match.groups()
        if opening:
            yield "(", "("
        elif closing:
            yield ")", ")"
        elif string_value is not None:
            yield "string", re.sub(r"\\(.)", r"\1", string_value)
        elif word.casefold() in ("and", "or", *_COMPARISONS):
            yield "word", word.casefold()
        else:
            yield "name", word


def _property(user: OktaUser, name: str) -> str | None:
    if name == "status":
        return user.status
    if name == "id":
        return user.id
    times = {
        "created": user.created,
        "activated": user.activated,
        "statusChanged": user.status_changed,
        "lastUpdated": user.last_updated,
    }
    if name in times:
        moment = times[name]
        return None if moment is None else okta_time(moment)
    value = user.profile.get(name.removeprefix("profile."))
    return None if value is None else str(value)


def _invalid() -> OktaError:
    code, summary = INVALID_SEARCH
    return OktaError(400, summary, code=code)


@contextmanager
def serve_okta(fake: FakeOkta) -> Iterator[str]:
    """Serve `fake` on 127.0.0.1; yields its org URL."""
    with serving(fake, name="okta-fake") as origin:
        yield origin
