"""Pulling: the core schedules a connector's poller (``hub fhir pull`` and any other poll connector).

A connector that pulls only reads (``Connector.poller`` → ``Poller.poll`` → ``Page``s); this
module does the rest, for every such connector alike:

1. loads the practice's settings of the connector (its section of the practice's mapping) and
   lays the command's options over them (``pull``);
2. per resource type, starts from ``since`` or the stored high-water mark (``hub.store.pull_state``);
3. stores each page's payloads through the ordinary intake in one commit (split, deduplicated,
   processed, errors kept as ``error`` messages), so a page pulled twice is a duplicate;
4. only then keeps the page's cursor as the mark, so a failure (the source, the network, the
   store) leaves the mark at the last stored page and a rerun resumes there.

The poller is asked for its next page only once the one before is stored and its mark kept.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hub.connector import CURSOR_MAX, Page, Poller, PullReport
from hub.errors import ConfigError, HubError, PluginError
from hub.mapping import load_mapping
from hub.pipeline.intake import Arrival, receive_many
from hub.store.practices import get_practice
from hub.store.pull_state import get_watermark, set_watermark

if TYPE_CHECKING:
    import sqlalchemy as sa

    from hub.runtime import Runtime

log = logging.getLogger("hub.pipeline.pull")
RESOURCE_TYPE_MAX = 64  # characters of a resource type in the marks' key
MAX_PAGES = 100_000  # pages of one resource type in one run, a guard against a source that pages forever


def connector_config(engine: sa.Engine, practice: str, connector: str) -> dict[str, Any]:
    """The ``connectors: {<connector>: ...}`` section of a registered practice's mapping
    (``NotFound`` for an unknown practice)."""
    with engine.connect() as conn:
        row = get_practice(conn, practice)
    return load_mapping(row["mapping"], source=f"mapping of practice {practice}").connector_config(connector)


def pull(runtime: Runtime, practice: str, connector: str, *, options: Mapping[str, Any] | None = None,
         since: str | None = None, resource_types: Sequence[str] | None = None,
         on_report: Callable[[PullReport], None] | None = None) -> list[PullReport]:
    """Pull ``practice``'s data with ``connector``'s poller (``hub.connector.PullService``): its settings
    in the practice's mapping with ``options`` over them; one report per resource type, each also
    given to ``on_report`` as soon as its type is done (a failure later does not lose it)."""
    found = runtime.plugins.connectors.get(connector)
    if not found.can_poll():
        raise ConfigError(f"the {connector} connector does not pull (it takes pushed payloads only)")
    settings = {**connector_config(runtime.engine, practice, connector), **(options or {})}
    return run_poller(runtime, practice, connector, found.poller(settings), since=since,
                      resource_types=resource_types, on_report=on_report)


def run_poller(runtime: Runtime, practice: str, connector: str, poller: Poller, *, since: str | None = None,
               resource_types: Sequence[str] | None = None, max_pages: int = MAX_PAGES,
               on_report: Callable[[PullReport], None] | None = None) -> list[PullReport]:
    """Run ``poller`` for ``practice``, storing its pages as ``connector``'s messages; one report per
    resource type, in order, each given to ``on_report`` once its type is done. ``since`` replaces
    the stored marks as the start of every type."""
    chosen = list(resource_types or poller.resource_types())
    for rtype in chosen:
        if not isinstance(rtype, str) or not 0 < len(rtype) <= RESOURCE_TYPE_MAX:
            who = "" if resource_types else f" (the {connector} connector's)"
            raise (ConfigError if resource_types else PluginError)(
                f"a resource type{who} must be a str of 1 to {RESOURCE_TYPE_MAX} characters")
    reports = []
    for rtype in chosen:
        report = PullReport(rtype)
        reports.append(report)
        report.high_water = since or get_watermark(runtime.engine, practice, poller.source, rtype)
        try:
            _store_pages(runtime, practice, connector, poller, rtype, report, max_pages)
        except BaseException:
            report.finished = False  # what the type stored before the failure is kept, and said
            if on_report is not None and report.pages:
                on_report(report)
            raise
        if on_report is not None:
            on_report(report)
    return reports


def _store_pages(runtime: Runtime, practice: str, connector: str, poller: Poller, rtype: str, report: PullReport,
                 max_pages: int) -> None:
    """Store each page of ``rtype`` and then keep its cursor as the mark, counting into ``report``."""
    with contextlib.closing(_pages(connector, rtype, poller.poll(rtype, report.high_water))) as pages:
        for page in pages:
            if page.read:
                report.pages += 1
            if page.payloads:
                origin = f"{connector} pull {rtype} page {report.pages}"
                stored = receive_many(runtime, practice, [Arrival(p, origin) for p in page.payloads],
                                      connector=connector)
                for receipt in (r for receipts in stored for r in receipts):
                    setattr(report, receipt.status, getattr(report, receipt.status) + 1)
            report.resources += page.resources
            if page.cursor is not None:  # the page is stored: the mark may move past it
                set_watermark(runtime.engine, practice, poller.source, rtype, page.cursor)
                report.high_water = page.cursor
            if report.pages >= max_pages:
                log.warning("pull of %s stopped after %d pages", rtype, report.pages,
                            extra={"practice": practice, "connector": connector})
                break


def _pages(connector: str, rtype: str, pages: Iterable[Page]) -> Generator[Page, None, None]:
    """The poller's pages, checked; a failure that is not the hub's own error (a connector bug) becomes
    one that names the connector and type, never the data. Closing this closes the poller's generator."""
    iterator = iter(pages)
    try:
        while True:
            try:
                page = next(iterator)
            except StopIteration:
                return
            except HubError:
                raise
            except Exception as exc:
                log.exception("connector %s failed while pulling %s", connector, rtype)
                raise PluginError(f"the {connector} connector failed while pulling {rtype} "
                                  f"({type(exc).__name__})") from exc
            if not isinstance(page, Page) or not all(isinstance(p, bytes) for p in page.payloads):
                raise PluginError(f"the {connector} connector yielded something other than a Page of bytes payloads")
            if page.cursor is not None and not (isinstance(page.cursor, str) and 0 < len(page.cursor) <= CURSOR_MAX):
                raise PluginError(f"the {connector} connector gave a cursor that is not a str of 1 to "
                                  f"{CURSOR_MAX} characters")
            yield page
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
