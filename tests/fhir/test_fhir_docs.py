"""docs/fhir.md names every setting and pull option, and the secrets are marked."""

from pathlib import Path

from hub_fhir import FhirConfigSchema
from hub_fhir.cli import pull_command

DOC = (Path(__file__).resolve().parents[2] / "docs" / "fhir.md").read_text()


def test_every_setting_is_documented_and_secrets_are_marked() -> None:
    fields = FhirConfigSchema().fields
    for field in fields.values():
        assert f"`{field.data_key or field.name}`" in DOC, field.name
    assert FhirConfigSchema().validate({"validate": False, "token": "x"}) == {}
    assert {n for n, f in fields.items() if f.metadata.get("secret")} == {"token", "private_key"}
    for env in ("HUB_FHIR_VALIDATE", "HUB_FHIR_TOKEN", "HUB_FHIR_CLIENT_ID", "HUB_FHIR_TOKEN_URL",
                "HUB_FHIR_PRIVATE_KEY"):
        assert env in DOC, env


def test_every_pull_option_is_documented() -> None:
    for param in pull_command.params:
        for opt in getattr(param, "opts", ()):
            assert opt in DOC, opt
