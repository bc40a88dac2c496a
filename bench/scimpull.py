"""What the SCIM connector adds on top of the HTTP it cannot avoid.

A real scim2-server on 127.0.0.1 (`reconciler.testing.scim_server`) is seeded with N
users and no groups through `POST /Bulk`. Then, alternating so that neither side gets
a warmer server, three times each: the `scim` connector pulling every account, and a
bare httpx loop paging `GET /Users` by 1000 until `totalResults`. The connector also
reads `/Groups` once (membership); with no groups that is one small request, so both
sides do the same work and the difference is the connector's own overhead: retries
and checks, building `Account` records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import generate
from reconciler.connectors import ConnectorContext, build
from reconciler.testing.scim_server import start_scim_server

PAGE_SIZE = 1000
ROUNDS = 3


@dataclass(frozen=True)
class ScimPull:
    """Best-of-`rounds` times of both ways of listing `users` users."""

    users: int
    rounds: int
    seed_seconds: float
    ours_seconds: tuple[float, ...]
    bare_seconds: tuple[float, ...]

    @property
    def ours_best(self) -> float:
        return min(self.ours_seconds)

    @property
    def bare_best(self) -> float:
        return min(self.bare_seconds)

    def to_data(self) -> dict[str, Any]:
        ours_rate = self.users / self.ours_best
        bare_rate = self.users / self.bare_best
        return {
            "users": self.users,
            "rounds": self.rounds,
            "page_size": PAGE_SIZE,
            "seed_seconds": self.seed_seconds,
            "ours_seconds": list(self.ours_seconds),
            "bare_seconds": list(self.bare_seconds),
            "ours_best_seconds": self.ours_best,
            "bare_best_seconds": self.bare_best,
            "ours_users_per_second": ours_rate,
            "bare_users_per_second": bare_rate,
            # The target: the connector keeps at least 90% of bare httpx's throughput.
            "ours_share_of_bare": ours_rate / bare_rate,
            "bare_over_ours": bare_rate / ours_rate,
        }


def scim_users(n: int, seed: int) -> list[dict[str, Any]]:
    """N SCIM User payloads made from the generator's identities."""
    day = generate.day_one(n, seed)
    return [
        {
            "userName": identity["username"],
            "externalId": identity["id"],
            "displayName": identity["display_name"],
            "name": {"formatted": identity["display_name"]},
            "emails": [{"value": identity["email"], "type": "work", "primary": True}],
            "active": True,
        }
        for identity in day.identities.values()
    ]


def pull_with_connector(url: str) -> int:
    """Every account through the `scim` connector, as a check pulls them."""
    connector = build(
        "scim",
        ConnectorContext(
            name="bench", options={"url": url, "page_size": PAGE_SIZE}, base_dir=Path("."), env={}
        ),
    )
    try:
        return len(list(connector.pull_accounts()))
    finally:
        connector.close()


def pull_bare(url: str) -> int:
    """Every user with nothing but httpx: page by what the server returns."""
    users: list[dict[str, Any]] = []
    with httpx.Client(
        base_url=url.rstrip("/") + "/", headers={"Accept": "application/scim+json"}, timeout=120
    ) as client:
        while True:
            response = client.get(
                "Users", params={"startIndex": len(users) + 1, "count": PAGE_SIZE}
            )
            response.raise_for_status()
            page = response.json()
            resources = page.get("Resources") or []
            users.extend(resources)
            if not resources or len(users) >= int(page["totalResults"]):
                return len(users)


def _timed(pull: Callable[[str], int], url: str, expected: int, what: str) -> float:
    started = time.perf_counter()
    count = pull(url)
    seconds = time.perf_counter() - started
    if count != expected:
        raise RuntimeError(f"{what} read {count} users, expected {expected}")
    return seconds


def measure(
    n: int, seed: int, rounds: int = ROUNDS, progress: Callable[[str], None] = lambda _: None
) -> ScimPull:
    """Seed a fresh server with `n` users and time both pulls, alternating."""
    users = scim_users(n, seed)
    ours: list[float] = []
    bare: list[float] = []
    with start_scim_server() as server:
        started = time.perf_counter()
        server.seed(users)
        seed_seconds = time.perf_counter() - started
        progress(f"scim: seeded {n} users in {seed_seconds:.1f} s")
        for index in range(rounds):
            ours.append(_timed(pull_with_connector, server.url, n, "the scim connector"))
            bare.append(_timed(pull_bare, server.url, n, "the bare httpx loop"))
            progress(
                f"scim: round {index + 1}/{rounds}: connector {ours[-1]:.2f} s, "
                f"bare httpx {bare[-1]:.2f} s"
            )
    return ScimPull(
        users=n,
        rounds=rounds,
        seed_seconds=seed_seconds,
        ours_seconds=tuple(ours),
        bare_seconds=tuple(bare),
    )
