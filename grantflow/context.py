"""What every command reads from click's context: the settings, loaded once per invocation.

Commands live in ``grantflow/commands/``; the group that registers them is ``grantflow/cli.py``. Both
import this module, so no command imports the command line that registers it.
"""

from __future__ import annotations

from typing import Any

import click

from configuration.settings import Settings, SettingsError, load_settings

EXIT_UNREACHABLE = 3
EXIT_CONFIG = 4


def settings_from(ctx: click.Context) -> Settings:
    """Settings for a command, loaded once; an invalid setting exits 4 naming the setting."""
    obj: dict[str, Any] | None = ctx.find_object(dict)  # the top-level group's, when there is one
    if obj is None:
        obj = ctx.ensure_object(dict)
    if not isinstance(obj.get("settings"), Settings):
        try:
            obj["settings"] = load_settings(obj.get("config"))
        except SettingsError as exc:
            click.echo(f"grantflow: {exc}", err=True)
            ctx.exit(EXIT_CONFIG)
        if obj.get("user"):
            obj["settings"] = obj["settings"].model_copy(update={"user": obj["user"]})
    settings: Settings = obj["settings"]
    return settings
