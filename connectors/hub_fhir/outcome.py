"""The FHIR answers: an OperationOutcome per message, a batch- or transaction-response Bundle.

HTTP status words in ``entry.response.status``: ``201 Created`` (stored and processed or
queued), ``200 OK`` (the same content was already received), ``400 Bad Request``
(unreadable: refused), ``422 Unprocessable Entity`` (read but not valid or not mappable;
kept in the message store with the reason, and reprocessable).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from hub.connector import Envelope, Outcome

MEDIA_TYPE = "application/fhir+json"
# the element path in a stored reason "<file>, <path>: <message>" (a file name is followed by ", ")
_PATH = re.compile(r"((?:Bundle\.entry\[\d+\](?:\.resource)?|[A-Z][A-Za-z]+)(?:\.[A-Za-z]+(?:\[\d+\])?)+)(?=: )")


def status_of(outcome: Outcome) -> str:
    if outcome.duplicate and outcome.accepted:
        return "200 OK"
    if outcome.accepted:
        return "201 Created"
    return "400 Bad Request" if outcome.rejected else "422 Unprocessable Entity"


def operation_outcome(outcome: Outcome, notes: Sequence[str] = ()) -> dict[str, Any]:
    if outcome.accepted:
        text = (f"already received as message {outcome.message_id}" if outcome.duplicate
                else f"stored as message {outcome.message_id}")
        issues = [{"severity": "information", "code": "informational", "diagnostics": text}]
        issues += [{"severity": "information", "code": "not-supported", "diagnostics": n} for n in notes]
        return {"resourceType": "OperationOutcome", "issue": issues}
    reason = outcome.error or "the message could not be processed"
    issue: dict[str, Any] = {"severity": "error", "code": _issue_code(outcome, reason), "diagnostics": reason}
    location = outcome.error_location
    if location is None:
        found = _PATH.search(reason)
        location = found.group(1) if found else None
    if location:
        issue["expression"] = [location]
    if outcome.message_id is not None:
        issue["diagnostics"] = f"{reason} (kept as message {outcome.message_id})"
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _issue_code(outcome: Outcome, reason: str) -> str:
    if "unsupported resource type" in reason:
        return "not-supported"
    if outcome.rejected:
        return "structure"
    return "invalid" if "not valid FHIR" in reason or "common model" in reason else "processing"


def unsupported_notes(envelope: Envelope, supported: frozenset[str]) -> list[str]:
    types = [t for t in envelope.meta.get("entries") or () if t and t not in supported]
    if not types or envelope.meta.get("bundle_type") is None:
        return []
    counts: dict[str, int] = {}
    for t in types:
        counts[t] = counts.get(t, 0) + 1
    listed = ", ".join(f"{t} x{n}" for t, n in sorted(counts.items()))
    return [f"kept in the message store but not mapped (unsupported resource type): {listed}"]


def answer(results: Sequence[tuple[Envelope, Outcome]], supported: frozenset[str]) -> tuple[bytes, str] | None:
    if not results:
        return None
    first_env, first_outcome = results[0]
    kind = first_env.meta.get("bundle_type")
    if kind == "batch":
        entries = [{"response": {"status": status_of(o), "outcome": operation_outcome(o)}} for _, o in results]
        body: dict[str, Any] = {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
    elif kind == "transaction" and first_outcome.accepted:
        entries = []
        for rtype in first_env.meta.get("entries") or ():
            response: dict[str, Any] = {"status": status_of(first_outcome)}
            if rtype not in supported:
                response["status"] = "200 OK"
                response["outcome"] = {"resourceType": "OperationOutcome", "issue": [{
                    "severity": "information", "code": "not-supported",
                    "diagnostics": f"{rtype} is kept in the message store but not mapped"}]}
            entries.append({"response": response})
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    else:
        body = operation_outcome(first_outcome, unsupported_notes(first_env, supported))
    return orjson.dumps(body), MEDIA_TYPE
