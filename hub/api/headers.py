"""Headers every answer of the HTTP server carries, whichever path answers it.

An answer may hold patient data (a message, a drill-down, an ACK quoting a control id): no cache
in between may keep it, and no browser may guess its type from its bytes."""

from __future__ import annotations

from flask import Response

HARDENING = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))


def harden(response: Response) -> Response:
    """Adds the hardening headers a view did not set itself (the dashboard's assets set their own caching)."""
    for name, value in HARDENING:
        response.headers.setdefault(name, value)
    return response
