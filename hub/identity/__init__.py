"""Cross-site patient linking: the enterprise id.

Two patient records of any practices get the same ``enterprise_id`` when their
normalised family name, given name and birth date agree (a deterministic match,
the first tier of an MPI). The id is a keyed hash, so it reveals nothing of the
demographics behind it; ``HUB_IDENTITY_KEY`` sets the key per deployment.
"""

from __future__ import annotations

import functools
import hmac
import unicodedata
from typing import Any

from hub.settings import current


def _norm(text: str) -> str:
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(filter(str.isalnum, text.lower()))


def enterprise_id(family_name: str | None, given_name: str | None, birth_date: Any, *,
                  key: str | None = None) -> str | None:
    """The keyed id of these demographics; ``key`` is HUB_IDENTITY_KEY (given by a caller that links
    many records: ``current()`` is read once, not per record)."""
    if not (family_name and given_name and birth_date):
        return None
    return _keyed_id(key if key is not None else current().identity_key, family_name, given_name, str(birth_date))


@functools.lru_cache(maxsize=1 << 14)  # a feed names the same patients again and again (ADT, SIU, DFT)
def _keyed_id(key: str, family_name: str, given_name: str, birth_date: str) -> str:
    basis = "|".join((_norm(family_name), _norm(given_name), birth_date))
    return "E" + hmac.digest(key.encode(), basis.encode(), "sha256").hex()[:24]


def link(record: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """Set ``enterprise_id`` on a patient record that lacks one (``key``: as for ``enterprise_id``)."""
    if record.get("kind") == "patient" and not record.get("enterprise_id"):
        eid = enterprise_id(record.get("family_name"), record.get("given_name"), record.get("birth_date"), key=key)
        if eid:
            record = {**record, "enterprise_id": eid}
    return record
