"""The command line starts quickly: importing ``hub.cli`` (all ``hub --version`` needs, and the
command definitions ``hub --help`` lists) loads click and the commands, never the store, the web
app, the connectors or their libraries. A command imports what it uses when it runs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

# each costs tens to hundreds of milliseconds to import; none is needed to parse a command line
HEAVY = ("sqlalchemy", "alembic", "psycopg", "flask", "gunicorn", "marshmallow", "pydantic", "fhir", "hl7apy",
         "openpyxl", "duckdb", "splink", "numpy", "pandas", "rq", "redis", "yaml", "jinja2", "importlib.metadata",
         "hub.store", "hub.pipeline", "hub.plugins", "hub.runtime", "hub.app", "hub.reports", "hub.identity",
         "hub.mapping", "hub.model", "hub.mllp", "hub.onboarding", "hub.operations", "hub.security",
         "hub_hl7v2", "hub_fhir", "hub_x12", "hub_csv", "hub_dashboard")


def _modules_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"{code}; import sys; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def test_importing_the_cli_loads_no_heavy_module() -> None:
    loaded = _modules_after("import hub.cli; hub.cli._build_cli()")
    heavy = sorted({".".join(m.split(".")[:2 if m.startswith("hub.") else 1]) for m in loaded
                    if any(m == h or m.startswith(h + ".") for h in HEAVY)})
    assert heavy == [], f"hub.cli imports these at start-up (import them in the command that uses them): {heavy}"
    assert "click" in loaded and "hub.commands.base" in loaded  # the check looks at the right process


def test_the_list_catches_a_heavy_import() -> None:
    """The check itself: a module that is imported shows."""
    loaded = _modules_after("import hub.cli, hub.store.engine")
    assert "sqlalchemy" in loaded and "hub.store" in loaded


def _best_of_three(*command: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, timeout=120, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def test_hub_version_starts_faster_than_importing_sqlalchemy_alone() -> None:
    """Wall time, relative to a same-moment yardstick so that a loaded machine does not fail it: the
    version (and so any command line parse) costs less than one of the libraries it must not import."""
    hub = str(Path(sys.executable).with_name("hub"))
    version = _best_of_three(hub, "--version")
    yardstick = _best_of_three(sys.executable, "-c", "import sqlalchemy.orm")
    assert version < yardstick, f"hub --version {version:.2f} s, import sqlalchemy.orm {yardstick:.2f} s"
