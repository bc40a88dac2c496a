"""Fixtures for connector tests: SCIM tests run against two independent servers."""

from __future__ import annotations

import pytest

from reconciler.testing.django_scim_server import start_django_scim_server
from reconciler.testing.scim_server import StartServer, start_scim_server

SCIM_SERVERS: dict[str, StartServer] = {
    "scim2-server": start_scim_server,
    "django-scim2": start_django_scim_server,
}


@pytest.fixture(params=sorted(SCIM_SERVERS))
def start_server(request: pytest.FixtureRequest) -> StartServer:
    """How to start a SCIM server; a test taking it runs once per implementation."""
    return SCIM_SERVERS[request.param]
