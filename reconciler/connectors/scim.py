"""SCIM 2.0 (RFC 7643/7644): an app whose accounts are SCIM Users, or an identity source.

Pulling reads `/Groups` once (membership: scim2-server, like many servers, never fills
`User.groups`), then pages through `/Users` by `startIndex`/`count`, advancing by the
number of resources each page actually held, because servers cap `count` silently.
A pull is complete when it has read exactly `totalResults` distinct resources; one that
cannot be shown complete (no totalResults, a record without a usable id, a group whose
members cannot be read…) raises `PullError`/`PartialPullError` at the point of failure;
it never ends early as if it were done.

Group members are users or nested groups as their `type` or `$ref` says; some servers
(django-scim2) number users and groups in separate tables, so a bare id may be both.
Only when a member says nothing, and its id is a group's, are the users read before
membership is resolved (`member_is_group`).

Deprovisioning is `PATCH active=false` (disable) or `DELETE`; a user that is already gone
counts as done, so both are safe to repeat.

Requests are built by the `*_request` functions and responses read by the `parse_*`
and `*_from_user` functions, apart from sending (`http.send`), so each can be tested on
its own.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote, urlsplit

import httpx

from reconciler.connectors.base import (
    Connector,
    ConnectorContext,
    ConnectorType,
    Mode,
    check_options,
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
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.model import Account, Identity, Role, clean_text, clean_time

log = logging.getLogger(__name__)

SCIM_JSON = "application/scim+json"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
DEPARTMENT_ATTRIBUTE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

MAX_PAGE_SIZE = 1000

# How much of a name from the server a message shows.
NAME_LIMIT = 80

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
        "last_login_attribute": {
            "type": "string",
            "pattern": r"^([A-Za-z][A-Za-z0-9:._-]*:)?[A-Za-z][A-Za-z0-9_-]*$",
            "description": "The attribute holding when a user last signed in (an "
            "ISO 8601 dateTime), often in an extension: its full name, e.g. "
            "urn:example:params:scim:schemas:extension:activity:2.0:User:lastLogin. "
            "SCIM has no standard one; without it, last sign-ins are unknown.",
        },
        **http_options("the server"),
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
    last_login_attribute: str | None = None
    max_requests_per_second: float | None = None

    @classmethod
    def from_mapping(cls, system: str, options: Mapping[str, Any]) -> ScimOptions:
        """Options with defaults applied.

        reconciler.yaml is validated against OPTIONS_SCHEMA before connectors are built
        (like config.py, this trusts shapes and types); the two mistakes that would
        otherwise pass silently or crash, an unknown key and a missing url, are
        checked again here for callers that build a connector directly.
        """
        hint = "the SCIM base URL, e.g. https://example.com/scim/v2"
        check_options(system, "scim", options, OPTIONS_SCHEMA, {"url": hint})
        return cls(
            url=options["url"],
            token_env=options.get("token_env"),
            timeout=float(options.get("timeout", 30)),
            page_size=int(options.get("page_size", 500)),
            filter=options.get("filter"),
            service_user_types=tuple(options.get("service_user_types", ("Service",))),
            inactive_status=options.get("inactive_status", "deprovisioned"),
            max_retries=int(options.get("max_retries", 4)),
            last_login_attribute=options.get("last_login_attribute"),
            max_requests_per_second=options.get("max_requests_per_second"),
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


def active_request(client: httpx.Client, user_id: str, active: bool) -> httpx.Request:
    """PATCH a user's `active` to false (disable) or true (enable) (RFC 7644 §3.5.2.3)."""
    body = {
        "schemas": [PATCH_OP_SCHEMA],
        "Operations": [{"op": "replace", "path": "active", "value": active}],
    }
    return client.build_request(
        "PATCH",
        _user_path(user_id),
        content=json.dumps(body).encode(),
        headers={"Content-Type": SCIM_JSON},
    )


def remove_member_request(client: httpx.Client, group_id: str, user_id: str) -> httpx.Request:
    """PATCH one member out of a group, by a value filter in the path (RFC 7644
    §3.5.2.2); never a `members` path without a filter, which removes every member."""
    return _patch_request(
        client, _group_path(group_id), f"members[value eq {_filter_text(user_id)}]"
    )


