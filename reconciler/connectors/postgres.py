"""The `postgres` connector type: its options and how it is built.

The connector itself (`connectors/postgres_roles.py`: what an account is, how one is
disabled, deleted or has roles taken from it) needs psycopg, from the `postgres` extra;
this module does not, so reconciler.yaml is validated, and `reconciler init` and the
schema list the type, where the driver is not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.connectors.base import (
    Connector,
    ConnectorContext,
    ConnectorType,
    check_options,
    needs_extra,
)

# libpq's sslmode values (https://www.postgresql.org/docs/current/libpq-ssl.html).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["host", "database", "user"],
    "properties": {
        "host": {"type": "string", "minLength": 1, "description": "Server host name or IP."},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5432},
        "database": {
            "type": "string",
            "minLength": 1,
            "description": "The database to connect to for roles and memberships.",
        },
        "user": {"type": "string", "minLength": 1, "description": "The role to connect as."},
        "password_env": {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "Name of the environment variable holding the password. Leave "
            "out when libpq finds it itself (.pgpass, a client certificate).",
        },
        "sslmode": {"enum": list(SSL_MODES), "default": "prefer"},
        "sslrootcert": {
            "type": "string",
            "minLength": 1,
            "description": "CA certificate file, relative to the access repo or absolute.",
        },
        "connect_timeout": {
            "type": "integer",
            "minimum": 1,
            "default": 10,
            "description": "Seconds to wait for a connection.",
        },
        "statement_timeout": {
            "type": "integer",
            "minimum": 1,
            "default": 60,
            "description": "Seconds any one statement may take (a lock held elsewhere, "
            "a catalog too big) before the pull or action fails.",
        },
        "databases": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
            "minItems": 1,
            "description": "Databases whose privileges are read and where a delete "
            "reassigns and drops the role's objects. Default: every database that allows "
            "connections, templates excluded.",
        },
        "reassign_to": {
            "type": "string",
            "minLength": 1,
            "description": "Role that receives a deleted role's objects. Without it, "
            "accounts can be disabled but not deleted.",
        },
        "exclude_roles": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
            "default": [],
            "description": "Roles never reported nor touched (service roles).",
        },
    },
}


@dataclass(frozen=True)
class PostgresOptions:
    """The validated options of one PostgreSQL system, with defaults applied."""

    host: str
    database: str
    user: str
    port: int = 5432
    password_env: str | None = None
    sslmode: str = "prefer"
    sslrootcert: Path | None = None
    connect_timeout: int = 10
    statement_timeout: int = 60
    databases: tuple[str, ...] | None = None
    reassign_to: str | None = None
    exclude_roles: frozenset[str] = frozenset()

    @classmethod
    def from_mapping(
        cls, system: str, options: Mapping[str, Any], base_dir: Path
    ) -> PostgresOptions:
        """Options with defaults applied; an unknown or missing key is a ConfigError
        also for callers that build the connector without validating reconciler.yaml."""
        check_options(system, "postgres", options, OPTIONS_SCHEMA)
        rootcert = options.get("sslrootcert")
        databases = options.get("databases")
        return cls(
            host=options["host"],
            database=options["database"],
            user=options["user"],
            port=int(options.get("port", 5432)),
            password_env=options.get("password_env"),
            sslmode=options.get("sslmode", "prefer"),
            sslrootcert=base_dir / rootcert if rootcert else None,
            connect_timeout=int(options.get("connect_timeout", 10)),
            statement_timeout=int(options.get("statement_timeout", 60)),
            databases=tuple(databases) if databases else None,
            reassign_to=options.get("reassign_to"),
            exclude_roles=frozenset(options.get("exclude_roles", ())),
        )


def _load() -> Callable[[ConnectorContext], Connector]:
    from reconciler.connectors.postgres_roles import PostgresConnector

    return PostgresConnector.from_context


TYPE = ConnectorType(
    name="postgres",
    options_schema=OPTIONS_SCHEMA,
    build=needs_extra(_load, library="psycopg", extra="postgres"),
    secret_env_options=("password_env",),
    description="A PostgreSQL cluster: login roles as accounts, group roles and "
    "privileges as roles and entitlements.",
)
