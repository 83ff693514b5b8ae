"""One settings object: typed fields read once from the environment, connector settings declared by
their connectors and checked with their schemas, secrets never shown, docs/settings.md generated."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_fhir import FhirConfigSchema, FhirConnector
from marshmallow import Schema, fields

from hub.app import create_app
from hub.cli import _build_cli
from hub.errors import ConfigError, MappingError
from hub.mapping import load_mapping
from hub.mapping.schema import check_text
from hub.mapping.vocabulary import load_vocabulary
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.settings import SECRET, Settings, connector_env, current, markdown, redact
from tests.conftest import ROOT


# ------------------------------------------------------------------ the object
def test_every_setting_is_a_typed_field_with_its_variable_default_doc_and_secret_flag() -> None:
    settings = [f for f in dataclasses.fields(Settings) if f.name != "environ"]
    assert len(settings) >= 27
    names = [f.metadata["env"] for f in settings]
    assert len(set(names)) == len(names) and all(n.startswith("HUB_") for n in names)
    for f in settings:
        assert f.metadata["doc"] and isinstance(f.metadata["secret"], bool), f.name
        assert f.default is not dataclasses.MISSING, f.name
    # the core's secrets are the passwords in its URLs (redacted as URLs); connector tokens are the connectors'
    assert {f.metadata["env"] for f in settings if f.metadata["secret"]} == set()
    assert {f.metadata["env"] for f in settings if f.metadata["url"]} >= {"HUB_DATABASE_URL", "HUB_REDIS_URL"}


def test_values_are_parsed_once_into_their_types() -> None:
    assert Settings.from_env({}) == Settings()
    s = Settings.from_env({"HUB_BATCH_SIZE": " 7 ", "HUB_PLUGINS": "a.b, c,,", "HUB_RATE_BURST": "3",
                           "HUB_REDIS_URL": "", "HUB_SQLITE_SYNCHRONOUS": "normal", "HUB_COMMIT_TIMEOUT": "2.5",
                           "HUB_LOG_LEVEL": "debug", "PATH": "/bin"})
    assert s.batch_size == 7 and s.plugins == ("a.b", "c") and s.rate_burst == 3.0 and s.commit_timeout == 2.5
    assert s.redis_url is None  # empty counts as unset
    assert s.sqlite_synchronous == "NORMAL" and s.log_level == "DEBUG"
    assert s.is_set("batch_size") and not s.is_set("queue") and s.queue == "hub"


@pytest.mark.parametrize("env,message", [
    ({"HUB_BATCH_SIZE": "abc"}, "HUB_BATCH_SIZE must be a whole number (got 'abc')"),
    ({"HUB_BATCH_SIZE": "0"}, "HUB_BATCH_SIZE must be at least 1 (got '0')"),
    ({"HUB_RATE_LIMIT": "fast"}, "HUB_RATE_LIMIT must be a number (got 'fast')"),
    ({"HUB_GROUP_WINDOW_MS": "nan"}, "HUB_GROUP_WINDOW_MS must be a finite number (got 'nan')"),
    ({"HUB_SQLITE_SYNCHRONOUS": "sometimes"}, "HUB_SQLITE_SYNCHRONOUS must be one of OFF, NORMAL, FULL, EXTRA"),
])
def test_a_bad_value_is_one_clear_error_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"HUB_PORT": "x", "HUB_WEB_WORKERS": "-1"})
    assert "HUB_PORT" in str(caught.value) and "HUB_WEB_WORKERS" in str(caught.value)


def test_a_bad_value_stops_the_command_line_with_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_BATCH_SIZE", "abc")
    result = CliRunner().invoke(_build_cli(), ["settings"])
    assert result.exit_code == 1
    assert "hub: error: HUB_BATCH_SIZE must be a whole number (got 'abc')" in result.output
    process = subprocess.run([sys.executable, "-m", "hub", "plugins", "list"], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert process.stderr.strip() == "hub: error: HUB_BATCH_SIZE must be a whole number (got 'abc')"


def test_other_defaults_yield_to_what_the_environment_sets() -> None:
    demo = Settings.from_env({"HUB_BATCH_SIZE": "5"}).with_defaults(batch_size=1000, sqlite_synchronous="NORMAL")
    assert demo.batch_size == 5 and demo.sqlite_synchronous == "NORMAL"


# ------------------------------------------------------------------ when they are read
def test_current_is_cached_and_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    first = current()
    assert current() is first
    monkeypatch.setenv("HUB_BATCH_SIZE", "9")
    second = current()
    assert second.batch_size == 9 and second is not first and current() is second
    monkeypatch.delenv("HUB_BATCH_SIZE")
    assert current().batch_size == 100


def test_a_runtime_holds_the_settings_of_the_moment_it_was_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_BATCH_SIZE", "13")
    runtime = Runtime.create(dispatcher="inline")
    monkeypatch.setenv("HUB_BATCH_SIZE", "14")
    assert runtime.settings.batch_size == 13
    assert Runtime.create(dispatcher="inline").settings.batch_size == 14
    given = Settings.from_env({"HUB_QUEUE": "elsewhere", "HUB_DATABASE_URL": runtime.database_url})
    assert Runtime.create(settings=given).settings.queue == "elsewhere"


def test_the_app_takes_its_limits_from_its_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_MAX_PAYLOAD", "1234")
    monkeypatch.setenv("HUB_RATE_LIMIT", "0")
    app = create_app()
    assert app.config["MAX_CONTENT_LENGTH"] == 1234
    assert app.extensions["hub"].settings.rate_limit == 0


# ------------------------------------------------------------------ connector settings
def test_a_connector_declares_its_variables_and_they_are_read_through_its_fields() -> None:
    env = Settings.from_env({"HUB_FHIR_VALIDATE": "0", "HUB_FHIR_TOKEN": "t", "HUB_FHIR_CLIENT_ID": ""})
    assert connector_env(FhirConfigSchema, env) == {"validate": False, "token": "t"}
    with pytest.raises(ConfigError, match="HUB_FHIR_VALIDATE: Not a valid boolean"):
        connector_env(FhirConfigSchema, Settings.from_env({"HUB_FHIR_VALIDATE": "perhaps"}))


def test_the_fhir_connector_reads_its_variable_once_not_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_FHIR_VALIDATE", "0")
    connector = FhirConnector()
    monkeypatch.delenv("HUB_FHIR_VALIDATE")
    assert connector.env == {"validate": False}
    assert FhirConnector().env == {}


class AcmeSettings(Schema):
    port = fields.Integer(metadata={"doc": "the port"})
    password = fields.String(metadata={"doc": "the password", "secret": True})


class Acme:
    name = "acme"
    config_schema = AcmeSettings


def test_the_core_checks_a_connector_section_with_that_connectors_schema() -> None:
    text = "version: 1\nconnectors:\n  acme:\n    port: eighty\n    colour: blue\n"
    _, found = check_text(text, load_vocabulary(), connectors={"acme": Acme})
    assert [str(p) for p in found] == ["line 4, connectors.acme.port: Not a valid integer.",
                                       "line 5, connectors.acme.colour: unknown key 'colour' (allowed: password, port)"]
    assert check_text(text, load_vocabulary(), connectors={})[1] == []  # no such connector: only the shape


def test_a_builtin_connector_section_is_checked_by_its_schema_naming_the_file_and_key() -> None:
    text = "version: 1\nconnectors:\n  fhir:\n    validate: true\n    tokn: abc\n"
    with pytest.raises(MappingError) as caught:
        load_mapping(text, source="north.yaml")
    assert str(caught.value).startswith("north.yaml, line 5, connectors.fhir.tokn: unknown key 'tokn' (allowed: ")
    assert "abc" not in str(caught.value)


# ------------------------------------------------------------------ secrets
def test_a_secret_is_redacted_in_the_repr_and_the_listing() -> None:
    s = Settings.from_env({"HUB_DATABASE_URL": "postgresql://hub:pw-S3CRET@db/hub",
                           "HUB_REDIS_URL": "redis://:redis-S3CRET@cache:6379/0"})
    shown = repr(s) + json.dumps(s.listing())
    assert "S3CRET" not in shown
    assert s.shown("database_url") == "postgresql://hub:***@db/hub"
    assert s.shown("redis_url") == "redis://:***@cache:6379/0"
    assert redact({"token": "t", "base_url": "http://x", "private_key": ""}, FhirConfigSchema) == \
        {"token": SECRET, "base_url": "http://x", "private_key": ""}


def test_a_secret_never_appears_in_listings_logs_or_error_messages(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secrets = ["env-token-S3CRET", "env-key-S3CRET", "map-token-S3CRET", "map-token2-S3CRET"]
    monkeypatch.setenv("HUB_FHIR_TOKEN", secrets[0])
    monkeypatch.setenv("HUB_FHIR_PRIVATE_KEY", secrets[1])
    mapping = tmp_path / "north.yaml"
    section = "version: {v}\npractice: north\nconnectors:\n  fhir:\n    base_url: http://127.0.0.1:9/fhir\n" \
              "    token: {token}\n    validate: {validate}\n"
    mapping.write_text(section.format(v=1, token=secrets[2], validate="true"))
    newer = tmp_path / "north-2.yaml"
    newer.write_text(section.format(v=2, token=secrets[3], validate="true"))
    wrong = tmp_path / "north-bad.yaml"
    wrong.write_text(section.format(v=3, token=secrets[3], validate="perhaps") + "    password: x\n")
    caplog.set_level(logging.DEBUG)
    cli, runner, outputs = _build_cli(), CliRunner(), []
    for args in (["practice", "add", "north", "--name", "North", "--mapping", str(mapping)],
                 ["practice", "list", "--format", "json"], ["settings"], ["settings", "--format", "json"],
                 ["settings", "--practice", "north"], ["settings", "--practice", "north", "--format", "json"],
                 ["mapping", "validate", str(mapping), str(wrong)], ["mapping", "update", "north", str(newer)],
                 ["mapping", "update", "north", str(wrong)], ["plugins", "list", "--format", "json"]):
        result = runner.invoke(cli, args)
        outputs.append(result.output)
    assert "token=\"***\"" in outputs[4] and "base_url" in outputs[4]
    assert json.loads(outputs[5])["sections"]["fhir"]["token"] == SECRET
    assert "HUB_FHIR_TOKEN" in outputs[2] and "connectors.fhir.validate" in outputs[6]
    client = create_app().test_client()
    for path in ("/healthz", "/metrics", "/api/v1/openapi.json"):
        outputs.append(client.get(path).get_data(as_text=True))
    shown = "\n".join([*outputs, caplog.text, *(repr(r.__dict__) for r in caplog.records)])
    assert [s for s in secrets if s in shown] == []


# ------------------------------------------------------------------ docs/settings.md
def test_docs_settings_md_is_generated_from_the_settings_object() -> None:
    expected = markdown(load_plugins(settings=Settings()).connectors.classes())
    assert (ROOT / "docs" / "settings.md").read_text() == expected, \
        "docs/settings.md is stale: hub settings --markdown > docs/settings.md"
    for f in dataclasses.fields(Settings):
        if f.name != "environ":
            assert f"`{f.metadata['env']}`" in expected
    for variable in ("HUB_FHIR_VALIDATE", "HUB_FHIR_TOKEN", "HUB_FHIR_CLIENT_ID", "HUB_FHIR_TOKEN_URL",
                     "HUB_FHIR_PRIVATE_KEY"):
        assert f"| `{variable}` | fhir |" in expected
    assert "bearer token for `hub fhir pull` (secret)" in expected


def test_the_markdown_command_prints_the_same_text() -> None:
    result = CliRunner().invoke(_build_cli(), ["settings", "--markdown"])
    assert result.exit_code == 0 and result.output == (ROOT / "docs" / "settings.md").read_text()


def test_no_module_reads_the_environment_but_the_settings() -> None:
    allowed = {ROOT / "hub" / "settings.py"}  # and the test tooling (hub/testing), which may read its own
    readers = [str(path.relative_to(ROOT)) for folder in ("hub", "connectors", "plugins")
               for path in sorted((ROOT / folder).rglob("*.py"))
               if path not in allowed and ROOT / "hub" / "testing" not in path.parents
               and any(word in path.read_text() for word in ("os.environ", "getenv("))]
    assert readers == []

