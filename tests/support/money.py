"""An oracle for the money rounding rule, by integer arithmetic on an amount's digits (no ``Decimal``)."""


def half_up_cents(text: str) -> int:
    """Whole cents of a decimal amount such as ``"-1,234.565"``: half a cent goes away from zero."""
    t = text.replace(",", "").strip()
    sign = -1 if t.startswith("-") else 1
    whole, _, frac = t.lstrip("+-").partition(".")
    scale = 10 ** len(frac)
    units = int(whole or "0") * scale + int(frac or "0")  # the amount in 1/scale dollars
    return sign * ((units * 200 + scale) // (2 * scale))  # floor(units * 100 / scale + 1/2)
