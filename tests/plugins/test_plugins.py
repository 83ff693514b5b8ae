"""Plugin discovery and the registration contract."""

import subprocess
import sys
import types
from importlib.metadata import EntryPoint, distribution
from pathlib import Path

import pytest

from hub import hookimpl
from hub.connector import Connector
from hub.errors import ConfigError, PluginError
from hub.plugins import ConnectorRegistry, load_plugins
from tests.conftest import EXAMPLE_CONNECTOR_INSTALLED_BEFORE, ROOT


def test_entry_point_plugins_are_found(example_connector):
    plugins = load_plugins()
    assert "example-pipe" in plugins.connectors.names()
    info = {p.name: p for p in plugins.info}
    assert info["example-pipe"].distribution == "hub-example-connector" and info["example-pipe"].version == "1.0.0"


def test_the_example_connector_is_not_installed_into_the_environment(example_connector):
    """The tests install the example into a throwaway directory: the project's environment is left as it was."""
    where = Path(distribution("hub-example-connector").locate_file("")).resolve()
    inside = where.is_relative_to(Path(sys.prefix).resolve())
    assert not inside or EXAMPLE_CONNECTOR_INSTALLED_BEFORE == [True], where


def test_block_and_allow_lists(example_connector, monkeypatch):
    monkeypatch.setenv("HUB_PLUGINS_BLOCK", "example-pipe")
    assert "example-pipe" not in load_plugins().connectors.names()
    monkeypatch.delenv("HUB_PLUGINS_BLOCK")
    monkeypatch.setenv("HUB_PLUGINS_ALLOW", "nothing-else")
    assert load_plugins().connectors.names() == []


def test_an_entry_point_that_fails_to_import_names_the_setting_to_run_without_it(monkeypatch):
    broken = EntryPoint("broken", "hub_no_such_plugin_module", "hub")
    monkeypatch.setattr("hub.plugins.entry_points", lambda group: [broken] if group == "hub" else [])
    with pytest.raises(PluginError) as failed:
        load_plugins()
    assert str(failed.value) == ("plugin 'broken' (hub_no_such_plugin_module) failed to import: No module named "
                                 "'hub_no_such_plugin_module'; block it with HUB_PLUGINS_BLOCK=broken to run "
                                 "without it")
    monkeypatch.setenv("HUB_PLUGINS_BLOCK", "xlsx")  # an existing block list is kept in the advice
    with pytest.raises(PluginError, match="block it with HUB_PLUGINS_BLOCK=xlsx,broken to run without it$"):
        load_plugins()
    monkeypatch.setenv("HUB_PLUGINS_BLOCK", "xlsx,broken")  # as advised: the hub runs
    assert load_plugins().connectors.names() == []
    monkeypatch.delenv("HUB_PLUGINS_BLOCK")
    monkeypatch.setenv("HUB_PLUGINS_ALLOW", "broken")
    with pytest.raises(PluginError, match="remove it from HUB_PLUGINS_ALLOW to run without it$"):
        load_plugins()


def test_a_connector_left_out_by_a_setting_is_named_with_the_setting(monkeypatch):
    monkeypatch.setenv("HUB_PLUGINS_BLOCK", "fhir")
    plugins = load_plugins()
    with pytest.raises(ConfigError, match=r"no connector named 'fhir' \(installed: .*csv.*; left out by "
                                          r"HUB_PLUGINS_BLOCK: fhir\)$"):
        plugins.connectors.get("fhir")
    monkeypatch.delenv("HUB_PLUGINS_BLOCK")
    monkeypatch.setenv("HUB_PLUGINS_ALLOW", "hl7v2")
    plugins = load_plugins()
    with pytest.raises(ConfigError, match=r"no connector named 'csv' \(installed: hl7v2; left out by "
                                          r"HUB_PLUGINS_ALLOW: alerts, csv, dashboard, .*fhir.*\)$"):
        plugins.connectors.get("csv")
    with pytest.raises(ConfigError, match=r"no exporter for 'xlsx' .*left out by HUB_PLUGINS_ALLOW: .*xlsx\)$"):
        plugins.exporters.get("xlsx")
    monkeypatch.delenv("HUB_PLUGINS_ALLOW")
    with pytest.raises(ConfigError, match=r"no connector named 'nosuch' \(installed: [a-z0-9, -]+\)$"):
        load_plugins().connectors.get("nosuch")  # nothing left out: nothing more said


def test_a_misspelt_hook_fails_loudly():
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def hub_register_conectors(registry):  # the typo is the point
        pass

    module.hub_register_conectors = hub_register_conectors
    with pytest.raises(PluginError, match="hub_register_conectors"):
        load_plugins(extra=[module])


def test_hub_plugins_names_modules_by_dotted_path(monkeypatch):
    monkeypatch.setenv("HUB_PLUGINS", "tests.support.slow_plugin")
    assert any(p.name == "tests.support.slow_plugin" for p in load_plugins().info)
    monkeypatch.setenv("HUB_PLUGINS", "no.such.module")
    with pytest.raises(ConfigError, match="no.such.module"):
        load_plugins()


def test_registry_checks_the_connector_contract():
    registry = ConnectorRegistry()

    class NoName(Connector):
        def parse(self, envelope, context): ...
        def to_canonical(self, parsed, context): ...

    class Half(Connector):
        name = "half"

        def parse(self, envelope, context): ...

    class Good(Connector):
        name = "good"

        def parse(self, envelope, context): ...
        def to_canonical(self, parsed, context): return []

    class Twin(Good):
        pass

    with pytest.raises(PluginError, match="needs a name"):
        registry.add(NoName)
    with pytest.raises(PluginError, match="does not implement to_canonical"):
        registry.add(Half)
    with pytest.raises(PluginError, match="not a hub.connector.Connector"):
        registry.add(object)  # type: ignore[arg-type]
    registry.add(Good)
    with pytest.raises(PluginError, match="two connectors are named 'good'"):
        registry.add(Twin)


def test_third_party_connector_installs_lists_and_passes_the_contract_suite(example_connector):
    """As an outside author would: pip install the package, see it listed, run the suite on it."""
    listed = subprocess.run([sys.executable, "-m", "hub", "plugins", "list"], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert "example-pipe" in listed.stdout and "hub-example-connector 1.0.0" in listed.stdout
    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           capture_output=True, text=True, cwd=ROOT / "examples" / "hub-example-connector")
    assert suite.returncode == 0, suite.stdout[-3000:]
    assert " passed" in suite.stdout and "failed" not in suite.stdout
