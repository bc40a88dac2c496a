from __future__ import annotations

import pytest

from reconciler.config import MatchRule
from reconciler.correlate import correlate, normalise
from reconciler.model import Account, Identity

RULES = (MatchRule("email", "email"), MatchRule("username", "username"))


def ident(id: str, email: str = "", username: str = "", status: str = "active") -> Identity:
    return Identity.build(id=id, email=email, username=username, status=status)


@pytest.mark.parametrize(
    ("account", "identities", "expected", "rule"),
    [
        # email first, case/space/NFKC-insensitive
        (
            Account.build("a1", email=" Alice@Example.COM "),
            [ident("i1", "alice@example.com")],
            "i1",
            "email=email",
        ),
        (
            Account.build("a1", email="\uff41\uff4c\uff49\uff43\uff45@example.com"),
            [ident("i1", "alice@example.com")],
            "i1",
            "email=email",
        ),
        # falls back to username when email finds nothing
        (
            Account.build("a1", email="x@y", username="bob"),
            [ident("i2", "b@example.com", "BOB")],
            "i2",
            "username=username",
        ),
        # nothing matches
        (Account.build("a1", email="x@y", username="nobody"), [ident("i1", "a@b", "a")], None, ""),
        # a live identity wins over a tombstone with the same email (rehire)
        (
            Account.build("a1", email="r@example.com"),
            [ident("old", "r@example.com", status="missing"), ident("new", "r@example.com")],
            "new",
            "email=email",
        ),
        # only a tombstone matches: still linked, so the account is not silently unmatched
        (
            Account.build("a1", email="g@example.com"),
            [ident("gone", "g@example.com", status="missing")],
            "gone",
            "email=email",
        ),
    ],
)
def test_correlate_links(account, identities, expected, rule):
    link = correlate([account], identities, RULES)[account.id]
    assert link.identity_id == expected
    assert link.rule == rule


def test_two_identities_with_one_email_are_ambiguous():
    links = correlate(
        [Account.build("a1", email="dup@example.com")],
        [ident("i1", "dup@example.com"), ident("i2", "DUP@example.com")],
        RULES,
    )
    assert not links["a1"].matched
    assert links["a1"].candidates == ("i1", "i2")


def test_domain_aliases_apply_to_both_sides():
    links = correlate(
        [Account.build("a1", email="carol@acme.io")],
        [ident("i1", "carol@acme.com")],
        RULES,
        {"acme.io": "acme.com"},
    )
    assert links["a1"].identity_id == "i1"


def test_empty_values_never_match():
    links = correlate([Account.build("a1")], [ident("i1")], RULES)
    assert not links["a1"].matched and not links["a1"].ambiguous


def test_normalise_folds_case_and_width():
    assert normalise("  ÅSA@Example.com ", {}) == normalise("åsa@example.com", {})
