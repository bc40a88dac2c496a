"""The registry of connector types: `type:` names in reconciler.yaml → modules."""

from __future__ import annotations

from reconciler.connectors import entra as entra
from reconciler.connectors import file as file
from reconciler.connectors import github as github
from reconciler.connectors import google as google
from reconciler.connectors import ldap as ldap
from reconciler.connectors import okta as okta
from reconciler.connectors import postgres as postgres
from reconciler.connectors import scim as scim
from reconciler.connectors.base import Connector, ConnectorContext, ConnectorType, Mode
from reconciler.errors import ConfigError

CONNECTORS: dict[str, ConnectorType] = {
    entra.TYPE.name: entra.TYPE,
    file.TYPE.name: file.TYPE,
    github.TYPE.name: github.TYPE,
    google.TYPE.name: google.TYPE,
    ldap.TYPE.name: ldap.TYPE,
    okta.TYPE.name: okta.TYPE,
    postgres.TYPE.name: postgres.TYPE,
    scim.TYPE.name: scim.TYPE,
}


def build(type_name: str, context: ConnectorContext) -> Connector:
    """Build the connector for a system of reconciler.yaml."""
    try:
        connector_type = CONNECTORS[type_name]
    except KeyError:
        known = ", ".join(sorted(CONNECTORS))
        raise ConfigError(
            f"{context.name}: unknown connector type {type_name!r}; use one of: {known}"
        ) from None
    return connector_type.build(context)


__all__ = ["CONNECTORS", "Connector", "ConnectorContext", "ConnectorType", "Mode", "build"]
