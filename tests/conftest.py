"""Shared fixtures: real servers on 127.0.0.1 with random ports (reconciler.testing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.testing.scim_server import ScimServer, start_scim_server


@pytest.fixture
def scim_server() -> Iterator[ScimServer]:
    """An empty scim2-server that accepts requests without a token."""
    with start_scim_server() as server:
        yield server
