"""Synthetic company data for the benchmark: an IdP and one big app, day after day.

Everything is drawn from `random.Random` seeded by the caller, so a seed and a size
always give byte-identical exports. Day 1 has N identities and N accounts; each later
day applies `Churn` to the previous one. Each day is written as the `file` connector's
JSON exports (`reconciler/connectors/file.py`): `{"identities": [...]}` and
`{"accounts": [...]}`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

IDENTITIES_FILE = "identities.json"
ACCOUNTS_FILE = "accounts.json"
DOMAIN = "acme.example"
PARTNER_DOMAIN = "partner.example"

SERVICE_SHARE = 0.02  # accounts with type: service (no identity, always protected)
UNMATCHED_SHARE = 0.01  # human accounts whose email no identity has
DISABLED_SHARE = 0.01  # accounts already disabled in the app
MIXED_CASE_SHARE = 0.05  # app emails whose case differs from the IdP's (normalisation)

# (as written, ASCII form for emails and usernames)
FIRST_NAMES: tuple[tuple[str, str], ...] = (
    ("Alice", "alice"), ("Bob", "bob"), ("Maria", "maria"), ("James", "james"),
    ("Priya", "priya"), ("Fatima", "fatima"), ("Kwame", "kwame"), ("Aisha", "aisha"),
    ("Hiroshi", "hiroshi"), ("Mei", "mei"), ("Liam", "liam"), ("Noah", "noah"),
    ("Olivia", "olivia"), ("Emma", "emma"), ("Lucas", "lucas"), ("Sofia", "sofia"),
    ("José", "jose"), ("Zoë", "zoe"), ("Jürgen", "jurgen"), ("Søren", "soren"),
    ("Begoña", "begona"), ("Åsa", "asa"), ("François", "francois"), ("Chloé", "chloe"),
    ("Łukasz", "lukasz"), ("Ángel", "angel"), ("Björn", "bjorn"), ("Mónica", "monica"),
    ("Íñigo", "inigo"), ("Ольга", "olga"), ("Дмитрий", "dmitry"), ("Νίκος", "nikos"),
    ("Ayşe", "ayse"), ("Thảo", "thao"), ("Siobhán", "siobhan"), ("Øystein", "oystein"),
)  # fmt: skip
LAST_NAMES: tuple[tuple[str, str], ...] = (
    ("Smith", "smith"), ("Johnson", "johnson"), ("Kowalski", "kowalski"),
    ("Okafor", "okafor"), ("Patel", "patel"), ("Haddad", "haddad"), ("Brown", "brown"),
    ("Müller", "mueller"), ("Núñez", "nunez"), ("Østergaard", "ostergaard"),
    ("García", "garcia"), ("Dvořák", "dvorak"), ("Çelik", "celik"), ("Nguyễn", "nguyen"),
    ("O'Brien", "obrien"), ("Schröder", "schroeder"), ("Lefèvre", "lefevre"),
    ("Peña", "pena"), ("Jørgensen", "jorgensen"), ("Ibáñez", "ibanez"),
    ("Иванова", "ivanova"), ("Παπαδόπουλος", "papadopoulos"),
    ("Y\N{LATIN SMALL LETTER DOTLESS I}lmaz", "yilmaz"),
)  # fmt: skip
# CJK names are written family name first, without a space.
CJK_FAMILY: tuple[tuple[str, str], ...] = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("陈", "chen"), ("佐藤", "sato"),
    ("鈴木", "suzuki"), ("高橋", "takahashi"), ("김", "kim"), ("박", "park"), ("이", "lee"),
)  # fmt: skip
CJK_GIVEN: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("芳", "fang"), ("静", "jing"), ("花子", "hanako"), ("太郎", "taro"),
    ("翔", "sho"), ("민준", "minjun"), ("서연", "seoyeon"), ("지호", "jiho"),
)  # fmt: skip
CJK_SHARE = 0.15

ROLES: tuple[str, ...] = (
    "viewer", "member", "editor", "admin", "owner", "billing", "auditor", "support",
    "developer", "maintainer", "triage", "security", "release-manager", "analyst",
    "reporter", "guest", "finance", "hr", "sales", "marketing", "ops", "oncall",
    "data-steward", "approver", "contractor",
)  # fmt: skip
GROUPS: tuple[str, ...] = (
    "everyone", "engineering", "sales", "support", "finance", "hr", "marketing",
    "security", "data", "legal", "ops", "executives", "contractors", "interns",
)  # fmt: skip
RESOURCE_KINDS: tuple[str, ...] = ("repo", "project", "dataset", "queue", "bucket", "board")
RESOURCE_WORDS: tuple[str, ...] = (
    "payments", "billing", "ledger", "search", "checkout", "mobile", "web", "infra",
    "identity", "analytics", "growth", "catalog", "orders", "shipping", "inventory",
    "support", "crm", "hr", "payroll", "security", "docs", "design", "ml", "warehouse",
    "email", "notifications", "auth", "gateway", "pricing", "reports", "audit", "sso",
)  # fmt: skip
ACTIONS: tuple[str, ...] = ("read", "write", "admin")
SERVICE_WORDS: tuple[str, ...] = (
    "deploy", "backup", "ci", "monitoring", "etl", "sync", "scanner", "bot", "importer",
)  # fmt: skip
_ID_ALPHABET = string.ascii_letters + string.digits


def _entitlement_pool() -> tuple[str, ...]:
    pool = [
        f"{kind}:{word}-{index}:{action}"
        for kind in RESOURCE_KINDS
        for word in RESOURCE_WORDS
        for index in range(3)
        for action in ACTIONS
    ]
    return tuple(pool)


ENTITLEMENTS = _entitlement_pool()


@dataclass(frozen=True)
class Churn:
    """What changes from one day to the next, as shares of the app's accounts.

    `added` are new hires (a new identity and its account); `removed` accounts are
    taken first from people deprovisioned on an earlier day (someone cleaned up), then
    at random (an admin removed them in the app); `changed` accounts get different
    roles and/or entitlements; `deprovisioned` identities become leavers whose
    accounts stay active, so the check proposes them.
    """

    added: float = 0.005
    removed: float = 0.005
    changed: float = 0.01
    deprovisioned: float = 0.003


@dataclass
class Day:
    """One day's state of the IdP and the app, as export records keyed by id."""

    identities: dict[str, dict[str, Any]]
    accounts: dict[str, dict[str, Any]]
    next_account_id: int
    # email local part → how many people were given it (the next gets a number suffix)
    name_counts: dict[str, int]

    @property
    def grants(self) -> int:
        """Role and entitlement assignments over all accounts."""
        return sum(len(a["roles"]) + len(a["entitlements"]) for a in self.accounts.values())


