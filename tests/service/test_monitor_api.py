"""Monitoring through the service: /v1/monitor, the /monitor page and the gauges in
/metrics, over a real store with trades, risk events and decisions and a real model whose
metadata holds its training profile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fraudlens.config import Settings
from fraudlens.service import create_app

pytest.importorskip("sqlalchemy")

from fraudlens.store import open_store


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fraudlens.market.data import window
    from fraudlens.market.detectors import FeatureDetector
    from fraudlens.market.simulate import simulate
    from fraudlens.monitoring import market_reference_profile
    from fraudlens.registry import Registry

    root = tmp_path_factory.mktemp("models")
    train = window(simulate(300, seed=31, n_symbols=4, days=2))
    Registry(root).save(
        FeatureDetector(n_estimators=30, n_jobs=1).fit(train, train.y()),
        extra={"reference_profile": market_reference_profile(train)},
    )
    return root


@pytest.fixture
def client(tmp_path: Path, models: Path) -> Iterator[TestClient]:
    from fraudlens.market.data import window
    from fraudlens.market.simulate import simulate

    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    store.upgrade()
    test = window(simulate(150, seed=32, n_symbols=4, days=2))
    store.load_klines(test.klines)
    store.load_trades(test.trades)
    now = datetime.now(UTC)
    base = {"threshold": 0.9, "window_start": now - timedelta(days=1), "window_end": now}
    store.add_risk_events(
        [
            {**base, "account_id": f"a{i}", "score": 0.95, "model_version": "market-features:v0001"}
            for i in range(4)
        ]
    )
    ids = [e["id"] for e in store.list_risk_events(limit=10)[0]]
    store.review_risk_events(ids[:3], status="confirmed", reviewed_by="ana")
    store.review_risk_events(ids[3:], status="dismissed", reviewed_by="ana")
    app = create_app(Settings(models_dir=models), store=store, preload=False)
    with TestClient(app) as c:
        yield c
    store.close()


def _gauges(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_monitor_json(client: TestClient) -> None:
    r = client.get("/v1/monitor")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["status_counts"] == {"confirmed": 3, "dismissed": 1}
    assert [(e["model_version"], e["count"]) for e in body["events_per_day"]] == [
        ("market-features:v0001", 4)
    ]
    assert body["precision_by_version"][0]["precision"] == 0.75
    assert body["model"]["id"] == "market-features:v0001" and body["model"]["has_profile"]
    assert 0 < body["scores"]["accounts"] <= 150
    assert sum(body["scores"]["counts"]) == body["scores"]["accounts"]
    assert body["drift"] and all(set(d) >= {"feature", "psi", "wasserstein"} for d in body["drift"])
    assert body["notes"] == []
    # reused, not recomputed, within the snapshot's age
    again = client.get("/v1/monitor").json()
    assert again["computed_at"] == body["computed_at"]
    assert client.get("/v1/monitor", params={"max_age": -1}).status_code == 422


def test_monitor_page(client: TestClient) -> None:
    r = client.get("/monitor")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    for section in ('id="alerts"', 'id="precision"', 'id="scores"', 'id="drift"'):
        assert section in html
    assert html.count("<svg") == 4 and "<script" not in html
    css = client.get("/monitor/monitor.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_metrics_export_the_snapshot(client: TestClient) -> None:
    # a scrape never waits: the first starts a snapshot in the background
    first = client.get("/metrics").text
    assert "fraudlens_reviewed_precision" not in first
    deadline = time.monotonic() + 60
    while True:
        text = client.get("/metrics").text
        if "fraudlens_reviewed_precision" in text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert _gauges(text, "fraudlens_reviewed_precision") == {
        'fraudlens_reviewed_precision{model_version="market-features:v0001"}': 0.75
    }
    status = _gauges(text, "fraudlens_risk_events")
    assert status['fraudlens_risk_events{status="confirmed"}'] == 3.0
    assert status['fraudlens_risk_events{status="open"}'] == 0.0
    recorded = _gauges(text, "fraudlens_risk_events_recorded")
    assert recorded == {
        'fraudlens_risk_events_recorded{model_version="market-features:v0001"}': 4.0
    }
    psi = _gauges(text, "fraudlens_feature_psi")
    assert len(psi) > 20 and all(v >= 0 for v in psi.values())
    buckets = _gauges(text, "fraudlens_model_score_bucket")
    assert buckets['fraudlens_model_score_bucket{le="1",model="market-features:v0001"}'] > 0
    assert "fraudlens_monitor_snapshot_timestamp_seconds" in text
