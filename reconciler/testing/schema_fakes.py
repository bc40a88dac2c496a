"""Connector types that exist only to be validated against: tests of `validate` and
`settings` use them so that they do not depend on the real connectors' options."""

from __future__ import annotations

from reconciler.connectors.base import Connector, ConnectorContext, ConnectorType
from reconciler.errors import ConfigError


def _build(context: ConnectorContext) -> Connector:
    raise ConfigError(f"{context.name}: the fake connector types can be validated, not built")


FAKE = ConnectorType(
    name="fake",
    options_schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "description": "Where the fake lives."},
            "token_env": {"type": "string"},
            "timeout": {"type": "integer", "minimum": 1, "description": "Seconds."},
        },
    },
    build=_build,
    secret_env_options=("token_env",),
)
EXPORT = ConnectorType(
    name="export",
    options_schema={
        "type": "object",
        "required": ["path"],
        "properties": {"path": {"$ref": "#/$defs/path"}},
        "$defs": {"path": {"type": "string", "minLength": 1}},
    },
    build=_build,
)
REGISTRY = {"fake": FAKE, "export": EXPORT}
