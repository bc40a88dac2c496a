"""Build connectors for the systems named in reconciler.yaml."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from reconciler import connectors
from reconciler.config import SystemConfig
from reconciler.connectors.base import Connector, ConnectorContext

ConnectorFactory = Callable[[SystemConfig], Connector]


def default_factory(root: Path) -> ConnectorFactory:
    def build(system: SystemConfig) -> Connector:
        context = ConnectorContext(
            name=system.name, options=system.options, base_dir=root, env=dict(os.environ)
        )
        return connectors.build(system.type, context)

    return build
