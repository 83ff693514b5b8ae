"""Every hook a plugin can implement: the plugin contract.

Plugins implement these with ``from hub import hookimpl``. Built-in connectors
and plugins use exactly the same hooks, as do the core's own features (the KPI
catalog, the json and csv formats, the report upkeep, the identity link: the
essential plugins of ``hub.plugins``). Hooks are called with keyword arguments;
an implementation may accept any subset of the arguments named here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from hub import PROJECT_NAME

if TYPE_CHECKING:
    import click
    import flask
    import sqlalchemy as sa

    from hub.connector import PullService
    from hub.plugins import ConnectorRegistry, ExporterRegistry, KpiRegistry

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@dataclass
class RecordBatch:
    """The records one transaction stores, as ``hub_records_storing`` and ``hub_records_stored`` see them.

    ``items``: ``(record, message_id)`` pairs, validated common-model records (Python values) and
    the id of the stored message each came from. ``stash``: the same dict in both calls for one
    batch, where an implementation keeps what it read before the write for after it (key it by
    something of its own, as pytest's ``Stash`` is keyed)."""

    items: Sequence[tuple[dict[str, Any], int | None]]
    stash: dict[object, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageFailure:
    """One message that went to ``error``: ids, names and the reason only, never the payload.

    ``stage``: ``intake`` (the payload could not be read or split), ``process`` (connector,
    mapping, validation or a plugin refused it) or ``store`` (the write failed on its last
    attempt). ``reason`` is the text stored as the message's error, which names fields and
    codes but carries no patient data."""

    message_id: int
    practice: str
    connector: str
    reason: str
    stage: str


@dataclass(frozen=True)
class Alert:
    """One notice of a feed health rule (``hub.operations.alerts``), as ``hub_alert`` receives it.

    ``state``: ``open`` (the rule fired, first notice), ``repeat`` (still firing, the repeat
    interval passed) or ``closed`` (the rule holds again: the recovery notice). ``rule``:
    ``silence``, ``error_share``, ``queue_age`` or ``daily_volume``. ``summary`` says what fired
    in words (counts and times, never patient data); ``detail`` holds the figures compared.
    ``at`` is the evaluation's time; ``opened_at`` when the alert first opened (both aware UTC)."""

    id: int
    practice: str
    rule: str
    state: str
    summary: str
    at: dt.datetime
    opened_at: dt.datetime
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON a webhook receives (times as ISO 8601 with their offset)."""
        return {"id": self.id, "practice": self.practice, "rule": self.rule, "state": self.state,
                "summary": self.summary, "at": self.at.isoformat(), "opened_at": self.opened_at.isoformat(),
                "detail": self.detail}


# ---------------------------------------------------------------- registration
@hookspec
def hub_register_connectors(registry: ConnectorRegistry) -> None:
    """Add connector classes with ``registry.add(ConnectorClass)``.

    The registry checks each class against the connector contract as it is
    added (a name, ``parse`` and ``to_canonical``) and refuses two connectors
    of the same name. Returns nothing.
    """


@hookspec
def hub_register_kpis(registry: KpiRegistry) -> None:
    """Add KPI definitions to the report catalog with ``registry.add(kpi)``.

    ``kpi`` is a ``hub.reports`` KPI definition (id, name, unit, formula in
    words, and how it is computed). Returns nothing.
    """


@hookspec
def hub_register_exporters(registry: ExporterRegistry) -> None:
    """Add report exporters with ``registry.add(format_name, exporter)``.

    ``exporter(report, out)`` writes a computed report to the binary file
    ``out``. The built-in formats are json, csv, xlsx and html. Returns nothing.
    """


# ---------------------------------------------------------------- normalize and map
@hookspec
def hub_transform_record(record: dict[str, Any], practice: str, message_id: int | None) -> dict[str, Any] | None:
    """Change a canonical record after mapping and before it is stored.

    Called once per record per implementation, in plugin order; each gets the
    record the previous one returned. Return the (possibly new) record, or
    ``None`` to leave it as it is. Not ``firstresult``. A hook that raises puts
    the message in ``error`` with the exception's message as the reason.
    """


@hookspec
def hub_link_identity(records: list[dict[str, Any]], practice: str) -> None:
    """Set ``enterprise_id`` on the patient records of one message: the cross-site patient link.

    Called once per message, after mapping and before ``hub_transform_record`` and validation,
    with that message's records (any kinds) in a list the implementation may change in place
    (replace ``records[i]``; do not add or remove items). The hub has no implementation of its
    own: its master patient index (``hub.identity``) links patients in batches after they are
    stored, and takes an ``enterprise_id`` set here (by an outside index, say) as a shared
    enterprise identifier, one of its deterministic rules. Returns nothing. A hook that raises
    puts the message in ``error``.
    """


# ---------------------------------------------------------------- store
@hookspec
def hub_records_storing(conn: sa.Connection, batch: RecordBatch) -> None:
    """Called inside the write transaction just before a batch's records are upserted.

    ``conn`` is the transaction's connection (write with it: what an implementation writes
    commits or rolls back with the records); ``batch`` is a ``hub.hookspecs.RecordBatch``.
    Reads here see the rows as they were before this batch. Called once per batch that has
    records, never per record. A hook that raises rolls the batch back (the dispatcher retries
    it; on the last attempt its messages go to ``error``). Returns nothing.
    """


@hookspec
def hub_records_stored(conn: sa.Connection, batch: RecordBatch) -> None:
    """Called inside the write transaction right after a batch's records are upserted.

    The same ``conn`` and ``batch`` (and ``batch.stash``) as ``hub_records_storing``; reads now see
    the rows as the batch left them. The built-in report upkeep (``hub.reports.upkeep``,
    essential) marks here the report cells the batch moved records out of or into. Once per batch;
    raising rolls the batch back. Returns nothing.
    """


@hookspec
def hub_records_committed(practices: list[str]) -> None:
    """Called after a processing batch's records have committed, outside any transaction, in the
    process that stored them, with the practices the batch held records of.

    For work that must follow the stored records but not hold up the batch: the built-in report
    upkeep (``hub.reports.upkeep``) wakes the background refresh of the report rollups. Once per
    batch with records. Raising is logged and undoes nothing. Returns nothing.
    """


@hookspec
def hub_patients_relinked(conn: sa.Connection, patients: list[tuple[str, str]]) -> None:
    """Called inside the transaction in which the patient index moved ``patients`` ((practice,
    source id) each) to another enterprise id: a link, a split, a merge or an operator's decision.

    The built-in report upkeep (``hub.reports.upkeep``, essential) marks the report cells of their
    visits for recomputation (new-patient visits, retention and distinct patients count enterprise
    ids). Returns nothing; raising rolls the change back.
    """


@hookspec
def hub_records_clearing(conn: sa.Connection, practice: str) -> None:
    """Called inside the transaction that is about to delete every canonical record of ``practice``.

    That happens when a practice's messages are read again from a clean slate (its time zone
    changed); the records come back through ``hub_records_storing`` / ``hub_records_stored``.
    Reads see the rows about to go. Raising rolls the clear back. Returns nothing.
    """


@hookspec
def hub_messages_failed(failures: Sequence[MessageFailure]) -> None:
    """Called when messages went to ``error``, once per batch of them, after that was committed.

    ``failures`` are ``hub.hookspecs.MessageFailure`` items (message id, practice, connector,
    reason, stage), all of them safe to log: no payload, no patient data. Called for payloads
    refused at intake, for messages that failed processing, and for a batch whose write failed on
    its last attempt; a message that waits for a retry is not reported. It runs on the ingest
    path (an inline sender waits for it): keep it quick, and queue any slow notification. An
    implementation that raises is logged (the exception's type only) and the pipeline goes on:
    the messages are in ``error`` already. Returns nothing.
    """


# ---------------------------------------------------------------- operations
@hookspec
def hub_alert(alert: Alert) -> None:
    """Deliver one alert notice: a feed health rule opened, repeated or closed (``hub.hookspecs.Alert``).

    Called after the alert's state was committed, once per notice, by ``hub alerts check`` and the
    alert ticker of ``hub worker``. The built-in ``alerts`` plugin (``hub.operations.notify``) posts
    it to ``HUB_ALERT_WEBHOOK_URL`` and mails it through ``HUB_ALERT_SMTP_URL``. An implementation
    that raises is logged (the exception's type only) and the others still run; the alert stays as
    it was recorded (a notice is not sent again but at the next repeat). Returns nothing.
    """


# ---------------------------------------------------------------- CLI and API
@hookspec
def hub_cli_commands(cli: click.Group, pull: PullService) -> None:
    """Add commands or groups to the ``hub`` command line with ``cli.add_command``. Returns nothing.

    ``pull`` is the core's pull (``hub.connector.PullService``) for a poll connector's command
    (``hub fhir pull``): ``pull(practice, connector, options=..., since=..., resource_types=...)``
    runs the connector's ``Poller`` on the invoked command's runtime, storing every page through
    intake before moving the high-water mark, and returns one ``PullReport`` per resource type.
    """


@hookspec
def hub_flask_blueprints(app: flask.Flask) -> None:
    """Register extra Flask blueprints on the web app with ``app.register_blueprint``. Returns nothing."""
