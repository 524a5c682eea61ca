"""Value moved and the suspected counterparty in the API: market scores and risk events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraudlens.config import Settings
from fraudlens.market.data import window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry
from fraudlens.service import create_app

T0 = pd.Timestamp("2026-03-02T14:30:00Z")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    train = window(simulate(300, seed=31, n_symbols=4, days=2))
    Registry(root).save(FeatureDetector(n_estimators=40, n_jobs=1).fit(train, train.y()))
    return root


def _payload() -> dict[str, Any]:
    """V buys at the bars' highs from B and sells back at the lows; O trades alone."""
    klines = [
        {
            "symbol": "X",
            "ts": (T0 + pd.Timedelta(minutes=5 * i)).isoformat(),
            "open": 10.0,
            "high": 13.0,
            "low": 9.0,
            "close": 11.0,
            "volume": 1000.0,
        }
        for i in range(12)
    ]
    rows = [
        ("v1", "V", 10, "buy", 13.0, 4.0),
        ("b1", "B", 10, "sell", 13.0, 4.0),
        ("v2", "V", 320, "sell", 9.0, 4.0),
        ("b2", "B", 320, "buy", 9.0, 4.0),
        ("v3", "V", 900, "buy", 13.0, 2.0),
        ("b3", "B", 900, "sell", 13.0, 2.0),
        ("v4", "V", 1000, "sell", 9.0, 2.0),
        ("b4", "B", 1000, "buy", 9.0, 2.0),
        ("o1", "O", 400, "buy", 10.5, 1.0),
        ("o2", "O", 2000, "sell", 11.0, 3.0),
    ]
    trades = [
        {
            "trade_id": i,
            "account_id": a,
            "symbol": "X",
            "ts": (T0 + pd.Timedelta(seconds=s)).isoformat(),
            "side": side,
            "price": p,
            "quantity": q,
        }
        for i, a, s, side, p, q in rows
    ]
    return {"klines": klines, "trades": trades}


def test_market_scores_carry_value_moved_and_counterparty(models: Path) -> None:
    moved = (13.0 - 9.0) * 4.0 + (13.0 - 9.0) * 2.0
    with TestClient(create_app(models_dir=models)) as c:
        r = c.post("/v1/market/score", json={**_payload(), "top": 2})
        assert r.status_code == 200, r.text
        by = {s["account_id"]: s for s in r.json()["scores"]}
        assert by["V"]["counterparty"] == "B" and by["B"]["counterparty"] == "V"
        assert by["V"]["value_moved"] == pytest.approx(moved)
        assert by["V"]["value_lost"] == pytest.approx(moved)
        assert by["B"]["value_lost"] == pytest.approx(-moved)
        assert by["V"]["n_mirrored"] == 4 and by["V"]["n_round_trips"] == 2
        assert by["V"]["counterparty_value_moved"] == pytest.approx(moved)
        assert by["O"]["counterparty"] is None and by["O"]["value_moved"] == 0.0
        # the SageMaker-style JSON reply carries the same evidence
        r = c.post(
            "/invocations",
            content=json.dumps(_payload()),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        inv = {s["account_id"]: s for s in r.json()["scores"]}
        assert inv["V"]["counterparty"] == "B"
        assert inv["V"]["value_moved"] == pytest.approx(moved)
        # and the OpenAPI schema documents the fields
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert {"value_moved", "counterparty"} <= set(schema["MarketAccountScore"]["properties"])
        assert {"value_moved", "counterparty"} <= set(schema["RiskEvent"]["properties"])


@pytest.fixture
def client_with_events(tmp_path: Path) -> Iterator[TestClient]:
    from fraudlens.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    end = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    base = {
        "score": 0.97,
        "threshold": 0.9,
        "model_version": "market-features:v0001",
        "window_start": end - timedelta(hours=24),
        "window_end": end,
    }
    store.add_risk_events(
        [
            {**base, "account_id": "V", "value_moved": 24.0, "counterparty": "B"},
            {**base, "account_id": "W", "value_moved": 3.5},
        ]
    )
    app = create_app(Settings(models_dir=tmp_path / "models"), store=store, preload=False)
    with TestClient(app) as c:
        yield c
    store.close()


def test_risk_events_return_value_moved_and_counterparty(client_with_events: TestClient) -> None:
    c = client_with_events
    r = c.get("/v1/risk-events")
    assert r.status_code == 200, r.text
    by = {e["account_id"]: e for e in r.json()["items"]}
    assert (by["V"]["value_moved"], by["V"]["counterparty"]) == (24.0, "B")
    assert (by["W"]["value_moved"], by["W"]["counterparty"]) == (3.5, None)
    r = c.get(f"/v1/risk-events/{by['V']['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["value_moved"] == 24.0 and r.json()["counterparty"] == "B"
