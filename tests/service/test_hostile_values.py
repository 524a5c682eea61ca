"""Market JSON values that parse but mean nothing: ``"ts": "now"`` or ``"today"`` (pandas
reads them as the time of reading: a request's trades were stamped with the clock's
time and scored), and ``NaN`` in a number column (Python's json reads it; it had been
reported as "missing open"). Each is a 422 naming the row and column, on both market
routes."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraudlens.config import Settings
from fraudlens.service import create_app

JSON = {"Content-Type": "application/json"}
ROUTES = ("/v1/market/score", "/invocations")


@pytest.fixture(scope="module")
def market() -> dict[str, list[dict[str, Any]]]:
    from fraudlens.market.simulate import simulate

    data = simulate(6, seed=8, n_symbols=1, days=1)
    klines = data.klines.assign(ts=data.klines["ts"].map(pd.Timestamp.isoformat))
    trades = data.trades.assign(ts=data.trades["ts"].map(pd.Timestamp.isoformat))
    return {"klines": klines.to_dict("records"), "trades": trades.to_dict("records")}


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """No models: market input is validated before any model is looked up (a body that
    passes gets 503)."""
    root = tmp_path_factory.mktemp("no-models")
    with TestClient(create_app(Settings(models_dir=root), preload=False)) as c:
        yield c


def _raw(body: dict[str, Any], which: str, row: int, column: str, raw_value: str) -> bytes:
    marker = "@@REPLACE@@"
    body = json.loads(json.dumps(body))
    body[which][row][column] = marker
    return json.dumps(body).replace(json.dumps(marker), raw_value).encode()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("which", ["klines", "trades"])
@pytest.mark.parametrize("word", ["now", "today"])
def test_clock_words_are_no_timestamps(
    bare: Any, market: dict, route: str, which: str, word: str
) -> None:
    r = bare.post(route, content=_raw(market, which, 2, "ts", json.dumps(word)), headers=JSON)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail["file"], detail["row"], detail["column"]) == (which, 3, "ts")
    assert f"'{word}' is a word read as the time of reading" in detail["reason"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("which", "column"),
    [
        ("klines", "open"),
        ("klines", "high"),
        ("klines", "low"),
        ("klines", "close"),
        ("klines", "volume"),
        ("trades", "price"),
        ("trades", "quantity"),
    ],
)
@pytest.mark.parametrize(
    ("raw", "shown"), [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")]
)
def test_numbers_that_are_not_finite_are_named(
    bare: Any, market: dict, route: str, which: str, column: str, raw: str, shown: str
) -> None:
    r = bare.post(route, content=_raw(market, which, 2, column, raw), headers=JSON)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail["file"], detail["row"], detail["column"]) == (which, 3, column)
    assert detail["reason"] == f"{shown} is not a finite number"


@pytest.mark.parametrize("route", ROUTES)
def test_null_is_still_missing(bare: Any, market: dict, route: str) -> None:
    """null (and a NaN elsewhere in the column) keep their own messages."""
    body = json.loads(_raw(market, "klines", 1, "open", "null"))
    body["klines"][4]["open"] = float("nan")
    r = bare.post(route, content=json.dumps(body).encode(), headers=JSON)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail["row"], detail["column"], detail["reason"]) == (2, "open", "missing open")
    body["klines"][1]["open"] = market["klines"][1]["open"]
    r = bare.post(route, content=json.dumps(body).encode(), headers=JSON)
    assert r.json()["detail"]["row"] == 5
    assert r.json()["detail"]["reason"] == "nan is not a finite number"


def test_a_valid_body_still_reaches_the_model(bare: Any, market: dict) -> None:
    """Integer and float values, with no null or NaN, pass as before (503: no model)."""
    r = bare.post("/v1/market/score", content=json.dumps(market).encode(), headers=JSON)
    assert r.status_code == 503, r.text
