"""One small demo MSO built through the real connectors and pipeline, shared by the demo tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from hub.demo.build import DemoResult, build_demo
from tests.conftest import PG_ADMIN_URL, need_service

END = dt.date(2026, 7, 1)
SMALL = {"seed": 11, "months": 4, "scale": 0.12, "end": END}  # four months at a tenth of the volume: seconds


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """The small demo in its own SQLite store (as ``hub demo`` builds it)."""
    return build_demo(tmp_path_factory.mktemp("demo"), **SMALL)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def small_demo_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoResult]:
    """The same demo in a fresh PostgreSQL database, dropped afterwards."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    from hub.store.engine import dispose_engines

    name = f"hub_test_demo_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        yield build_demo(tmp_path_factory.mktemp("demo-pg"), database_url=url, **SMALL)  # type: ignore[arg-type]
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
