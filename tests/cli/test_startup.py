"""The command line starts quickly: importing ``hub.cli`` (all ``hub --version`` needs, and the
command definitions ``hub --help`` lists) loads click and the root group's own commands, never the
feature groups' modules (listed from ``FEATURE_COMMANDS``), the store, the web app, the connectors or
their libraries. A command imports what it uses when it runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

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


def test_importing_the_cli_loads_click_and_a_handful_of_hub_modules_only() -> None:
    """The whole of what ``hub --version`` imports besides the standard library, by name: a new import at
    the top of hub/cli.py, hub/commands/base.py, hub/settings.py or hub/__init__.py shows here (pluggy,
    importlib.metadata and the feature groups' command modules included)."""
    code = ("import hub.cli; hub.cli._build_cli(); import sys; "
            "print(' '.join(m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    outside_stdlib = {m for m in done.stdout.split() if not m.startswith(("__editable__", "_distutils_hack"))}
    libraries = sorted({m.split(".")[0] for m in outside_stdlib} - {"hub", "__main__"})
    assert libraries == ["click"]
    assert sorted(m for m in outside_stdlib if m.split(".")[0] == "hub") == [
        "hub", "hub.cli", "hub.commands", "hub.commands.base", "hub.errors", "hub.settings"]


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


# --------------------------------------------------------------- hub --help and hub normalize
# What a command line that runs a command may load, by library: the store's and the web's, the report
# outputs' and the wire formats'. ``hub --help`` needs none of them (it lists the plugins' commands
# without their connectors); ``hub normalize`` needs the connectors, to find the file's format, with
# that format's library only; marshmallow (the connectors' settings schemas, the common model's
# schemas) only when a mapping is checked or a record is not in canonical form (FHIR's models use it).
STORE_AND_WEB = ("sqlalchemy", "alembic", "psycopg", "flask", "gunicorn", "rq", "redis", "weasyprint", "openpyxl",
                 "jinja2", "hub.store", "hub.runtime", "hub.app", "hub.api", "hub.reports.engine",
                 "hub.reports.rollups")
FORMATS = ("fhir", "pydantic", "hl7apy", "pyx12")
REPO = Path(__file__).resolve().parents[2]
HL7_FILE = REPO / "connectors" / "hub_hl7v2" / "samples" / "siu_s12.hl7"  # one SIU^S12: patient, provider, visit
FHIR_FILE = REPO / "tests" / "fhir" / "samples" / "patient.json"  # one Patient resource


def _run_hub(tmp_path: Path, *args: str) -> tuple[set[str], str]:
    """``hub ARGS`` in a fresh interpreter, in an empty folder: the modules loaded once it is done, and
    what it printed."""
    work, listing = tmp_path / "work", tmp_path / "modules.txt"
    work.mkdir()
    code = ("import sys\nfrom hub.cli import main\n"
            f"sys.argv = ['hub', *{list(args)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"open({str(listing)!r}, 'w').write(' '.join(sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(work.iterdir()) == []  # nothing written where it ran (no database file)
    return set(listing.read_text().split()), done.stdout


def _among(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted({n for n in names for m in loaded if m == n or m.startswith(n + ".")})


def test_help_lists_the_plugin_commands_without_loading_a_connector_or_a_heavy_library(tmp_path: Path) -> None:
    loaded, printed = _run_hub(tmp_path, "--help")
    assert re.search(r"^  fhir\s+FHIR R4", printed, re.M)  # hub_fhir's command (hub_cli_commands) is listed
    assert re.search(r"^  normalize\s", printed, re.M)
    assert "hub_fhir" in loaded  # the plugin module was asked for its commands...
    assert _among(loaded, ("hub_hl7v2.connector", "hub_fhir.connector", "hub_csv.connector", "hub_x12.connector")) \
        == []  # ...and no connector was imported for it
    # the core's own plugins (reports, alerts) are not loaded for it: they add no command
    heavy = _among(loaded, (*STORE_AND_WEB, *FORMATS, "marshmallow", "yaml", "hub.pipeline", "hub.mapping",
                            "hub.reports", "hub.operations"))
    assert heavy == [], f"hub --help imports these (import them where they are used): {heavy}"
    # the feature groups' commands are listed from FEATURE_COMMANDS, their modules not imported
    assert sorted(m for m in loaded if m.startswith("hub.commands.")) == ["hub.commands.base"]
    assert re.search(r"^  watch\s+A drop folder", printed, re.M)  # hub.commands.billing's, from the table


def test_normalize_of_an_hl7_file_loads_no_database_web_or_other_format_library(tmp_path: Path) -> None:
    loaded, printed = _run_hub(tmp_path, "normalize", "--practice", "derm", str(HL7_FILE))
    kinds = sorted(json.loads(line)["kind"] for line in printed.splitlines())
    # the SIU's patient (PID), its provider (SCH-16, AIP), its location (PV1-3, AIL) and the appointment (SCH)
    assert kinds == ["appointment", "location", "patient", "provider"]
    assert "hub_hl7v2.connector" in loaded and "hub.model.schemas" in loaded  # the check looks at the right process
    # hl7apy too: the HL7 connector reads ER7 without it; marshmallow: the records take the fast path
    # and of the other connectors, only what their ``detect`` needs
    heavy = _among(loaded, (*STORE_AND_WEB, *FORMATS, "marshmallow", "hub_x12.claims", "hub_x12.remit",
                            "hub_fhir.mapping", "hub_fhir.validate", "hub_fhir.outcome"))
    assert heavy == [], f"hub normalize of an HL7 v2 file imports these: {heavy}"
    # only the command modules it runs: hub/cli.py's own normalize
    assert sorted(m for m in loaded if m.startswith("hub.commands.")) == ["hub.commands.base"]


def test_normalize_of_a_fhir_file_loads_the_fhir_models_and_nothing_of_the_store(tmp_path: Path) -> None:
    loaded, printed = _run_hub(tmp_path, "normalize", "--practice", "derm", str(FHIR_FILE))
    records = [json.loads(line) for line in printed.splitlines()]
    assert ("patient", "pat-9") in [(r["kind"], r["source_id"]) for r in records]
    assert "fhir.resources" in loaded  # validated against the R4 models (the default)
    heavy = _among(loaded, (*STORE_AND_WEB, "hl7apy", "pyx12"))
    assert heavy == [], f"hub normalize of a FHIR file imports these: {heavy}"


# --------------------------------------------------------------- the table of the feature groups' commands
def _tables() -> list[tuple[str, dict[str, tuple[str, str]]]]:
    from hub.cli import FEATURE_COMMANDS, PRACTICE_COMMANDS

    return [("hub", FEATURE_COMMANDS), ("hub practice", PRACTICE_COMMANDS)]


def _imported(target: str) -> Any:
    import importlib

    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def test_each_lazy_command_has_its_own_name_and_short_help_in_the_table() -> None:
    """The short help ``hub --help`` shows for a command not imported yet is the table's: it must be what the
    command itself would show, at any width (a docstring changed without the table fails here)."""
    from hub.commands.base import LazyGroup

    for where, table in _tables():
        group = LazyGroup("stand-ins", lazy=table)
        for name, (target, _short) in table.items():
            command = _imported(target)
            assert command.name == name, f"{where} {name}: {target} is named {command.name!r}"
            for width in (20, 45, 60, 74, 200, 10_000):
                assert group.stand_in(name).get_short_help_str(width) == command.get_short_help_str(width), \
                    f"{where} {name}: the short help in the table is not the command's own (width {width})"


def test_the_stand_in_short_help_can_differ_from_the_command() -> None:
    """The check itself: a table entry whose text is not the command's first sentence is caught."""
    from hub.commands.base import LazyGroup

    group = LazyGroup("stand-ins", lazy={"serve": ("hub.commands.serve:serve", "Run the web API.")})
    real = _imported("hub.commands.serve:serve")
    assert group.stand_in("serve").get_short_help_str(74) != real.get_short_help_str(74)


def test_help_reads_the_same_before_and_after_every_command_is_imported() -> None:
    from click.testing import CliRunner

    from hub.cli import _build_cli

    cli = _build_cli()
    listed = {args: CliRunner().invoke(cli, [*args, "--help"], terminal_width=80).output
              for args in ((), ("practice",))}
    practice = cli.get_command(click.Context(cli), "practice")
    assert isinstance(practice, click.Group)
    for group, (_, table) in zip((cli, practice), _tables(), strict=True):
        for name in table:
            assert group.get_command(click.Context(group), name) is not None  # imports the command's module
        assert set(table) <= set(group.commands)
    for args, before in listed.items():
        after = CliRunner().invoke(cli, [*args, "--help"], terminal_width=80).output
        assert after == before and "Commands:" in after


def test_every_command_module_is_in_the_table() -> None:
    """A command module left out of the table would be unreachable: its commands are added only from there."""
    modules = {target.split(":")[0] for _, table in _tables() for target, _ in table.values()}
    folder = REPO / "hub" / "commands"
    on_disk = {f"hub.commands.{p.stem}" for p in folder.glob("*.py")} - {"hub.commands.__init__",
                                                                          "hub.commands.base"}
    assert on_disk == modules


def test_the_cores_own_plugins_add_no_command() -> None:
    """``hub --help`` asks only the installed plugins for commands (``load_plugins(core=False)``): the core's
    own plugins must keep their commands in hub/commands."""
    import importlib

    from hub.plugins import DEFAULT_PLUGINS, ESSENTIAL_PLUGINS

    for module in (*ESSENTIAL_PLUGINS.values(), *DEFAULT_PLUGINS.values()):
        assert not hasattr(importlib.import_module(module), "hub_cli_commands"), module
