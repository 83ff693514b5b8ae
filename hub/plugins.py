"""The plugin manager and the registries the registration hooks fill.

Built by the CLI and the app factory (``load_plugins()``), never at import time.
Plugins come from the ``hub`` entry point group (built-ins included, so there is
one discovery path) and from modules named in ``HUB_PLUGINS``. Settings:

- ``HUB_PLUGINS``: extra plugin modules by dotted path, comma-separated;
- ``HUB_PLUGINS_ALLOW``: if set, only these entry-point names are loaded;
- ``HUB_PLUGINS_BLOCK``: entry-point names never loaded.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from hub import PROJECT_NAME, hookspecs
from hub.connector import Connector
from hub.errors import ConfigError, PluginError

_NAME = re.compile(r"^[a-z][a-z0-9_-]{1,40}$")


class ConnectorRegistry:
    """Connector classes by name; checks each against the contract as it is added."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Connector]] = {}
        self._instances: dict[str, Connector] = {}

    def add(self, cls: type[Connector]) -> None:
        if not (inspect.isclass(cls) and issubclass(cls, Connector)):
            raise PluginError(f"{cls!r} is not a hub.connector.Connector subclass")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(f"connector {cls.__qualname__} needs a name of lower-case letters, digits, '-'")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise PluginError(f"connector {name!r} does not implement {missing}")
        if name in self._classes and self._classes[name] is not cls:
            raise PluginError(f"two connectors are named {name!r}: {self._classes[name].__module__} "
                              f"and {cls.__module__}")
        self._classes[name] = cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def classes(self) -> list[type[Connector]]:
        return [self._classes[n] for n in self.names()]

    def get(self, name: str) -> Connector:
        if name not in self._classes:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"no connector named {name!r} (installed: {known})")
        if name not in self._instances:
            self._instances[name] = self._classes[name]()
        return self._instances[name]

    def detect(self, data: bytes, *, origin: str | None = None) -> Connector:
        for name in self.names():
            if self._classes[name].detect(data):
                return self.get(name)
        from hub.errors import ParseError

        raise ParseError("no installed connector recognises this content (give --connector to choose one)",
                         source=origin)

    def for_media_type(self, media_type: str) -> Connector | None:
        media_type = media_type.split(";")[0].strip().lower()
        for name in self.names():
            if media_type in (m.lower() for m in self._classes[name].media_types):
                return self.get(name)
        return None


class KpiRegistry:
    """KPI definitions by id."""

    def __init__(self) -> None:
        self._kpis: dict[str, Any] = {}

    def add(self, kpi: Any) -> None:
        kpi_id = getattr(kpi, "id", None)
        if not isinstance(kpi_id, str) or not kpi_id:
            raise PluginError(f"KPI {kpi!r} has no id")
        if kpi_id in self._kpis:
            raise PluginError(f"two KPIs have the id {kpi_id!r}")
        self._kpis[kpi_id] = kpi

    def __iter__(self) -> Iterator[Any]:
        return iter(self._kpis.values())

    def __len__(self) -> int:
        return len(self._kpis)

    def get(self, kpi_id: str) -> Any:
        return self._kpis[kpi_id]


class ExporterRegistry:
    """Report writers by format name (json, csv, xlsx, html, ...)."""

    def __init__(self) -> None:
        self._exporters: dict[str, Callable[..., None]] = {}

    def add(self, format_name: str, exporter: Callable[..., None]) -> None:
        if format_name in self._exporters:
            raise PluginError(f"two exporters for the format {format_name!r}")
        self._exporters[format_name] = exporter

    def formats(self) -> list[str]:
        return sorted(self._exporters)

    def get(self, format_name: str) -> Callable[..., None]:
        if format_name not in self._exporters:
            raise ConfigError(f"no exporter for {format_name!r} (available: {', '.join(self.formats())})")
        return self._exporters[format_name]


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None


@dataclass
class Plugins:
    """The loaded plugin manager and what the registration hooks put in the registries."""

    manager: pluggy.PluginManager
    connectors: ConnectorRegistry
    kpis: KpiRegistry
    exporters: ExporterRegistry
    info: list[PluginInfo] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        return self.manager.hook


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def load_plugins(extra: list[object] | None = None) -> Plugins:
    """Build the plugin manager, load every allowed plugin and fill the registries."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    allow, block = set(_env_list("HUB_PLUGINS_ALLOW")), set(_env_list("HUB_PLUGINS_BLOCK"))
    info: list[PluginInfo] = []
    for ep in sorted(entry_points(group=PROJECT_NAME), key=lambda e: e.name):
        if ep.name in block or (allow and ep.name not in allow) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
        pm.register(plugin, name=ep.name)
        dist = ep.dist
        info.append(PluginInfo(ep.name, ep.value, dist.name if dist else None, dist.version if dist else None))
    for dotted in _env_list("HUB_PLUGINS"):
        try:
            module = importlib.import_module(dotted)
        except ImportError as exc:
            raise ConfigError(f"HUB_PLUGINS names {dotted!r}, which cannot be imported: {exc}") from exc
        if not pm.has_plugin(dotted):
            pm.register(module, name=dotted)
            info.append(PluginInfo(dotted, dotted, None, None))
    for i, plugin in enumerate(extra or ()):
        pm.register(plugin, name=f"extra-{i}")
    try:
        pm.check_pending()  # a misspelt hook name fails here, loudly
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc

    connectors, kpis, exporters = ConnectorRegistry(), KpiRegistry(), ExporterRegistry()
    pm.hook.hub_register_connectors(registry=connectors)
    pm.hook.hub_register_kpis(registry=kpis)
    pm.hook.hub_register_exporters(registry=exporters)
    return Plugins(pm, connectors, kpis, exporters, info)
