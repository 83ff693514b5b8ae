"""The retention counts' deltas (``RetentionDelta``) against a count made straight from the definition.

For each scope (practice or '*', service line or '*', kind of period) and period m, a patient is in m's cohort
when their last visit period before m is at most the window before it, and retained when they are also seen in m.
The oracle counts that patient by patient from the whole histories, before and after; the delta must be the
difference, however the histories changed (visits added, moved, dropped; several practices and lines).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.reports.visits import RETENTION_WINDOW, RetentionDelta, Visit, period_index

_DAYS = ["2024-01-03", "2024-01-29", "2024-02-14", "2024-04-01", "2024-07-15", "2024-12-30", "2025-01-06",
         "2025-03-31", "2025-06-02", "2026-02-16"]
_visit = st.tuples(st.sampled_from(("east", "west")), st.sampled_from(("derm", "cosmetic")), st.sampled_from(_DAYS))
_history = st.lists(_visit, max_size=6)


def _visits(history: list[tuple[str, str, str]]) -> list[Visit]:
    return [Visit("appointment", practice, f"A{n}", "patient", "", "", line, "followup", day)
            for n, (practice, line, day) in enumerate(history)]


def _oracle(histories: list[list[tuple[str, str, str]]]) -> Counter[tuple[tuple[str, str, str], int, int]]:
    """(scope, period, 0 for the cohort or 1 for the retained) -> patients, from the definition."""
    counts: Counter[tuple[tuple[str, str, str], int, int]] = Counter()
    for history in histories:
        for kind, window in RETENTION_WINDOW.items():
            for practice in ("east", "west", "*"):
                for line in ("derm", "cosmetic", "*"):
                    seen = sorted({period_index(kind, day) for p, ln, day in history
                                   if practice in (p, "*") and line in (ln, "*")})
                    if not seen:
                        continue
                    for m in range(seen[0] + 1, seen[-1] + window + 2):
                        before = [x for x in seen if x < m]
                        if before and m - before[-1] <= window:
                            counts[((practice, line, kind), m, 0)] += 1
                            if m in seen:
                                counts[((practice, line, kind), m, 1)] += 1
    return counts


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_history, _history), min_size=1, max_size=4))
def test_the_delta_is_the_difference_of_the_counts_before_and_after(changes: list[tuple[list[tuple[str, str, str]],
                                                                                          list[tuple[str, str, str]]]]
                                                                    ) -> None:
    delta = RetentionDelta()
    for old, new in changes:
        delta.add(_visits(old), _visits(new))
    expected = _oracle([new for _, new in changes])
    expected.subtract(_oracle([old for old, _ in changes]))
    got: Counter[tuple[tuple[str, str, str], int, int]] = Counter()
    for (scope, index), (cohort, retained) in delta.rows().items():
        got[(scope, index, 0)] += cohort
        got[(scope, index, 1)] += retained
    assert +got == +expected and -got == -expected


def test_one_patient_seen_in_january_and_march_by_hand() -> None:
    """Seen in January and March 2025 (one practice, one line): February's and March's month cohorts hold them,
    March retains them; the first quarter holds no cohort (no visit before it), the second holds them, unretained."""
    delta = RetentionDelta()
    delta.add([], _visits([("east", "derm", "2025-01-06"), ("east", "derm", "2025-03-31")]))
    rows = delta.rows()
    jan, feb, mar = (period_index("month", d) for d in ("2025-01-06", "2025-02-01", "2025-03-31"))
    for scope in (("east", "derm", "month"), ("*", "*", "month"), ("east", "*", "month"), ("*", "derm", "month")):
        assert rows[(scope, feb)] == [1, 0]
        assert rows[(scope, mar)] == [1, 1]
        assert (scope, jan) not in rows
    q1, q2 = period_index("quarter", "2025-01-06"), period_index("quarter", "2025-04-01")
    assert (("east", "derm", "quarter"), q1) not in rows
    assert rows[(("east", "derm", "quarter"), q2)] == [1, 0]
    # the patient drops out again: every count goes back
    delta.add(_visits([("east", "derm", "2025-01-06"), ("east", "derm", "2025-03-31")]), [])
    assert delta.rows() == {}
