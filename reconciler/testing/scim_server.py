"""A real SCIM 2.0 server (scim2-server) on 127.0.0.1, for tests and `reconciler demo`.

    with start_scim_server(token="s3cret") as server:
        ids = server.seed(users=[{"userName": "alice"}], groups=[
            {"displayName": "admins", "members": ["alice"]},
        ])
        ...  # point a connector at server.url

The server is scim2-server's own WSGI application, in memory, served from a thread by a
threading WSGI server on a random port, so starting one costs well under a second (the
first start in a process also pays for importing pydantic models) and a slow request
never blocks the others. `middleware` lets a test put a WSGI wrapper in front of it to
inject faults while keeping the real server's behaviour for everything else.

The data helpers (`seed`, `set_active`, `delete_user`, `list_users`) talk plain HTTP with
httpx and plain dicts, independently of the connector under test, so they work against
any SCIM server that supports `/Bulk`.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any, ClassVar, Protocol
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import WSGIApplication

import httpx

from reconciler.connectors.http import request_secrets, server_text
from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
# A User extension recording when a user last signed in, as apps add their own.
ACTIVITY_SCHEMA = "urn:example:params:scim:schemas:extension:activity:2.0:User"
LAST_LOGIN_ATTRIBUTE = f"{ACTIVITY_SCHEMA}:lastLogin"
ACTIVITY_SCHEMA_DEFINITION = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
    "id": ACTIVITY_SCHEMA,
    "name": "Activity",
    "description": "When the user last signed in.",
    "attributes": [
        {
            "name": "lastLogin",
            "type": "dateTime",
            "multiValued": False,
            "required": False,
            "caseExact": False,
            "mutability": "readWrite",
            "returned": "default",
            "uniqueness": "none",
        }
    ],
}
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_JSON = "application/scim+json"

# RFC 7644 §3.7 lets a server limit bulk requests; these are scim2-server's defaults,
# used when the server does not announce its own in /ServiceProviderConfig.
DEFAULT_BULK_OPERATIONS = 1000
DEFAULT_BULK_PAYLOAD = 1_048_576

Middleware = Callable[[WSGIApplication], WSGIApplication]


class StartServer(Protocol):
    """`start_scim_server` or `django_scim_server.start_django_scim_server`: tests that
    take one run against either SCIM implementation."""

    def __call__(
        self, token: str | None = None, *, middleware: Middleware | None = None
    ) -> AbstractContextManager[ScimServer]: ...


class _RequestHandler(WSGIRequestHandler):
    # A client that connects and never sends anything must not keep a handler thread
    # (and so `stop`, which joins them) waiting forever.
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        # The base class writes every request to stderr; tests and the demo want quiet.
        log.debug("test server: " + format, *args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # Non-daemon request threads, joined by server_close(): stopping a server leaves no
    # thread behind.
    daemon_threads = False
    block_on_close = True


@dataclass(frozen=True)
class SeedResult:
    """The ids the server gave to seeded resources."""

    users: Mapping[str, str]  # userName → id
    groups: Mapping[str, str]  # displayName → id


@dataclass
class ScimServer:
    """A running scim2-server: its base URL (ending in /v2) and the token it requires."""

    # Which SCIM implementation serves, for tests whose expectations depend on what a
    # server keeps (django_scim_server.DjangoScimServer says "django-scim2").
    implementation: ClassVar[str] = "scim2-server"

    url: str
    token: str | None

    def seed(
        self, users: Sequence[Mapping[str, Any]], groups: Sequence[Mapping[str, Any]] = ()
    ) -> SeedResult:
        """Create users and groups; see the module function `seed`."""
        return seed(self.url, self.token, users, groups)

    def set_active(self, user_id: str, active: bool) -> None:
        """Set a user's `active` flag (as an IdP suspending someone would)."""
        set_active(self.url, self.token, user_id, active)

    def delete_user(self, user_id: str) -> None:
        """Delete a user."""
        delete_user(self.url, self.token, user_id)

    def sign_in(self, user_id: str, at: str) -> None:
        """Record that a user signed in at `at` (ISO 8601), as the app would."""
        set_attribute(self.url, self.token, user_id, LAST_LOGIN_ATTRIBUTE, at)

    def list_users(self) -> list[dict[str, Any]]:
        """Every user, as the server returns it."""
        return list_users(self.url, self.token)

    def add_member(self, group_id: str, user_id: str) -> None:
        """Add a user to a group (as an admin of the app or the IdP would)."""
        add_member(self.url, self.token, group_id, user_id)

    def members(self, group_id: str) -> list[str]:
        """The ids of a group's members."""
        with _client(self.url, self.token) as client:
            response = client.get(f"Groups/{quote(group_id, safe='')}")
            _check(response, 200)
        return sorted(str(m["value"]) for m in response.json().get("members") or [])


