"""Every hook a plugin can implement: the plugin contract.

Plugins implement these with ``from hub import hookimpl``. Built-in connectors
and plugins use exactly the same hooks, registered through the ``hub`` entry
point group. Hooks are called with keyword arguments; an implementation may
accept any subset of the arguments named here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from hub import PROJECT_NAME

if TYPE_CHECKING:
    import click
    import flask

    from hub.plugins import ConnectorRegistry, ExporterRegistry, KpiRegistry

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


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


# ---------------------------------------------------------------- CLI and API
@hookspec
def hub_cli_commands(cli: click.Group) -> None:
    """Add commands or groups to the ``hub`` command line with ``cli.add_command``. Returns nothing."""


@hookspec
def hub_flask_blueprints(app: flask.Flask) -> None:
    """Register extra Flask blueprints on the web app with ``app.register_blueprint``. Returns nothing."""