def remove_role_request(client: httpx.Client, user_id: str, role: str) -> httpx.Request:
    """PATCH one value out of a user's `roles` (RFC 7643 §4.1.2), by a value filter."""
    return _patch_request(client, _user_path(user_id), f"roles[value eq {_filter_text(role)}]")


def _patch_request(client: httpx.Client, path: str, target: str) -> httpx.Request:
    body = {"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "remove", "path": target}]}
    return client.build_request(
        "PATCH", path, content=json.dumps(body).encode(), headers={"Content-Type": SCIM_JSON}
    )


def _filter_text(value: str) -> str:
    # A filter's string literal is a JSON string (RFC 7644 §3.4.2.2): quotes and
    # backslashes in an id cannot end it early.
    return json.dumps(value, ensure_ascii=False)


def delete_request(client: httpx.Client, user_id: str) -> httpx.Request:
    """DELETE a user (RFC 7644 §3.6)."""
    return client.build_request("DELETE", _user_path(user_id))


def _user_path(user_id: str) -> str:
    # Ids are opaque strings: quote everything so one cannot reach another path.
    return f"Users/{quote(user_id, safe='')}"


def _group_path(group_id: str) -> str:
    return f"Groups/{quote(group_id, safe='')}"


# ---------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True)
class ListPage:
    """One page of a SCIM ListResponse."""

    resources: tuple[Mapping[str, Any], ...]
    total: int | None  # totalResults; None when the server left it out


class MemberKind(enum.Enum):
    """What a group member is, as the server said it (RFC 7643 §4.2)."""

    USER = "User"
    GROUP = "Group"
    # Neither `type` nor `$ref` says: `group_memberships` decides from the ids.
    UNSTATED = "unstated"


@dataclass(frozen=True)
class ScimMember:
    """One entry of a group's `members`."""

    id: str
    kind: MemberKind


@dataclass(frozen=True)
class ScimGroup:
    """A group as far as membership goes."""

    id: str
    display_name: str
    members: tuple[ScimMember, ...]


def parse_list_page(body: object) -> ListPage:
    """A ListResponse body as a ListPage; ValueError if it is not one.

    Resource ids are checked by the caller (`id_problem`), which can name the resource.
    """
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    total = body.get("totalResults")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
        raise ValueError(f"totalResults is {_json_kind(total)}, not a whole number")
    if total is not None and total < 0:
        raise ValueError("totalResults is negative")
    # RFC 7644 §3.4.2: Resources may be left out when there are none.
    resources = body.get("Resources", [])
    if not isinstance(resources, list):
        raise ValueError("Resources is not a list")
    for resource in resources:
        if not isinstance(resource, dict):
            raise ValueError("a resource is not a JSON object")
    return ListPage(resources=tuple(resources), total=total)


def id_problem(resource: Mapping[str, Any]) -> str | None:
    """Why the resource's `id` cannot be used as its id, or None if it can.

    RFC 7643 §3.1: every resource has a non-empty string id. Anything else would be
    stored as some other id ("None", "7", "") and acted on under it; an id that storing
    would change (a NUL, a lone surrogate, not NFC) would be acted on as another id.
    """
    if "id" not in resource:
        return "it has no id"
    value = resource["id"]
    if value is None:
        return "its id is null"
    if not isinstance(value, str):
        return f"its id is {_json_kind(value)}, not a string"
    if not value.strip():
        return "its id is empty"
    if clean_text(value) != value:
        return "its id holds characters that cannot be stored unchanged"
    return None


def parse_group(resource: Mapping[str, Any]) -> ScimGroup:
    """The id, name and typed members of a Group resource; ValueError if unusable.

    A member's kind comes from its `type` ("User" or "Group"), else from its `$ref`
    (…/Users/… or …/Groups/…); when neither says, it is UNSTATED. A `type` and a
    `$ref` that disagree, or a member without a usable value, make the group unusable:
    its membership could not be read as the server means it (a member left out could be
    the one that grants a role).
    """
    problem = id_problem(resource)
    if problem:
        raise ValueError(problem)
    group_id = str(resource["id"])
    entries = resource.get("members") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("its members are not a list of objects")
    members: list[ScimMember] = []
    for entry in entries:
        value = entry.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a number is unambiguous, if not what RFC 7643 asks for
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a member's value is {_json_kind(value)}, not an id")
        by_type = _kind_from_type(entry.get("type"))
        by_ref = _kind_from_ref(entry.get("$ref"))
        if MemberKind.UNSTATED not in (by_type, by_ref) and by_type is not by_ref:
            raise ValueError(
                f"member {value} has type {by_type.value} but its $ref points to a {by_ref.value}"
            )
        kind = by_type if by_type is not MemberKind.UNSTATED else by_ref
        members.append(ScimMember(id=value, kind=kind))
    return ScimGroup(
        id=group_id,
        display_name=str(resource.get("displayName") or group_id),
        members=tuple(members),
    )


def _kind_from_type(value: object) -> MemberKind:
    if isinstance(value, str):
        match value.strip().lower():
            case "user":
                return MemberKind.USER
            case "group":
                return MemberKind.GROUP
    return MemberKind.UNSTATED


def _kind_from_ref(value: object) -> MemberKind:
    # `$ref` is the member's URI: .../Users/{id} or .../Groups/{id} (RFC 7644 §3.1).
    if not isinstance(value, str):
        return MemberKind.UNSTATED
    segments = [segment for segment in urlsplit(value).path.split("/") if segment]
    if len(segments) >= 2:
        match segments[-2].lower():
            case "users":
                return MemberKind.USER
            case "groups":
                return MemberKind.GROUP
    return MemberKind.UNSTATED


def member_is_group(
    member: ScimMember, group_ids: Collection[str], user_ids: Collection[str]
) -> bool:
    """Whether a member is a nested group rather than a user.

    When the server did not say, an id is a group's only if no user has it too: servers
    that number users and groups in separate tables (django-scim2) have user 1 and
    group 1, and taking user 1 for group 1 would give someone roles they do not have.
    """
    if member.kind is MemberKind.UNSTATED:
        return member.id in group_ids and member.id not in user_ids
    return member.kind is MemberKind.GROUP


def ambiguous_member_ids(groups: Iterable[ScimGroup]) -> frozenset[str]:
    """Ids of UNSTATED members that are also group ids: telling these apart needs the
    ids of the users (`group_memberships`' `user_ids`)."""
    groups = list(groups)
    group_ids = {group.id for group in groups}
    return frozenset(
        member.id
        for group in groups
        for member in group.members
        if member.kind is MemberKind.UNSTATED and member.id in group_ids
    )


def group_memberships(
    groups: Iterable[ScimGroup], user_ids: Collection[str] = frozenset()
) -> dict[str, frozenset[str]]:
    """User id → names of every group it is in, directly or through nested groups.

    RFC 7643 §4.1.2 defines `User.groups` as direct and indirect membership: the members
    of a group that is a member of another are members of that one too. `user_ids`, the
    users just pulled, is needed only for `ambiguous_member_ids` (`member_is_group`).
    """
    groups = list(groups)
    names = {group.id: group.display_name for group in groups}
    direct: dict[str, set[str]] = defaultdict(set)  # user id → groups listing it
    outer: dict[str, set[str]] = defaultdict(set)  # group id → groups listing it
    for group in groups:
        for member in group.members:
            if member_is_group(member, names, user_ids):
                outer[member.id].add(group.id)
            else:
                direct[member.id].add(group.id)
    result: dict[str, frozenset[str]] = {}
    for user_id, parents in direct.items():
        seen: set[str] = set()
        pending = list(parents)
        while pending:
            group_id = pending.pop()
            if group_id not in seen:  # a cycle of nested groups ends here
                seen.add(group_id)
                pending.extend(outer.get(group_id, ()))
        result[user_id] = frozenset(names[group_id] for group_id in seen)
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
    last_login_attribute: str | None = None,
) -> Account:
    """A SCIM User as an Account; roles are `roles[].value` and group names; its last
    sign-in from `last_login_attribute` when given (unknown when absent or no time).

    ValueError if the user has no usable id (`id_problem`): callers check it first, to
    name the user in their error.
    """
    _require_id(user)
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
        last_login=attribute(user, last_login_attribute) if last_login_attribute else "",
    )


