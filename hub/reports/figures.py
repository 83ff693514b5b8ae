"""One slice's aggregated figures, and the small arithmetic every KPI is made of.

A KPI's ``compute`` gets a ``Figures`` and returns its value: ``int`` counts,
ratios as floats in 0..1 (``None`` when the denominator is 0), money as decimal
strings, days as floats rounded to two places.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
# payments of the site × service line × months with imported costs: what margin sets costs against
# (a figure the report engine adds beside the rollup measures)
COSTED = "costed_payments_cents"


def money(cents: int | Decimal) -> str:
    return str((Decimal(cents) / 100).quantize(CENT, rounding=ROUND_HALF_UP))


def median_of(hist: Counter[int]) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    lo_rank, hi_rank = (total - 1) // 2, total // 2
    seen, lo, hi = 0, None, None
    for value in sorted(hist):
        seen += hist[value]
        if lo is None and seen > lo_rank:
            lo = value
        if seen > hi_rank:
            hi = value
            break
    assert lo is not None and hi is not None
    return round((lo + hi) / 2, 2)


@dataclass
class ArFigures:
    balance_cents: int
    aged_cents: int
    charges_90_cents: int
    days_90: int


@dataclass
class Figures:
    sums: dict[str, int]
    hist: dict[str, Counter[int]] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)  # computed by the store, where it can
    retention_counts: tuple[int, int] | None = None  # (cohort, retained), when the slicing allows
    ar: ArFigures | None = None  # when the slice ends at a month
    costs_allowed: bool = False  # costs exist per site × service line × month only

    def count(self, m: str) -> int:
        return int(self.sums.get(m, 0))

    def ratio(self, num: str, den: str) -> float | None:
        d = self.count(den)
        return None if d == 0 else round(self.count(num) / d, 6)

    def usd(self, m: str) -> str:
        return money(self.count(m))

    def usd_per(self, num: str, den: str) -> str | None:
        d = self.count(den)
        return None if d == 0 else money(Decimal(self.count(num)) / d)

    def rvus(self, m: str) -> float:
        """Work RVUs from a measure in thousandths, to two places (half up)."""
        return float((Decimal(self.count(m)) / 1000).quantize(CENT, rounding=ROUND_HALF_UP))

    def rvus_per(self, num: str, den: str) -> float | None:
        """Work RVUs (thousandths in ``num``) per unit of ``den``, to two places (half up)."""
        d = self.count(den)
        return None if d == 0 else float((Decimal(self.count(num)) / 1000 / d).quantize(CENT, rounding=ROUND_HALF_UP))

    def mean(self, num: str, den: str) -> float | None:
        d = self.count(den)
        return None if d == 0 else round(self.count(num) / d, 2)

    def median(self, metric: str) -> float | None:
        if metric in self.medians:
            return self.medians[metric]
        return median_of(self.hist.get(metric, Counter()))

    def retention(self) -> float | None:
        if self.retention_counts is None or not self.retention_counts[0]:
            return None
        cohort, retained = self.retention_counts
        return round(retained / cohort, 6)

    def net_collection(self) -> float | None:
        den = self.count("charges_cents") - self.count("contractual_cents")
        return None if den <= 0 else round(self.count("payments_cents") / den, 6)

    def days_in_ar(self) -> float | None:
        ar = self.ar
        if ar is None or ar.charges_90_cents <= 0:
            return None
        return round(ar.balance_cents / (ar.charges_90_cents / ar.days_90), 2)

    def ar_over_90(self) -> float | None:
        ar = self.ar
        if ar is None or ar.balance_cents <= 0:
            return None
        return round(ar.aged_cents / ar.balance_cents, 6)

    def _costs_known(self) -> bool:
        return self.costs_allowed and self.count("cost_cells") > 0

    def costs(self) -> str | None:
        return self.usd("costs_cents") if self._costs_known() else None

    def margin(self) -> str | None:
        if not self._costs_known():
            return None
        return money(self.count(COSTED) - self.count("costs_cents"))

    def margin_rate(self) -> float | None:
        if not self._costs_known() or not self.count(COSTED):
            return None
        pay = self.count(COSTED)
        return round((pay - self.count("costs_cents")) / pay, 6)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.sums)
