"""The patient index in the background of ``hub serve``, ``hub mllp`` and ``hub worker``.

Every ``HUB_IDENTITY_INTERVAL`` seconds a daemon thread asks the store whether patients changed
since the last run (one indexed look-up) and, if so, runs the index incrementally. However many
processes tick, one run goes at a time (the run lease, ``hub.identity.mpi``); the others skip. So
records that arrive by a queue's workers, MLLP or HTTP are linked in batches, never per message.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa

from hub.identity.mpi import run_identity
from hub.model.tables import RECORD_TABLES, identity_runs

log = logging.getLogger("hub.identity")


def pending(engine: sa.Engine) -> bool:
    """Whether any patient changed since the last finished run (or none ran yet and there are patients)."""
    patients = RECORD_TABLES["patient"]
    with engine.connect() as conn:
        mark = conn.execute(sa.select(identity_runs.c.watermark).where(identity_runs.c.finished_at.is_not(None))
                            .order_by(identity_runs.c.id.desc()).limit(1)).scalar()
        q = sa.select(patients.c.id).limit(1)
        if mark is not None:
            q = q.where(patients.c.updated_at > mark)
        return conn.execute(q).first() is not None


class IdentityTicker:
    """A daemon thread that runs the index when patients changed, every ``interval`` seconds."""

    def __init__(self, runtime: Any, *, interval: float | None = None) -> None:
        self.runtime = runtime
        self.interval = interval if interval is not None else runtime.settings.identity_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-identity", daemon=True)

    def start(self) -> IdentityTicker:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def tick(self) -> None:
        runtime = self.runtime
        if pending(runtime.engine):
            summary = run_identity(runtime.engine, settings=runtime.settings, plugins=runtime.plugins)
            if not summary.skipped:
                log.info("%s", summary.describe())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:  # the store is down, say: the next tick tries again
                log.warning("patient index run failed (%s); retrying in %ss", type(exc).__name__, self.interval)
