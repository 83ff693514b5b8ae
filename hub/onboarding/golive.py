"""Going live: a practice moves from ``onboarding`` to ``live`` only on a passing scorecard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.errors import HubError
from hub.onboarding.sources import check_stored
from hub.store.engine import writer
from hub.store.practices import get_practice, set_status

if TYPE_CHECKING:
    from hub.runtime import Runtime


class NotReady(HubError):
    """The scorecard of the practice's stored messages is below its go-live thresholds (or the practice has
    no time zone); ``card`` is the scorecard, for a caller that shows it with the refusal."""

    def __init__(self, message: str, card: dict[str, Any]) -> None:
        super().__init__(message)
        self.card = card


def go_live(runtime: Runtime, slug: str) -> dict[str, Any]:
    """Check the scorecard of everything stored for the practice, then set it live; the scorecard."""
    with runtime.engine.connect() as conn:
        row = get_practice(conn, slug)
    if row["status"] != "onboarding":
        raise HubError(f"practice {slug} is {row['status']}, not onboarding")
    card = check_stored(runtime, slug)
    # without a zone a time sent without an offset is no instant, and no KPI has a local calendar date
    no_zone = [] if row["timezone"] else [f"no time zone (hub practice set {slug} --timezone America/Chicago, say)"]
    if no_zone or not card["passed"]:
        failed = [c["name"] for c in card["checks"] if not c["ok"]]
        scorecard = (f"the scorecard fails {len(failed)} check(s): {'; '.join(failed[:8])}"
                     f"{' ...' if len(failed) > 8 else ''} (hub onboard check, or GET "
                     f"/api/v1/practices/{slug}/scorecard)") if failed else ""
        raise NotReady(f"practice {slug} stays onboarding: " + "; ".join([*no_zone, *([scorecard] if failed else [])]),
                       card)
    with writer(runtime.engine).begin() as conn:
        set_status(conn, slug, "live")
    return card
