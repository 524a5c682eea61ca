"""Settings: every knob comes from here (environment ``FRAUDLENS_*`` or ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings instance (read once)."""
    return Settings()