def attribute(resource: Mapping[str, Any], name: str) -> object:
    """An attribute by its full name, `urn:…:Resource:name` for one of an extension (RFC
    7643 §3.3) or `name` for a core one; names compare without regard to case. None when
    absent."""
    urn, _, leaf = name.rpartition(":")
    found: object = resource
    if urn:
        found = _get(resource, urn)
    return _get(found, leaf) if isinstance(found, Mapping) else None


def _get(resource: Mapping[str, Any], key: str) -> object:
    if key in resource:
        return resource[key]
    folded = key.casefold()
    return next((v for k, v in resource.items() if str(k).casefold() == folded), None)


def identity_from_user(
    user: Mapping[str, Any],
    *,
    memberships: Collection[str] = (),
    group_names: Mapping[str, str] | None = None,
    inactive_status: str = "deprovisioned",
) -> Identity:
    """A SCIM User as an Identity; `active: false` becomes `inactive_status`.

    ValueError if the user has no usable id, as for `account_from_user`. An inactive
    user's `meta.lastModified` becomes its `status_changed_at`; its department is the
    enterprise extension's (RFC 7643 §4.3), its title the core `title`.
    """
    _require_id(user)
    active = user_is_active(user)
    department = attribute(user, DEPARTMENT_ATTRIBUTE)
    title = attribute(user, "title")
    return Identity.build(
        id=user["id"],
        email=primary_email(user),
        username=user.get("userName") or "",
        display_name=display_name(user),
        status="active" if active else inactive_status,
        groups=user_group_names(user, memberships, group_names or {}),
        status_changed_at="" if active else status_time(user),
        department=department if isinstance(department, str) else "",
        title=title if isinstance(title, str) else "",
    )


