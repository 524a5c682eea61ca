"""Settings: every knob comes from here (environment ``FRAUDLENS_*`` or ``.env``).

Renamed settings keep their old name working for a while, with a warning:
``FRAUDLENS_MARKET_THRESHOLD`` is now ``FRAUDLENS_EVENT_THRESHOLD``.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudlens._images import DEFAULT_MAX_PIXELS
from fraudlens._time import MAX_WINDOW_HOURS
from fraudlens.errors import ConfigError

__all__ = ["DEFAULT_EVENT_THRESHOLD", "Settings", "get_settings"]

#: Longest sign-in, in hours (366 days); the idle limit's bound too.
_YEAR_HOURS = 366 * 24

#: Most failed sign-ins a limit may allow in its 15 minutes (a larger count had made
#: every sign-in fail with a 500).
_MAX_LOGIN_FAILURES = 1_000_000

#: Fewest characters of a session-signing key (FRAUDLENS_SECRET_KEY).
_MIN_SECRET_KEY = 32

#: Settings whose refused value is never shown in an error (it may be a secret).
_SECRET_SETTINGS = frozenset({"secret_key"})

#: The risk-event threshold when none is set: the reference system's 0.9.
DEFAULT_EVENT_THRESHOLD = 0.9


class Settings(BaseSettings):
    """fraudlens configuration with embedded defaults.

    Every field can be set with an environment variable named ``FRAUDLENS_<FIELD>``
    (for example ``FRAUDLENS_DATABASE_URL``) or in a ``.env`` file.
    """

    model_config = SettingsConfigDict(env_prefix="FRAUDLENS_", env_file=".env", extra="ignore")

    database_url: str = Field("sqlite:///fraudlens.db", description="SQLAlchemy URL of the store.")
    store_call_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds one of the service's calls to a PostgreSQL or MariaDB store may "
        "wait on the server before its connection is cut and the request answered 503 (a "
        "frozen or vanished server): 0 sets no bound, else at least 1.",
    )
    queue_url: str = Field("sqlite", description="Queue: sqlite[:///path], redis://..., sqs://...")
    sink: str = Field("./sink", description="Where scored card records go: a folder or s3://...")
    models_dir: Path = Field(Path("./models"), description="Model registry folder.")
    event_threshold: float = Field(
        DEFAULT_EVENT_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Risk-event threshold: the worker records a risk event when an account's "
        "score is above it (flagged = score > threshold).",
    )
    market_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        exclude=True,
        description="Deprecated name of event_threshold (FRAUDLENS_MARKET_THRESHOLD); used "
        "when event_threshold is not set, with a warning.",
    )
    window_hours: float = Field(
        24.0,
        gt=0,
        le=MAX_WINDOW_HOURS,
        description="Scoring window that ends at the latest trade, in hours (at most 100,000).",
    )
    max_body_bytes: int = Field(
        5 * 2**20, gt=0, description="Largest request body the service reads."
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        gt=0,
        description="Largest image the service decodes (width x height, read from the "
        "image's header before decoding; a larger one is answered 413).",
    )
    image_decoders: int = Field(
        2, ge=1, description="Images the service decodes at the same time (per process)."
    )
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
    # (Bounded above: inf or 1e300 hours were taken, and every signed-in request and
    # sign-in then failed with a 500, a time no date can hold.)
    session_hours: float = Field(
        12.0,
        gt=0,
        le=_YEAR_HOURS,
        description="A sign-in lasts at most this long, in hours (at most 8,784: a year).",
    )
    session_idle_minutes: float = Field(
        120.0,
        gt=0,
        le=_YEAR_HOURS * 60,
        description="A sign-in ends after this long without a request, in minutes (at most "
        "a year).",
    )
    behind_tls_proxy: bool = Field(
        False,
        description="Clients reach the service through a TLS-terminating proxy: session "
        "cookies are marked Secure even on plain-HTTP requests.",
    )
    login_failures_per_user: int = Field(
        10,
        ge=1,
        le=_MAX_LOGIN_FAILURES,
        description="Failed sign-ins per user name per 15 minutes (per process).",
    )
    login_failures_per_address: int = Field(
        30,
        ge=1,
        le=_MAX_LOGIN_FAILURES,
        description="Failed sign-ins per client address per 15 minutes (per process).",
    )

    @field_validator("store_call_timeout")
    @classmethod
    def _whole_calls(cls, seconds: float) -> float:
        # A bound of microseconds would cut every call (and spin the watch's thread).
        if 0 < seconds < 1:
            raise ValueError("give 0 (no bound) or at least 1 second")
        return seconds

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        # Checked here, so that `serve` stops at once: the service had started and then
        # answered every signed-in request 422, as if the client had sent something wrong.
        if key is not None and len(key.get_secret_value()) < _MIN_SECRET_KEY:
            raise ValueError(
                f"the secret key must have at least {_MIN_SECRET_KEY} characters (e.g. the "
                "output of `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        return key

    @model_validator(mode="after")
    def _renamed(self) -> Self:
        # The old name still works, but only when the new one is not given.
        if self.market_threshold is not None:
            warnings.warn(
                "FRAUDLENS_MARKET_THRESHOLD (market_threshold) is deprecated: set "
                "FRAUDLENS_EVENT_THRESHOLD (event_threshold) instead",
                FutureWarning,
                stacklevel=2,
            )
            if "event_threshold" not in self.model_fields_set:
                self.event_threshold = self.market_threshold
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings instance (read once).

    Raises
    ------
    ConfigError
        Naming each ``FRAUDLENS_*`` variable whose value is refused, what it holds and
        why (every command then says it in one line instead of a traceback); or a
        ``.env`` file that cannot be read or is not UTF-8 text.
    """
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_refused(exc)) from None
    except UnicodeDecodeError as exc:  # a .env file that is not UTF-8 text
        data, at = bytes(exc.object), exc.start
        line, column = data.count(b"\n", 0, at) + 1, at - data.rfind(b"\n", 0, at)
        raise ConfigError(
            f"settings file {Path('.env').resolve()}, line {line}, column {column}: not "
            f"UTF-8 text (byte {data[at]:#04x})"
        ) from None
    except OSError as exc:  # a .env file that cannot be read
        raise ConfigError(
            f"cannot read the settings file {exc.filename or Path('.env').resolve()}: "
            f"{exc.strerror or exc}"
        ) from None


def _refused(exc: Any) -> str:
    """One line naming the settings a ValidationError refused."""
    parts = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        message = str(err.get("msg", "refused")).removeprefix("Value error, ")
        if not loc:  # a check of several settings at once
            parts.append(message)
            continue
        value = err.get("input")
        shown = ""
        if isinstance(value, str) and str(loc[0]) not in _SECRET_SETTINGS:
            shown = "=" + (repr(value[:60]) + "..." if len(value) > 60 else repr(value))
        parts.append(f"FRAUDLENS_{str(loc[0]).upper()}{shown}: {message}")
    return "setting refused (from the environment or ./.env): " + "; ".join(parts)
