"""Replies to hostile requests stay short and cheap: a 4xx repeats at most 80 characters
of any value the client sent, a body of a million bad values gets one error (not a
100 MB list of them), a byte-order mark before CSV rows is not a bad value, and HEAD
is answered wherever GET is."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fraudlens.config import Settings
from fraudlens.service import create_app
from fraudlens.service._errors import install_error_handlers

CARD_FEATURES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]
LONG = "y" * 5000


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A service with no models: bodies are checked before any model is looked up."""
    root = tmp_path_factory.mktemp("no-models")
    with TestClient(create_app(Settings(models_dir=root), preload=False)) as c:
        yield c


@pytest.fixture(scope="module")
def client(full_registry: Path) -> Any:
    with TestClient(create_app(models_dir=full_registry, check_seconds=0.0)) as c:
        yield c


def _short(r: Any) -> str:
    assert 400 <= r.status_code < 500, r.text
    assert len(r.content) < 2000, len(r.content)
    assert "y" * 81 not in r.text
    return str(r.text)


def test_clip_echoes() -> None:
    from fraudlens.service._errors import clip_echoes

    assert clip_echoes("short 'value'") == "short 'value'"
    quoted = clip_echoes(f"bad value {LONG!r} in column 'x'")
    assert quoted == "bad value '" + "y" * 77 + "\u2026' in column 'x'"
    bare_run = clip_echoes("unsupported " + LONG + " here")
    assert bare_run == "unsupported " + "y" * 79 + "\u2026 here"
    # Text with blanks is cut as a whole; so is one that would take a regex long to scan.
    assert len(clip_echoes("a " * 50_000)) == 2000
    assert len(clip_echoes("'\\'" * 100_000)) <= 2000


def test_long_values_are_not_echoed_whole(bare: Any) -> None:
    r = bare.post("/invocations", content=b"1", headers={"Content-Type": "text/" + LONG})
    assert r.status_code == 415
    assert "\u2026" in _short(r)
    r = bare.post("/v1/cards/score", json={"data": [[1.0]], "model": LONG})
    _short(r)
    r = bare.post("/v1/market/score", json={"klines": [LONG], "trades": []})
    _short(r)


def test_a_body_of_bad_values_gets_one_short_error(bare: Any) -> None:
    """A 4.5 MB body of 930,000 bad card values took 64 s and got a 100 MB reply."""
    bodies = [
        {"data": [[[0]] * 30] * 8000},  # 240,000 bad values
        {"data": [[]] * 100_000},
        {"data": [[1.0] * 30] * 10 + [{"Time": 1.0}] * 10_000},
        {"klines": [1] * 300_000, "trades": []},
        {"klines": [], "trades": [[]] * 300_000},
    ]
    for body in bodies:
        content = json.dumps(body).encode()
        for path in ("/v1/cards/score", "/v1/market/score", "/invocations"):
            if ("data" in body) == (path != "/v1/cards/score"):
                continue
            start = time.process_time()
            r = bare.post(path, content=content, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, r.text[:500]
            assert len(r.content) < 1000, (path, len(r.content))
            assert time.process_time() - start < 2.0
    r = bare.post("/v1/cards/score", json={"data": [[1.0, {"x": 1}]]})
    assert "row 1, value 2: {'x': 1} is not a number or text" in r.json()["error"]


def test_validation_errors_are_listed_up_to_a_limit() -> None:
    from fraudlens.service._errors import MAX_ERRORS

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/ids")
    def ids(values: list[int]) -> int:
        return len(values)

    with TestClient(app) as c:
        r = c.post("/ids", json=["x"] * 1000)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) == MAX_ERRORS
    assert detail[-1]["n_errors"] == 1000 and detail[-1]["type"] == "too_many_errors"
    assert detail[0]["loc"] == ["body", 0]


@pytest.mark.slow
def test_a_byte_order_mark_before_csv_rows_is_dropped(client: Any) -> None:
    rows = "\n".join([",".join(["0.5"] * len(CARD_FEATURES))] * 2)
    plain = client.post("/invocations", content=rows, headers={"Content-Type": "text/csv"})
    assert plain.status_code == 200, plain.text
    for body in (b"\xef\xbb\xbf" + rows.encode(), ("\ufeff" + rows).encode()):
        r = client.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
        assert r.status_code == 200, r.text
        assert r.json() == plain.json()
    r = client.post("/v1/cards/score", json={"data": "\ufeff" + rows})
    assert r.status_code == 200, r.text
    # Only at the start: a mark inside a row is still a bad value.
    r = client.post(
        "/invocations", content=rows + "\n\ufeff" + rows, headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 422 and r.json()["detail"]["row"] == 3


@pytest.mark.parametrize("path", ["/ping", "/metrics", "/login", "/docs", "/favicon.ico"])
def test_head_is_answered_like_get(bare: Any, path: str) -> None:
    get = bare.get(path)
    head = bare.head(path)
    assert head.status_code == get.status_code != 405
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # its counters moved in between
        assert head.headers["content-length"] == str(len(get.content))


def test_head_is_not_allowed_where_get_is_not(bare: Any) -> None:
    r = bare.head("/invocations")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert 'method="HEAD"' in bare.get("/metrics").text