def status_time(user: Mapping[str, Any]) -> str:
    """When an inactive user last changed, by the server's `meta.lastModified` (RFC 7643
    §3.1): the best time SCIM gives of their deactivation. The check keeps it only when
    the status changed (`Identity.settled`), so later edits do not move it."""
    meta = user.get("meta")
    return clean_time(meta.get("lastModified")) if isinstance(meta, Mapping) else ""


def _require_id(resource: Mapping[str, Any]) -> None:
    # Account.build would store a null id as "" and a number as "7": never build one.
    problem = id_problem(resource)
    if problem:
        raise ValueError(problem)


def scim_error_detail(response: httpx.Response, secrets: Iterable[str] = ()) -> str:
    """`detail (scimType x)` from a SCIM Error body (RFC 7644 §3.12), or ''.

    The server's text is redacted (the request's own credentials included), then cut.
    """
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    detail = str(body.get("detail") or "").strip()
    scim_type = str(body.get("scimType") or "").strip()
    if scim_type:
        text = f"{detail} (scimType {scim_type})" if detail else f"scimType {scim_type}"
    else:
        text = detail
    return server_text(text, (*secrets, *request_secrets(response.request)))


def describe_resource(resource: Mapping[str, Any], what: str, secrets: Iterable[str]) -> str:
    """`user with userName 'alice' and displayName 'Alice L.'`: a resource named for
    people by what the server sent (redacted, then cut), for messages about one whose id
    cannot be used."""
    names = [
        f"{key} {server_text(value, secrets, limit=NAME_LIMIT)!r}"
        for key, value in (
            ("userName", resource.get("userName")),
            ("displayName", resource.get("displayName")),
        )
        if isinstance(value, str) and value.strip()
    ]
    if not names:
        return f"a {what} with neither userName nor displayName"
    return f"{what} with {' and '.join(names)}"


