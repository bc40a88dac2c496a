"""Seat cost: what an app's accounts cost, and what removing leavers' accounts saves.

An app's policy may price its seats: `seat_cost: {wiki: {amount: 12.5, currency: EUR,
per: month}}`. Amounts are decimals, never binary floats, so 12.5 renders as 12.50 and a total
is the sum of what was written. A month is a twelfth of a year. Sums are kept apart per
currency: EUR is never added to USD.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from reconciler.errors import ConfigError

PERIODS = ("month", "year")
MONTHS_PER_YEAR = 12
CENT = Decimal("0.01")


@dataclass(frozen=True)
class SeatCost:
    """What one seat (one active account) of an app costs: `amount` of `currency` (an
    ISO 4217 code such as EUR) per `per` (`month` or `year`)."""

    amount: Decimal
    currency: str
    per: str  # month | year

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "seat_cost") -> SeatCost:
        """A validated `seat_cost:` mapping as a SeatCost; `where` names it in errors."""
        raw = data["amount"]
        try:
            # Through str: YAML reads 12.5 as a float, whose shortest form is the one written.
            amount = Decimal(str(raw))
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite() or amount < 0:
            raise ConfigError(
                f"{where}.amount {raw!r} is not a price; write a number of at least 0, such as 12.5"
            )
        return cls(amount=amount, currency=str(data["currency"]), per=str(data["per"]))

    def monthly_cost(self, seats: int) -> Decimal:
        """What `seats` seats cost a month (a yearly price divided by 12, unrounded)."""
        total = self.amount * seats
        return total if self.per == "month" else total / MONTHS_PER_YEAR

    def yearly_cost(self, seats: int) -> Decimal | None:
        """What `seats` seats cost a year, when the price was given per year; else None
        (a monthly price says nothing exact about a year of changing seat counts)."""
        return self.amount * seats if self.per == "year" else None

    def to_data(self) -> dict[str, str]:
        """The price as written, for JSON outputs (the amount as a decimal string)."""
        return {"amount": money_text(self.amount), "currency": self.currency, "per": self.per}


def money_text(value: Decimal, *, grouped: bool = False) -> str:
    """`value` rounded to the cent (half up) with two decimals: 12.5 → "12.50";
    `grouped` adds thousands separators (2501 → "2,501.00")."""
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    return f"{rounded:,.2f}" if grouped else f"{rounded:.2f}"


@dataclass(frozen=True)
class AppSeats:
    """One app's seats: reclaimable (proposed in plans not applied yet) and reclaimed
    (removed by applied plans), at the app's seat cost."""

    app: str
    cost: SeatCost
    reclaimable: int
    reclaimed: int

    @property
    def monthly_reclaimable(self) -> Decimal:
        return self.cost.monthly_cost(self.reclaimable)

    @property
    def monthly_reclaimed(self) -> Decimal:
        return self.cost.monthly_cost(self.reclaimed)


@dataclass(frozen=True)
class CurrencyTotal:
    """The seats of every app priced in one currency, and their monthly cost."""

    currency: str
    reclaimable: int
    reclaimed: int
    monthly_reclaimable: Decimal
    monthly_reclaimed: Decimal


def totals(apps: Iterable[AppSeats]) -> tuple[CurrencyTotal, ...]:
    """One total per currency, in currency order."""
    by_currency: dict[str, list[AppSeats]] = {}
    for seats in apps:
        by_currency.setdefault(seats.cost.currency, []).append(seats)
    return tuple(
        CurrencyTotal(
            currency=currency,
            reclaimable=sum(s.reclaimable for s in group),
            reclaimed=sum(s.reclaimed for s in group),
            monthly_reclaimable=sum((s.monthly_reclaimable for s in group), Decimal(0)),
            monthly_reclaimed=sum((s.monthly_reclaimed for s in group), Decimal(0)),
        )
        for currency, group in sorted(by_currency.items())
    )
