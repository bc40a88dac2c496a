"""Seat cost: prices as written, monthly and yearly costs, totals kept per currency."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reconciler.errors import ConfigError
from reconciler.seats import AppSeats, CurrencyTotal, SeatCost, money_text, totals


def test_a_price_is_read_as_written() -> None:
    cost = SeatCost.from_data({"amount": 12.5, "currency": "EUR", "per": "month"})
    assert cost == SeatCost(Decimal("12.5"), "EUR", "month")
    assert cost.to_data() == {"amount": "12.50", "currency": "EUR", "per": "month"}


def test_a_monthly_price() -> None:
    cost = SeatCost(Decimal("12.5"), "EUR", "month")
    assert cost.monthly_cost(3) == Decimal("37.5")
    assert cost.yearly_cost(3) is None  # a monthly price states no year


def test_a_yearly_price_is_a_twelfth_a_month() -> None:
    cost = SeatCost(Decimal("1200"), "USD", "year")
    assert cost.monthly_cost(3) == Decimal("300")
    assert cost.yearly_cost(3) == Decimal("3600")
    # Summed before dividing: three seats at 100 a year are 25.00 a month, not 24.99.
    assert money_text(SeatCost(Decimal("100"), "USD", "year").monthly_cost(3)) == "25.00"


@pytest.mark.parametrize(
    ("value", "plain", "grouped"),
    [
        ("12.5", "12.50", "12.50"),
        ("2501", "2501.00", "2,501.00"),
        ("1.005", "1.01", "1.01"),  # half up, to the cent
        ("0", "0.00", "0.00"),
    ],
)
def test_money_is_shown_to_the_cent(value: str, plain: str, grouped: str) -> None:
    assert money_text(Decimal(value)) == plain
    assert money_text(Decimal(value), grouped=True) == grouped


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), -1])
def test_an_amount_that_is_no_price_is_refused(amount: float) -> None:
    with pytest.raises(ConfigError, match=r"seat_cost\.wiki\.amount .* is not a price"):
        SeatCost.from_data(
            {"amount": amount, "currency": "EUR", "per": "month"},
            "policies/default.yaml: seat_cost.wiki",
        )


def test_totals_never_add_one_currency_to_another() -> None:
    eur_month = SeatCost(Decimal("12.5"), "EUR", "month")
    eur_year = SeatCost(Decimal("120"), "EUR", "year")
    usd = SeatCost(Decimal("7"), "USD", "month")
    apps = [
        AppSeats("wiki", eur_month, reclaimable=3, reclaimed=2),
        AppSeats("crm", usd, reclaimable=1, reclaimed=0),
        AppSeats("erp", eur_year, reclaimable=1, reclaimed=4),
    ]
    assert totals(apps) == (
        CurrencyTotal("EUR", 4, 6, Decimal("47.5"), Decimal("65")),
        CurrencyTotal("USD", 1, 0, Decimal("7"), Decimal("0")),
    )
    assert totals([]) == ()
