"""Element values: amounts, dates, quantities, with errors that name the element and its position."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from hub.errors import ParseError

from .interchange import Transaction, digits


class Reader:
    """Reads the elements of one transaction's segments; ``pos`` is the segment's position counted from
    the ST (1), as SE-01 counts them."""

    def __init__(self, transaction: Transaction, origin: str | None) -> None:
        self.transaction = transaction
        self.origin = origin
        self.component = transaction.separators.component
        self.pos = 0

    def error(self, message: str, where: str) -> ParseError:
        return ParseError(message, source=self.origin, location=f"{where}, transaction segment {self.pos}")

    @staticmethod
    def el(seg: list[str], n: int) -> str:
        return seg[n] if len(seg) > n else ""  # segments are stripped; elements are taken as sent

    def parts(self, seg: list[str], n: int) -> list[str]:
        """The components of a composite element."""
        return self.el(seg, n).split(self.component)

    def amount(self, seg: list[str], n: int, *, required: bool = False) -> Decimal | None:
        text = self.el(seg, n)
        if not text:
            if required:
                raise self.error("the amount is missing", f"{seg[0]}-{n:02d}")
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise self.error("the amount is not a number", f"{seg[0]}-{n:02d}") from None
        if not value.is_finite():
            raise self.error("the amount is not a number", f"{seg[0]}-{n:02d}")
        return value

    def quantity(self, seg: list[str], n: int) -> Decimal | None:
        text = self.el(seg, n)
        if not text:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise self.error("the quantity is not a number", f"{seg[0]}-{n:02d}") from None
        return value if value.is_finite() else None

    def date(self, text: str, where: str) -> str | None:
        """CCYYMMDD as ISO (``2025-03-04``); the first date of a range ``CCYYMMDD-CCYYMMDD``."""
        text = text.strip()[:8]
        if not text:
            return None
        if len(text) != 8 or not digits(text):
            raise self.error("the date is not CCYYMMDD", where)
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"


def date_time(date: str, time: str) -> str | None:
    """An event time without an offset (the hub reads it in the practice's zone) from CCYYMMDD and HHMM[SS]."""
    if len(date) != 8 or not digits(date):
        return None
    clock = time if len(time) >= 4 and digits(time[:4]) else "0000"
    seconds = clock[4:6] if len(clock) >= 6 and digits(clock[4:6]) else "00"
    return f"{date[:4]}-{date[4:6]}-{date[6:]}T{clock[:2]}:{clock[2:4]}:{seconds}"


def money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def whole(value: Decimal | None) -> int | None:
    """Units as an int; a fractional quantity (minutes of anesthesia as hours, say) is not one."""
    if value is None or value != value.to_integral_value():
        return None
    return int(value)
