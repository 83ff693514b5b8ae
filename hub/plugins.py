"""The plugin manager and the registries the registration hooks fill.

Built by the CLI and the app factory (``load_plugins()``), never at import time.
As pytest builds its own features on its own hooks, so does the hub, in three kinds:

- *essential* plugins (``ESSENTIAL_PLUGINS``): features of the core written as hook
  implementations (the KPI catalog, the json and csv exporters, the report upkeep).
  Always registered: the figures and the report contract depend
  on them, so no setting can remove them;
- *default* plugins: the built-in ones an operator may leave out (``DEFAULT_PLUGINS``,
  and the built-in connectors and dashboard, found by their entry points);
- outside plugins, from the ``hub`` entry point group and from ``HUB_PLUGINS``.

Settings:

- ``HUB_PLUGINS``: extra plugin modules by dotted path, comma-separated;
- ``HUB_PLUGINS_ALLOW``: if set, only these default and entry-point plugins are loaded
  (the essential ones always are);
- ``HUB_PLUGINS_BLOCK``: default and entry-point plugins never loaded. Naming an essential
  plugin here is refused with a ``ConfigError``: it would break the figures, not slim the hub.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from hub import PROJECT_NAME, __version__, hookspecs
from hub.errors import ConfigError, ParseError, PluginError
from hub.settings import Settings, current

if TYPE_CHECKING:
    from hub.connector import Connector

_NAME = re.compile(r"^[a-z][a-z0-9_-]{1,40}$")
_DISTRIBUTION = "mso-hub"  # the distribution the built-in plugins ship in

# plugin name → module: registered first and always (pytest's ``essential_plugins``)
ESSENTIAL_PLUGINS: dict[str, str] = {
    "kpis": "hub.reports.catalog",  # the KPI catalog
    "report-exporters": "hub.reports.exporters",  # the json and csv formats
    "report-upkeep": "hub.reports.upkeep",  # marks the report cells each stored batch moves
}
# built in and loaded unless an allow or block list leaves them out (pytest's ``default_plugins``); the
# built-in connectors and the dashboard are default plugins as well, registered by their entry points
DEFAULT_PLUGINS: dict[str, str] = {
    "xlsx": "hub.reports.xlsx",  # the xlsx format
    "remit-link": "hub.reports.remit_link",  # remittance lines linked to their claim's charge as they are stored
    "alerts": "hub.operations.notify",  # alert notices by webhook and e-mail (hub_alert)
}


def _left_out_note(left_out: dict[str, str]) -> str:
    """``; left out by HUB_PLUGINS_BLOCK: fhir``: the plugins the settings kept from loading, by setting."""
    by_setting: dict[str, list[str]] = {}
    for name, setting in sorted(left_out.items()):
        by_setting.setdefault(setting, []).append(name)
    return "".join(f"; left out by {setting}: {', '.join(names)}" for setting, names in by_setting.items())


class ConnectorRegistry:
    """Connector classes by name; checks each against the contract as it is added.

    ``left_out``: the plugins HUB_PLUGINS_BLOCK or HUB_PLUGINS_ALLOW kept from loading (name → setting),
    named when a connector asked for is missing."""

    def __init__(self, left_out: dict[str, str] | None = None) -> None:
        self._classes: dict[str, type[Connector]] = {}
        self._instances: dict[str, Connector] = {}
        self.left_out = left_out or {}

    def add(self, cls: type[Connector]) -> None:
        from hub.connector import Connector  # the contract, imported with the first connector (not for hub --help)

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
        instance = self._instances.get(name)
        if instance is not None:  # the usual case: asked once per message being processed
            return instance
        if name not in self._classes:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"no connector named {name!r} (installed: {known}{_left_out_note(self.left_out)})")
        if name not in self._instances:
            self._instances[name] = self._classes[name]()
        return self._instances[name]

    def detect(self, data: bytes, *, origin: str | None = None) -> Connector:
        for name in self.names():
            if self._classes[name].detect(data):
                return self.get(name)

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
    """Report writers by format name (json, csv, xlsx, html, ...); ``left_out`` as the connectors'."""

    def __init__(self, left_out: dict[str, str] | None = None) -> None:
        self._exporters: dict[str, Callable[..., None]] = {}
        self.left_out = left_out or {}

    def add(self, format_name: str, exporter: Callable[..., None]) -> None:
        if format_name in self._exporters:
            raise PluginError(f"two exporters for the format {format_name!r}")
        self._exporters[format_name] = exporter

    def formats(self) -> list[str]:
        return sorted(self._exporters)

    def get(self, format_name: str) -> Callable[..., None]:
        if format_name not in self._exporters:
            raise ConfigError(f"no exporter for {format_name!r} (available: {', '.join(self.formats())}"
                              f"{_left_out_note(self.left_out)})")
        return self._exporters[format_name]


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None
    essential: bool = False  # always registered, whatever HUB_PLUGINS_ALLOW / HUB_PLUGINS_BLOCK say


