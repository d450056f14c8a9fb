"""`accord server`: its flags are made from the settings model (accord.server.settings), so the
flags, the environment variables, the configuration file and the documented table agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from accord.cli.extras import require_extra


def _settings_options(f: Callable[..., Any]) -> Callable[..., Any]:
    from accord.server.settings import ServerSettings, env_name, flag_name

    for name, field in reversed(ServerSettings.model_fields.items()):
        default = field.get_default(call_default_factory=True)
        shown = f"default: {default}; " if default not in (None, []) else ""
        f = click.option(
            flag_name(name),
            name,
            default=None,
            multiple=name == "witness",
            metavar="VALUE",
            help=f"{field.description} [{shown}{env_name(name)}]",
        )(f)
    return f


@click.command("server")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="ACCORD_CONFIG",
    help="A TOML file of settings (keys as the flags, without -- and with _ for -); "
    "flags and ACCORD_* variables override it.",
)
@_settings_options
def server(config_file: Path | None, **flags: Any) -> None:
    """Run the Accord server."""
    from accord.console import mount_console
    from accord.server.run import serve
    from accord.server.settings import ServerSettings

    settings = ServerSettings.load(flags=flags, config_file=config_file)
    if settings.db and settings.db.startswith("postgresql"):
        require_extra("postgres", "psycopg")
    if settings.redis:
        require_extra("redis", "redis")
    serve(settings, mounts=[mount_console])
