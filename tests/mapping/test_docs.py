"""The docs name every transform, override, threshold, vocabulary and command the code knows."""

from __future__ import annotations

from pathlib import Path

import click

from hub.cli import cli
from hub.mapping import DEFAULT_GO_LIVE
from hub.mapping.schema import HL7V2_OVERRIDES, TOP_KEYS
from hub.mapping.transforms import TRANSFORMS
from hub.mapping.vocabulary import VOCABULARIES, load_vocabulary

DOCS = Path(__file__).resolve().parents[2] / "docs"
MAPPINGS = (DOCS / "mappings.md").read_text()
ONBOARDING = (DOCS / "onboarding.md").read_text()


def test_transforms_overrides_and_keys_are_documented() -> None:
    for name in TRANSFORMS:
        assert f"| `{name}` |" in MAPPINGS, name
    for name, (default, _) in HL7V2_OVERRIDES.items():
        assert f"| `{name}` | `{default}` |" in MAPPINGS, name
    for key in TOP_KEYS:
        assert f"`{key}`" in MAPPINGS, key
    for key in DEFAULT_GO_LIVE:
        assert f"  {key}: {DEFAULT_GO_LIVE[key]}" in ONBOARDING, key


def test_vocabulary_codes_are_documented() -> None:
    vocabulary = load_vocabulary()
    for name in VOCABULARIES:
        assert f"`{name}`" in MAPPINGS
    for name in ("service_lines", "visit_categories", "payers", "cancel_categories"):
        for code in vocabulary.codes(name):
            assert f"`{code}`" in MAPPINGS, (name, code)


def test_commands_are_documented() -> None:
    mapping = cli.get_command(click.Context(cli), "mapping")  # imported when first looked up (FEATURE_COMMANDS)
    onboard = cli.get_command(click.Context(cli), "onboard")
    assert isinstance(mapping, click.Group) and isinstance(onboard, click.Group)
    for name in mapping.commands:
        assert f"hub mapping {name}" in MAPPINGS, name
    for name in onboard.commands:
        assert f"hub onboard {name}" in ONBOARDING, name
    assert "hub practice go-live" in ONBOARDING
    for option in ("--batch", "--chunk-rows", "--stream-above-mb", "--mapping", "--connector", "--no-findings",
                   "--format json"):
        assert option in ONBOARDING, option
