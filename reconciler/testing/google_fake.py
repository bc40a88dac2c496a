"""A small stateful fake of Google's OAuth token endpoint and the Admin SDK Directory
API's users, for tests of the `google` connector.

The token endpoint (`POST /token`) takes a JWT bearer assertion (RFC 7523), verifies its
RS256 signature with the public key registered for its issuer (a key pair the test
generates), its audience, scope, lifetime and expiry, checks domain-wide delegation for
the subject, and issues access tokens. The Directory (`/admin/directory/v1/users`) holds
users, suspended, archived and deleted ones among them, pages them by opaque page
tokens, and answers Google's error body (`{"error": {"code", "message", "errors",
"status"}}`): 401 for a token it does not know, 403 for a subject without admin rights,
404 for a user it does not hold, 429/503 with Retry-After.

Fault switches make it fail on purpose: `fail_next` (a status for the next matching
requests, e.g. a 429 storm), `fail_pages` (an error on page n), `slow` (hold answers until
released, for timeouts), `truncate` (a body cut short), `repeat_token` (a page token
that comes back), `revoke_tokens`/`revoke_key`, `empty_for_non_admins` (200 with no
users instead of 403). Time is the fake's `clock`, so tests expire tokens without sleeping.

Serve it with `serve_google` on 127.0.0.1; payload fields follow the Directory API's
discovery document (tests/vendor/google validates them).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote
from wsgiref.types import StartResponse, WSGIEnvironment

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from reconciler.testing.scim_server import serving

USERS_PATH = "/admin/directory/v1/users"
TOKEN_PATH = "/token"
SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CUSTOMER_ID = "C01fake42"
NEVER = "1970-01-01T00:00:00.000Z"
TOKEN_LIFETIME = 3599
MAX_RESULTS = 500

STATUS_TEXT = {
    400: ("Bad Request", "INVALID_ARGUMENT", "invalid"),
    401: ("Unauthorized", "UNAUTHENTICATED", "authError"),
    403: ("Forbidden", "PERMISSION_DENIED", "forbidden"),
    404: ("Not Found", "NOT_FOUND", "notFound"),
    429: ("Too Many Requests", "RESOURCE_EXHAUSTED", "rateLimitExceeded"),
    500: ("Internal Server Error", "INTERNAL", "backendError"),
    503: ("Service Unavailable", "UNAVAILABLE", "backendError"),
}


@dataclass
class Fault:
    """An error to answer the next `count` requests whose "METHOD /path?query" holds
    `match`, instead of the real answer."""

    status: int
    match: str
    count: int
    retry_after: str | None = None


@dataclass
class IssuedToken:
    subject: str
    client_email: str
    expires_at: float


class GoogleError(Exception):
    """An answer in Google's error shape."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class OAuthError(Exception):
    """A token endpoint refusal (RFC 6749 §5.2)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def user_record(
    user_id: str,
    email: str,
    full_name: str,
    *,
    suspended: bool = False,
    archived: bool = False,
    last_login: str = NEVER,
    department: str | None = None,
    title: str | None = None,
    is_admin: bool = False,
    delegated_admin: bool = False,
) -> dict[str, Any]:
    """A user as `users.get` answers it with projection=basic."""
    given, _, family = full_name.partition(" ")
    user: dict[str, Any] = {
        "kind": "admin#directory#user",
        "id": user_id,
        "etag": f'"etag-{user_id}"',
        "primaryEmail": email,
        "name": {"givenName": given, "familyName": family, "fullName": full_name},
        "isAdmin": is_admin,
        "isDelegatedAdmin": delegated_admin,
        "lastLoginTime": last_login,
        "creationTime": "2024-01-15T09:00:00.000Z",
        "agreedToTerms": True,
        "suspended": suspended,
        "archived": archived,
        "customerId": CUSTOMER_ID,
        "orgUnitPath": "/",
    }
    if suspended:
        user["suspensionReason"] = "ADMIN"
    if department is not None or title is not None:
        org: dict[str, Any] = {"primary": True, "customType": "", "name": "Acme"}
        if department is not None:
            org["department"] = department
        if title is not None:
            org["title"] = title
        user["organizations"] = [org]
    return user


class FakeGoogle:
    """One Workspace customer's users and the OAuth endpoint that grants access to them."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.users: dict[str, dict[str, Any]] = {}  # live users by id
        self.deleted: dict[str, dict[str, Any]] = {}  # deleted users by id
        self.admins: set[str] = set()  # subjects who may read users
        # client_email → its public key, and the scopes delegation allows it.
        self.keys: dict[str, RSAPublicKey] = {}
        self.delegated_scopes: dict[str, set[str]] = {}
        self.revoked_keys: set[str] = set()
        self.tokens: dict[str, IssuedToken] = {}
        self.faults: list[Fault] = []
        self.requests: list[str] = []  # "METHOD /path?query", in order
        self.assertions: list[dict[str, Any]] = []  # the verified claims, in order
        self.bodies: list[Any] = []  # every JSON body answered from the Directory
        # Fault switches.
        self.fail_pages: dict[int, int] = {}  # page number (1-based) → status
        self.repeat_token = False  # page 2 onwards hands back page 2's token again
        self.truncate = False  # list bodies are cut in half
        self.empty_for_non_admins = False  # a subject without rights sees no users
        self.hold = threading.Event()
        self.slow = False  # Directory answers wait for `hold`
        self._page_tokens: dict[str, int] = {}  # token → offset
        self._lock = threading.RLock()
        self.base_url = ""  # set by serve_google

    # --- State ------------------------------------------------------------------------

    def add_user(self, user: dict[str, Any]) -> dict[str, Any]:
        """Add (or replace) a live user; `user_record` builds one."""
        self.users[user["id"]] = user
        return user

    def delete_user(self, user_id: str, when: str = "2026-11-01T10:00:00.000Z") -> None:
        """Delete a user: gone from the live list and `users.get`, listed with
        showDeleted=true, as Google keeps it for 20 days."""
        user = self.users.pop(user_id)
        user["deletionTime"] = when
        self.deleted[user_id] = user

    def register_key(self, client_email: str, public_key: RSAPublicKey) -> None:
        """Accept assertions from `client_email` signed by the matching private key, and
        allow it the read-only users scope through domain-wide delegation."""
        self.keys[client_email] = public_key
        self.delegated_scopes[client_email] = {SCOPE}

    def revoke_key(self, client_email: str) -> None:
        """The key is deleted in Google Cloud: assertions signed with it are refused."""
        self.revoked_keys.add(client_email)

    def revoke_tokens(self) -> None:
        """Every access token issued so far stops working (a revocation)."""
        with self._lock:
            self.tokens.clear()

    def fail_next(
        self, status: int, *, match: str = "", count: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer the next `count` matching requests with `status` (a 429 storm: a large
        count and a Retry-After)."""
        self.faults.append(Fault(status, match, count, retry_after))

    # --- WSGI -------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        line = f"{method} {path}" + (f"?{query}" if query else "")
        with self._lock:
            self.requests.append(line)
        if self.slow and path.startswith(USERS_PATH):
            self.hold.wait(30)
        try:
            fault = self._fault(line)
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                raise GoogleError(fault.status, "Injected fault", headers)
            if path == TOKEN_PATH and method == "POST":
                return self._json(start_response, 200, self._token(environ))
            if path == USERS_PATH and method == "GET":
                return self._list(environ, start_response, query)
            if path.startswith(USERS_PATH + "/") and method == "GET":
                return self._json(start_response, 200, self._get(environ, path))
            raise GoogleError(404, "Not Found")
        except OAuthError as exc:
            body = {"error": exc.error, "error_description": exc.description}
            return self._json(start_response, exc.status, body)
        except GoogleError as exc:
            return self._json(start_response, exc.status, error_body(exc), exc.headers)

    def _fault(self, line: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match in line and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    def _json(
        self,
        start_response: StartResponse,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
    ) -> list[bytes]:
        data = json.dumps(body).encode()
        reason = STATUS_TEXT.get(status, ("OK",))[0] if status != 200 else "OK"
        start_response(
            f"{status} {reason}",
            [
                ("Content-Type", "application/json; charset=UTF-8"),
                ("Content-Length", str(len(data))),
                *dict(headers or {}).items(),
            ],
        )
        return [data]

    # --- OAuth ------------------------------------------------------------------------

    def _token(self, environ: WSGIEnvironment) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(length).decode())
        if form.get("grant_type") != [JWT_BEARER]:
            raise OAuthError(400, "unsupported_grant_type", "Invalid grant_type")
        claims = self._verify(form.get("assertion", [""])[0])
        subject = claims.get("sub") or claims["iss"]
        if claims.get("sub") is not None:
            if claims["scope"] not in self.delegated_scopes.get(claims["iss"], set()):
                raise OAuthError(
                    401,
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or "
                    "client not authorized for any of the scopes requested.",
                )
            if not self._is_user(subject):
                raise OAuthError(400, "invalid_grant", "Invalid email or User ID")
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self.assertions.append(claims)
            self.tokens[token] = IssuedToken(
                subject=subject,
                client_email=claims["iss"],
                expires_at=self.clock() + TOKEN_LIFETIME,
            )
        return {"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"}

    def _verify(self, assertion: str) -> dict[str, Any]:
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise OAuthError(400, "invalid_grant", "Invalid JWT") from exc
        key = self.keys.get(issuer) if isinstance(issuer, str) else None
        if key is None:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if issuer in self.revoked_keys:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=f"{self.base_url}{TOKEN_PATH}",
                # Expiry is checked on the fake's clock below, not the wall clock.
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "iat"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.") from exc
        except jwt.PyJWTError as exc:
            raise OAuthError(400, "invalid_grant", f"Invalid JWT: {type(exc).__name__}") from exc
        now = self.clock()
        if not claims["iat"] - 300 <= now < claims["exp"] or claims["exp"] - claims["iat"] > 3600:
            raise OAuthError(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        if claims.get("scope") != SCOPE:
            raise OAuthError(400, "invalid_scope", "Invalid OAuth scope or ID token audience.")
        return claims

    def _is_user(self, email: str) -> bool:
        return any(user["primaryEmail"] == email for user in self.users.values())

    def _caller(self, environ: WSGIEnvironment) -> IssuedToken:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        with self._lock:
            issued = self.tokens.get(token) if scheme == "Bearer" else None
        if issued is None or issued.expires_at <= self.clock():
            raise GoogleError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        return issued

    def _may_read(self, caller: IssuedToken) -> bool:
        return caller.subject in self.admins

    # --- Directory --------------------------------------------------------------------

    def _list(
        self, environ: WSGIEnvironment, start_response: StartResponse, query: str
    ) -> list[bytes]:
        caller = self._caller(environ)
        params = {name: values[-1] for name, values in parse_qs(query).items()}
        if params.get("customer") not in ("my_customer", CUSTOMER_ID):
            raise GoogleError(400, "Bad Request")
        size = int(params.get("maxResults", "100"))
        if not 1 <= size <= MAX_RESULTS:
            raise GoogleError(400, "Invalid Input: maxResults")
        deleted = params.get("showDeleted") == "true"
        if not self._may_read(caller):
            if not self.empty_for_non_admins:
                raise GoogleError(403, "Not Authorized to access this resource/api")
            return self._json(start_response, 200, {"kind": "admin#directory#users"})
        offset = self._offset(params.get("pageToken"))
        page_number = offset // size + 1
        status = self.fail_pages.get(page_number)
        if status is not None:
            raise GoogleError(status, "Backend Error")
        pool = self.deleted if deleted else self.users
        ordered = sorted(pool.values(), key=lambda user: str(user["primaryEmail"]).lower())
        chunk = ordered[offset : offset + size]
        body: dict[str, Any] = {"kind": "admin#directory#users", "etag": '"list-etag"'}
        if chunk:
            body["users"] = chunk
        if offset + size < len(ordered):
            body["nextPageToken"] = self._token_for(offset + size, size)
        self.bodies.append(body)
        if self.truncate:
            data = json.dumps(body).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(data) // 2))],
            )
            return [data[: len(data) // 2]]
        return self._json(start_response, 200, body)

    def _offset(self, token: str | None) -> int:
        if token is None:
            return 0
        with self._lock:
            offset = self._page_tokens.get(token)
        if offset is None:
            raise GoogleError(400, "Invalid Input: pageToken")
        return offset

    def _token_for(self, offset: int, size: int) -> str:
        with self._lock:
            if self.repeat_token:
                # Hand back the token that led to this page: the listing would loop.
                for token, known in self._page_tokens.items():
                    if known == offset - size:
                        return token
            token = secrets.token_urlsafe(16)
            self._page_tokens[token] = offset
            return token

    def _get(self, environ: WSGIEnvironment, path: str) -> dict[str, Any]:
        caller = self._caller(environ)
        if not self._may_read(caller):
            raise GoogleError(403, "Not Authorized to access this resource/api")
        key = unquote(path[len(USERS_PATH) + 1 :])
        for user in self.users.values():
            if key in (user["id"], user["primaryEmail"]):
                self.bodies.append(user)
                return user
        raise GoogleError(404, "Resource Not Found: userKey")


def error_body(error: GoogleError) -> dict[str, Any]:
    """Google's JSON error body for a status and message."""
    _, status, reason = STATUS_TEXT.get(error.status, ("", "UNKNOWN", "unknown"))
    entry: dict[str, Any] = {"message": error.message, "domain": "global", "reason": reason}
    if error.status == 401:
        entry.update({"location": "Authorization", "locationType": "header"})
    return {
        "error": {
            "code": error.status,
            "message": error.message,
            "errors": [entry],
            "status": status,
        }
    }


@contextmanager
def serve_google(fake: FakeGoogle) -> Iterator[str]:
    """Serve `fake` on 127.0.0.1 on a random port; yields its base URL. Answers held by
    `slow` are released when the block ends."""
    with serving(fake, name="fake-google") as url:
        fake.base_url = url
        try:
            yield url
        finally:
            fake.hold.set()
