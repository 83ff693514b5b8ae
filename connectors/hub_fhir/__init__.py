"""FHIR R4 connector: single resources and Bundles, pushed (HTTP, files) or pulled (``hub fhir pull``).

Settings (the ``connectors: {fhir: {...}}`` section of a practice mapping, see
``FhirConfigSchema``, checked by the hub when a mapping is loaded; environment variables where
noted, declared as the fields' ``env`` and read through ``hub.settings``; secrets never shown):

- ``validate`` (default true; ``HUB_FHIR_VALIDATE=0`` turns it off everywhere): validate every
  resource against the R4 models at intake. ``false`` is the backfill mode for trusted history:
  records are mapped straight from the JSON, about eight times faster in the connector.
- ``timezone``: IANA zone given to date-times sent without an offset, overriding the practice's
  zone for this feed. Unset (the usual case), such times are emitted without an offset and the
  hub reads them in the practice's zone.
- pull: ``base_url``, ``token`` (``HUB_FHIR_TOKEN``), SMART backend services ``client_id``
  (``HUB_FHIR_CLIENT_ID``), ``token_url`` (``HUB_FHIR_TOKEN_URL``), ``private_key``
  (``HUB_FHIR_PRIVATE_KEY``, PEM text or a file path), ``scope``, ``page_size``, ``resource_types``.

Partial acceptance (``parse``, ``to_canonical``): a message is split into what maps and what
does not, on the record in ``Context.tally``:

- resources of types the hub does not map (not in ``MAPPERS``: Observation, MessageHeader, ...)
  are counted by type (``tally.skip``) and never validated, so an invalid one costs nothing; a
  message that is nothing but such resources is kept in the message store as ``error`` with the
  reason ``unsupported resource type X`` (reprocessable once a mapping exists);
- lenient mappings (the default): a mapped resource whose optional elements fail R4 validation
  is taken in without them, each recorded with its element path (``tally.drop``); one whose
  required part fails (or an element its record needs, ``HUB_NEEDS``) is left out whole and
  recorded with its path, and the rest of the message is kept; a message left with no mapped
  resource is refused with the first one's reason;
- a transaction Bundle stays all or nothing for the resources the hub maps (FHIR's rule), and a
  strict mapping (``acceptance: strict``) makes every message so: any invalid mapped resource
  refuses it, naming the element path;
- entries that carry no resource to take in are skipped and said in the tally's notes: DELETE,
  GET, HEAD and PATCH requests (the hub keeps history: it does not delete), response entries
  with only a ``response``, deletions in a history; a message of nothing else is refused.

Event time: every record carries the ``meta.lastUpdated`` of the resource it comes from, else
the enclosing Bundle's ``timestamp``, else none (the hub then uses the arrival time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub import hookimpl, lazy_attributes

if TYPE_CHECKING:
    from hub.connector import PullService

    from .connector import FhirConnector as FhirConnector

__version__ = "1.0.0"

# The plugin module, imported by every command (the plugins are loaded to list their commands): the
# hooks only. The connector (``connector.py``: its parser, its mapping, marshmallow for its settings)
# is imported when the hub first asks for the connectors.


@hookimpl
def hub_register_connectors(registry: Any) -> None:
    from .connector import FhirConnector

    registry.add(FhirConnector)


@hookimpl
def hub_cli_commands(cli: Any, pull: PullService) -> None:
    from .cli import fhir_group  # click only: hub --help lists the command without the connector

    cli.add_command(fhir_group(pull))


# the names of the connector module and of its settings (marshmallow), imported when first asked for
__getattr__ = lazy_attributes(__name__, "connector", "settings")