@contextmanager
def start_scim_server(
    token: str | None = None, *, middleware: Middleware | None = None
) -> Iterator[ScimServer]:
    """Serve an empty in-memory scim2-server on 127.0.0.1 until the block ends.

    With `token`, every request must carry `Authorization: Bearer <token>`, as with
    `scim2-server --bearer-token`. `middleware` wraps the WSGI application (tests use it
    to inject faults).
    """
    with serving(_build_app(token), name="scim2-server", middleware=middleware) as origin:
        yield ScimServer(url=f"{origin}/v2", token=token)


@contextmanager
def serving(
    app: WSGIApplication, *, name: str, middleware: Middleware | None = None
) -> Iterator[str]:
    """Serve `app` (wrapped in `middleware`, if any) on 127.0.0.1 on a random port from a
    thread until the block ends; yields `http://127.0.0.1:PORT`. On exit, stops serving
    and waits for in-flight requests.

    Each request gets its own thread, so a slow request never blocks the others.
    """
    if middleware is not None:
        app = middleware(app)
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_RequestHandler
    )
    # A short poll interval: shutdown() waits up to one interval, on every stop.
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"{name}:{server.server_port}",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _build_app(token: str | None) -> WSGIApplication:
    try:
        from scim2_server.memory import InMemoryStorage
        from scim2_server.testserver.application import BearerTokenApplication
    except ImportError as exc:
        raise ReconcilerError(
            "the local SCIM server needs the scim2-server package; "
            "install it with: pip install 'access-reconciler[demo]'"
        ) from exc
    provider, service = _provider_and_service(token is not None)
    application: WSGIApplication = BearerTokenApplication(
        InMemoryStorage(), provider, service=service, bearer_tokens=[token] if token else []
    )
    return application


@functools.cache
def _provider_and_service(with_token: bool) -> tuple[Any, Any]:
    # Building the provider validates every default schema (~0.2 s); servers differ
    # only by storage and token, so one provider per flavour serves them all. This
    # mirrors what the `scim2-server` command does in testserver/cli.py.
    from scim2_models import Schema, SchemaExtension, ScimProvider
    from scim2_server.service import ScimService
    from scim2_server.testserver.application import BEARER_TOKEN_SCHEME
    from scim2_server.utils import (
        load_default_resource_types,
        load_default_schemas,
        load_default_service_provider_config,
    )

    config = load_default_service_provider_config()
    if with_token:
        # Announcing the scheme makes 401 responses carry WWW-Authenticate.
        config.authentication_schemes = [
            *(config.authentication_schemes or []),
            BEARER_TOKEN_SCHEME,
        ]
    schemas = load_default_schemas()
    resource_types = load_default_resource_types()
    # Apps that record sign-ins over SCIM do it in an extension of their own; this one
    # stands for them (a connector reads it through `last_login_attribute`).
    schemas[ACTIVITY_SCHEMA] = Schema.model_validate(ACTIVITY_SCHEMA_DEFINITION)
    users = resource_types["User"]
    users.schema_extensions = [
        *(users.schema_extensions or []),
        SchemaExtension.model_validate({"schema": ACTIVITY_SCHEMA, "required": False}),
    ]
    provider = ScimProvider.from_discovery(schemas.values(), resource_types.values(), config=config)
    # The secret signs pagination cursors; a fixed one is fine for a throwaway server.
    return provider, ScimService(provider, secret="reconciler-testing")


