"""`reconciler doctor`: whether every system of reconciler.yaml can be reached and read
with its credentials, without pulling everything: each connector's quick probe."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reconciler.config import Config, SystemConfig
from reconciler.connectors.base import Connector, Probe
from reconciler.errors import ReconcilerError

OK = "ok"
FAILED = "failed"
UNCHECKED = "unchecked"


@dataclass(frozen=True)
class Finding:
    """What the probe of one system found."""

    system: str
    type: str
    role: str  # identity source | app
    status: str  # ok | failed | unchecked
    detail: str
    seconds: float


def systems(config: Config) -> Iterator[tuple[SystemConfig, bool]]:
    """Every system, identity sources first, each with whether it is one."""
    for system in config.identity_sources.values():
        yield system, True
    for system in config.apps.values():
        yield system, False


def examine(
    system: SystemConfig,
    identity_source: bool,
    factory: Callable[[SystemConfig], Connector],
    clock: Callable[[], float] = time.monotonic,
) -> Finding:
    """Build the system's connector and run its probe; every failure is a finding."""
    role = "identity source" if identity_source else "app"
    started = clock()

    def found(status: str, detail: str) -> Finding:
        return Finding(system.name, system.type, role, status, detail, clock() - started)

    try:
        connector = factory(system)
    except ReconcilerError as exc:
        return found(FAILED, str(exc))
    try:
        if not isinstance(connector, Probe):
            check = f"--app {system.name}" if not identity_source else ""
            return found(
                UNCHECKED,
                f"type {system.type} has no quick probe; run `reconciler check {check}`".strip()
                + " to pull it",
            )
        return found(OK, connector.probe(identity_source))
    except ReconcilerError as exc:
        return found(FAILED, str(exc))
    finally:
        connector.close()
