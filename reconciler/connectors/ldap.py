"""The `ldap` connector type: its options and how it is built.

The connector itself (`connectors/ldap_directory.py`: what a user and a group are, how
one is disabled or deleted) needs ldap3, from the `ldap` extra; this module does not, so
reconciler.yaml is validated, and `reconciler init` and the schema list the type, where
the library is not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reconciler.connectors.base import (
    Connector,
    ConnectorContext,
    ConnectorType,
    check_options,
    needs_extra,
)
from reconciler.errors import ConfigError

DIALECTS = ("openldap", "ad")
DEFAULT_USER_FILTER = "(objectClass=inetOrgPerson)"
# AD's users are objectClass `user` (inetOrgPerson is a rare subclass of it), and so are
# computer accounts, which objectCategory leaves out.
AD_USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
DEFAULT_GROUP_FILTER = "(|(objectClass=groupOfNames)(objectClass=group))"
# Per dialect: id, username attribute, user filter.
DIALECT_DEFAULTS: dict[str, tuple[str, str, str]] = {
    "openldap": ("entryUUID", "uid", DEFAULT_USER_FILTER),
    "ad": ("objectGUID", "sAMAccountName", AD_USER_FILTER),
}

_ATTRIBUTE: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9-]*$"}
# AD's last sign-in, replicated to every domain controller (lastLogon is not).
AD_LAST_LOGIN_ATTRIBUTE = "lastLogonTimestamp"

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "bind_dn", "base_dn"],
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^ldaps?://[^/?#]+/?$",
            "description": "The server, e.g. ldaps://ldap.example.com or "
            "ldap://ldap.example.com:389 (with start_tls).",
        },
        "bind_dn": {
            "type": "string",
            "minLength": 1,
            "description": "The DN the connector binds as.",
        },
        "password_env": {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "Name of the environment variable holding the bind password.",
        },
        "base_dn": {
            "type": "string",
            "minLength": 1,
            "description": "Where users are searched (whole subtree).",
        },
        "user_filter": {
            "type": "string",
            "pattern": r"^\(.*\)$",
            "description": f"LDAP filter selecting the user entries. Default: "
            f"{DEFAULT_USER_FILTER} (openldap), {AD_USER_FILTER} (ad).",
        },
        "group_base_dn": {
            "type": "string",
            "minLength": 1,
            "description": "Where groups are searched. Default: base_dn.",
        },
        "group_filter": {
            "type": "string",
            "pattern": r"^\(.*\)$",
            "default": DEFAULT_GROUP_FILTER,
            "description": "LDAP filter selecting the group entries (their `member` is read).",
        },
        "id_attribute": {
            **_ATTRIBUTE,
            "description": "The stable id of an entry. Default: entryUUID (openldap), "
            "objectGUID (ad).",
        },
        "username_attribute": {
            **_ATTRIBUTE,
            "description": "Default: uid (openldap), sAMAccountName (ad).",
        },
        "email_attribute": {**_ATTRIBUTE, "default": "mail"},
        "last_login_attribute": {
            **_ATTRIBUTE,
            "type": ["string", "null"],
            "description": "When an account last signed in: a FILETIME (AD) or a "
            "GeneralizedTime such as the pwdLastSuccess that OpenLDAP's olcLastBind "
            "writes, or the lastbind overlay's authTimestamp. Default: "
            f"{AD_LAST_LOGIN_ATTRIBUTE} (ad, up to about 14 days stale by design), none "
            "(openldap); null reads none.",
        },
        "display_name_attribute": {**_ATTRIBUTE, "default": "cn"},
        "department_attribute": {
            **_ATTRIBUTE,
            "description": "A person's department, for role rules that admit by it. "
            "Default: departmentNumber (openldap), department (ad).",
        },
        "title_attribute": {
            **_ATTRIBUTE,
            "default": "title",
            "description": "A person's job title, for role rules that admit by it.",
        },
        "dialect": {
            "enum": list(DIALECTS),
            "default": "openldap",
            "description": "ad: userAccountControl and accountExpires say whether an "
            "account is disabled, and a disable sets userAccountControl bit 0x2.",
        },
        "start_tls": {
            "type": "boolean",
            "default": False,
            "description": "Upgrade an ldap:// connection with StartTLS before binding.",
        },
        "ca_file": {
            "type": "string",
            "minLength": 1,
            "description": "CA certificate file (PEM) the server's certificate must chain "
            "to, relative to the access repo or absolute. Default: the system's CAs.",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10000,
            "default": 500,
            "description": "Entries per page of a Simple Paged Results search.",
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 30,
            "description": "Seconds to wait to connect, and for each answer.",
        },
        "disable": {
            "type": "object",
            "additionalProperties": False,
            "required": ["attribute", "value"],
            "properties": {
                "attribute": _ATTRIBUTE,
                "value": {"type": "string", "minLength": 1},
            },
            "description": "openldap: an entry holding this value in this attribute is "
            "disabled, and a disable writes it (e.g. pwdAccountLockedTime 000001010000Z "
            "with the ppolicy overlay). Without it, accounts can be deleted, not disabled.",
        },
        "inactive_status": {
            "enum": ["deprovisioned", "suspended"],
            "default": "deprovisioned",
            "description": "What a disabled entry means for an identity when this system "
            "is an identity source.",
        },
    },
}


@dataclass(frozen=True)
class DisableMark:
    """The attribute value that marks an OpenLDAP entry disabled."""

    attribute: str
    value: str


@dataclass(frozen=True)
class LdapOptions:
    """The validated options of one LDAP system, with defaults applied."""

    url: str
    bind_dn: str
    base_dn: str
    password_env: str | None = None
    user_filter: str = DEFAULT_USER_FILTER
    group_base_dn: str = ""  # '' when from_mapping has not filled it in: base_dn
    group_filter: str = DEFAULT_GROUP_FILTER
    id_attribute: str = "entryUUID"
    username_attribute: str = "uid"
    email_attribute: str = "mail"
    display_name_attribute: str = "cn"
    department_attribute: str = "departmentNumber"
    title_attribute: str = "title"
    last_login_attribute: str | None = None
    dialect: Literal["openldap", "ad"] = "openldap"
    start_tls: bool = False
    ca_file: Path | None = None
    page_size: int = 500
    timeout: float = 30.0
    disable: DisableMark | None = None
    inactive_status: Literal["deprovisioned", "suspended"] = "deprovisioned"

    @property
    def groups_under(self) -> str:
        return self.group_base_dn or self.base_dn

    @classmethod
    def from_mapping(cls, system: str, options: Mapping[str, Any], base_dir: Path) -> LdapOptions:
        """Options with defaults applied; an unknown or missing key is a ConfigError
        also for callers that build the connector without validating reconciler.yaml."""
        check_options(system, "ldap", options, OPTIONS_SCHEMA)
        url = options["url"]
        if not url.lower().startswith(("ldap://", "ldaps://")):
            raise ConfigError(f"{system}: url must start with ldap:// or ldaps://, not {url!r}")
        dialect = options.get("dialect", "openldap")
        if dialect not in DIALECTS:
            raise ConfigError(f"{system}: dialect must be one of {', '.join(DIALECTS)}")
        id_default, username_default, user_filter_default = DIALECT_DEFAULTS[dialect]
        disable = options.get("disable")
        if disable is not None and (
            not isinstance(disable, Mapping) or set(disable) != {"attribute", "value"}
        ):
            raise ConfigError(f"{system}: option disable needs exactly `attribute` and `value`")
        if disable is not None and dialect == "ad":
            raise ConfigError(
                f"{system}: option disable is for openldap; dialect ad disables through "
                "userAccountControl: remove `disable`"
            )
        if options.get("start_tls") and url.lower().startswith("ldaps://"):
            raise ConfigError(
                f"{system}: start_tls is for ldap:// URLs; ldaps:// is already TLS: "
                "remove start_tls"
            )
        ca_file = options.get("ca_file")
        return cls(
            url=url,
            bind_dn=options["bind_dn"],
            base_dn=options["base_dn"],
            password_env=options.get("password_env"),
            user_filter=options.get("user_filter", user_filter_default),
            group_base_dn=options.get("group_base_dn") or options["base_dn"],
            group_filter=options.get("group_filter", DEFAULT_GROUP_FILTER),
            id_attribute=options.get("id_attribute", id_default),
            username_attribute=options.get("username_attribute", username_default),
            email_attribute=options.get("email_attribute", "mail"),
            display_name_attribute=options.get("display_name_attribute", "cn"),
            department_attribute=options.get(
                "department_attribute", "department" if dialect == "ad" else "departmentNumber"
            ),
            title_attribute=options.get("title_attribute", "title"),
            last_login_attribute=options.get(
                "last_login_attribute", AD_LAST_LOGIN_ATTRIBUTE if dialect == "ad" else None
            ),
            dialect=dialect,
            start_tls=bool(options.get("start_tls", False)),
            ca_file=base_dir / ca_file if ca_file else None,
            page_size=int(options.get("page_size", 500)),
            timeout=float(options.get("timeout", 30)),
            disable=DisableMark(str(disable["attribute"]), str(disable["value"]))
            if disable
            else None,
            inactive_status=options.get("inactive_status", "deprovisioned"),
        )


def _load() -> Callable[[ConnectorContext], Connector]:
    from reconciler.connectors.ldap_directory import LdapConnector

    return LdapConnector.from_context


TYPE = ConnectorType(
    name="ldap",
    options_schema=OPTIONS_SCHEMA,
    build=needs_extra(_load, library="ldap3", extra="ldap"),
    secret_env_options=("password_env",),
    description="An LDAP directory (OpenLDAP or Active Directory), as an identity "
    "source or an app: users as accounts, groups (nested) as roles.",
)
