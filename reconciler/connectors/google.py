"""Google Workspace, through the Admin SDK Directory API: an identity source, whose users
are also readable as the accounts of the Workspace itself.

Credentials are a service account's JSON key, read from the environment variable
`credentials_env` names. With domain-wide delegation the service account acts as
`subject`, an administrator who may read users. Each access token comes from a JWT
(RS256, signed with the key by PyJWT) exchanged at the key's token endpoint (RFC 7523),
and is kept until shortly before it expires; one the API refuses (revoked) is replaced
once. Only the read-only users scope is asked for, so nothing is ever changed: `modes`
is empty, and suspending or deleting a user is done in the Admin console.

Pulling pages through `users.list` by `pageToken` until a page has no
`nextPageToken`, then through the deleted users (`showDeleted=true`, which Google keeps
for 20 days) as deprovisioned identities. A page token that comes back a second time,
a user listed twice, or a listing of no live users at all (a domain always holds its
administrator: an empty list means the subject may not see users) fails the pull; it
never ends early as if it were done.

Requests are built by the `*_request` functions and responses read by the `parse_*` and
`*_from_user` functions, apart from sending (`http.send`), so each can be tested alone.
PyJWT and cryptography are imported only where a key is loaded or a JWT signed, so
reconciler.yaml can be validated without them (`needs_extra`).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from reconciler.connectors.base import (
    Connector,
    ConnectorContext,
    ConnectorType,
    Mode,
    check_options,
    needs_extra,
    secret_from_env,
)
from reconciler.connectors.http import (
    PageCallback,
    RetryPolicy,
    build_client,
    describe_request,
    describe_status,
    http_options,
    redact,
    request_secrets,
    retry_policy,
    send,
    server_text,
)
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.model import Account, Identity, Role, clean_text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://admin.googleapis.com/admin/directory/v1"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_PAGE_SIZE = 500
# Google's "never signed in": the epoch, which must not read as a sign-in in 1970.
NEVER_SIGNED_IN = "1970-01-01T00:00:00.000Z"
# Google caps an assertion's lifetime at one hour.
ASSERTION_LIFETIME = 3600
# A token is replaced this long before it expires, so none expires in flight.
REFRESH_MARGIN = 300
# Empty pages that still carry a next token, in a row, before a listing is distrusted.
MAX_EMPTY_PAGES = 3
SUPER_ADMIN = "super_admin"
DELEGATED_ADMIN = "delegated_admin"
ROLES = (
    Role(DELEGATED_ADMIN, "Holds an admin role other than super admin (isDelegatedAdmin)"),
    Role(SUPER_ADMIN, "Super administrator of the Workspace (isAdmin)"),
)
# How much of a name from the server a message shows.
NAME_LIMIT = 80

_ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["credentials_env"],
    "properties": {
        "credentials_env": {
            "type": "string",
            "pattern": _ENV_NAME,
            "description": "Name of the environment variable holding the service "
            "account's JSON key (the whole file, as Google Cloud downloads it).",
        },
        "subject": {
            "type": "string",
            "pattern": "^[^@\\s]+@[^@\\s]+$",
            "description": "Email of the Workspace administrator the service account acts "
            "as (domain-wide delegation). Leave out only when an admin role that may "
            "read users is assigned to the service account itself.",
        },
        "customer": {
            "type": "string",
            "minLength": 1,
            "default": "my_customer",
            "description": "The customer whose users are listed: my_customer (the "
            "subject's own), or a customer ID such as C01abc123.",
        },
        "suspended_status": {
            "enum": ["suspended", "deprovisioned"],
            "default": "suspended",
            "description": "What a suspended Google user is as an identity. Archived and "
            "deleted users are always deprovisioned.",
        },
        "api_url": {
            "type": "string",
            "pattern": "^https?://",
            "default": DEFAULT_API_URL,
            "description": "Base URL of the Directory API; `users` is requested under it.",
        },
        "token_url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "Where the signed JWT is exchanged for an access token; by "
            f"default the key's token_uri, else {DEFAULT_TOKEN_URL}.",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "default": MAX_PAGE_SIZE,
            "description": "Users asked for per page (`maxResults`).",
        },
        **http_options("Google"),
    },
}


@dataclass(frozen=True)
class GoogleOptions:
    """The validated options of one Google Workspace system, with defaults applied."""

    credentials_env: str
    subject: str | None = None
    customer: str = "my_customer"
    suspended_status: Literal["suspended", "deprovisioned"] = "suspended"
    api_url: str = DEFAULT_API_URL
    token_url: str | None = None
    timeout: float = 30.0
    page_size: int = MAX_PAGE_SIZE
    max_retries: int = 4
    max_requests_per_second: float | None = None

    @classmethod
    def from_mapping(cls, system: str, options: Mapping[str, Any]) -> GoogleOptions:
        """Options with defaults applied. reconciler.yaml is validated against
        OPTIONS_SCHEMA first; an unknown key and a missing credentials_env are checked
        again for callers that build a connector directly."""
        hint = "the name of the environment variable holding the service account's JSON key"
        check_options(system, "google", options, OPTIONS_SCHEMA, {"credentials_env": hint})
        return cls(
            credentials_env=options["credentials_env"],
            subject=options.get("subject"),
            customer=options.get("customer", "my_customer"),
            suspended_status=options.get("suspended_status", "suspended"),
            api_url=options.get("api_url", DEFAULT_API_URL),
            token_url=options.get("token_url"),
            timeout=float(options.get("timeout", 30)),
            page_size=int(options.get("page_size", MAX_PAGE_SIZE)),
            max_retries=int(options.get("max_retries", 4)),
            max_requests_per_second=options.get("max_requests_per_second"),
        )


# ---------------------------------------------------------------------------------------
# The service account's key


@dataclass(frozen=True)
class ServiceAccountKey:
    """A service account's key, as read from its JSON file. The key's text stays out of
    every repr; `secrets` lists what of it a message must never show."""

    client_email: str
    token_uri: str
    key_id: str
    private_key: RSAPrivateKey = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)


def parse_key(text: str, *, variable: str) -> ServiceAccountKey:
    """The key in a service account's JSON key file; ValueError saying what is wrong
    (never with any of the file's content)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{variable} does not hold JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"{variable} does not hold a JSON object")
    if data.get("type", "service_account") != "service_account":
        raise ValueError(
            f"{variable} holds a key of type {data.get('type')!r}, not service_account"
        )
    for name in ("client_email", "private_key"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ValueError(f"{variable} holds no {name}")
    pem = str(data["private_key"])
    secrets = (text, pem, *_pem_lines(pem))
    token_uri = data.get("token_uri")
    return ServiceAccountKey(
        client_email=str(data["client_email"]),
        token_uri=token_uri if isinstance(token_uri, str) and token_uri else DEFAULT_TOKEN_URL,
        key_id=str(data.get("private_key_id") or ""),
        private_key=_load_private_key(pem, variable),
        secrets=secrets,
    )


def _pem_lines(pem: str) -> tuple[str, ...]:
    # A server that echoes part of the key shows it line by line: hide each line too.
    lines = (line.strip() for line in pem.replace("\\n", "\n").splitlines())
    return tuple(line for line in lines if len(line) >= 16 and not line.startswith("-----"))


def _load_private_key(pem: str, variable: str) -> RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        # The library's message could quote the key: say only where it came from.
        raise ValueError(f"the private_key in {variable} is not a PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"the private_key in {variable} is not an RSA key")
    return key


def assertion_claims(
    key: ServiceAccountKey, *, subject: str | None, audience: str, now: float
) -> dict[str, Any]:
    """The claims of the JWT exchanged for an access token (RFC 7523 §3)."""
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": audience,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    if subject:
        claims["sub"] = subject
    return claims


def sign_assertion(key: ServiceAccountKey, claims: Mapping[str, Any]) -> str:
    """The claims as a JWT signed RS256 with the service account's key."""
    import jwt

    headers = {"kid": key.key_id} if key.key_id else None
    return jwt.encode(dict(claims), key.private_key, algorithm="RS256", headers=headers)


def token_request(client: httpx.Client, url: str, assertion: str) -> httpx.Request:
    """The exchange of a signed JWT for an access token (RFC 7523 §2.1)."""
    return client.build_request(
        "POST",
        url,
        data={"grant_type": JWT_BEARER, "assertion": assertion},
        headers={"Accept": "application/json"},
    )


@dataclass(frozen=True)
class AccessToken:
    """An access token and when (on the connector's clock) it expires."""

    value: str = field(repr=False)
    expires_at: float


def parse_token(body: object, *, now: float) -> AccessToken:
    """A token endpoint's answer as an AccessToken; ValueError if it is not one."""
    if not isinstance(body, dict):
        raise ValueError("the answer is not a JSON object")
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise ValueError("the answer holds no access_token")
    lifetime = body.get("expires_in", 3600)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        raise ValueError("expires_in is not a positive number of seconds")
    return AccessToken(value=value, expires_at=now + float(lifetime))


def oauth_error(response: httpx.Response, secrets: Iterable[str]) -> tuple[str, str]:
    """The `error` and `error_description` of a token endpoint's refusal (RFC 6749
    §5.2), redacted and cut; ('', '') when the body says neither."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    code, description = body.get("error"), body.get("error_description")
    return (
        server_text(code, secrets, limit=NAME_LIMIT) if isinstance(code, str) else "",
        server_text(description, secrets) if isinstance(description, str) else "",
    )


# ---------------------------------------------------------------------------------------
# Requests


def list_request(
    client: httpx.Client,
    *,
    customer: str,
    page_size: int,
    page_token: str | None = None,
    deleted: bool = False,
) -> httpx.Request:
    """One page of `users.list`; of the deleted users when `deleted`."""
    params: dict[str, str | int] = {
        "customer": customer,
        "maxResults": page_size,
        # basic holds every field read here (organizations included); full adds only
        # custom schemas.
        "projection": "basic",
    }
    if deleted:
        params["showDeleted"] = "true"
    if page_token is not None:
        params["pageToken"] = page_token
    return client.build_request("GET", "users", params=params)


def user_request(client: httpx.Client, user_id: str) -> httpx.Request:
    """`users.get` of one user by id."""
    # Ids are opaque: quote everything so one cannot reach another path.
    return client.build_request(
        "GET", f"users/{quote(user_id, safe='')}", params={"projection": "basic"}
    )


# ---------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True)
class UsersPage:
    """One page of `users.list`."""

    users: tuple[Mapping[str, Any], ...]
    next_token: str | None


def parse_users_page(body: object) -> UsersPage:
    """A `Users` body as a UsersPage; ValueError if it is not one. Google leaves out
    `users` when there are none."""
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    users = body.get("users", [])
    if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
        raise ValueError("users is not a list of objects")
    token = body.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise ValueError("nextPageToken is not a string")
    return UsersPage(users=tuple(users), next_token=token or None)


def id_problem(user: Mapping[str, Any]) -> str | None:
    """Why the user's `id` cannot be used as its id, or None if it can."""
    value = user.get("id")
    if not isinstance(value, str) or not value.strip():
        return "it has no id"
    if clean_text(value) != value:
        return "its id holds characters that cannot be stored unchanged"
    return None


def display_name(user: Mapping[str, Any]) -> str:
    """name.fullName, else given and family name, else the primary email."""
    name = user.get("name")
    if isinstance(name, dict):
        full = name.get("fullName")
        if isinstance(full, str) and full.strip():
            return full
        parts = [name.get(part) for part in ("givenName", "familyName")]
        joined = " ".join(part for part in parts if isinstance(part, str) and part.strip())
        if joined:
            return joined
    return _text(user.get("primaryEmail"))


def organization(user: Mapping[str, Any]) -> Mapping[str, Any]:
    """The user's primary organization entry (department, title), else the first."""
    entries = user.get("organizations")
    if not isinstance(entries, list):
        return {}
    found = [entry for entry in entries if isinstance(entry, dict)]
    primary = [entry for entry in found if entry.get("primary") is True]
    return (primary or found or [{}])[0]


def last_login(user: Mapping[str, Any]) -> str:
    """lastLoginTime, or '' when Google says the user never signed in (the epoch)."""
    value = _text(user.get("lastLoginTime"))
    if not value or value.startswith("1970-01-01T00:00:00"):
        return ""
    return value


def user_roles(user: Mapping[str, Any]) -> tuple[str, ...]:
    """The admin roles the user holds, as far as a user record says."""
    roles = []
    if user.get("isAdmin") is True:
        roles.append(SUPER_ADMIN)
    if user.get("isDelegatedAdmin") is True:
        roles.append(DELEGATED_ADMIN)
    return tuple(roles)


def identity_status(
    user: Mapping[str, Any], *, deleted: bool, suspended_status: str
) -> tuple[str, str]:
    """The identity status of a user and the source's time of it ('' when unknown)."""
    if deleted:
        return "deprovisioned", _text(user.get("deletionTime"))
    if user.get("archived") is True:
        return "deprovisioned", _text(user.get("archivalTime"))
    if user.get("suspended") is True:
        return suspended_status, _text(user.get("suspensionTime"))
    return "active", ""


def identity_from_user(
    user: Mapping[str, Any], *, deleted: bool = False, suspended_status: str = "suspended"
) -> Identity:
    """A Directory user as an identity; its id must have been checked (`id_problem`)."""
    status, since = identity_status(user, deleted=deleted, suspended_status=suspended_status)
    org = organization(user)
    email = _text(user.get("primaryEmail"))
    return Identity.build(
        id=user["id"],
        email=email,
        username=email,
        display_name=display_name(user),
        status=status,
        status_changed_at=since,
        department=_text(org.get("department")),
        title=_text(org.get("title")),
    )


def account_from_user(user: Mapping[str, Any]) -> Account:
    """A live Directory user as an account of the Workspace."""
    inactive = user.get("suspended") is True or user.get("archived") is True
    email = _text(user.get("primaryEmail"))
    return Account.build(
        id=user["id"],
        username=email,
        email=email,
        display_name=display_name(user),
        status="disabled" if inactive else "active",
        roles=user_roles(user),
        last_login=last_login(user),
    )


def without_reused_addresses(
    deleted: Iterable[Mapping[str, Any]], live_emails: Collection[str]
) -> list[Mapping[str, Any]]:
    """The deleted users worth keeping as deprovisioned identities: not one whose
    address a live user holds now (accounts under it are that user's, and two identities
    with one address would leave them unmatched), and of several deleted under one
    address only the latest deleted."""
    latest: dict[str, Mapping[str, Any]] = {}
    for user in deleted:
        email = _text(user.get("primaryEmail")).casefold()
        if email and email in live_emails:
            continue
        key = email or f"id:{user['id']}"
        kept = latest.get(key)
        if kept is None or _text(user.get("deletionTime")) > _text(kept.get("deletionTime")):
            latest[key] = user
    return list(latest.values())


def google_error_detail(response: httpx.Response, secrets: Iterable[str] = ()) -> str:
    """`reason: message` from Google's error body (`{"error": {"code", "message",
    "errors": [{"reason", …}], "status"}}`), redacted and cut; '' when there is none."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    message = error.get("message")
    reasons = [
        entry.get("reason")
        for entry in error.get("errors") or []
        if isinstance(entry, dict) and isinstance(entry.get("reason"), str)
    ]
    reason = reasons[0] if reasons else error.get("status")
    text = ": ".join(part for part in (reason, message) if isinstance(part, str) and part)
    return server_text(text, secrets) if text else ""


def describe_user(user: Mapping[str, Any], secrets: Iterable[str]) -> str:
    """`user alice@example.com`: the user as a message can name it."""
    email = user.get("primaryEmail")
    if isinstance(email, str) and email.strip():
        return f"user {server_text(email, secrets, limit=NAME_LIMIT)!r}"
    return "a user without a primaryEmail"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# ---------------------------------------------------------------------------------------
# The connector


class GoogleConnector:
    """Google Workspace users through the Directory API (read only)."""

    modes: frozenset[Mode] = frozenset()

    def __init__(
        self,
        name: str,
        client: httpx.Client,
        options: GoogleOptions,
        key: ServiceAccountKey,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        on_page: PageCallback | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.options = options
        self.retry = retry or retry_policy(options.max_retries, options.max_requests_per_second)
        self.on_page = on_page
        self._key = key
        self._clock = clock
        self._token: AccessToken | None = None
        self._token_url = options.token_url or key.token_uri

    def __repr__(self) -> str:
        return f"GoogleConnector(name={self.name!r}, subject={self.options.subject!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What no message may show: the key, and the access token in use."""
        token = (self._token.value,) if self._token is not None else ()
        return (*self._key.secrets, *token)

    # -- The contract -----------------------------------------------------------------

    def pull_identities(self) -> Iterator[Identity]:
        """Every live user, then every deleted user Google still keeps, as identities."""
        live = list(self._pull_users(deleted=False))
        status = self.options.suspended_status
        for user in live:
            yield identity_from_user(user, suspended_status=status)
        live_ids = {str(user["id"]) for user in live}
        live_emails = {_text(user.get("primaryEmail")).casefold() for user in live}
        deleted = [
            user for user in self._pull_users(deleted=True) if str(user["id"]) not in live_ids
        ]
        for user in without_reused_addresses(deleted, live_emails):
            yield identity_from_user(user, deleted=True)

    def pull_accounts(self) -> Iterator[Account]:
        """Every live user as an account of the Workspace (deleted users hold none)."""
        for user in self._pull_users(deleted=False):
            yield account_from_user(user)

    def pull_roles(self) -> list[Role]:
        """The admin roles a user record tells (isAdmin, isDelegatedAdmin), once the
        Directory has shown it answers with users (a catalogue is not offered unread)."""
        try:
            self._first_users()
        except ConnectorError as exc:
            raise PullError(self.name, f"listing roles failed: {_without_system(exc)}") from exc
        return list(ROLES)

    def lookup_identity(self, identity_id: str) -> Identity | None:
        """One user read live (`users.get`), or None if Google has no such user."""
        user = self._get_user(identity_id)
        if user is None:
            return None
        return identity_from_user(user, suspended_status=self.options.suspended_status)

    def lookup_account(self, account_id: str) -> Account | None:
        """One user read live as an account, or None if Google has no such user."""
        user = self._get_user(account_id)
        return None if user is None else account_from_user(user)

    def deprovision(self, account: Account, mode: Mode) -> None:
        """Refused: the connector holds a read-only scope."""
        self._read_only(f"{getattr(mode, 'value', mode)} account {account.username!r}")

    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None:
        """The admin roles one user holds, read live; None if Google has no such user."""
        user = self._get_user(account_id)
        return None if user is None else user_roles(user)

    def remove_roles(self, account: Account, roles: Collection[str]) -> None:
        """Refused: the connector holds a read-only scope."""
        self._read_only(f"remove roles from account {account.username!r}")

    def enable(self, account: Account) -> None:
        """Refused: the connector holds a read-only scope."""
        self._read_only(f"enable account {account.username!r}")

    def probe(self, identity_source: bool) -> str:
        """A token, and one page of one user: the key, the delegation and the subject's
        right to read users all work."""
        self._first_users()
        who = f" as {self.options.subject}" if self.options.subject else ""
        return f"users of {self.options.customer} readable{who}"

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    # -- Tokens -----------------------------------------------------------------------

    def _access_token(self) -> str:
        now = self._clock()
        if self._token is None or self._token.expires_at - REFRESH_MARGIN <= now:
            self._token = self._new_token(now)
        return self._token.value

    def _new_token(self, now: float) -> AccessToken:
        claims = assertion_claims(
            self._key, subject=self.options.subject, audience=self._token_url, now=now
        )
        assertion = sign_assertion(self._key, claims)
        hidden = (*self._key.secrets, assertion)
        request = token_request(self.client, self._token_url, assertion)
        # The exchange only reads: repeating it after a lost answer is harmless.
        try:
            response = send(
                self.client,
                request,
                system=self.name,
                retry=self.retry,
                idempotent=True,
                secrets=hidden,
            )
        except ConnectorError as exc:
            message = (
                f"getting an access token for {self._key.client_email} failed: "
                f"{_without_system(exc)}; check token_url (by default the key's token_uri)"
            )
            raise ConnectorError(self.name, redact(message, hidden)) from exc
        if response.status_code != 200:
            raise ConnectorError(self.name, redact(self._token_refused(response, hidden), hidden))
        try:
            return parse_token(response.json(), now=now)
        except ValueError as exc:
            message = (
                f"{describe_request(request)}: the token endpoint answered "
                f"{describe_status(response)} without a usable token ({exc}); check token_url"
            )
            raise ConnectorError(self.name, redact(message, hidden)) from None

    def _token_refused(self, response: httpx.Response, hidden: Iterable[str]) -> str:
        code, description = oauth_error(response, hidden)
        said = ": ".join(part for part in (code, description) if part)
        text = (
            f"getting an access token for {self._key.client_email} failed: "
            f"{describe_request(response.request)} answered {describe_status(response)}"
            + (f" ({said})" if said else "")
        )
        variable = self.options.credentials_env
        if code == "unauthorized_client":
            hint = (
                "in the Admin console (Security > API controls > Domain-wide delegation) "
                f"allow the service account's client ID the scope {SCOPE}"
            )
        elif code == "invalid_grant" and "sign" not in description.lower():
            hint = (
                f"check that subject ({self.options.subject or 'not set'}) is an existing "
                f"administrator's email and that the key in {variable} is still active"
            )
        else:
            hint = (
                f"check the service account key in environment variable {variable}: it "
                "may have been deleted or disabled in Google Cloud"
            )
        return f"{text}; {hint}"

    # -- Internals --------------------------------------------------------------------

    def _read_only(self, what: str) -> None:
        raise ConnectorError(
            self.name,
            f"cannot {what}: the google connector reads users only (scope {SCOPE}); "
            "do it in the Google Admin console",
        )

    def _call(self, request: httpx.Request) -> httpx.Response:
        """Send an API request with a current token; one refused as unauthenticated
        (revoked, or expired early) is repeated once with a new token."""
        response = self._send_with_token(request)
        if response.status_code == 401:
            self._token = None
            response = self._send_with_token(request)
        return response

    def _send_with_token(self, request: httpx.Request) -> httpx.Response:
        request.headers["Authorization"] = f"Bearer {self._access_token()}"
        return send(self.client, request, system=self.name, retry=self.retry, secrets=self.secrets)

    def _first_users(self) -> UsersPage:
        request = list_request(self.client, customer=self.options.customer, page_size=1)
        response = self._call(request)
        if response.status_code != 200:
            raise ConnectorError(self.name, f"list users: {self._error_text(response)}")
        try:
            page = parse_users_page(response.json())
        except ValueError as exc:
            raise ConnectorError(
                self.name, f"{describe_request(request)}: not a list of users ({exc})"
            ) from None
        if not page.users:
            raise ConnectorError(self.name, self._no_users(describe_request(request)))
        return page

    def _get_user(self, user_id: str) -> Mapping[str, Any] | None:
        request = user_request(self.client, user_id)
        at = describe_request(request)
        response = self._call(request)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ConnectorError(self.name, f"read user {user_id}: {self._error_text(response)}")
        try:
            body = response.json()
        except ValueError:
            raise ConnectorError(self.name, f"{at}: the answer is not JSON") from None
        if not isinstance(body, dict) or id_problem(body):
            raise ConnectorError(self.name, f"{at}: the answer is not a usable user")
        if body["id"] != user_id:
            # Using the user sent instead would report on someone else.
            shown = server_text(body["id"], self.secrets, limit=NAME_LIMIT)
            raise ConnectorError(
                self.name,
                f"{at}: asked for user {user_id!r}, Google answered with user {shown!r}; "
                "nothing is done with it: check api_url (a proxy may be answering)",
            )
        return body

    def _pull_users(self, *, deleted: bool) -> Iterator[Mapping[str, Any]]:
        """Every user of one listing, page by page; PullError if not provably all.

        The listing ends at a page without nextPageToken. A token seen before, a user
        seen twice, a page that is not a user list, too many empty pages in a row, or
        no live user at all fail the pull: none is proof of the end of the list.
        """
        what = "deleted users" if deleted else "users"
        seen: set[str] = set()
        tokens: set[str] = set()
        token: str | None = None
        empty = 0
        while True:
            request = list_request(
                self.client,
                customer=self.options.customer,
                page_size=self.options.page_size,
                page_token=token,
                deleted=deleted,
            )
            failed = functools.partial(self._pull_failed, what, len(seen))
            at = describe_request(request)
            try:
                response = self._call(request)
            except ConnectorError as exc:
                raise failed(_without_system(exc)) from exc
            if response.status_code != 200:
                raise failed(self._error_text(response))
            try:
                page = parse_users_page(response.json())
            except ValueError as exc:
                raise failed(f"{at}: the answer is not a list of users ({exc})") from None
            hidden = (*self.secrets, *request_secrets(request))
            for user in page.users:
                problem = id_problem(user)
                if problem:
                    raise failed(
                        f"{at}: {describe_user(user, hidden)}: {problem}; a record that "
                        "cannot be told apart from others is never imported"
                    )
                if user["id"] in seen:
                    raise failed(
                        f"{at}: Google listed user {user['id']} twice (the users changed "
                        "during the pull); run the pull again"
                    )
                seen.add(user["id"])
            yield from page.users
            if not deleted and self.on_page is not None:
                self.on_page(len(page.users))
            if page.next_token is None:
                if not seen and not deleted:
                    raise failed(self._no_users(at))
                return
            if page.next_token in tokens:
                raise failed(
                    f"{at}: Google sent a page token it had sent before; the listing would "
                    "never end, so it cannot be shown complete: run the pull again"
                )
            empty = 0 if page.users else empty + 1
            if empty >= MAX_EMPTY_PAGES:
                raise failed(f"{at}: {empty} empty pages in a row, each with a next page")
            tokens.add(page.next_token)
            token = page.next_token

    def _no_users(self, at: str) -> str:
        who = self.options.subject or "the service account"
        return (
            f"{at}: Google listed no users for customer {self.options.customer}, but a "
            f"Workspace always holds its administrators: {who} may not read users. Give it "
            "an admin role with the Users > Read privilege (or check `customer`); nothing "
            "from this pull may be used"
        )

    def _pull_failed(self, what: str, read: int, reason: str) -> PullError:
        if not read:
            return PullError(self.name, redact(f"listing {what} failed: {reason}", self.secrets))
        message = (
            f"listing {what} stopped after {read}: {reason}; nothing from this pull may be used"
        )
        return PartialPullError(self.name, redact(message, self.secrets))

    def _error_text(self, response: httpx.Response) -> str:
        text = f"{describe_request(response.request)} answered {describe_status(response)}"
        hidden = (*self.secrets, *request_secrets(response.request))
        detail = google_error_detail(response, hidden)
        if detail:
            text += f": {detail}"
        variable = self.options.credentials_env
        if response.status_code == 401:
            text += (
                f"; a new token was refused too: check the service account key in "
                f"environment variable {variable}"
            )
        elif response.status_code == 403:
            who = self.options.subject or "the service account"
            text += (
                f"; {who} must hold an admin role that may read users, and the service "
                f"account key in {variable} must be allowed the scope {SCOPE}"
            )
        elif response.status_code in (400, 404):
            text += f"; check customer ({self.options.customer}) and api_url"
        return redact(text, hidden)


def _without_system(error: ConnectorError) -> str:
    return str(error).removeprefix(f"{error.system}: ")


# ---------------------------------------------------------------------------------------
# Building


def build(context: ConnectorContext) -> Connector:
    """A GoogleConnector from a system's section of reconciler.yaml."""
    options = GoogleOptions.from_mapping(context.name, context.options)
    text = secret_from_env(context, options.credentials_env, "the service account's JSON key")
    assert text is not None  # credentials_env is required
    try:
        key = parse_key(text, variable=options.credentials_env)
    except ValueError as exc:
        raise ConfigError(
            f"{context.name}: {exc}; put the service account's JSON key file, as "
            "downloaded from Google Cloud, in it"
        ) from None
    client = build_client(
        context.name,
        options.api_url,
        token=None,
        timeout=options.timeout,
        headers={"Accept": "application/json"},
    )
    return GoogleConnector(context.name, client, options, key)


def _load() -> Callable[[ConnectorContext], Connector]:
    import jwt  # noqa: F401  (imported here so a missing PyJWT names the extra)

    return needs_extra(_load_cryptography, library="cryptography", extra="google")


def _load_cryptography() -> Callable[[ConnectorContext], Connector]:
    import cryptography  # noqa: F401

    return build


TYPE = ConnectorType(
    name="google",
    options_schema=OPTIONS_SCHEMA,
    build=needs_extra(_load, library="jwt", extra="google"),
    secret_env_options=("credentials_env",),
    description="Google Workspace users (Admin SDK Directory API, read only), as an "
    "identity source or an app.",
)
