"""The contract every connector meets (DESIGN §4).

A connector talks to one system (an app, an identity provider, or both). The check
pulls through it; apply looks accounts and identities up live and deprovisions
through it. Connectors raise `PullError` (or `PartialPullError`) when what they read
cannot be trusted as complete, and `ConnectorError` for any other failure.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from reconciler.errors import ConfigError
from reconciler.model import Account, Identity, Role


class Mode(enum.StrEnum):
    """What a connector can do to an account; connectors declare which they support."""

    DISABLE = "disable"
    DELETE = "delete"
    # The system has no API: a person removes the account and marks the task done.
    MANUAL = "manual"
    # Take roles from an account that stays (group memberships, role grants).
    REMOVE_ROLES = "remove_roles"
    # Undo DISABLE: the account's person is back (graded removal, `delete_after`).
    ENABLE = "enable"


@dataclass(frozen=True)
class ConnectorContext:
    """Everything a connector needs to be built."""

    name: str  # the system's name in reconciler.yaml
    options: Mapping[str, Any]  # its validated section of reconciler.yaml, without `type`
    base_dir: Path  # the access repo; relative paths in options are relative to it
    env: Mapping[str, str] = field(default_factory=dict)  # where `*_env` options are read


class Connector(Protocol):
    # The system's name in reconciler.yaml, used in every message.
    name: str
    # Deprovisioning modes this system supports; empty for a pure identity source.
    modes: frozenset[Mode]

    # Every account in the app; raises PullError if the listing is incomplete.
    def pull_accounts(self) -> Iterator[Account]: ...

    # The app's role catalogue, or [] if the app has none.
    def pull_roles(self) -> list[Role]: ...

    # Every identity in the IdP; raises PullError if the listing is incomplete.
    def pull_identities(self) -> Iterator[Identity]: ...

    # One account read live, or None if it no longer exists.
    def lookup_account(self, account_id: str) -> Account | None: ...

    # One identity read live, or None if it no longer exists.
    def lookup_identity(self, identity_id: str) -> Identity | None: ...

    # Disable or delete one account; must be safe to repeat.
    def deprovision(self, account: Account, mode: Mode) -> None: ...

    # The roles one account holds, read live with every membership that makes one, or
    # None if the account no longer exists. Apply reads them before and after taking one.
    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None: ...

    # Take `roles` from one account, which stays (Mode.REMOVE_ROLES); must be safe to
    # repeat: a role the account no longer holds is not an error.
    def remove_roles(self, account: Account, roles: Collection[str]) -> None: ...

    # Enable one account that DISABLE disabled, undoing exactly what it did
    # (Mode.ENABLE); must be safe to repeat: an enabled account is done. A ConnectorError
    # when the account no longer exists.
    def enable(self, account: Account) -> None: ...

    # Release connections.
    def close(self) -> None: ...


@runtime_checkable
class Counts(Protocol):
    """A connector that says how many records a pull will give, when its API says so
    (SCIM's totalResults), so that progress can show how far a pull has come."""

    # Set by the caller before a pull; called once with the number of records.
    on_total: Callable[[int], None] | None


@runtime_checkable
class Probe(Protocol):
    """A connector that can check its system quickly (`reconciler doctor`)."""

    # Check that the system answers and that the credentials may read what a pull reads
    # (identities for an identity source, else accounts), without pulling everything; a
    # line saying what was seen. ConnectorError when not, naming what to fix.
    def probe(self, identity_source: bool) -> str: ...


@dataclass(frozen=True)
class ConnectorType:
    """A registry entry: how `type: <name>` in reconciler.yaml is validated and built."""

    name: str
    # JSON Schema (draft 2020-12) for the options of a system of this type, `type` excluded.
    options_schema: Mapping[str, Any]
    build: Callable[[ConnectorContext], Connector]
    # Options that name environment variables holding secrets (e.g. `token_env`).
    secret_env_options: tuple[str, ...] = ()
    description: str = ""


def check_options(
    system: str,
    type_name: str,
    options: Mapping[str, Any],
    schema: Mapping[str, Any],
    hints: Mapping[str, str] | None = None,
) -> None:
    """A ConfigError naming the options of `system` that its type's options `schema`
    does not know, or the first one it requires that is not a non-empty string (with
    its hint from `hints`: what to give). reconciler.yaml is validated against the
    schema before connectors are built; this says it again for callers that build a
    connector directly."""
    unknown = sorted(set(options) - set(schema["properties"]))
    if unknown:
        known = ", ".join(sorted(schema["properties"]))
        raise ConfigError(
            f"{system}: unknown option(s) {', '.join(unknown)} for type {type_name}; "
            f"use only: {known}"
        )
    for key in schema.get("required", ()):
        value = options.get(key)
        if not isinstance(value, str) or not value:
            hint = (hints or {}).get(key)
            raise ConfigError(
                f"{system}: option {key} is required for type {type_name}"
                + (f": {hint}" if hint else "")
            )


def secret_from_env(context: ConnectorContext, variable: str | None, what: str) -> str | None:
    """The secret held by the environment variable an `*_env` option names (None when
    the option is not set); a ConfigError naming the variable when it is unset or empty.
    `what` says what the secret is ("the bind password")."""
    if not variable:
        return None
    secret = context.env.get(variable, "")
    if not secret:
        raise ConfigError(
            f"{context.name}: environment variable {variable} is not set or empty; "
            f"export {what} in it"
        )
    return secret


def needs_extra(
    load: Callable[[], Callable[[ConnectorContext], Connector]], *, library: str, extra: str
) -> Callable[[ConnectorContext], Connector]:
    """A `build` for a connector whose implementation needs `library`, installed by the
    package's `extra`: `load` imports the implementation when a system of the type is
    built, so reconciler.yaml is validated without the library; a ConfigError names the
    extra when the library is missing."""

    def build(context: ConnectorContext) -> Connector:
        try:
            make = load()
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith(library):
                raise
            raise ConfigError(
                f"{context.name}: the {extra} connector needs {library}; install it with "
                f"`pip install 'access-reconciler[{extra}]'`"
            ) from None
        return make(context)

    return build
