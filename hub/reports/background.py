"""The report rollups refreshed in the background of ``hub serve``, ``hub mllp``, ``hub watch`` and ``hub worker``.

A report request never recomputes rollups: it reads the committed ones and says how current they
are (``as_of``, ``hub.reports.rollups.freshness``). What keeps them current is a daemon thread in
each long-running process that recomputes the dirty cells in transactions no ingest waits for long
(``rollups.refresh_dirty``: on SQLite about a second each, on PostgreSQL holding no lock an ingest needs):

- soon after a processing batch commits in this process (inline processing in ``hub serve`` or
  ``hub mllp``, a job of ``hub worker``): the store hook ``hub_records_committed`` wakes it
  (``wake``), and it waits ``SETTLE_SECONDS`` for the batches that follow, so a burst of batches
  costs one refresh rather than one each;
- and every ``HUB_REPORT_REFRESH_INTERVAL`` seconds, for the changes that come by no batch of this
  process (the patient index relinking patients, another process's batches, a failed refresh).

However many processes refresh, one transaction recomputes at a time (``rollups.refresh_dirty``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa

from hub.pipeline.sweeper import Ticker
from hub.reports import same_days
from hub.reports.rollups import any_waiting, refresh_dirty

log = logging.getLogger("hub.reports")

SETTLE_SECONDS = 1.0  # after a wake, how long to let further batches land before refreshing

_running: set[ReportRefresher] = set()
_running_lock = threading.Lock()


def wake() -> None:
    """A batch committed in this process: its cells are marked, the running refreshers take them soon."""
    with _running_lock:
        refreshers = list(_running)
    for refresher in refreshers:
        refresher.wake()


def pending(engine: sa.Engine) -> bool:
    """Whether any cell waits (a probe of the small ``report_dirty`` and ``report_refreshing`` tables)."""
    with engine.connect() as conn:
        return any_waiting(conn)


class ReportRefresher(Ticker):
    """Refreshes the dirty report cells when woken and every ``interval`` seconds (``HUB_REPORT_REFRESH_INTERVAL``;
    0: never, the CLI's report commands still refresh before they read)."""

    name = "hub-report-refresh"
    log = log

    def __init__(self, runtime: Any, *, interval: float | None = None, settle: float = SETTLE_SECONDS) -> None:
        super().__init__(interval if interval is not None else runtime.settings.report_refresh_interval)
        self.runtime = runtime
        self.settle = settle
        self._wake = threading.Event()

    def start(self) -> ReportRefresher:
        if self.interval > 0:
            with _running_lock:
                _running.add(self)
        super().start()
        return self

    def stop(self) -> None:
        with _running_lock:
            _running.discard(self)
        self._stop.set()
        self._wake.set()
        super().stop()

    def wake(self) -> None:
        self._wake.set()

    def tick(self) -> None:
        engine = self.runtime.engine
        if pending(engine):
            cells = refresh_dirty(engine, should_stop=self._stop.is_set)
            if cells:
                log.info("report rollups refreshed (%d practice-month cells)", cells)
        if not self._stop.is_set():  # both sides of the same days: when the day changed, or a cell of theirs did
            same_days.keep(engine)

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.interval)
            if woken:
                self._wake.clear()
                if self._stop.wait(self.settle):
                    break
            if self._stop.is_set():
                break
            try:
                self.tick()
            except Exception as exc:  # the store is down or busy: the next wake or tick tries again
                self.log.warning("%s failed (%s); retrying in %ss", self.name, type(exc).__name__, self.interval)