@dataclass(frozen=True)
class ExportFiles:
    """Where one day's exports were written, and their size."""

    identities: Path
    accounts: Path

    @property
    def paths(self) -> tuple[Path, Path]:
        return (self.identities, self.accounts)

    @property
    def total_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.paths)


class People:
    """Draws people with unique emails; shared by day 1 and every later day."""

    def __init__(self, rng: random.Random, day: Day) -> None:
        self.rng = rng
        self.day = day

    def name(self) -> tuple[str, str]:
        """(display name, ASCII email local part), unique within the company."""
        rng = self.rng
        if rng.random() < CJK_SHARE:
            family, given = rng.choice(CJK_FAMILY), rng.choice(CJK_GIVEN)
            display, local = family[0] + given[0], f"{given[1]}.{family[1]}"
        else:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            display, local = f"{first[0]} {last[0]}", f"{first[1]}.{last[1]}"
        return display, self._unique(local)

    def _unique(self, local: str) -> str:
        # Base parts never end in a digit, so `maria.patel2` cannot be someone's base.
        count = self.day.name_counts.get(local, 0) + 1
        self.day.name_counts[local] = count
        return local if count == 1 else f"{local}{count}"

    def identity_id(self) -> str:
        while True:
            candidate = "00u" + "".join(self.rng.choices(_ID_ALPHABET, k=17))
            if candidate not in self.day.identities:
                return candidate

    def account_id(self) -> str:
        # Apps hand out increasing numeric ids with gaps (deleted or other tenants' ids).
        self.day.next_account_id += self.rng.randint(1, 40)
        return str(self.day.next_account_id)

    def roles(self) -> list[str]:
        return sorted(self.rng.sample(ROLES, self.rng.randint(1, 5)))

    def entitlements(self) -> list[str]:
        return sorted(self.rng.sample(ENTITLEMENTS, self.rng.randint(0, 20)))

    def groups(self) -> list[str]:
        return sorted({"everyone", *self.rng.sample(GROUPS, self.rng.randint(1, 3))})

    def identity(self, display: str, local: str) -> dict[str, Any]:
        return {
            "id": self.identity_id(),
            "email": f"{local}@{DOMAIN}",
            "username": local,
            "display_name": display,
            "status": "active",
            "groups": self.groups(),
        }

    def account(
        self, display: str, email: str, username: str, kind: str = "human"
    ) -> dict[str, Any]:
        if kind == "human" and self.rng.random() < MIXED_CASE_SHARE:
            email = email[:1].upper() + email[1:]
        status = "disabled" if self.rng.random() < DISABLED_SHARE else "active"
        return {
            "id": self.account_id(),
            "username": username,
            "email": email,
            "display_name": display,
            "status": status,
            "type": kind,
            "roles": self.roles(),
            "entitlements": self.entitlements(),
        }

    def hire(self) -> None:
        """A new person in the IdP with an account in the app."""
        display, local = self.name()
        identity = self.identity(display, local)
        self.day.identities[identity["id"]] = identity
        account = self.account(display, identity["email"], local)
        self.day.accounts[account["id"]] = account


