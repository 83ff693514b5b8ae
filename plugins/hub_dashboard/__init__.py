"""Built-in plugin: the ``html`` report format, the self-contained dashboard page."""

from __future__ import annotations

from typing import Any

from hub import hookimpl
from hub.reports.dashboard import write_html


@hookimpl
def hub_register_exporters(registry: Any) -> None:
    registry.add("html", write_html)
