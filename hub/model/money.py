"""Money in the common model: amounts and the one rounding rule, for the validation's fast path and
its marshmallow field alike."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
MONEY_LIMIT = Decimal(10) ** 12  # dollars: twelve digits before the point, as the fast path reads them


def round_money(amount: Decimal) -> Decimal:
    """The one rounding rule for money: half-up to the cent, a half cent going away from zero
    (0.285 → 0.29, -0.285 → -0.29: ``Decimal``'s ROUND_HALF_UP).

    Applied once, at validation, so every stored amount (a column, or an amount inside a JSON
    column such as ``adjustments``) is whole cents, and every sum a report makes of them is an
    exact integer sum on any database. ``amount`` must be finite and below ``MONEY_LIMIT``."""
    rounded = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    return rounded if rounded else rounded.copy_abs()  # -0.001 is 0.00, not "-0.00"
