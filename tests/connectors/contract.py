"""One harness that drives any connector through the contract of `connectors/base.py`.

Each connector's test file seeds its real server, builds the connector and calls
`exercise_connector`, then `exercise_failures` with connectors that cannot use their
system (nothing listening, credentials refused), and adds only what is particular to
that system (STYLE §16).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from reconciler.connectors.base import Connector, Mode
from reconciler.errors import ConnectorError, PullError
from reconciler.model import Account, Identity, Role


@dataclass(frozen=True)
class Expect:
    """What the seeded system holds, as the harness should find it."""

    # Number of accounts a pull yields.
    accounts: int
    # Username of an active account the harness may deprovision (it will be changed).
    victim: str
    # Number of identities a pull yields; None for a connector that is not an IdP.
    # For an IdP, an account's id is also its identity's id (the same record).
    identities: int | None = None
    # Role names pull_roles returns; None to skip the check.
    roles: tuple[str, ...] | None = None
    # username → the roles its account must have (from roles and group membership).
    account_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # username → the groups its identity must have.
    identity_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Exercised:
    """What the harness read before it changed anything, for extra assertions."""

    accounts: dict[str, Account]  # by username
    identities: dict[str, Identity]  # by username
    roles: list[Role]


def exercise_connector(connector: Connector, expect: Expect) -> Exercised:
    """Pull, look up, deprovision (disable, then delete when supported), and check
    that a repeat is harmless and that live lookups and a new pull reflect each step."""
    accounts = _pull_accounts(connector, expect)
    identities = _pull_identities(connector, expect)
    roles = connector.pull_roles()
    assert all(isinstance(role, Role) for role in roles)
    assert [r.name for r in roles] == sorted({r.name for r in roles}), "roles sorted, unique"
    if expect.roles is not None:
        assert [r.name for r in roles] == list(expect.roles)

    victim = accounts[expect.victim]
    assert victim.status == "active", "the victim must start active"
    live = connector.lookup_account(victim.id)
    assert live is not None
    assert (live.id, live.username, live.email, live.status, live.type) == (
        victim.id,
        victim.username,
        victim.email,
        victim.status,
        victim.type,
    )
    assert connector.lookup_account("no-such-account-id") is None
    if expect.identities is not None:
        assert connector.lookup_identity("no-such-identity-id") is None
        live_identity = connector.lookup_identity(victim.id)
        assert live_identity is not None
        assert live_identity.status == "active"

    modes = [mode for mode in (Mode.DISABLE, Mode.DELETE) if mode in connector.modes]
    for mode in modes:
        connector.deprovision(victim, mode)
        connector.deprovision(victim, mode)  # must be harmless
        after = connector.lookup_account(victim.id)
        pulled = {a.id: a for a in connector.pull_accounts()}
        if mode is Mode.DISABLE:
            assert after is not None and after.status == "disabled"
            assert pulled[victim.id].status == "disabled"
            if expect.identities is not None:
                identity = connector.lookup_identity(victim.id)
                assert identity is not None and identity.status != "active"
        else:
            assert after is None
            assert victim.id not in pulled
            assert len(pulled) == expect.accounts - 1
            if expect.identities is not None:
                assert connector.lookup_identity(victim.id) is None
    # Deprovisioning an account that is already gone is still harmless.
    for mode in modes:
        connector.deprovision(victim, mode)
    return Exercised(accounts=accounts, identities=identities, roles=roles)


def _pull_accounts(connector: Connector, expect: Expect) -> dict[str, Account]:
    pulled = list(connector.pull_accounts())
    assert all(isinstance(a, Account) for a in pulled)
    # A valid model value survives the snapshot round trip unchanged, but for its last
    # login, which is live only and never written.
    assert all(Account.from_record(a.to_record()) == a._replace(last_login="") for a in pulled)
    assert all(a.id for a in pulled), "every account has an id"
    ids = [a.id for a in pulled]
    assert len(ids) == len(set(ids)), "account ids are unique"
    assert len(pulled) == expect.accounts
    by_name = {a.username: a for a in pulled}
    for username, roles in expect.account_roles.items():
        assert by_name[username].roles == roles, username
    return by_name


def _pull_identities(connector: Connector, expect: Expect) -> dict[str, Identity]:
    if expect.identities is None:
        return {}
    pulled = list(connector.pull_identities())
    assert all(isinstance(i, Identity) for i in pulled)
    assert all(Identity.from_record(i.to_record()) == i for i in pulled)
    ids = [i.id for i in pulled]
    assert all(ids) and len(ids) == len(set(ids)), "identity ids are present and unique"
    assert len(pulled) == expect.identities
    by_name = {i.username: i for i in pulled}
    for username, groups in expect.identity_groups.items():
        assert by_name[username].groups == groups, username
    return by_name


def exercise_failures(broken: Connector, secret: str | None, *, identities: bool) -> None:
    """A connector whose system cannot be used (nothing listening, credentials refused,
    an export gone): every call fails with the tool's own error naming the system — a
    pull as PullError, never a shorter list; a lookup or a deprovision as ConnectorError
    — and `secret` appears in no message, repr or chained exception."""
    nobody = Account.build("1", "someone", "someone@example.com")
    calls: list[tuple[Callable[[], object], type[ConnectorError]]] = [
        (lambda: list(broken.pull_accounts()), PullError),
        (broken.pull_roles, PullError),
        (lambda: broken.lookup_account("1"), ConnectorError),
    ]
    if identities:
        calls += [
            (lambda: list(broken.pull_identities()), PullError),
            (lambda: broken.lookup_identity("1"), ConnectorError),
        ]
    if Mode.DISABLE in broken.modes:
        calls.append((lambda: broken.deprovision(nobody, Mode.DISABLE), ConnectorError))
    for call, error in calls:
        with pytest.raises(error) as caught:
            call()
        assert broken.name in str(caught.value), "the message names the system"
        if secret is None:
            continue
        chained: BaseException | None = caught.value
        while chained is not None:
            assert secret not in f"{chained} {chained!r}", "the secret stays out of errors"
            chained = chained.__cause__ or chained.__context__


def require(missing: str | None, what: str) -> None:
    """Stop a test whose real server (or tool) is missing: `missing` says what is not
    there and how to install it. Under CI, where `.ci/run` installs every one, that is a
    failure; elsewhere a skip."""
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must have {what}: {missing}")
    pytest.skip(missing)
