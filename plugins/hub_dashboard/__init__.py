"""Built-in plugin: the ``html`` report format, the self-contained dashboard page."""

from __future__ import annotations

from typing import Any

from hub import hookimpl


@hookimpl
def hub_register_exporters(registry: Any) -> None:
    from hub.reports.dashboard import write_html  # with the exporters, not when commands are listed

    registry.add("html", write_html)