def _client(url: str, token: str | None) -> httpx.Client:
    headers = {"Accept": SCIM_JSON, "Content-Type": SCIM_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=url.rstrip("/") + "/", headers=headers, timeout=120)


def _check(response: httpx.Response, *expected: int) -> None:
    if response.status_code not in expected:
        body = server_text(response.text, request_secrets(response.request), limit=300)
        raise ReconcilerError(
            f"SCIM server at {response.request.url}: {response.request.method} answered "
            f"{response.status_code}: {body}"
        )


def _bulk_limits(client: httpx.Client) -> tuple[int, int]:
    response = client.get("ServiceProviderConfig")
    bulk = response.json().get("bulk", {}) if response.status_code == 200 else {}
    if response.status_code == 200 and not bulk.get("supported", False):
        raise ReconcilerError(f"SCIM server at {client.base_url} does not support /Bulk")
    operations = int(bulk.get("maxOperations") or DEFAULT_BULK_OPERATIONS)
    payload = int(bulk.get("maxPayloadSize") or DEFAULT_BULK_PAYLOAD)
    return operations, payload


@dataclass
class _Operation:
    bulk_id: str
    path: str
    data: dict[str, Any]
    # bulkIds this operation's data references, resolved per batch.
    references: list[str]
    key: str  # userName or displayName, for the result


def seed(
    server_url: str,
    token: str | None,
    users: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]] = (),
) -> SeedResult:
    """Create `users` then `groups` through `POST /Bulk`; return their ids.

    Users are SCIM User payloads (`schemas` may be left out; `userName` is required).
    Groups are SCIM Group payloads whose `members` may be strings: the userName of a
    user seeded in the same call, else the displayName of a group earlier in `groups`
    (a nested group). Member dicts are sent unchanged.

    Operations are sent in batches within the server's announced limits (count and
    bytes); a member created in the same batch is referenced as `bulkId:…`, one created
    in an earlier batch by its id. Any failed operation raises ReconcilerError.
    """
    operations: list[_Operation] = []
    user_bulk_ids: dict[str, str] = {}
    for index, user in enumerate(users):
        if not user.get("userName"):
            raise ReconcilerError(f"seed: user number {index + 1} has no userName")
        name = str(user["userName"])
        bulk_id = f"user-{index}"
        user_bulk_ids[name] = bulk_id
        extensions = [ACTIVITY_SCHEMA] if ACTIVITY_SCHEMA in user else []
        data = {"schemas": [USER_SCHEMA, *extensions], **user}
        operations.append(_Operation(bulk_id, "/Users", data, [], name))
    group_bulk_ids: dict[str, str] = {}
    for index, group in enumerate(groups):
        if not group.get("displayName"):
            raise ReconcilerError(f"seed: group number {index + 1} has no displayName")
        name = str(group["displayName"])
        bulk_id = f"group-{index}"
        members: list[dict[str, Any]] = []
        references: list[str] = []
        for member in group.get("members") or ():
            if not isinstance(member, str):
                members.append(dict(member))
            elif member in user_bulk_ids:
                references.append(user_bulk_ids[member])
                members.append({"value": f"bulkId:{user_bulk_ids[member]}", "type": "User"})
            elif member in group_bulk_ids:
                references.append(group_bulk_ids[member])
                members.append({"value": f"bulkId:{group_bulk_ids[member]}", "type": "Group"})
            else:
                raise ReconcilerError(f"seed: group {name!r} lists unknown member {member!r}")
        group_bulk_ids[name] = bulk_id
        data = {"schemas": [GROUP_SCHEMA], **group, "members": members}
        operations.append(_Operation(bulk_id, "/Groups", data, references, name))

    created: dict[str, str] = {}  # bulkId → id
    with _client(server_url, token) as client:
        max_operations, max_payload = _bulk_limits(client)
        batch: list[dict[str, Any]] = []
        batch_ids: set[str] = set()
        # Room for the envelope around the operations.
        size = 200
        for operation in operations:
            wire = _resolve(operation, created)
            op_size = len(json.dumps(wire)) + 2
            if batch and (len(batch) >= max_operations or size + op_size > max_payload):
                _send_bulk(client, batch, created)
                batch, batch_ids, size = [], set(), 200
                wire = _resolve(operation, created)
                op_size = len(json.dumps(wire)) + 2
            # A reference to a resource neither created nor in this batch cannot happen:
            # operations are in dependency order, and earlier batches are flushed.
            assert all(ref in created or ref in batch_ids for ref in operation.references)
            batch.append(wire)
            batch_ids.add(operation.bulk_id)
            size += op_size
        if batch:
            _send_bulk(client, batch, created)
    return SeedResult(
        users={name: created[bulk_id] for name, bulk_id in user_bulk_ids.items()},
        groups={name: created[bulk_id] for name, bulk_id in group_bulk_ids.items()},
    )


