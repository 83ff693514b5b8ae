"""What every command shares: the root group's error handling, the lazily built runtime, JSON output."""

from __future__ import annotations

import getpass
import importlib
import json
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from hub.errors import HubError

# Nothing heavy at import time (SQLAlchemy, the plugins, the runtime): ``hub --version`` and
# ``hub --help`` import this module, and a command imports what it uses when it runs.


class LazyGroup(click.Group):
    """A group whose commands are imported when one of them is looked up to run, not when the group is built.

    ``lazy`` names each such command: its name → (``"module:attribute"``, its short help). The short
    help is the table's so that listing the commands (``hub --help``) imports none of their modules;
    tests/cli/test_startup.py checks that it is the command's own."""

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name][0].split(":")
            found = getattr(importlib.import_module(module), attribute)
            self.add_command(found, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def stand_in(self, name: str) -> click.Command:
        """What ``--help`` lists for a command not imported yet: its name and the table's short help."""
        return click.Command(name, help=self.lazy[name][1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own, listing a command not imported yet by its stand-in instead of importing it
        listed = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                command = self.stand_in(name) if name in self.lazy else self.get_command(ctx, name)
            if command is not None and not command.hidden:
                listed.append((name, command))
        if listed:
            limit = formatter.width - 6 - max(len(name) for name, _ in listed)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in listed])


class HubGroup(LazyGroup):
    """Turns the hub's own errors into one clear line and a non-zero exit; adds the plugins'
    commands the first time a command is looked up (not at import time)."""

    _plugin_commands_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugin_commands_added:
            self._plugin_commands_added = True
            _add_plugin_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and not self._plugin_commands_added:
            self._add_plugin_commands()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HubError as exc:
            click.echo(f"hub: error: {exc}", err=True)
            ctx.exit(1)
        except BrokenPipeError:  # output piped to head, say: not an error of ours
            sys.stderr.close()
            ctx.exit(0)
        except OSError as exc:
            name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            click.echo(f"hub: error:{name}: {exc.strerror or exc}", err=True)
            ctx.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: a usage error, an exit, Ctrl-C (click answers them)
        except Exception as exc:
            sqlalchemy = sys.modules.get("sqlalchemy")  # loaded if it raised: never imported for this
            if sqlalchemy is not None and isinstance(exc, sqlalchemy.exc.OperationalError):
                click.echo(f"hub: error: the database cannot be reached: {str(exc.orig).splitlines()[0]}",
                           err=True)
                ctx.exit(1)
            # a bug: say where, never what (its message or a traceback may quote patient data)
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
            click.echo(f"hub: error: unexpected {type(exc).__name__}{where} (a bug; the details are not shown "
                       "because they may hold patient data)", err=True)
            ctx.exit(2)


class State:
    """Lazily built runtime: commands that need no database never open one."""

    def __init__(self, plugins: Any = None) -> None:
        self._runtime: Any = None
        self._plugins: Any = plugins

    @property
    def plugins(self) -> Any:
        if self._plugins is None:
            self._plugins = load_plugins()
        return self._plugins

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from hub.runtime import Runtime

            self._runtime = Runtime.create(plugins=self.plugins)
        return self._runtime


pass_state = click.make_pass_decorator(State, ensure=True)


def load_plugins(**kwargs: Any) -> Any:
    """``hub.plugins.load_plugins``, imported when the plugins are first needed."""
    from hub.plugins import load_plugins as load

    return load(**kwargs)


def _add_plugin_commands(cli: click.Group) -> None:
    """Plugins add commands (``hub fhir pull``) through the ``hub_cli_commands`` hook. The registries
    stay empty and the core's own plugins are left out: listing the commands imports no connector and
    no report module (``hub --help`` stays quick)."""
    try:
        load_plugins(registries=False, core=False).hook.hub_cli_commands(cli=cli, pull=_pull)
    except HubError as exc:  # a broken plugin must not take the whole command line down
        click.echo(f"hub: warning: plugin commands not loaded: {exc}", err=True)


def _pull(practice: str, connector: str, **kwargs: Any) -> Any:
    """The core's pull (``hub.connector.PullService``) given to plugin commands, on this command's runtime."""
    from hub.pipeline.pull import pull

    return pull(click.get_current_context().ensure_object(State).runtime, practice, connector, **kwargs)


def _json_default(value: Any) -> Any:
    from hub.model.schemas import to_json_ready

    return to_json_ready(value) if not isinstance(value, bytes) else value.decode("utf-8", "replace")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def cli_user() -> str:
    """Who runs the command, for the audit log (the system login name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment nor the password database
        return "unknown"
