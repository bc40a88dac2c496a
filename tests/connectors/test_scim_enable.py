"""Enabling again an account that the SCIM connector disabled (graded removal: its
person is back), on both SCIM implementations."""

from __future__ import annotations

import pytest

from reconciler.connectors.base import Mode
from reconciler.errors import ConnectorError
from reconciler.testing.scim_server import StartServer

from .test_scim import TOKEN, USERS, connector


def test_an_account_disabled_is_enabled_again_and_enabling_twice_is_done(
    start_server: StartServer,
) -> None:
    with start_server(token=TOKEN) as server:
        seeded = server.seed(USERS)
        scim = connector(server)
        assert Mode.ENABLE in scim.modes
        dave = scim.lookup_account(seeded.users["dave"])
        assert dave is not None
        scim.deprovision(dave, Mode.DISABLE)
        scim.enable(dave)
        again = scim.lookup_account(dave.id)
        assert again is not None and again.status == "active"
        scim.enable(dave)  # safe to repeat
        assert (scim.lookup_account(dave.id) or dave).status == "active"
        # Nobody else changed.
        carol = scim.lookup_account(seeded.users["carol"])
        assert carol is not None and carol.status == "active"


def test_enabling_an_account_that_no_longer_exists_is_an_error(start_server: StartServer) -> None:
    with start_server(token=TOKEN) as server:
        seeded = server.seed(USERS)
        scim = connector(server)
        dave = scim.lookup_account(seeded.users["dave"])
        assert dave is not None
        scim.deprovision(dave, Mode.DELETE)
        with pytest.raises(ConnectorError, match="nothing to enable"):
            scim.enable(dave)
