"""Settings: the risk-event threshold's name (and its former one), the image limits, and
that they reach the parts that use them."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudlens.config import DEFAULT_EVENT_THRESHOLD, Settings, get_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No FRAUDLENS_* variable or .env file of the machine leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("FRAUDLENS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_event_threshold_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().event_threshold == DEFAULT_EVENT_THRESHOLD == 0.9
    monkeypatch.setenv("FRAUDLENS_EVENT_THRESHOLD", "0.8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name warns about nothing
        assert Settings().event_threshold == 0.8


def test_former_name_still_works_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDLENS_MARKET_THRESHOLD", "0.75")
    with pytest.warns(FutureWarning, match="FRAUDLENS_EVENT_THRESHOLD"):
        assert Settings().event_threshold == 0.75
    # both given: the new name wins
    monkeypatch.setenv("FRAUDLENS_EVENT_THRESHOLD", "0.6")
    with pytest.warns(FutureWarning):
        assert Settings().event_threshold == 0.6
    # the former name read from a .env file too, and still range-checked
    monkeypatch.delenv("FRAUDLENS_EVENT_THRESHOLD")
    monkeypatch.delenv("FRAUDLENS_MARKET_THRESHOLD")
    Path(".env").write_text("FRAUDLENS_MARKET_THRESHOLD=0.7\n")
    with pytest.warns(FutureWarning):
        assert Settings().event_threshold == 0.7
    Path(".env").write_text("FRAUDLENS_MARKET_THRESHOLD=1.5\n")
    with pytest.raises(ValueError, match="market_threshold"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        Settings()


def test_worker_reads_the_event_threshold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    from fraudlens.store import open_store
    from fraudlens.worker import CheckHandler

    monkeypatch.setenv("FRAUDLENS_EVENT_THRESHOLD", "0.85")
    monkeypatch.setenv("FRAUDLENS_WINDOW_HOURS", "12")
    get_settings.cache_clear()
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        handler = CheckHandler(store, tmp_path / "models")
        assert (handler.threshold, handler.hours) == (0.85, 12.0)
        assert CheckHandler(store, tmp_path / "models", threshold=0.5).threshold == 0.5


def test_image_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """FRAUDLENS_MAX_IMAGE_PIXELS and FRAUDLENS_IMAGE_DECODERS reach the service: a 20 x 20
    PNG is refused (413, before any model is looked up) under a 399-pixel limit."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from PIL import Image

    from fraudlens.service import create_app

    monkeypatch.setenv("FRAUDLENS_MAX_IMAGE_PIXELS", "399")
    monkeypatch.setenv("FRAUDLENS_IMAGE_DECODERS", "3")
    monkeypatch.setenv("FRAUDLENS_AUTH", "off")
    settings = Settings(models_dir=tmp_path / "models")
    assert (settings.max_image_pixels, settings.image_decoders) == (399, 3)
    app = create_app(settings, preload=False)
    images = app.state.fraudlens.images
    assert (images.max_pixels, images.concurrency) == (399, 3)
    buf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buf, format="PNG")
    with TestClient(app) as client:
        r = client.post(
            "/invocations", content=buf.getvalue(), headers={"Content-Type": "image/png"}
        )
    assert r.status_code == 413, r.text
    assert "399" in r.text.replace(",", "")
    # an explicit argument still wins over the setting
    assert (
        create_app(settings, max_image_pixels=1000, preload=False).state.fraudlens.images.max_pixels
        == 1000
    )


def test_a_refused_setting_is_named_with_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """get_settings (what every command and the service read) names each refused
    FRAUDLENS_* variable, its value and why: a ConfigError, which the CLI says in one
    line. It raised pydantic's ValidationError, a traceback in every command."""
    from fraudlens.errors import ConfigError

    monkeypatch.setenv("FRAUDLENS_STORE_CALL_TIMEOUT", "abc")
    monkeypatch.setenv("FRAUDLENS_AUTH", "x\x1b[31m" + "y" * 100)
    with pytest.raises(ConfigError) as info:
        get_settings()
    said = str(info.value)
    assert "FRAUDLENS_STORE_CALL_TIMEOUT='abc': Input should be a valid number" in said
    # the value is shown as a repr (no terminal escape goes out raw), cut at 60 characters
    assert "FRAUDLENS_AUTH='x\\x1b[31m" + "y" * 54 + "'...: Input should be" in said
    assert "\x1b" not in said and "\n" not in said
    monkeypatch.delenv("FRAUDLENS_STORE_CALL_TIMEOUT")
    monkeypatch.delenv("FRAUDLENS_AUTH")
    Path(".env").write_text("FRAUDLENS_WINDOW_HOURS=-3\n")
    with pytest.raises(ConfigError, match=r"FRAUDLENS_WINDOW_HOURS='-3': Input should be greater"):
        get_settings()
    Path(".env").unlink()
    assert get_settings().window_hours == 24.0


