"""The account model's last login: cleaned to one form, live only, never in a record."""

from __future__ import annotations

import pytest

from reconciler import snapshot
from reconciler.model import ACCOUNT_FIELDS, Account


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("2026-11-20T09:30:00Z", "2026-11-20T09:30:00Z"),
        ("2026-11-20T10:30:00.123456+01:00", "2026-11-20T09:30:00Z"),
        ("2026-11-20", "2026-11-20T00:00:00Z"),
        ("2026-13-40T09:30:00Z", ""),
        ("", ""),
        (None, ""),
        ("not a time", ""),
    ],
)
def test_a_last_login_is_kept_in_utc_to_the_second_or_unknown(given: object, kept: str) -> None:
    assert Account.build("1", "alice", last_login=given).last_login == kept


def test_a_last_login_is_never_written_to_a_snapshot() -> None:
    without = Account.build("1", "alice", "alice@acme.com", roles=["admin"])
    signed_in = without._replace(last_login="2026-11-20T09:30:00Z")
    assert tuple(signed_in.to_record()) == ACCOUNT_FIELDS
    assert snapshot.encode(signed_in) == snapshot.encode(without)
    # Read back, the record knows no last login: unknown, not a date.
    assert Account.from_record(signed_in.to_record()) == without
