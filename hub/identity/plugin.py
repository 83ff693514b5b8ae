"""The identity link as an essential plugin: the enterprise id set on patient records before they are stored.

Implements ``hub_link_identity`` (once per message, after mapping) with the deterministic
keyed match of ``hub.identity``. It runs last (``trylast``), so a master patient index plugin
can set ids of its own first; a record that has an ``enterprise_id`` already keeps it.
Registered always (``hub.plugins.ESSENTIAL_PLUGINS``, name ``identity``): the new-patient and
retention figures count enterprise ids across sites.
"""

from __future__ import annotations

from typing import Any

from hub import hookimpl
from hub.identity import link
from hub.settings import current


@hookimpl(trylast=True)
def hub_link_identity(records: list[dict[str, Any]]) -> None:
    key = None  # HUB_IDENTITY_KEY, read once per message that has a patient
    for i, record in enumerate(records):
        if record.get("kind") == "patient":
            key = key if key is not None else current().identity_key
            records[i] = link(record, key)
