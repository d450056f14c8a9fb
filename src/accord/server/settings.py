"""`ServerSettings`: every setting of `accord server`, from flags, the environment and a file.

One model is the single list of settings: the command's flags are made from its fields, the
environment variable of a field is ACCORD_ and its name in capitals, a configuration file
(`accord server --config FILE`, TOML) uses the field names as keys, and the table in
docs/deployment.md is printed from it (`settings_table`). A flag beats the environment, which
beats the file, which beats the default. A bad value stops the server with one line naming the
setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from accord.config_file import read_config_file
from accord.errors import InvalidInput
from accord.server.config import DEFAULT_MAX_ATTACHMENT_BYTES, ServerConfig
from accord.server.housekeeping import HOUSEKEEPING_INTERVAL_S
from accord.server.limits import (
    DEFAULT_ACCOUNT_BURST,
    DEFAULT_ACCOUNT_RATE_PER_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SEND_BURST,
    DEFAULT_SEND_RATE_PER_S,
)
from accord.server.notify import DEFAULT_SOCKET_POLL_S
from accord.server.translog import DEFAULT_CHECKPOINT_REFRESH_S, DEFAULT_LOG_ORIGIN
from accord.wire.common import MAX_REQUEST_BYTES

ENV_PREFIX = "ACCORD_"
# Variables earlier releases read, by the setting that replaced them: a server started with one
# stops and says so, rather than running without what the operator meant to configure.
RETIRED_ENV = {"ACCORD_REDIS_URL": "redis"}


class ServerSettings(BaseSettings):
    """The settings of one server process (docs/deployment.md, "Settings")."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Field(
        Path("accord-data"),
        description="Directory for the keys, attachment blobs and (without `db`) the SQLite "
        "database.",
    )
    db: str | None = Field(
        None,
        description="Database URL, postgresql://... (default: SQLite in the data directory).",
    )
    redis: str | None = Field(
        None,
        description="redis://... shared by several server processes (wake-ups, rate limits).",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    log_origin: str = Field(
        DEFAULT_LOG_ORIGIN,
        min_length=1,
        max_length=255,
        description="The transparency log's origin; name it after the deployment (e.g. "
        "chat.example.org/log). Fixed once the log key exists.",
    )
    witness: list[str] = Field(
        default_factory=list,
        description="Witness base URLs; every checkpoint goes to each (in the environment, "
        'a JSON list: ["http://..."]).',
    )
    checkpoint_refresh: float = Field(
        DEFAULT_CHECKPOINT_REFRESH_S,
        ge=1,
        description="Seconds after which an unchanged log checkpoint is sent to the witnesses "
        "again (keep it well under the manifest's maximum checkpoint age).",
    )
    log_format: Literal["text", "json"] = Field("text", description="text or json.")
    max_attachment_bytes: int = Field(
        DEFAULT_MAX_ATTACHMENT_BYTES, ge=1, description="Largest attachment upload, in bytes."
    )
    max_request_bytes: int = Field(
        MAX_REQUEST_BYTES,
        ge=1024,
        description="Largest request body other than an attachment upload, in bytes.",
    )
    send_rate: float = Field(
        DEFAULT_SEND_RATE_PER_S,
        ge=0,
        description="Messages per second an account may send, sustained (0: no limit).",
    )
    send_burst: int = Field(
        DEFAULT_SEND_BURST, ge=1, description="Messages an account may send at once."
    )
    max_queue: int = Field(
        DEFAULT_MAX_QUEUE,
        ge=0,
        description="Undelivered messages a device may have before sends to it get 429 "
        "(0: no limit).",
    )
    socket_poll: float = Field(
        DEFAULT_SOCKET_POLL_S,
        ge=0.1,
        description="With redis: seconds between a socket's own looks at its queue.",
    )
    housekeeping_interval: float = Field(
        HOUSEKEEPING_INTERVAL_S,
        ge=0.05,
        le=3600,
        description="Seconds between housekeeping passes: collecting attachment blobs, purging "
        "expired rate-limit counters, logging each day's review counts.",
    )
    account_rate: float = Field(
        DEFAULT_ACCOUNT_RATE_PER_S,
        ge=0,
        description="New accounts and device link requests per second from one address, "
        "sustained (0: no limit).",
    )
    account_burst: int = Field(
        DEFAULT_ACCOUNT_BURST, ge=1, description="New accounts from one address at once."
    )
    registration_token_file: Path | None = Field(
        None, description="A closed deployment: account creation requires the token in this file."
    )
    secrets_key_file: Path | None = Field(
        None,
        description="The key sealing the secrets kept in the database (default: "
        "DATA_DIR/secrets.key, created on first start). Keep it off the database host.",
    )

    @classmethod
    def load(cls, *, flags: dict[str, Any], config_file: Path | None = None) -> ServerSettings:
        """Flags (None: not given) over the environment over `config_file` over defaults."""
        for old, setting in RETIRED_ENV.items():
            if old in os.environ:
                raise InvalidInput(f"{old} is no longer read: set {env_name(setting)} instead")
        file_values = read_config_file(config_file) if config_file is not None else {}
        given = {k: v for k, v in flags.items() if v is not None and v != ()}

        class FromFile(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                file_settings = InitSettingsSource(settings_cls, init_kwargs=file_values)
                return (init_settings, env_settings, file_settings)

        try:
            loaded = FromFile(**given)
        except ValidationError as exc:
            raise InvalidInput(describe_setting_error(exc)) from None
        return cls.model_validate(loaded.model_dump())

    def to_config(self) -> ServerConfig:
        return ServerConfig(
            data_dir=self.data_dir,
            db_url=self.db,
            max_attachment_bytes=self.max_attachment_bytes,
            max_request_bytes=self.max_request_bytes,
            witnesses=list(self.witness),
            checkpoint_refresh_s=self.checkpoint_refresh,
            redis_url=self.redis,
            send_rate_per_s=self.send_rate,
            send_burst=self.send_burst,
            max_queue=self.max_queue,
            socket_poll_s=self.socket_poll,
            housekeeping_interval_s=self.housekeeping_interval,
            account_rate_per_s=self.account_rate,
            account_burst=self.account_burst,
            registration_token_file=self.registration_token_file,
            secrets_key_file=self.secrets_key_file,
            log_origin=self.log_origin,
        )


def flag_name(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def describe_setting_error(exc: ValidationError) -> str:
    """One line naming the first bad setting, its flag and variable, and what is wrong (never
    the value given: it may be a URL with a password)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    name = str(error["loc"][0]) if error["loc"] else "?"
    if error["type"] == "extra_forbidden":
        return f"unknown setting {name!r}"
    return f"bad setting {name} ({flag_name(name)}, {env_name(name)}): {error['msg']}"


def settings_table() -> str:
    """The Markdown table of every setting (docs/deployment.md, "Settings")."""
    rows = [
        "| setting (file key) | flag | environment | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, field in ServerSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if default in (None, []):
            shown = "none"
        else:
            shown = f"`{default:g}`" if isinstance(default, float) else f"`{default}`"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(
            f"| `{name}` | `{flag_name(name)}` | `{env_name(name)}` | {shown} | {meaning} |"
        )
    return "\n".join(rows)