def _resolve(operation: _Operation, created: Mapping[str, str]) -> dict[str, Any]:
    """The bulk operation, with references to earlier batches replaced by real ids."""
    data = operation.data
    if operation.references and "members" in data:
        members = []
        for member in data["members"]:
            value = member.get("value")
            if isinstance(value, str) and value.startswith("bulkId:"):
                ref = value.removeprefix("bulkId:")
                if ref in created:
                    member = {**member, "value": created[ref]}
            members.append(member)
        data = {**data, "members": members}
    return {"method": "POST", "path": operation.path, "bulkId": operation.bulk_id, "data": data}


def _send_bulk(
    client: httpx.Client, operations: list[dict[str, Any]], created: dict[str, str]
) -> None:
    body = {"schemas": [BULK_REQUEST], "Operations": operations}
    response = client.post("Bulk", content=json.dumps(body))
    _check(response, 200)
    failures = []
    for outcome in response.json().get("Operations", []):
        status = str(outcome.get("status", ""))
        bulk_id = outcome.get("bulkId", "")
        if status.startswith("2") and outcome.get("location"):
            created[bulk_id] = str(outcome["location"]).rstrip("/").rsplit("/", 1)[-1]
        else:
            detail = (outcome.get("response") or {}).get("detail", "")
            failures.append(f"{bulk_id}: {status} {detail}".strip())
    if failures:
        shown = "; ".join(failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise ReconcilerError(f"seed: {len(failures)} bulk operations failed: {shown}{more}")


def set_active(server_url: str, token: str | None, user_id: str, active: bool) -> None:
    """Set a user's `active` attribute with a PATCH."""
    set_attribute(server_url, token, user_id, "active", active)


def set_attribute(
    server_url: str, token: str | None, user_id: str, path: str, value: object
) -> None:
    """Replace one attribute of a user (`path` as in a PATCH) with a PATCH."""
    body = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": path, "value": value}],
    }
    with _client(server_url, token) as client:
        response = client.patch(f"Users/{quote(user_id, safe='')}", content=json.dumps(body))
        _check(response, 200, 204)


def add_member(server_url: str, token: str | None, group_id: str, user_id: str) -> None:
    """Add a user to a group with a PATCH."""
    body = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
    }
    with _client(server_url, token) as client:
        response = client.patch(f"Groups/{quote(group_id, safe='')}", content=json.dumps(body))
        _check(response, 200, 204)


def delete_user(server_url: str, token: str | None, user_id: str) -> None:
    """Delete a user; deleting one that is already gone is not an error."""
    with _client(server_url, token) as client:
        response = client.delete(f"Users/{quote(user_id, safe='')}")
        _check(response, 200, 204, 404)


def list_users(server_url: str, token: str | None) -> list[dict[str, Any]]:
    """Every user, paged by what the server returns (it caps `count`)."""
    return _list(server_url, token, "Users")


def list_groups(server_url: str, token: str | None) -> list[dict[str, Any]]:
    """Every group."""
    return _list(server_url, token, "Groups")


def _list(server_url: str, token: str | None, endpoint: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with _client(server_url, token) as client:
        while True:
            response = client.get(endpoint, params={"startIndex": len(found) + 1, "count": 1000})
            _check(response, 200)
            page = response.json()
            resources: Iterable[dict[str, Any]] = page.get("Resources") or []
            before = len(found)
            found.extend(resources)
            if len(found) >= int(page.get("totalResults", 0)) or len(found) == before:
                return found
