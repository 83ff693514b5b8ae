"""The audit rows of MLLP intake: one per connection, not one per message.

An MLLP sender has no API key; what names it is the interface (``mllp:<port>``), the practice its
messages were stored for and its address. A connection leaves a row ``opened`` when its first frame
arrives (a TCP probe that sends nothing leaves none), a row with its counts when it closes and, on
a connection held open for long (interfaces keep theirs for days), one with the counts so far every
``INTERVAL_S``. The rows never carry message content. Action: ``intake.mllp``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from hub.security.audit import AuditEntry

ACTION = "intake.mllp"
INTERVAL_S = 900.0  # a long-lived connection's counts reach the log at least this often


@dataclass
class ConnectionTally:
    """What one connection brought: message fates (accepted, duplicate, error), frames refused unstored
    (refused) or not stored for a store failure (failed), and the practices its messages went to."""

    interface: str
    address: str | None
    practices: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    frames: int = 0
    opened: bool = False
    reported_at: float = field(default_factory=time.monotonic)

    def add(self, fate: str, count: int = 1) -> None:
        self.counts[fate] += count

    def entry(self, outcome: str) -> AuditEntry:
        practice = ",".join(sorted(self.practices)) or None
        return AuditEntry(None, ACTION, self.interface, practice, self.address, outcome)

    def summary(self, word: str) -> str:
        """"closed: 12 frames, accepted=11 error=1" (cut to the column by the audit log)."""
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()) if v)
        return f"{word}: {self.frames} frames{', ' + counts if counts else ''}"

    def due(self) -> bool:
        return time.monotonic() - self.reported_at >= INTERVAL_S


def peer_address(peer: object) -> str | None:
    """``host:port`` of an asyncio peername (an IPv4 or IPv6 tuple); None when unknown."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return None
