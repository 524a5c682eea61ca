"""Settings: every knob comes from here (environment ``FRAUDLENS_*`` or ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """fraudlens configuration with embedded defaults.

    Every field can be set with an environment variable named ``FRAUDLENS_<FIELD>``
    (for example ``FRAUDLENS_DATABASE_URL``) or in a ``.env`` file.
    """

    model_config = SettingsConfigDict(env_prefix="FRAUDLENS_", env_file=".env", extra="ignore")

    database_url: str = Field("sqlite:///fraudlens.db", description="SQLAlchemy URL of the store.")
    queue_url: str = Field("sqlite", description="Queue: sqlite[:///path], redis://..., sqs://...")
    sink: str = Field("./sink", description="Where scored card records go: a folder or s3://...")
    models_dir: Path = Field(Path("./models"), description="Model registry folder.")
    market_threshold: float = Field(0.9, ge=0.0, le=1.0, description="Risk-event threshold.")
    window_hours: float = Field(
        24.0, gt=0, description="Scoring window that ends at the latest trade."
    )
    max_body_bytes: int = Field(
        5 * 2**20, gt=0, description="Largest request body the service reads."
    )
    log_json: bool = Field(False, description="Log as JSON lines.")
    # -- identity (see fraudlens.auth and the README's "Sign-in and roles") --------------
    host: str = Field(
        "127.0.0.1",
        description="Address the service binds; with auth=auto, anything but loopback turns "
        "authentication on.",
    )
    auth: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Authentication of the service: auto (on unless it binds only to "
        "loopback), on, or off.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key (32+ characters) that signs session cookies; by default a random "
        "key kept in the database.",
    )
    session_hours: float = Field(12.0, gt=0, description="A sign-in lasts at most this long.")
    session_idle_minutes: float = Field(
        120.0, gt=0, description="A sign-in ends after this long without a request."
    )
    behind_tls_proxy: bool = Field(
        False,
        description="Clients reach the service through a TLS-terminating proxy: session "
        "cookies are marked Secure even on plain-HTTP requests.",
    )
    login_failures_per_user: int = Field(
        10, ge=1, description="Failed sign-ins per user name per 15 minutes (per process)."
    )
    login_failures_per_address: int = Field(
        30, ge=1, description="Failed sign-ins per client address per 15 minutes (per process)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings instance (read once)."""
    return Settings()
