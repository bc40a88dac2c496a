"""Build connectors for the systems named in reconciler.yaml."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from reconciler import connectors
from reconciler.config import SystemConfig
from reconciler.connectors.base import Connector, ConnectorContext, Mode

ConnectorFactory = Callable[[SystemConfig], Connector]


def default_factory(root: Path) -> ConnectorFactory:
    def build(system: SystemConfig) -> Connector:
        context = ConnectorContext(
            name=system.name, options=system.options, base_dir=root, env=dict(os.environ)
        )
        return connectors.build(system.type, context)

    return build


def effective_mode(wanted: str, modes: frozenset[Mode]) -> str | None:
    """The mode an action will use: the policy's if the app supports it, else a manual
    task for apps without an API; None if the app supports neither."""
    if Mode(wanted) in modes:
        return wanted
    if Mode.MANUAL in modes:
        return Mode.MANUAL.value
    # Never fall back from delete to disable or back: the policy's choice is deliberate.
    return None