@dataclass
class Plugins:
    """The loaded plugin manager and what the registration hooks put in the registries."""

    manager: pluggy.PluginManager
    connectors: ConnectorRegistry
    kpis: KpiRegistry
    exporters: ExporterRegistry
    info: list[PluginInfo] = field(default_factory=list)
    _hot: dict[str, Callable[..., list[Any]] | None] = field(default_factory=dict, repr=False)

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def hot_caller(self, name: str) -> Callable[..., list[Any]] | None:
        """The hook ``name`` for a path that calls it per message or record; None: no plugin implements it.

        The implementations are resolved once (the plugins are complete when ``load_plugins``
        returns) and called as pluggy calls them: last registered first, ``tryfirst`` and
        ``trylast`` honoured, keyword arguments, the results that are not None in a list, an
        exception passed on as it is. What it saves is pluggy's per-call checks, a few
        microseconds a call. A hook with a wrapper implementation is called through pluggy."""
        if name not in self._hot:
            self._hot[name] = _hot_caller(getattr(self.manager.hook, name))
        return self._hot[name]


def _hot_caller(caller: Any) -> Callable[..., list[Any]] | None:
    impls = caller.get_hookimpls()
    if not impls:
        return None
    if any(impl.hookwrapper or impl.wrapper for impl in impls):
        return caller
    ordered = [(impl.function, tuple(impl.argnames)) for impl in reversed(impls)]

    def call(**kwargs: Any) -> list[Any]:
        results = []
        for function, names in ordered:
            result = function(*[kwargs[n] for n in names])
            if result is not None:
                results.append(result)
        return results

    return call


def _register_builtin(pm: pluggy.PluginManager, info: list[PluginInfo], name: str, module_name: str, *,
                      essential: bool) -> None:
    pm.register(importlib.import_module(module_name), name=name)
    info.append(PluginInfo(name, module_name, _DISTRIBUTION, __version__, essential=essential))


def load_plugins(extra: list[object] | None = None, *, settings: Settings | None = None,
                 registries: bool = True, core: bool = True) -> Plugins:
    """Build the plugin manager, load every allowed plugin and fill the registries.

    ``registries=False`` leaves the registries empty and calls no registration hook: the command line
    asks the plugins only for their commands (``hub --help``), and a connector plugin imports its
    connector (the parser, the mapping, their libraries) in its ``hub_register_connectors``.
    ``core=False`` leaves out the core's own plugins (``ESSENTIAL_PLUGINS``, ``DEFAULT_PLUGINS``), which
    add no command (the core's commands are hub/commands'): what the command line loads to list the
    installed plugins' commands."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    settings = settings or current()
    allow, block = set(settings.plugins_allow), set(settings.plugins_block)
    refused = sorted(block & ESSENTIAL_PLUGINS.keys())
    if refused:
        raise ConfigError(f"HUB_PLUGINS_BLOCK names the essential plugin(s) {', '.join(refused)}, which the hub "
                          f"cannot work without (essential: {', '.join(ESSENTIAL_PLUGINS)}); remove them from it")
    info: list[PluginInfo] = []
    left_out: dict[str, str] = {}  # plugin name → the setting that keeps it from loading

    def allowed(name: str) -> bool:
        if name in block:
            left_out[name] = "HUB_PLUGINS_BLOCK"
        elif allow and name not in allow:
            left_out[name] = "HUB_PLUGINS_ALLOW"
        return name not in left_out

    for name, module_name in ESSENTIAL_PLUGINS.items() if core else ():
        _register_builtin(pm, info, name, module_name, essential=True)
    for name, module_name in DEFAULT_PLUGINS.items() if core else ():
        if allowed(name):
            _register_builtin(pm, info, name, module_name, essential=False)
    for ep in sorted(entry_points(group=PROJECT_NAME), key=lambda e: e.name):
        if not allowed(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            remedy = ("remove it from HUB_PLUGINS_ALLOW" if allow else
                      f"block it with HUB_PLUGINS_BLOCK={','.join([*settings.plugins_block, ep.name])}")
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}; {remedy} to run "
                              "without it") from exc
        pm.register(plugin, name=ep.name)
        dist = ep.dist
        info.append(PluginInfo(ep.name, ep.value, dist.name if dist else None, dist.version if dist else None))
    for dotted in settings.plugins:
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

    connectors, kpis, exporters = ConnectorRegistry(left_out), KpiRegistry(), ExporterRegistry(left_out)
    if registries:
        pm.hook.hub_register_connectors(registry=connectors)
        pm.hook.hub_register_kpis(registry=kpis)
        pm.hook.hub_register_exporters(registry=exporters)
    return Plugins(pm, connectors, kpis, exporters, info)
