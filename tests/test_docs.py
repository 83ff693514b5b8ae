"""The docs stay honest: every hook and setting is documented, with the exact signature."""

import inspect
import re

import hub.hookspecs
from tests.conftest import ROOT


def test_every_hook_is_documented_with_its_signature():
    text = (ROOT / "docs" / "plugins.md").read_text().replace("\\|", "|")
    for name, fn in inspect.getmembers(hub.hookspecs, inspect.isfunction):
        if name.startswith("hub_"):
            assert fn.__doc__, f"{name} has no docstring"
            assert f"`{name}{inspect.signature(fn)}`" in text, f"docs/plugins.md lacks {name}{inspect.signature(fn)}"


def test_every_setting_is_documented():
    documented = (ROOT / "docs" / "settings.md").read_text()
    used = set()
    for path in [*(ROOT / "hub").rglob("*.py"), *(ROOT / "connectors").rglob("*.py")]:
        used |= set(re.findall(r"""["'](HUB_[A-Z0-9_]+)["']""", path.read_text()))
    missing = sorted(s for s in used if f"`{s}`" not in documented)
    assert not missing, f"docs/settings.md does not document {missing}"


def test_every_cli_command_is_documented():
    import click

    from hub.cli import cli

    documented = (ROOT / "docs" / "cli.md").read_text()

    def walk(group, prefix):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):  # list_commands adds the plugins' commands too
            command = group.get_command(ctx, name)
            path = f"{prefix} {name}"
            if isinstance(command, click.Group):
                yield from walk(command, path)
            else:
                yield path

    missing = [path for path in walk(cli, "hub") if f"`{path}" not in documented]
    assert not missing, f"docs/cli.md does not document {missing}"