def _json_kind(value: object) -> str:
    # What a JSON value is, without repeating it (it may be long, or secret).
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value.strip() else "empty"
    if isinstance(value, list):
        return "a list"
    return "an object"


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

    modes: frozenset[Mode] = frozenset({Mode.DISABLE, Mode.DELETE, Mode.REMOVE_ROLES, Mode.ENABLE})

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
        self.retry = retry or retry_policy(options.max_retries, options.max_requests_per_second)
        self.secrets = tuple(secrets)
        self.on_page = on_page
        # Told how many users a pull will give once the server says (`Counts`).
        self.on_total: Callable[[int], None] | None = None

    # -- Connector --------------------------------------------------------------------

    def pull_accounts(self) -> Iterator[Account]:
        """Every user as an Account (membership from /Groups merged into roles)."""
        memberships, names, users = self._users_with_memberships()
        for user in users:
            yield account_from_user(
                user,
                memberships=memberships.get(str(user["id"]), ()),
                group_names=names,
                service_user_types=self.options.service_user_types,
                last_login_attribute=self.options.last_login_attribute,
            )

    def pull_roles(self) -> list[Role]:
        """The groups as roles, sorted by name (groups with one name are one role)."""
        names = {clean_text(group.display_name) for group in self._pull_groups()}
        return [Role(name=name, description="", entitlements=()) for name in sorted(names)]

    def pull_identities(self) -> Iterator[Identity]:
        """Every user as an Identity with its group names."""
        memberships, names, users = self._users_with_memberships()
        for user in users:
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
        return account_from_user(
            user,
            service_user_types=self.options.service_user_types,
            last_login_attribute=self.options.last_login_attribute,
        )

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
            request = active_request(self.client, account.id, False)
            response = self._send(request, idempotent=True)
            if response.status_code == 200:
                self._check_active(response, account, False)
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

    def probe(self, identity_source: bool) -> str:
        """One user and one group asked for: how many of each the token sees. A token
        that sees no users is an error, as a pull of none would be."""
        seen = {}
        for endpoint in ("Users", "Groups"):
            request = list_request(self.client, endpoint, start_index=1, count=1)
            response = self._send(request)
            if response.status_code != 200:
                raise self._error(response, f"list {endpoint}")
            try:
                page = parse_list_page(read_json(response, system=self.name, secrets=self.secrets))
            except ValueError as exc:
                raise ConnectorError(self.name, f"list {endpoint}: not a SCIM list: {exc}") from exc
            seen[endpoint] = page.total
        if not seen["Users"]:
            raise ConnectorError(
                self.name,
                "the server answers, but the token sees no users: check what the token may "
                "read (a pull would fail the same way)",
            )
        return f"{seen['Users']} users and {seen['Groups']} groups visible"

    def enable(self, account: Account) -> None:
        """PATCH the user's `active` back to true; a 404 is an error: nothing to enable."""
        response = self._send(active_request(self.client, account.id, True), idempotent=True)
        if response.status_code == 200:
            self._check_active(response, account, True)
            return
        if response.status_code == 204:
            return
        what = f"enable account {account.id} ({account.username})"
        if response.status_code == 404:
            raise ConnectorError(self.name, f"{what}: the user no longer exists; nothing to enable")
        raise self._error(response, what)

    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None:
        """The user's `roles` values and the names of every group it is in, read live
        from the user and a full listing of /Groups (servers need not fill in
        `User.groups`); None if the server says 404."""
        user = self._get_user(account_id)
        if user is None:
            return None
        groups = self._groups_around(account_id)
        memberships = group_memberships(groups).get(account_id, frozenset())
        names = {group.id: group.display_name for group in groups}
        return account_from_user(user, memberships=memberships, group_names=names).roles

    def remove_roles(self, account: Account, roles: Collection[str]) -> None:
        """PATCH the user out of every group named after one of `roles` that lists it
        directly, and each of `roles` out of its `roles` attribute; a group or value
        already gone is done. A role held only through a nested group is refused before
        anything changes: taking the nested group out would take it from everyone."""
        wanted = set(roles)
        user = self._get_user(account.id)
        if user is None:
            return
        groups = self._groups_around(account.id)
        group_ids = {group.id for group in groups}
        direct = [
            group
            for group in groups
            if group.display_name in wanted
            and any(
                member.id == account.id and not member_is_group(member, group_ids, ())
                for member in group.members
            )
        ]
        held = {str(r.get("value")) for r in _dicts(user.get("roles"))}
        through = group_memberships(groups).get(account.id, frozenset())
        nested = (wanted & through) - held - {group.display_name for group in direct}
        if nested:
            raise ConnectorError(
                self.name,
                f"cannot take {', '.join(sorted(nested))} from account {account.id} "
                f"({account.username}): it holds them only through a nested group, which "
                "holds other members too; nothing was changed: take the account out of that "
                "group by hand, or change the rule",
            )
        for role in sorted(wanted & held):
            self._remove(remove_role_request(self.client, account.id, role), account, role)
        for group in direct:
            request = remove_member_request(self.client, group.id, account.id)
            self._remove(request, account, group.display_name)
        still = set(self.lookup_roles(account.id) or ()) & wanted
        if still:
            raise ConnectorError(
                self.name,
                f"took roles from account {account.id} ({account.username}), but it still "
                f"holds {', '.join(sorted(still))}, through a nested group or a role the "
                "server keeps; remove the membership by hand",
            )

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

    def _groups_around(self, account_id: str) -> list[ScimGroup]:
        """Every group, read in full; ConnectorError if a member with the account's id
        could be the account or a group (`ambiguous_member_ids`)."""
        groups = list(self._pull_groups())
        if account_id in ambiguous_member_ids(groups):
            raise ConnectorError(
                self.name,
                f"read the groups of account {account_id}: a group lists a member with "
                "that id without saying whether it is a user or a group, and a group has "
                "that id too; give group members a `type` on the server",
            )
        return groups

    def _remove(self, request: httpx.Request, account: Account, role: str) -> None:
        # Removing a member twice has the effect of once: safe to repeat after a lost answer.
        response = self._send(request, idempotent=True)
        if response.status_code in (200, 204, 404):
            return
        hint = ""
        if response.status_code in (400, 501):
            hint = (
                "the server may not support removing one member by a filter in the PATCH "
                "path (RFC 7644 §3.5.2.2); remove the role by hand"
            )
        action = f"remove role {role!r} from account {account.id} ({account.username})"
        raise ConnectorError(self.name, f"{action}: {self._error_text(response, hint)}")

    def _get_user(self, user_id: str) -> Mapping[str, Any] | None:
        request = user_request(self.client, user_id)
        response = self._send(request)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, f"read user {user_id}")
        body = read_json(response, system=self.name, secrets=self.secrets)
        at = describe_request(request)
        if not isinstance(body, dict):
            raise ConnectorError(self.name, f"{at}: the answer is not a SCIM User")
        hidden = (*self.secrets, *request_secrets(request))
        problem = id_problem(body)
        if problem:
            who = describe_resource(body, "user", hidden)
            raise ConnectorError(
                self.name,
                redact(
                    f"{at}: the server answered with {who}, but {problem}; it cannot be "
                    "told apart from other users, so nothing is done with it: fix the "
                    "record on the server",
                    hidden,
                ),
            )
        if body["id"] != user_id:
            # Acting on the user the server sent instead would disable someone else.
            who = describe_resource(body, "user", hidden)
            shown = server_text(body["id"], hidden, limit=NAME_LIMIT)
            raise ConnectorError(
                self.name,
                redact(
                    f"{at}: asked for user {user_id!r}, the server answered with another "
                    f"user, id {shown!r} ({who}); nothing is done with it: check the "
                    "server (a proxy or cache may be answering for it)",
                    hidden,
                ),
            )
        return cast(Mapping[str, Any], body)

    def _check_active(self, response: httpx.Response, account: Account, wanted: bool) -> None:
        # A 200 carries the resource: if the server kept `active` as it was (a read-only
        # attribute in its schema, say), saying "done" would be wrong.
        try:
            body = response.json()
        except ValueError:
            return
        if isinstance(body, dict) and body.get("active") is (not wanted):
            what = "enable" if wanted else "disable"
            state = "inactive" if wanted else "active"
            raise ConnectorError(
                self.name,
                f"{what} account {account.id} ({account.username}): the server answered "
                f"200 but the user is still {state}; check that it allows changing `active`",
            )

    def _users_with_memberships(
        self,
    ) -> tuple[dict[str, frozenset[str]], dict[str, str], Iterable[Mapping[str, Any]]]:
        """Membership by user id, group names by id, and the users (an iterator that
        pages as it goes, unless the users had to be read first to resolve members)."""
        groups = list(self._pull_groups())
        users: Iterable[Mapping[str, Any]] = self._pull_users()
        user_ids: frozenset[str] = frozenset()
        if ambiguous_member_ids(groups):
            # Some member is neither typed nor referenced and its id is a group's too:
            # only the ids of the users tell whether it is one of them.
            users = list(users)
            user_ids = frozenset(str(user["id"]) for user in users)
        names = {group.id: group.display_name for group in groups}
        return group_memberships(groups, user_ids), names, users

    def _pull_users(self) -> Iterator[Mapping[str, Any]]:
        yield from self._pull("Users", filter=self.options.filter, progress=True)

    def _pull_groups(self) -> Iterator[ScimGroup]:
        for resource in self._pull("Groups", filter=None, progress=False):
            try:
                yield parse_group(resource)
            except ValueError as exc:
                who = describe_resource(resource, "group", self.secrets)
                message = (
                    f"listing groups failed: {who}: {exc}; its members cannot be read as "
                    "the server means them, so no roles from this pull can be trusted: "
                    "fix the group on the server"
                )
                raise PullError(self.name, redact(message, self.secrets)) from exc

    def _pull(
        self, endpoint: str, *, filter: str | None, progress: bool
    ) -> Iterator[Mapping[str, Any]]:
        """Every resource of `endpoint`, page by page; PullError if not provably all.

        A pull is complete when the number of distinct resources read equals
        totalResults (RFC 7644 §3.4.2 makes it required). A page without it, a total
        that changes, an id seen twice, more resources than the total, or an empty page
        before it is reached all fail the pull: none is proof of the end of the list.
        """
        what = endpoint.lower()
        kind = what.removesuffix("s")
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

            if page.total is None:
                raise failed(
                    f"{at}: the server did not send totalResults, so the list of {what} "
                    "cannot be shown complete (RFC 7644 §3.4.2 requires it in every "
                    "answer); nothing from this pull may be used: ask the vendor to fix "
                    "the server"
                )
            if total is None:
                total = page.total
                if progress and self.on_total is not None:
                    self.on_total(total)
            elif page.total != total:
                raise failed(
                    f"{at}: totalResults changed from {total} to {page.total} during the pull "
                    f"({what} were added or removed meanwhile); run the pull again"
                )
            for resource in page.resources:
                problem = id_problem(resource)
                if problem:
                    who = describe_resource(
                        resource, kind, (*self.secrets, *request_secrets(request))
                    )
                    raise failed(
                        f"{at}: {who}: {problem}; the server must give every {kind} a "
                        "non-empty string id (RFC 7643 §3.1), and a record that cannot be "
                        "told apart from others is never imported or acted on: fix or "
                        "remove it on the server, then pull again"
                    )
                resource_id = str(resource["id"])
                if resource_id in seen:
                    raise failed(
                        f"{at}: the server returned {resource_id} twice (it ignores startIndex, "
                        "or the data changed during the pull)"
                    )
                seen.add(resource_id)
            if len(seen) > total:
                raise failed(
                    f"{at}: the server returned {len(seen)} {what}, more than the "
                    f"{total} its totalResults says; the list cannot be shown complete"
                )
            yield from page.resources
            if progress and self.on_page is not None:
                self.on_page(len(page.resources))

            if len(seen) == total:
                return
            if not page.resources:
                raise failed(f"{at}: an empty page before totalResults ({total}) was reached")
            start_index += len(page.resources)

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
        detail = scim_error_detail(response, self.secrets)
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
        # The status line is the server's text too: a reason phrase may echo a header.
        return redact(text, (*self.secrets, *request_secrets(response.request)))

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
