"""Money is rounded once, at validation, half up to the cent (a half cent away from zero)."""

from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hub.errors import ValidationError
from hub.model import to_json_ready, validate_record
from hub.model.schemas import _fast_validator
from hub.model.tables import MoneyCents
from hub.reports.costs import parse_costs
from tests.support.money import half_up_cents

# (as sent, as validated): hand-worked half-up results; half-even would give 0.28, 1.00, 2.68, -0.28, 0.12
CASES = [("0.285", "0.29"), ("0.284", "0.28"), ("1.005", "1.01"), ("2.675", "2.68"), ("-0.285", "-0.29"),
         ("-0.284", "-0.28"), ("0.125", "0.13"), ("12", "12.00"), ("12.5", "12.50"), ("0.0049", "0.00"),
         ("-0.004", "0.00"), ("-0.005", "-0.01"), ("999999999999.99", "999999999999.99")]


def charge(amount: object) -> dict[str, object]:
    return {"kind": "charge", "practice": "p", "source_id": "C1", "service_date": "2025-01-01", "amount": amount}


def remittance(*amounts: object) -> dict[str, object]:
    return {"kind": "remittance", "practice": "p", "source_id": "R1", "paid_amount": amounts[0],
            "adjustment_amount": amounts[0],
            "adjustments": [{"group": "CO", "reason": "45", "amount": a} for a in amounts]}


@pytest.mark.parametrize(("sent", "want"), CASES)
def test_the_fast_path_rounds_half_up_to_the_cent(sent: str, want: str) -> None:
    assert _fast_validator("charge")(charge(sent)) is not None  # the canonical form takes the fast path
    assert str(validate_record(charge(sent))["amount"]) == want
    assert str(validate_record(charge(Decimal(sent)))["amount"]) == want


@pytest.mark.parametrize(("sent", "want"), CASES)
def test_marshmallow_rounds_the_same(sent: str, want: str) -> None:
    padded = f" {sent} "  # not the canonical form: marshmallow reads it
    assert _fast_validator("charge")(charge(padded)) is None
    assert str(validate_record(charge(padded))["amount"]) == want


def test_amounts_inside_adjustments_are_rounded_on_both_paths() -> None:
    fast = validate_record(remittance("0.285", "-1.005", "2.675"))
    slow = validate_record(remittance(" 0.285", "-1.005", 3))  # an int amount sends the record to marshmallow
    assert [str(a["amount"]) for a in fast["adjustments"]] == ["0.29", "-1.01", "2.68"]
    assert [str(a["amount"]) for a in slow["adjustments"]] == ["0.29", "-1.01", "3.00"]
    assert str(fast["paid_amount"]) == str(slow["paid_amount"]) == str(fast["adjustment_amount"]) == "0.29"
    # what the JSON column stores: whole-cent decimal strings
    assert to_json_ready(fast["adjustments"]) == [{"group": "CO", "reason": "45", "amount": a}
                                                  for a in ("0.29", "-1.01", "2.68")]


def test_thousands_separators_and_exponents_are_read_then_rounded() -> None:
    assert str(validate_record(charge("1,234.565"))["amount"]) == "1234.57"
    assert str(validate_record(charge("1e3"))["amount"]) == "1000.00"


@pytest.mark.parametrize("sent", ["1000000000000", "-1000000000000.00", Decimal("1E+30"), "1e40"])
def test_an_amount_of_more_than_twelve_digits_is_refused_naming_the_field(sent: object) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_record(charge(sent))
    assert "amount" in caught.value.errors
    assert "charge.amount" in str(caught.value)


def _text(units: int, places: int) -> str:
    """``units`` in 1/10**places dollars as a decimal string ("-0.285" for -285, 3), made of its digits."""
    digits = str(abs(units)).rjust(places + 1, "0")
    body = f"{digits[:-places]}.{digits[-places:]}" if places else digits
    return ("-" if units < 0 else "") + body


amounts = st.builds(_text, st.integers(-10 ** 13, 10 ** 13), st.integers(0, 6))


@settings(max_examples=500, deadline=None)
@given(text=amounts)
@example(text="0.285")
@example(text="-0.285")
@example(text="1.005")
@example(text="2.675")
@example(text="-0.005")
def test_every_path_rounds_as_integer_arithmetic_does(text: str) -> None:
    if abs(Decimal(text)) >= 10 ** 12:
        return
    cents = half_up_cents(text)
    for sent in (text, f" {text}", Decimal(text)):
        out = validate_record(charge(sent))["amount"]
        assert out.as_tuple().exponent == -2, sent  # always two places
        assert int(out * 100) == cents, sent
    assert MoneyCents.cents(Decimal(text)) == cents  # the column converter rounds alike (rows stored unvalidated)


def test_the_money_column_rounds_half_up_not_half_even() -> None:
    assert [MoneyCents.cents(Decimal(v)) for v in ("0.285", "-0.285", "0.125", "2.675", "12")] == \
        [29, -29, 13, 268, 1200]


def test_the_money_column_takes_whole_cents_as_they_are() -> None:
    # validated amounts (whole cents), any exponent, and what is not a Decimal (rounded as ever)
    assert [MoneyCents.cents(Decimal(v)) for v in ("123.45", "-0.00", "1E+2", "7", "-19.9", "0.10")] == \
        [12345, 0, 10000, 700, -1990, 10]
    assert [MoneyCents.cents(v) for v in ("0.285", 5, "-2.675")] == [29, 500, -268]


def test_imported_costs_round_half_up() -> None:
    rows = parse_costs("practice,service_line,month,cost\np,derm,2025-01,100.005\np,spa,2025-01,0.125\n",
                       source="costs.csv")
    assert [r["cost_cents"] for r in rows] == [10001, 13]
