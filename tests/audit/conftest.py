"""Fixtures for the audit tests."""

from __future__ import annotations

import pytest

from reconciler.audit import repository


@pytest.fixture(params=["lookup", "messages"])
def lookup_or_messages(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the lookup of which commits name whom (`audit.lookup`), and again
    without it, as in a repository where it cannot be kept: the answers must agree."""
    if request.param == "messages":
        monkeypatch.setattr(repository, "open_lookup", lambda *args: None)
    return str(request.param)
