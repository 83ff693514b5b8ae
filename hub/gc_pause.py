"""Pausing Python's cyclic garbage collector around bulk work that makes millions of objects.

The collector runs whenever allocations outnumber deallocations by a threshold, and each of its
passes over the oldest generation walks every container object alive. Work that builds
millions of tuples and dicts (a catch-up's visits, an ingest batch's records) set it off
again and again over objects that are freed by their reference counts anyway: a million
appointments' catch-up spent 7.5 s of its 29 s of CPU in it. Paused for the length of such
work, the collector takes up whatever cycles were left once it resumes.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pausing = 0  # how many ``gc_paused`` blocks are open, in any thread
_was_enabled = False  # whether the collector ran before the first of them


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while the block runs (process-wide; blocks in several threads may overlap: it
    resumes when the last ends, and only if it was running before the first began)."""
    global _pausing, _was_enabled
    with _lock:
        if _pausing == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausing += 1
    try:
        yield
    finally:
        with _lock:
            _pausing -= 1
            if _pausing == 0 and _was_enabled:
                gc.enable()
