"""A small stateful fake of Microsoft Graph's `/v1.0/users` and the Microsoft identity
platform's token endpoint, for tests of the `entra` connector.

One tenant with one app registration (client id and secret), its users and groups
(nested groups too). The token endpoint issues tokens that expire by the fake's clock
(`now`, moved by `advance`); Graph checks them and answers `/v1.0/users`,
`/v1.0/users/{id}`, `/v1.0/groups`, `/v1.0/groups/{id}/transitiveMembers/
microsoft.graph.user` and `/v1.0/users/{id}/transitiveMemberOf/microsoft.graph.group`,
paged by `Prefer: odata.maxpagesize` (or `$top`) with opaque `$skiptoken` nextLinks,
honouring `$select`. Answers have Graph's shapes: collections with
`@odata.context`/`@odata.nextLink`, errors as `{"error": {"code", "message",
"innerError": {"date", "request-id", "client-request-id"}}}`, token errors as RFC 6749
§5.2 bodies with AADSTS descriptions. A tenant without an Entra ID P1 licence
(`premium=False`) refuses `signInActivity` with 403
Authentication_RequestFromNonPremiumTenantOrB2CTenant.

Fault switches: `fail_next` (any status, Graph error body, headers, for the next
matching requests), `rate_limit` (429 with Retry-After), `fail_page` (a status on page
n of the user listing), `slow` (an answer held back), `truncate` (a body cut short),
`repeat_cursor` (a nextLink that points at the page just read), `foreign_next_link`
(nextLinks on another origin), `revoke_tokens` (every token issued so far refused),
`rotate_secret` (the app's secret no longer accepted), `page_cap` (pages smaller than
asked), and `rights`: what the app may read: all, nothing (403), or "empty" (200 with
no users, a token whose rights do not reach the directory's users).

Serve it on 127.0.0.1 with `serve_graph`; both the token endpoint and Graph live on
the same origin, so tests set `login_url` and `graph_url` to it.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlencode
from wsgiref.types import StartResponse, WSGIEnvironment

from reconciler.testing.scim_server import serving

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SIGN_IN_FIELD = "signInActivity"
# Graph's own limits for /users: 100 by default, 999 at most (500 with signInActivity).
DEFAULT_PAGE = 100
MAX_PAGE = 999
SIGN_IN_MAX_PAGE = 500

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

Rights = Literal["all", "none", "empty"]


@dataclass
class Fault:
    """An answer to give instead of the real one, to the next `count` matching requests."""

    status: int
    code: str
    message: str
    headers: Mapping[str, str]
    match: str  # a substring of "METHOD /path?query"
    count: int


@dataclass
class Tenant:
    """The directory: its id, one app registration and the users."""

    tenant_id: str
    client_id: str
    client_secret: str
    users: list[dict[str, Any]] = field(default_factory=list)
    # Groups as {"id", "displayName", "members": [user or group ids]}; see `add_group`.
    groups: list[dict[str, Any]] = field(default_factory=list)
    premium: bool = True


def graph_user(
    upn: str,
    *,
    display_name: str = "",
    mail: str | None = None,
    enabled: bool = True,
    department: str | None = None,
    job_title: str | None = None,
    last_sign_in: str | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """A user as Graph holds it (the properties the connector may select, and more)."""
    return {
        "id": user_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{upn}")),
        "userPrincipalName": upn,
        "mail": mail,
        "displayName": display_name or upn.split("@")[0],
        "accountEnabled": enabled,
        "department": department,
        "jobTitle": job_title,
        "givenName": None,
        "surname": None,
        "officeLocation": None,
        "signInActivity": {
            "lastSignInDateTime": last_sign_in,
            "lastSignInRequestId": str(uuid.uuid4()) if last_sign_in else None,
            "lastNonInteractiveSignInDateTime": None,
            "lastNonInteractiveSignInRequestId": None,
            "lastSuccessfulSignInDateTime": last_sign_in,
            "lastSuccessfulSignInRequestId": None,
        },
    }


class GraphError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class FakeGraph:
    """One Entra ID tenant behind a token endpoint and Graph's `/v1.0/users`, as WSGI."""

    def __init__(self, tenant: Tenant, *, token_lifetime: int = 3599) -> None:
        self.tenant = tenant
        self.token_lifetime = token_lifetime
        self.now = 1_000_000.0  # the fake's clock, in seconds; tests move it
        self.tokens: dict[str, float] = {}  # access token → expiry
        self.faults: list[Fault] = []
        self.page_faults: dict[int, int] = {}  # page number (1-based) → status, until cleared
        # The largest page the fake gives, below what was asked (Graph may give fewer).
        self.page_cap = MAX_PAGE
        self.requests: list[str] = []  # "METHOD /path?query", in order
        self.prefer: list[str] = []  # the Prefer header of each /users request
        self.rights: Rights = "all"
        self.slow_seconds = 0.0
        self.slow_count = 0
        self.truncate_next = 0
        self.repeat_cursor = False
        self.foreign_next_link = ""
        self._cursors: dict[str, tuple[str, int]] = {}  # $skiptoken → (path, offset)
        self._serial = itertools.count(1)
        self._lock = threading.RLock()

    # --- switches ---------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the fake's clock (tokens expire by it)."""
        self.now += seconds

    def fail_next(
        self,
        status: int,
        *,
        code: str = "UnknownError",
        message: str = "",
        headers: Mapping[str, str] | None = None,
        match: str = "",
        count: int = 1,
    ) -> None:
        """Answer the next `count` requests whose "METHOD /path?query" contains `match`
        with `status` and a Graph error body."""
        fault = Fault(status, code, message or REASONS.get(status, ""), headers or {}, match, count)
        self.faults.append(fault)

    def rate_limit(self, *, retry_after: int = 2, match: str = "", count: int = 1) -> None:
        """429 TooManyRequests with Retry-After, as Graph throttles."""
        self.fail_next(
            429,
            code="TooManyRequests",
            message="Too many requests.",
            headers={"Retry-After": str(retry_after)},
            match=match,
            count=count,
        )

    def fail_page(self, page: int, status: int = 500) -> None:
        """Answer every request for page `page` (1-based) with `status`, until
        `page_faults` is cleared."""
        self.page_faults[page] = status

    def slow(self, seconds: float, *, count: int = 1) -> None:
        """Hold back the next `count` Graph answers by `seconds` (for client timeouts)."""
        self.slow_seconds, self.slow_count = seconds, count

    def truncate(self, *, count: int = 1) -> None:
        """Cut the next `count` Graph bodies in half."""
        self.truncate_next = count

    def revoke_tokens(self) -> None:
        """Refuse every token issued so far (new ones are still issued)."""
        self.tokens.clear()

    def rotate_secret(self, new_secret: str) -> None:
        """The app's secret changes: the old one is refused, tokens issued are revoked."""
        self.tenant.client_secret = new_secret
        self.revoke_tokens()

    def user(self, upn: str) -> dict[str, Any]:
        """The stored user with that userPrincipalName."""
        return next(u for u in self.tenant.users if u["userPrincipalName"] == upn)

    def add_group(self, name: str, members: Iterable[str]) -> dict[str, Any]:
        """A group whose members are users (by userPrincipalName) or groups (by name)."""
        names = {g["displayName"]: g["id"] for g in self.tenant.groups}
        ids = [names[m] if m in names else self.user(m)["id"] for m in members]
        group = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"group:{name}")),
            "displayName": name,
            "members": ids,
        }
        self.tenant.groups.append(group)
        return group

    def delete(self, upn: str) -> None:
        """Delete a user from the directory (it vanishes from listings)."""
        self.tenant.users.remove(self.user(upn))

    # --- WSGI -------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        target = f"{method} {unquote(path)}" + (f"?{unquote(query)}" if query else "")
        origin = f"http://{environ.get('HTTP_HOST', 'graph.example')}"
        with self._lock:
            self.requests.append(target)
            try:
                fault = next((f for f in self.faults if f.match in target), None)
                if fault is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    raise GraphError(fault.status, fault.code, fault.message, fault.headers)
                if path.endswith("/oauth2/v2.0/token"):
                    status, body, headers = self._token(environ, method, path)
                else:
                    status, body, headers = self._graph(environ, method, path, query, origin)
            except GraphError as exc:
                status, body, headers = exc.status, self._error_body(exc), exc.headers
            delay = 0.0
            if self.slow_count and not path.endswith("/token"):
                self.slow_count -= 1
                delay = self.slow_seconds
            data = json.dumps(body).encode()
            if self.truncate_next and status == 200 and not path.endswith("/token"):
                self.truncate_next -= 1
                data = data[: len(data) // 2]
        if delay:
            time.sleep(delay)
        reason = REASONS.get(status, "Error")
        all_headers = [("Content-Type", "application/json;odata.metadata=minimal")]
        all_headers += list(headers.items())
        start_response(f"{status} {reason}", all_headers)
        return [data]

    def _error_body(self, exc: GraphError) -> dict[str, Any]:
        return {
            "error": {
                "code": exc.code,
                "message": exc.message,
                "innerError": {
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }

    # --- token endpoint ---------------------------------------------------------------

    def _token(
        self, environ: WSGIEnvironment, method: str, path: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if method != "POST":
            return 405, self._token_error("invalid_request", 900561, "POST required"), {}
        tenant = path.strip("/").split("/")[0]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = {k: v[0] for k, v in parse_qs(environ["wsgi.input"].read(length).decode()).items()}
        if tenant != self.tenant.tenant_id:
            text = f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID"
            return 400, self._token_error("invalid_tenant", 90002, text), {}
        if form.get("grant_type") != "client_credentials":
            return 400, self._token_error("unsupported_grant_type", 70003, "grant_type"), {}
        if form.get("scope") != GRAPH_SCOPE:
            text = f"The provided value for scope {form.get('scope')} is not valid."
            return 400, self._token_error("invalid_scope", 1002012, text), {}
        if form.get("client_id") != self.tenant.client_id:
            text = (
                f"Application with identifier '{form.get('client_id')}' was not found in "
                f"the directory '{tenant}'."
            )
            return 400, self._token_error("unauthorized_client", 700016, text), {}
        if form.get("client_secret") != self.tenant.client_secret:
            text = (
                "Invalid client secret provided. Ensure the secret being sent in the "
                f"request is the client secret value, not the client secret ID, for a "
                f"secret added to app '{self.tenant.client_id}'."
            )
            return 401, self._token_error("invalid_client", 7000215, text), {}
        token = f"eyJ0eXAiOiJKV1Qi.fake-{next(self._serial)}.{uuid.uuid4().hex}"
        self.tokens[token] = self.now + self.token_lifetime
        body = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
        return 200, body, {}

    def _token_error(self, code: str, number: int, text: str) -> dict[str, Any]:
        return {
            "error": code,
            "error_description": f"AADSTS{number}: {text} Trace ID: {uuid.uuid4()} "
            f"Correlation ID: {uuid.uuid4()} Timestamp: 2026-11-26 05:00:00Z",
            "error_codes": [number],
            "timestamp": "2026-11-26 05:00:00Z",
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }

    # --- Graph ------------------------------------------------------------------------

    def _graph(
        self, environ: WSGIEnvironment, method: str, path: str, query: str, origin: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        self._authorize(environ.get("HTTP_AUTHORIZATION", ""))
        if method != "GET":
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed.")
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        select = [s for s in params.get("$select", "").split(",") if s]
        if SIGN_IN_FIELD in select and not self.tenant.premium:
            raise GraphError(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
        if self.rights == "none":
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        return self._route(environ, params, select, origin, path.removeprefix("/v1.0/"))

    def _route(
        self,
        environ: WSGIEnvironment,
        params: dict[str, str],
        select: list[str],
        origin: str,
        path: str,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = [unquote(part) for part in path.split("/")]
        page = functools.partial(self._list, environ, params, select, origin, path)
        match parts:
            case ["users"]:
                return page([] if self.rights == "empty" else self.tenant.users, "users")
            case ["users", user_id]:
                return self._one(self._find_user(user_id), select, origin)
            case ["users", user_id, "transitiveMemberOf", "microsoft.graph.group"]:
                user = self._find_user(user_id)
                groups = [g for g in self.tenant.groups if user["id"] in self._users_in(g)]
                return page(groups, "groups", "#microsoft.graph.group")
            case ["groups"]:
                return page(self.tenant.groups, "groups")
            case ["groups", group_id, "transitiveMembers", "microsoft.graph.user"]:
                group = next((g for g in self.tenant.groups if g["id"] == group_id), None)
                if group is None:
                    raise self._not_found(group_id)
                ids = self._users_in(group)
                members = [u for u in self.tenant.users if u["id"] in ids]
                return page(members, "users", "#microsoft.graph.user")
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{path}'.")

    def _find_user(self, user_id: str) -> dict[str, Any]:
        user = next((u for u in self.tenant.users if u["id"] == user_id), None)
        if user is None or self.rights == "empty":
            raise self._not_found(user_id)
        return user

    @staticmethod
    def _not_found(object_id: str) -> GraphError:
        return GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{object_id}' does not exist or one of its queried "
            "reference-property objects are not present.",
        )

    def _users_in(self, group: Mapping[str, Any]) -> set[str]:
        """Ids of the users in a group, directly or through nested groups."""
        by_id = {g["id"]: g for g in self.tenant.groups}
        found: set[str] = set()
        seen: set[str] = set()
        pending = [group["id"]]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            for member in by_id[current]["members"]:
                if member in by_id:
                    pending.append(member)
                else:
                    found.add(member)
        return found

    def _authorize(self, header: str) -> None:
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        expiry = self.tokens.get(token)
        if expiry is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Invalid signature.")
        if self.now >= expiry:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )

    def _list(
        self,
        environ: WSGIEnvironment,
        params: dict[str, str],
        select: list[str],
        origin: str,
        path: str,
        items: list[dict[str, Any]],
        entity_set: str,
        odata_type: str = "",
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        prefer = environ.get("HTTP_PREFER", "")
        if path == "users":
            self.prefer.append(prefer)
        size = self._page_size(prefer, params.get("$top"), SIGN_IN_FIELD in select)
        skiptoken = params.get("$skiptoken")
        if skiptoken is None:
            offset = 0
        elif self._cursors.get(skiptoken, ("", 0))[0] == path:
            offset = self._cursors[skiptoken][1]
        else:
            raise GraphError(400, "Request_BadRequest", "Invalid paging token.")
        page_number = offset // size + 1
        if path == "users" and page_number in self.page_faults:
            status = self.page_faults[page_number]
            raise GraphError(status, "UnknownError", REASONS.get(status, "Error"))
        chunk = items[offset : offset + size]
        value = [self._project(item, select) for item in chunk]
        if odata_type:
            value = [{"@odata.type": odata_type, **item} for item in value]
        body: dict[str, Any] = {
            "@odata.context": f"{origin}/v1.0/$metadata#{entity_set}({','.join(select)})",
            "value": value,
        }
        if offset + size < len(items):
            if self.repeat_cursor and skiptoken is not None:
                token = skiptoken  # the nextLink points at the page just read
            else:
                token = self._cursor(path, offset + size)
            link_query = urlencode(
                {**({"$select": ",".join(select)} if select else {}), "$skiptoken": token},
                quote_via=quote,
                safe=",$",
            )
            base = self.foreign_next_link or origin
            body["@odata.nextLink"] = f"{base}/v1.0/{quote(path)}?{link_query}"
        headers = {}
        if "maxpagesize" in prefer:
            headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        return 200, body, headers

    def _cursor(self, path: str, offset: int) -> str:
        token = "RFNwdAIAAQAAAC" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self._cursors[token] = (path, offset)
        return token

    def _page_size(self, prefer: str, top: str | None, sign_in: bool) -> int:
        size = DEFAULT_PAGE
        for part in prefer.split(","):
            name, _, value = part.strip().partition("=")
            if name == "odata.maxpagesize" and value.isdigit():
                size = int(value)
        if top is not None:
            if not top.isdigit() or not 1 <= int(top) <= MAX_PAGE:
                raise GraphError(400, "Request_BadRequest", "Invalid page size specified.")
            size = int(top)
        return max(1, min(size, self.page_cap, SIGN_IN_MAX_PAGE if sign_in else MAX_PAGE))

    def _one(
        self, user: Mapping[str, Any], select: list[str], origin: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        body = {
            "@odata.context": f"{origin}/v1.0/$metadata#users({','.join(select)})/$entity",
            **self._project(user, select),
        }
        return 200, body, {}

    @staticmethod
    def _project(user: Mapping[str, Any], select: list[str]) -> dict[str, Any]:
        # Graph always returns the id; without $select, the default set (no signInActivity).
        fields = select or [k for k in user if k not in (SIGN_IN_FIELD, "members")]
        projected = {"id": user["id"]}
        projected.update({name: user.get(name) for name in fields if name in user})
        if SIGN_IN_FIELD in projected and not (user.get(SIGN_IN_FIELD) or {}).get(
            "lastSignInDateTime"
        ):
            # A user who never signed in has no signInActivity at all.
            projected.pop(SIGN_IN_FIELD)
        return projected


@contextmanager
def serve_graph(graph: FakeGraph) -> Iterator[str]:
    """Serve `graph` on 127.0.0.1 on a random port; yields its base URL, which is both
    the login_url and the graph_url."""
    with serving(graph, name="entra-fake") as url:
        yield url
