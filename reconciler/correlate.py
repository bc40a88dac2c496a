"""Correlation: link each app account to at most one identity (DESIGN §5).

Pure: no I/O. Values are normalised (Unicode NFKC, case, surrounding space, domain
aliases) before comparison. Match rules are tried in order; the first rule that finds
exactly one identity links the account, a rule that finds several makes it ambiguous.
Live identities are tried before tombstones (identities gone from the IdP), so a
rehire with the same email links to the new identity.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from reconciler.config import MatchRule
from reconciler.model import Account, Identity


class Link(NamedTuple):
    """How an account relates to the identities: matched, unmatched or ambiguous.
    (A tuple: a check makes one per account, and a tuple is made several times faster
    than a frozen dataclass.)"""

    identity_id: str | None = None
    rule: str = ""  # e.g. "email=email"
    candidates: tuple[str, ...] = ()  # set when ambiguous

    @property
    def matched(self) -> bool:
        return self.identity_id is not None

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1


UNMATCHED = Link()


def normalise(value: str, domain_aliases: Mapping[str, str]) -> str:
    if value.isascii():
        # NFKC changes no ASCII text, and casefold() is lower() on ASCII.
        text = value.strip().lower()
    else:
        text = unicodedata.normalize("NFKC", value).strip().casefold()
    if domain_aliases and "@" in text:
        local, _, domain = text.rpartition("@")
        text = f"{local}@{domain_aliases.get(domain, domain)}"
    return text


def _index(
    identities: Iterable[Identity], field: str, aliases: Mapping[str, str]
) -> dict[str, list[str]]:
    index: dict[str, list[str]] = defaultdict(list)
    for identity in identities:
        key = normalise(getattr(identity, field), aliases)
        if key:
            index[key].append(identity.id)
    return index


class Matcher:
    """The identities indexed by the fields the match rules name, built once and asked
    for any number of accounts: a check of many apps with one identity source indexes
    its identities once, not once per app."""

    def __init__(
        self,
        identities: Iterable[Identity],
        rules: Iterable[MatchRule],
        domain_aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.aliases = dict(domain_aliases or {})
        all_identities = list(identities)
        tiers = [
            [i for i in all_identities if i.status != "missing"],
            [i for i in all_identities if i.status == "missing"],
        ]
        self.indexes = [
            [
                (
                    rule.account_field,
                    f"{rule.account_field}={rule.identity_field}",
                    _index(tier, rule.identity_field, self.aliases),
                )
                for rule in self.rules
            ]
            for tier in tiers
        ]

    def fits(self, rules: Iterable[MatchRule], domain_aliases: Mapping[str, str]) -> bool:
        """Whether this matcher links by `rules` and `domain_aliases`."""
        return self.rules == tuple(rules) and self.aliases == dict(domain_aliases)

    def links(self, accounts: Iterable[Account]) -> dict[str, Link]:
        """Every account id mapped to its Link."""
        return {account.id: self.link(account) for account in accounts}

    def link(self, account: Account) -> Link:
        """The account's Link: the first rule, live identities before tombstones, that
        finds anyone decides."""
        for tier in self.indexes:
            for field, label, index in tier:
                key = normalise(getattr(account, field), self.aliases)
                found = index.get(key) if key else None
                if not found:
                    continue
                if len(found) == 1:
                    return Link(identity_id=found[0], rule=label)
                return Link(rule=label, candidates=tuple(sorted(found)))
        return UNMATCHED


def correlate(
    accounts: Iterable[Account],
    identities: Iterable[Identity],
    rules: Iterable[MatchRule],
    domain_aliases: Mapping[str, str] | None = None,
) -> dict[str, Link]:
    """Every account id mapped to its Link."""
    return Matcher(identities, rules, domain_aliases).links(accounts)
