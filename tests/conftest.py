"""Shared fixtures: stores on SQLite and PostgreSQL, Redis, the corpus, the CLI.

Tests that need PostgreSQL or Redis skip with a reason when the service is not
reachable, and fail instead under ``HUB_REQUIRE_SERVICES=1`` (CI). Corpus tests
likewise skip, or fail under ``HUB_REQUIRE_CORPUS=1``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
PG_ADMIN_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("HUB_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " and HUB_REQUIRE_SERVICES=1")
    pytest.skip(reason)


def need_weasyprint() -> None:
    """WeasyPrint and its system libraries (Pango), for the packet's PDF: skipped without them, as a service is."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:
        reason = f"WeasyPrint cannot load ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
        if os.environ.get("HUB_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + " and HUB_REQUIRE_SERVICES=1")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        if os.environ.get("HUB_REQUIRE_CORPUS") == "1":
            pytest.fail(f"the shared corpus is missing at {CORPUS} and HUB_REQUIRE_CORPUS=1")
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    return CORPUS


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test gets its own database file and inline processing unless it asks otherwise."""
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'hub.db'}")
    monkeypatch.delenv("HUB_REDIS_URL", raising=False)
    monkeypatch.delenv("HUB_DISPATCHER", raising=False)
    monkeypatch.setenv("HUB_SQLITE_SYNCHRONOUS", "NORMAL")  # tests need no power-cut durability


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    name = f"hub_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        from hub.store.engine import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url(monkeypatch: pytest.MonkeyPatch) -> str:
    """Redis, with a queue name of this test's own (tests may run side by side)."""
    need_service("Redis", "127.0.0.1", 6379)
    monkeypatch.setenv("HUB_QUEUE", f"hub-test-{uuid.uuid4().hex[:8]}")
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on both stores."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def runtime(database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from hub.runtime import Runtime

    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    return Runtime.create(database_url=database_url, dispatcher="inline")


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    from hub.store.engine import dispose_engines

    dispose_engines()


EXAMPLE_CONNECTOR_INSTALLED_BEFORE: list[bool] = []  # the example_connector fixture's finding, once it ran


@pytest.fixture(scope="session")
def example_connector(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The worked third-party connector of examples/, pip-installed as an outside author's package is: into
    a directory of this test session, never into the project's environment. The directory goes on
    ``sys.path`` here and on ``PYTHONPATH`` for the ``hub`` processes the tests start (they find the plugin
    by its entry point there). A copy of the example is built, so that its folder gets no build output.
    Nothing is installed when the package is importable already (installed by its author, say)."""
    import importlib.util
    import shutil
    import subprocess
    import sys

    package = ROOT / "examples" / "hub-example-connector"
    EXAMPLE_CONNECTOR_INSTALLED_BEFORE[:] = [importlib.util.find_spec("hub_example_pipe") is not None]
    if not EXAMPLE_CONNECTOR_INSTALLED_BEFORE[0]:
        work = tmp_path_factory.mktemp("example-connector")
        source, target = work / "source", work / "site"
        shutil.copytree(package, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        str(source)], check=True)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH")) if p)
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()
    return "example-pipe"
