"""The design's boundaries, checked: wire formats stay in connectors, the database stays out of them."""

import ast

from tests.conftest import ROOT

WIRE_FORMATS = {"hl7apy", "hl7", "fhir", "fhir_core", "pyx12"}
DATABASE = {"sqlalchemy", "hub.store", "psycopg", "sqlite3"}


def imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def offenders(folder, banned):
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in imports(path):
            if any(name == b or name.startswith(b + ".") for b in banned):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_the_core_never_imports_a_wire_format_library():
    assert offenders("hub", WIRE_FORMATS) == []


def test_connectors_never_touch_the_database():
    assert offenders("connectors", DATABASE) == []
