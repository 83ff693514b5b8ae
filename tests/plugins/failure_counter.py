"""A test plugin that counts, through ``hub_messages_failed``, the messages that went to ``error``.

What an alerting plugin would plug into: it keeps every failure it hears of, and how many
calls brought them (the hook is called once per batch of failures, not per message).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hub import hookimpl
from hub.hookspecs import MessageFailure


class FailureCounter:
    def __init__(self) -> None:
        self.failures: list[MessageFailure] = []
        self.calls = 0

    @hookimpl
    def hub_messages_failed(self, failures: Sequence[MessageFailure]) -> None:
        self.calls += 1
        self.failures.extend(failures)

    def by_stage(self) -> Counter[str]:
        return Counter(f.stage for f in self.failures)