def day_one(n: int, seed: int) -> Day:
    """N identities and an app with N accounts: ~97% linked people, ~2% service
    accounts, ~1% unmatched accounts (a partner's emails)."""
    rng = random.Random(f"bench:{seed}:day1")
    day = Day(identities={}, accounts={}, next_account_id=100_000, name_counts={})
    people = People(rng, day)
    services = round(n * SERVICE_SHARE)
    unmatched = round(n * UNMATCHED_SHARE)
    humans = n - services - unmatched
    identities = [people.identity(*people.name()) for _ in range(n)]
    for identity in identities:
        day.identities[identity["id"]] = identity
    # Each app account of a person belongs to a different identity; the identities left
    # over have no account in this app (they use other apps).
    for identity in rng.sample(identities, humans):
        account = people.account(identity["display_name"], identity["email"], identity["username"])
        day.accounts[account["id"]] = account
    for _ in range(unmatched):
        display, local = people.name()
        account = people.account(display, f"{local}@{PARTNER_DOMAIN}", f"ext-{local}")
        day.accounts[account["id"]] = account
    for index in range(services):
        word = rng.choice(SERVICE_WORDS)
        name = f"svc-{word}-{index}"
        account = people.account(name, f"{name}@{DOMAIN}", name, kind="service")
        day.accounts[account["id"]] = account
    # Records in an export come in the app's own order, not sorted by id.
    day.accounts = dict(rng.sample(list(day.accounts.items()), len(day.accounts)))
    return day


def next_day(day: Day, seed: int, index: int, churn: Churn = Churn()) -> Day:
    """Day `index` (2, 3, …) from the day before it, by `churn`. `day` is not changed."""
    rng = random.Random(f"bench:{seed}:day{index}")
    new = Day(
        identities=dict(day.identities),
        accounts=dict(day.accounts),
        next_account_id=day.next_account_id,
        name_counts=dict(day.name_counts),
    )
    people = People(rng, new)
    n = len(day.accounts)
    account_ids = list(day.accounts)

    # Removals: leavers' accounts first (an earlier plan was carried out), then at random.
    to_remove = round(n * churn.removed)
    gone_identities = {
        i["email"].lower() for i in day.identities.values() if i["status"] == "deprovisioned"
    }
    leavers = [a for a in account_ids if day.accounts[a]["email"].lower() in gone_identities]
    removed = set(leavers[:to_remove])
    others = [a for a in account_ids if a not in removed]
    removed.update(rng.sample(others, max(0, to_remove - len(removed))))
    for account_id in removed:
        del new.accounts[account_id]

    remaining = [a for a in account_ids if a not in removed]
    for account_id in rng.sample(remaining, round(n * churn.changed)):
        record = dict(new.accounts[account_id])
        what = rng.choice(("roles", "entitlements", "both"))
        if what in ("roles", "both"):
            record["roles"] = _changed(rng, record["roles"], ROLES, minimum=1, maximum=5)
        if what in ("entitlements", "both"):
            record["entitlements"] = _changed(
                rng, record["entitlements"], ENTITLEMENTS, minimum=0, maximum=20
            )
        new.accounts[account_id] = record

    active = [i for i, record in day.identities.items() if record["status"] == "active"]
    for identity_id in rng.sample(active, min(len(active), round(n * churn.deprovisioned))):
        new.identities[identity_id] = {**new.identities[identity_id], "status": "deprovisioned"}

    for _ in range(round(n * churn.added)):
        people.hire()
    return new


def _changed(
    rng: random.Random, current: Sequence[str], pool: Sequence[str], minimum: int, maximum: int
) -> list[str]:
    """`current` with one to three values added or taken away, within the bounds."""
    values = set(current)
    steps = rng.randint(1, 3)
    # Adding a value and taking it away again is no change: go on until there is one.
    while steps > 0 or values == set(current):
        steps -= 1
        can_add = len(values) < maximum
        if can_add and (len(values) <= minimum or rng.random() < 0.5):
            values.add(rng.choice([v for v in pool if v not in values]))
        elif len(values) > minimum:
            values.discard(rng.choice(sorted(values)))
    return sorted(values)


def days(n: int, seed: int, count: int, churn: Churn = Churn()) -> Iterator[Day]:
    """Day 1, day 2, … day `count`."""
    day = day_one(n, seed)
    yield day
    for index in range(2, count + 1):
        day = next_day(day, seed, index, churn)
        yield day


def write_exports(day: Day, directory: Path) -> ExportFiles:
    """Write the day as the `file` connector's JSON exports in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = ExportFiles(directory / IDENTITIES_FILE, directory / ACCOUNTS_FILE)
    files.identities.write_bytes(orjson.dumps({"identities": list(day.identities.values())}))
    files.accounts.write_bytes(orjson.dumps({"accounts": list(day.accounts.values())}))
    return files
