"""pytest plugin (entry point ``pytest11``): fixtures for connector authors."""

from __future__ import annotations

import pytest


@pytest.fixture
def hub_plugins():
    """The hub's plugins as installed (connectors from every entry point)."""
    # pytest loads this plugin in every run of the environment: the hub is imported when a test asks
    from hub.plugins import load_plugins

    return load_plugins()