def test_a_settings_file_that_is_not_utf8_is_named_with_line_and_column() -> None:
    from fraudlens.errors import ConfigError

    Path(".env").write_bytes(b"FRAUDLENS_AUTH=on\nFRAUDLENS_SINK=\xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert str(info.value) == (
        f"settings file {Path('.env').resolve()}, line 2, column 16: not UTF-8 text (byte 0xff)"
    )


def test_a_short_secret_key_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """FRAUDLENS_SECRET_KEY under 32 characters: the service had started, then answered
    every signed-in request 422. Now the settings refuse it, and never echo it."""
    from fraudlens.errors import ConfigError

    monkeypatch.setenv("FRAUDLENS_SECRET_KEY", "hunter2-hunter2")
    with pytest.raises(ConfigError) as info:
        get_settings()
    said = str(info.value)
    assert "FRAUDLENS_SECRET_KEY: the secret key must have at least 32 characters" in said
    assert "hunter2" not in said
    monkeypatch.setenv("FRAUDLENS_SECRET_KEY", "k" * 32)
    get_settings.cache_clear()
    key = get_settings().secret_key
    assert key is not None and key.get_secret_value() == "k" * 32


@pytest.mark.parametrize("hours", ["inf", "nan", "1e300", "100001", "0"])
def test_a_window_no_store_can_read_is_refused(monkeypatch: pytest.MonkeyPatch, hours: str) -> None:
    """FRAUDLENS_WINDOW_HOURS=inf (or 1e300) was taken, and every check the worker then
    took failed in the store (OverflowError: a window start before any date); the CLI's
    --window-hours already refused it."""
    from fraudlens.errors import ConfigError

    monkeypatch.setenv("FRAUDLENS_WINDOW_HOURS", hours)
    with pytest.raises(ConfigError, match=f"FRAUDLENS_WINDOW_HOURS='{hours}': Input should be"):
        get_settings()


def test_the_longest_window_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDLENS_WINDOW_HOURS", "100000")
    assert get_settings().window_hours == 100_000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESSION_HOURS", "inf"),
        ("SESSION_HOURS", "8785"),
        ("SESSION_IDLE_MINUTES", "1e300"),
        ("LOGIN_FAILURES_PER_USER", "99999999999999999999999"),
        ("LOGIN_FAILURES_PER_ADDRESS", "1000001"),
    ],
)
def test_sign_in_settings_past_their_bounds_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Each was taken, and every sign-in then failed with a 500."""
    from fraudlens.errors import ConfigError

    monkeypatch.setenv(f"FRAUDLENS_{name}", value)
    with pytest.raises(ConfigError, match=f"FRAUDLENS_{name}='{value}': Input should be"):
        get_settings()


@pytest.mark.parametrize("seconds", ["1e-300", "0.5", "-1", "nan"])
def test_a_store_call_bound_under_a_second_is_refused(
    monkeypatch: pytest.MonkeyPatch, seconds: str
) -> None:
    """A bound of microseconds would cut every store call of the service."""
    from fraudlens.errors import ConfigError

    monkeypatch.setenv("FRAUDLENS_STORE_CALL_TIMEOUT", seconds)
    with pytest.raises(ConfigError, match=f"FRAUDLENS_STORE_CALL_TIMEOUT='{seconds}': "):
        get_settings()
    for fine in ("0", "1", "inf"):
        monkeypatch.setenv("FRAUDLENS_STORE_CALL_TIMEOUT", fine)
        get_settings.cache_clear()
        assert get_settings().store_call_timeout == float(fine)
