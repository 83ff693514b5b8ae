"""One small demo MSO built through the real connectors and pipeline, shared by the demo tests."""

from __future__ import annotations

import datetime as dt

import pytest

from hub.demo.build import DemoResult, build_demo

END = dt.date(2026, 7, 1)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """Four months of the four practices at a tenth of their volume (seconds, not a minute)."""
    return build_demo(tmp_path_factory.mktemp("demo"), seed=11, months=4, scale=0.12, end=END)
