"""The patient index in the background of ``hub serve``, ``hub mllp`` and ``hub worker``.

Every ``HUB_IDENTITY_INTERVAL`` seconds a daemon thread asks the store whether patients changed
since the last run (one indexed look-up) and, if so, runs the index incrementally. However many
processes tick, one run goes at a time (the run lease, ``hub.identity.mpi``); the others skip. So
records that arrive by a queue's workers, MLLP or HTTP are linked in batches, never per message.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from hub.identity.mpi import run_identity
from hub.model.tables import RECORD_TABLES, identity_runs
from hub.pipeline.sweeper import Ticker

log = logging.getLogger("hub.identity")


def pending(engine: sa.Engine) -> bool:
    """Whether any patient or merge was written since the last finished run (or none ran yet and
    there are patients): a probe of ``ix_patients_updated_at``. The run itself finds exactly which
    patients to compare (``identity_links.compared_at``)."""
    patients, merges = RECORD_TABLES["patient"], RECORD_TABLES["patient_merge"]
    with engine.connect() as conn:
        mark = conn.execute(sa.select(identity_runs.c.watermark).where(identity_runs.c.finished_at.is_not(None))
                            .order_by(identity_runs.c.id.desc()).limit(1)).scalar()
        if mark is None:
            return conn.execute(sa.select(patients.c.id).limit(1)).first() is not None
        return any(conn.execute(sa.select(t.c.id).where(t.c.updated_at > mark).limit(1)).first() is not None
                   for t in (patients, merges))


class IdentityTicker(Ticker):
    """Runs the index when patients changed, every ``interval`` seconds (``HUB_IDENTITY_INTERVAL``)."""

    name = "hub-identity"
    log = log

    def __init__(self, runtime: Any, *, interval: float | None = None) -> None:
        super().__init__(interval if interval is not None else runtime.settings.identity_interval)
        self.runtime = runtime

    def tick(self) -> None:
        runtime = self.runtime
        if pending(runtime.engine):
            summary = run_identity(runtime.engine, settings=runtime.settings, plugins=runtime.plugins)
            if not summary.skipped:
                log.info("%s", summary.describe())
