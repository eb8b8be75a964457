"""Configuration: one pydantic-settings class read from ``CRM_*`` environment variables."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(RuntimeError):
    """The configuration cannot be used (e.g. production without a secret key)."""


class Settings(BaseSettings):
    """Every knob of the server. Passed in to ``build_app``; never read deep inside code."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".crm-data")
    secret_key: str | None = None

    host: str = "127.0.0.1"
    port: int = 8000

    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 30 * 24 * 3600

    default_page_size: int = 20
    max_page_size: int = 100
    max_request_bytes: int = 1_000_000
    introspection: bool = True
    cors_origins: list[str] = Field(default_factory=list)
    db_pool_size: int = 10
    slow_consumer_seconds: float = 10.0
    sql_echo: bool = False
    # Answer the reads the compiler knows with one SQL statement (docs/decisions/0006).
    compiled_reads: bool = True

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def resolve_secret_key(settings: Settings) -> str:
    """Return the signing key: configured, or in development one generated once and kept
    in the data directory. Production refuses to run without a configured key."""
    if settings.secret_key:
        return settings.secret_key
    if settings.is_production:
        raise ConfigurationError(
            "CRM_SECRET_KEY must be set when CRM_ENV=production (e.g. `openssl rand -hex 32`)."
        )
    path = settings.data_dir / "secret_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting at once, one writes and both read its key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(20):  # the creator may not have written it yet
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.05)
        raise ConfigurationError(f"{path} is empty: delete it or set CRM_SECRET_KEY") from None
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
