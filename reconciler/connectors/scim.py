"""SCIM 2.0 (RFC 7643/7644): an app whose accounts are SCIM Users, or an identity source.

Pulling reads `/Groups` once (membership: scim2-server, like many servers, never fills
`User.groups`), then pages through `/Users` by `startIndex`/`count`, advancing by the
number of resources each page actually held, because servers cap `count` silently.
A pull that cannot be shown complete raises `PullError`/`PartialPullError` at the point
of failure; it never ends early as if it were done.

Deprovisioning is `PATCH active=false` (disable) or `DELETE`; a user that is already gone
counts as done, so both are safe to repeat.

Requests are built by the `*_request` functions and responses read by the `parse_*`
and `*_from_user` functions, apart from sending (`http.send`), so each can be tested on
its own.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote

import httpx

from reconciler.connectors.base import Connector, ConnectorContext, ConnectorType, Mode
from reconciler.connectors.http import (
    PageCallback,
    RetryPolicy,
    build_client,
    describe_request,
    describe_status,
    read_json,
    redact,
    send,
)
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.model import Account, Identity, Role, clean_text

log = logging.getLogger(__name__)

SCIM_JSON = "application/scim+json"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

MAX_PAGE_SIZE = 1000

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "Base URL of the SCIM service, e.g. https://example.com/scim/v2; "
            "/Users and /Groups are requested under it.",
        },
        "token_env": {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "Name of the environment variable holding the bearer token. "
            "Leave out for a server that needs no token.",
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 30,
            "description": "Seconds to wait for the server to connect or answer.",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "default": 500,
            "description": "Resources asked for per page (`count`). Servers may return "
            "fewer; paging follows what they return.",
        },
        "filter": {
            "type": "string",
            "minLength": 1,
            "description": 'SCIM filter applied when listing users, e.g. userType eq "Employee".',
        },
        "service_user_types": {
            "type": "array",
            "items": {"type": "string"},
            "uniqueItems": True,
            "default": ["Service"],
            "description": "userType values that mark a service (non-human) account.",
        },
        "inactive_status": {
            "enum": ["deprovisioned", "suspended"],
            "default": "deprovisioned",
            "description": "What `active: false` means for an identity when this system "
            "is an identity source.",
        },
        "max_retries": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10,
            "default": 4,
            "description": "Times a request is repeated after a connection error, "
            "timeout, 429 or 5xx before the pull or action fails.",
        },
    },
}


@dataclass(frozen=True)
class ScimOptions:
    """The validated options of one SCIM system, with defaults applied."""

    url: str
    token_env: str | None = None
    timeout: float = 30.0
    page_size: int = 500
    filter: str | None = None
    service_user_types: tuple[str, ...] = ("Service",)
    inactive_status: Literal["deprovisioned", "suspended"] = "deprovisioned"
    max_retries: int = 4

    @classmethod
    def from_mapping(cls, system: str, options: Mapping[str, Any]) -> ScimOptions:
        """Options with defaults applied.

        reconciler.yaml is validated against OPTIONS_SCHEMA before connectors are built
        (like config.py, this trusts shapes and types); the two mistakes that would
        otherwise pass silently or crash, an unknown key and a missing url, are
        checked again here for callers that build a connector directly.
        """
        unknown = sorted(set(options) - set(OPTIONS_SCHEMA["properties"]))
        if unknown:
            known = ", ".join(sorted(OPTIONS_SCHEMA["properties"]))
            raise ConfigError(
                f"{system}: unknown option(s) {', '.join(unknown)} for type scim; use only: {known}"
            )
        if not isinstance(options.get("url"), str) or not options["url"]:
            raise ConfigError(
                f"{system}: option url is required: the SCIM base URL, "
                "e.g. https://example.com/scim/v2"
            )
        return cls(
            url=options["url"],
            token_env=options.get("token_env"),
            timeout=float(options.get("timeout", 30)),
            page_size=int(options.get("page_size", 500)),
            filter=options.get("filter"),
            service_user_types=tuple(options.get("service_user_types", ("Service",))),
            inactive_status=options.get("inactive_status", "deprovisioned"),
            max_retries=int(options.get("max_retries", 4)),
        )


# ---------------------------------------------------------------------------------------
# Requests


def list_request(
    client: httpx.Client,
    endpoint: str,
    *,
    start_index: int,
    count: int,
    filter: str | None = None,
) -> httpx.Request:
    """One page of `/Users` or `/Groups` (RFC 7644 §3.4.2.4: startIndex is 1-based)."""
    params: dict[str, str | int] = {"startIndex": start_index, "count": count}
    if filter:
        params["filter"] = filter
    return client.build_request("GET", endpoint, params=params)


def user_request(client: httpx.Client, user_id: str) -> httpx.Request:
    """GET one user."""
    return client.build_request("GET", _user_path(user_id))


def disable_request(client: httpx.Client, user_id: str) -> httpx.Request:
    """PATCH a user's `active` to false (RFC 7644 §3.5.2.3)."""
    body = {
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    return client.build_request(
        "PATCH",
        _user_path(user_id),
        content=json.dumps(body).encode(),
        headers={"Content-Type": SCIM_JSON},
    )


def delete_request(client: httpx.Client, user_id: str) -> httpx.Request:
    """DELETE a user (RFC 7644 §3.6)."""
    return client.build_request("DELETE", _user_path(user_id))


def _user_path(user_id: str) -> str:
    # Ids are opaque strings: quote everything so one cannot reach another path.
    return f"Users/{quote(user_id, safe='')}"


# ---------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True)
class ListPage:
    """One page of a SCIM ListResponse."""

    resources: tuple[Mapping[str, Any], ...]
    total: int | None  # totalResults; None when the server left it out


@dataclass(frozen=True)
class ScimGroup:
    """A group as far as membership goes."""

    id: str
    display_name: str
    member_ids: tuple[str, ...]


def parse_list_page(body: object) -> ListPage:
    """A ListResponse body as a ListPage; ValueError if it is not one."""
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    total = body.get("totalResults")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
        raise ValueError(f"totalResults is {total!r}, not a number")
    # RFC 7644 §3.4.2: Resources may be left out when there are none.
    resources = body.get("Resources", [])
    if not isinstance(resources, list):
        raise ValueError("Resources is not a list")
    for resource in resources:
        if not isinstance(resource, dict):
            raise ValueError("a resource is not a JSON object")
        if not isinstance(resource.get("id"), str) or not resource["id"]:
            raise ValueError("a resource has no id")
    return ListPage(resources=tuple(resources), total=total)


def parse_group(resource: Mapping[str, Any]) -> ScimGroup:
    """The id, name and member ids of a Group resource."""
    members = resource.get("members") or []
    member_ids = tuple(
        str(member["value"]) for member in _dicts(members) if member.get("value") is not None
    )
    return ScimGroup(
        id=str(resource["id"]),
        display_name=str(resource.get("displayName") or resource["id"]),
        member_ids=member_ids,
    )


def group_memberships(groups: Iterable[ScimGroup]) -> dict[str, frozenset[str]]:
    """Member id → names of every group it is in, directly or through nested groups.

    RFC 7643 §4.1.2 defines `User.groups` as direct and indirect membership; a member
    whose value is a group id makes that group's members members of the outer group.
    """
    groups = list(groups)
    names = {group.id: group.display_name for group in groups}
    parents: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        for member_id in group.member_ids:
            parents[member_id].add(group.id)
    result: dict[str, frozenset[str]] = {}
    for member_id in parents:
        seen: set[str] = set()
        pending = list(parents[member_id])
        while pending:
            group_id = pending.pop()
            if group_id not in seen:  # a cycle of nested groups ends here
                seen.add(group_id)
                pending.extend(parents.get(group_id, ()))
        result[member_id] = frozenset(names[group_id] for group_id in seen)
    return result


def primary_email(user: Mapping[str, Any]) -> str:
    """The primary email, else the first one, else ''."""
    emails = [e for e in _dicts(user.get("emails")) if e.get("value")]
    for entry in emails:
        if entry.get("primary") is True:
            return str(entry["value"])
    return str(emails[0]["value"]) if emails else ""


def display_name(user: Mapping[str, Any]) -> str:
    """displayName, else name.formatted, else given and family name."""
    if user.get("displayName"):
        return str(user["displayName"])
    name = user.get("name")
    if isinstance(name, dict):
        if name.get("formatted"):
            return str(name["formatted"])
        parts = [str(name[key]) for key in ("givenName", "familyName") if name.get(key)]
        return " ".join(parts)
    return ""


def user_is_active(user: Mapping[str, Any]) -> bool:
    """`active`, which RFC 7643 leaves optional: a server that omits it has no notion
    of disabled users, so the user is active."""
    return user.get("active") is not False


def user_group_names(
    user: Mapping[str, Any], memberships: Collection[str], group_names: Mapping[str, str]
) -> set[str]:
    """Group names from membership read in /Groups plus whatever `User.groups` says."""
    names = set(memberships)
    for entry in _dicts(user.get("groups")):
        if entry.get("display"):
            names.add(str(entry["display"]))
        elif entry.get("value") is not None and str(entry["value"]) in group_names:
            names.add(group_names[str(entry["value"])])
    return names


def account_from_user(
    user: Mapping[str, Any],
    *,
    memberships: Collection[str] = (),
    group_names: Mapping[str, str] | None = None,
    service_user_types: Collection[str] = ("Service",),
) -> Account:
    """A SCIM User as an Account; roles are `roles[].value` and group names."""
    roles = {str(r["value"]) for r in _dicts(user.get("roles")) if r.get("value") is not None}
    roles |= user_group_names(user, memberships, group_names or {})
    entitlements = [
        e["value"] for e in _dicts(user.get("entitlements")) if e.get("value") is not None
    ]
    return Account.build(
        id=user["id"],
        username=user.get("userName") or "",
        email=primary_email(user),
        display_name=display_name(user),
        status="active" if user_is_active(user) else "disabled",
        type="service" if user.get("userType") in service_user_types else "human",
        roles=roles,
        entitlements=entitlements,
    )


def identity_from_user(
    user: Mapping[str, Any],
    *,
    memberships: Collection[str] = (),
    group_names: Mapping[str, str] | None = None,
    inactive_status: str = "deprovisioned",
) -> Identity:
    """A SCIM User as an Identity; `active: false` becomes `inactive_status`."""
    return Identity.build(
        id=user["id"],
        email=primary_email(user),
        username=user.get("userName") or "",
        display_name=display_name(user),
        status="active" if user_is_active(user) else inactive_status,
        groups=user_group_names(user, memberships, group_names or {}),
    )


def scim_error_detail(response: httpx.Response) -> str:
    """`detail (scimType x)` from a SCIM Error body (RFC 7644 §3.12), or ''."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    detail = str(body.get("detail") or "").strip()
    scim_type = str(body.get("scimType") or "").strip()
    if scim_type:
        return f"{detail} (scimType {scim_type})" if detail else f"scimType {scim_type}"
    return detail


def _dicts(value: object) -> list[dict[str, Any]]:
    # Multi-valued attributes are lists of objects; tolerate servers that send junk.
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


# ---------------------------------------------------------------------------------------
# The connector


class ScimConnector:
    """A SCIM 2.0 service as an app and/or an identity source.

    `on_page`, when set, is called after each page of users with its size (progress).
    Live lookups (`lookup_account`, `lookup_identity`) read only `/Users/{id}`: their
    roles and groups hold what the user resource itself says, not membership read from
    `/Groups`; apply needs their status, which is exact.
    """

    modes: frozenset[Mode] = frozenset({Mode.DISABLE, Mode.DELETE})

    def __init__(
        self,
        name: str,
        client: httpx.Client,
        options: ScimOptions,
        *,
        retry: RetryPolicy | None = None,
        secrets: Iterable[str] = (),
        on_page: PageCallback | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.options = options
        self.retry = retry or RetryPolicy(max_attempts=options.max_retries + 1)
        self.secrets = tuple(secrets)
        self.on_page = on_page

    # -- Connector --------------------------------------------------------------------

    def pull_accounts(self) -> Iterator[Account]:
        """Every user as an Account (membership from /Groups merged into roles)."""
        groups = list(self._pull_groups())
        memberships = group_memberships(groups)
        names = {group.id: group.display_name for group in groups}
        for user in self._pull_users():
            yield account_from_user(
                user,
                memberships=memberships.get(str(user["id"]), ()),
                group_names=names,
                service_user_types=self.options.service_user_types,
            )

    def pull_roles(self) -> list[Role]:
        """The groups as roles, sorted by name (groups with one name are one role)."""
        names = {clean_text(group.display_name) for group in self._pull_groups()}
        return [Role(name=name, description="", entitlements=()) for name in sorted(names)]

    def pull_identities(self) -> Iterator[Identity]:
        """Every user as an Identity with its group names."""
        groups = list(self._pull_groups())
        memberships = group_memberships(groups)
        names = {group.id: group.display_name for group in groups}
        for user in self._pull_users():
            yield identity_from_user(
                user,
                memberships=memberships.get(str(user["id"]), ()),
                group_names=names,
                inactive_status=self.options.inactive_status,
            )

    def lookup_account(self, account_id: str) -> Account | None:
        """The user read live, or None if the server says 404."""
        user = self._get_user(account_id)
        if user is None:
            return None
        return account_from_user(user, service_user_types=self.options.service_user_types)

    def lookup_identity(self, identity_id: str) -> Identity | None:
        """The user read live as an identity, or None if the server says 404."""
        user = self._get_user(identity_id)
        if user is None:
            return None
        return identity_from_user(user, inactive_status=self.options.inactive_status)

    def deprovision(self, account: Account, mode: Mode) -> None:
        """Disable (PATCH active=false) or delete the user; a 404 means already gone."""
        if mode is Mode.DISABLE:
            # Setting a value twice has the same effect as once, so the PATCH may be
            # repeated after a lost answer, unlike PATCH in general.
            request = disable_request(self.client, account.id)
            response = self._send(request, idempotent=True)
            if response.status_code == 200:
                self._check_disabled(response, account)
                return
        elif mode is Mode.DELETE:
            request = delete_request(self.client, account.id)
            response = self._send(request)
        else:
            raise ConnectorError(
                self.name, f"mode {mode.value} is not supported for SCIM; use disable or delete"
            )
        if response.status_code in (200, 204, 404):
            return
        raise self._error(response, f"{mode.value} account {account.id} ({account.username})")

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    # -- Internals --------------------------------------------------------------------

    def _send(self, request: httpx.Request, *, idempotent: bool | None = None) -> httpx.Response:
        return send(
            self.client,
            request,
            system=self.name,
            retry=self.retry,
            idempotent=idempotent,
            secrets=self.secrets,
        )

    def _get_user(self, user_id: str) -> Mapping[str, Any] | None:
        response = self._send(user_request(self.client, user_id))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, f"read user {user_id}")
        body = read_json(response, system=self.name, secrets=self.secrets)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ConnectorError(
                self.name, f"{describe_request(request=response.request)}: not a SCIM User"
            )
        return cast(Mapping[str, Any], body)

    def _check_disabled(self, response: httpx.Response, account: Account) -> None:
        # A 200 carries the resource: if the server kept the user active (a read-only
        # attribute in its schema, say), saying "done" would leave access in place.
        try:
            body = response.json()
        except ValueError:
            return
        if isinstance(body, dict) and body.get("active") is True:
            raise ConnectorError(
                self.name,
                f"disable account {account.id} ({account.username}): the server answered "
                "200 but the user is still active; check that it allows changing `active`",
            )

    def _pull_users(self) -> Iterator[Mapping[str, Any]]:
        yield from self._pull("Users", filter=self.options.filter, progress=True)

    def _pull_groups(self) -> Iterator[ScimGroup]:
        for resource in self._pull("Groups", filter=None, progress=False):
            yield parse_group(resource)

    def _pull(
        self, endpoint: str, *, filter: str | None, progress: bool
    ) -> Iterator[Mapping[str, Any]]:
        """Every resource of `endpoint`, page by page; PullError if not provably all.

        Paging stops when the number of resources read reaches totalResults. Without
        totalResults (a server bug, RFC 7644 makes it required) a page shorter than
        requested is taken as the last, and an empty page always is.
        """
        what = endpoint.lower()
        count = self.options.page_size
        seen: set[str] = set()
        total: int | None = None
        start_index = 1
        while True:
            request = list_request(
                self.client, endpoint, start_index=start_index, count=count, filter=filter
            )
            failed = functools.partial(self._pull_failed, what, len(seen), total)
            at = describe_request(request)
            try:
                response = self._send(request)
            except ConnectorError as exc:
                raise failed(_without_system(exc)) from exc
            if response.status_code != 200:
                bad_filter = filter and response.status_code == 400
                hint = "check `filter` in reconciler.yaml" if bad_filter else ""
                raise failed(self._error_text(response, hint))
            try:
                page = parse_list_page(response.json())
            except ValueError as exc:
                raise failed(f"{at}: the answer is not a SCIM list ({exc})") from exc

            if total is None:
                total = page.total
            elif page.total is not None and page.total != total:
                raise failed(
                    f"{at}: totalResults changed from {total} to {page.total} during the pull "
                    f"({what} were added or removed meanwhile); run the pull again"
                )
            for resource in page.resources:
                resource_id = str(resource["id"])
                if resource_id in seen:
                    raise failed(
                        f"{at}: the server returned {resource_id} twice (it ignores startIndex, "
                        "or the data changed during the pull)"
                    )
                seen.add(resource_id)
            yield from page.resources
            if progress and self.on_page is not None:
                self.on_page(len(page.resources))

            returned = len(page.resources)
            if total is not None:
                if len(seen) >= total:
                    return
                if returned == 0:
                    raise failed(f"{at}: an empty page before totalResults ({total}) was reached")
            elif returned < count:
                return
            start_index += returned

    def _pull_failed(self, what: str, read: int, total: int | None, reason: str) -> PullError:
        if not read:
            # Nothing read yet: the pull failed outright rather than part-way.
            return PullError(self.name, redact(f"listing {what} failed: {reason}", self.secrets))
        message = (
            f"listing {what} stopped after {read} of {'?' if total is None else total}: "
            f"{reason}; nothing from this pull may be used"
        )
        return PartialPullError(self.name, redact(message, self.secrets))

    def _error_text(self, response: httpx.Response, hint: str = "") -> str:
        text = f"{describe_request(response.request)} answered {describe_status(response)}"
        detail = scim_error_detail(response)
        if detail:
            text += f": {detail}"
        if response.status_code in (401, 403):
            if self.options.token_env:
                text += f"; check the token in environment variable {self.options.token_env}" + (
                    " and what it may access" if response.status_code == 403 else ""
                )
            else:
                text += (
                    "; the server wants a bearer token: set token_env to the name of an "
                    "environment variable that holds it"
                )
        elif hint:
            text += f"; {hint}"
        return redact(text, self.secrets)

    def _error(self, response: httpx.Response, action: str) -> ConnectorError:
        return ConnectorError(self.name, f"{action}: {self._error_text(response)}")


def _without_system(error: ConnectorError) -> str:
    text = str(error)
    prefix = f"{error.system}: "
    return text.removeprefix(prefix)


def build(context: ConnectorContext) -> Connector:
    """A ScimConnector from a system's section of reconciler.yaml."""
    options = ScimOptions.from_mapping(context.name, context.options)
    token: str | None = None
    if options.token_env:
        token = context.env.get(options.token_env, "")
        if not token:
            raise ConfigError(
                f"{context.name}: environment variable {options.token_env} is not set or "
                "empty; export the SCIM bearer token in it (token_env names it)"
            )
    client = build_client(
        context.name,
        options.url,
        token=token,
        timeout=options.timeout,
        headers={"Accept": "application/scim+json, application/json"},
    )
    return ScimConnector(context.name, client, options, secrets=(token,) if token else ())


TYPE = ConnectorType(
    name="scim",
    options_schema=OPTIONS_SCHEMA,
    build=build,
    secret_env_options=("token_env",),
    description="A SCIM 2.0 service (RFC 7643/7644), as an app or an identity source.",
)
