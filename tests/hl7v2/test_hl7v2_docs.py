"""The HL7 v2 documentation keeps up with the code: every hub mllp option and connector setting is in it."""

from __future__ import annotations

from pathlib import Path

from hub_hl7v2 import HL7v2Connector

from hub.commands.mllp import mllp

DOC = (Path(__file__).resolve().parents[2] / "docs" / "hl7v2.md").read_text(encoding="utf-8")


def test_every_mllp_option_is_documented() -> None:
    for param in mllp.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--") and opt != "--connector":
                assert opt in DOC, f"docs/hl7v2.md does not mention hub mllp {opt}"


def test_every_connector_setting_is_documented() -> None:
    assert HL7v2Connector.config_schema is not None
    for name in HL7v2Connector.config_schema().fields:
        assert f"`{name}`" in DOC or f"{name}:" in DOC, f"docs/hl7v2.md does not describe the setting {name}"


def test_media_type_for_http_intake_comes_first() -> None:
    assert HL7v2Connector.media_types[0] == "x-application/hl7-v2+er7"
    assert "x-application/hl7-v2+er7" in DOC
