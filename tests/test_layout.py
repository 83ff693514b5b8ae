"""The design's boundaries, checked: wire formats stay in connectors, the database stays out of them."""

import ast
import re

import yaml

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


# -- wire formats written (or read) by hand: the string literals that give them away ----------------
HL7_SEGMENTS = {"MSH", "BHS", "FHS", "EVN", "PID", "PD1", "NK1", "PV1", "PV2", "SCH", "TQ1", "RGS", "AIS", "AIG",
                "AIL", "AIP", "FT1", "IN1", "GT1", "DG1", "PR1", "RF1", "PRD", "ORC", "OBR", "OBX", "MSA", "ERR"}
ER7_TEXT = re.compile(r"\^~\\&|(?:^|[\r\n])[A-Z][A-Z0-9]{2}\|")  # the encoding characters, or "PID|" and the like


def csv_exports():
    """The column labels of each CSV export the example practice mappings read."""
    found = []
    for path in sorted((ROOT / "mappings" / "examples").glob("*.yaml")):
        section = (yaml.safe_load(path.read_text()).get("connectors") or {}).get("csv") or {}
        for export in section.get("exports", []):
            labels = {spec if isinstance(spec, str) else spec.get("column") for spec in export["columns"].values()}
            found.append((f"{path.name} {export['kind']}", labels - {None}))
    return found


def literals(source):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            yield node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value


def wire_format_literals(source, exports):
    """Why a module's literals say it writes or reads HL7 v2 ER7, FHIR JSON or a practice's CSV export."""
    texts = set(literals(source))
    found = [f"ER7 text {t!r}" for t in sorted(texts) if ER7_TEXT.search(t)]
    segments = sorted(texts & HL7_SEGMENTS)
    if len(segments) >= 3:
        found.append(f"HL7 v2 segment names {', '.join(segments)}")
    if "resourceType" in texts:
        found.append("FHIR resources ('resourceType')")
    for name, labels in exports:
        if len(texts & labels) * 2 >= len(labels):
            found.append(f"the columns of the CSV export {name}")
    return found


def test_the_core_writes_no_wire_format_by_hand():
    """HL7 v2 segments, FHIR resources and practice CSV layouts live in connectors: the demo, the
    tests and the benchmarks get sample payloads from ``Connector.render``."""
    exports = csv_exports()
    found = [f"{path.relative_to(ROOT)}: {why}" for folder in ("hub", "plugins")
             for path in sorted((ROOT / folder).rglob("*.py"))
             for why in wire_format_literals(path.read_text(), exports)]
    assert found == []


def test_the_wire_format_check_catches_each_format_and_spares_the_common_model():
    exports = csv_exports()
    assert any(name.endswith(" appointment") for name, _ in exports)  # the check has columns to look for
    appointment_columns = next(labels for name, labels in exports if name.endswith(" appointment"))
    written = {
        "er7": 'segment = _segment("MSH", "^~\\\\&", app, facility)',
        "er7 segments": 'lines = ["|".join(("PID", mrn)), "|".join(("PV1", visit)), "|".join(("FT1", charge))]',
        "fhir": 'bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}',
        "csv": f"COLUMNS = {tuple(sorted(appointment_columns))!r}",
    }
    for fmt, source in written.items():
        assert wire_format_literals(source, exports), fmt
    common_model = ('record = {"kind": "appointment", "status": "booked", "Status": "Provider"}\n'
                    'MALFORMED = (b"MSH", b"{{{{")\nlabel = "PID"')
    assert wire_format_literals(common_model, exports) == []
