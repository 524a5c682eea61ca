"""The scoring service with real models trained on ULB rows: reply shapes, errors, metrics."""

from __future__ import annotations

import csv
import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraudlens.registry import Registry
from fraudlens.service import create_app

# Every test here uses models trained for real in the module fixtures.
pytestmark = pytest.mark.slow

ULB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ulb_creditcard_day1.csv"
N_FEATURES = 30


@pytest.fixture(scope="module")
def ulb() -> pd.DataFrame:
    if not ULB.is_file():
        pytest.skip(f"ULB sample not found at {ULB}")
    df = pd.read_csv(ULB)
    rng = np.random.default_rng(0)
    frauds = np.flatnonzero(df["Class"].to_numpy() == 1)
    normal = rng.choice(np.flatnonzero(df["Class"].to_numpy() == 0), 3000, replace=False)
    return df.iloc[np.sort(np.concatenate([frauds, normal]))].reset_index(drop=True)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, ulb: pd.DataFrame) -> Path:
    """A registry with a small XGBoost classifier and an Isolation Forest, trained for real."""
    from fraudlens.cards.detectors import AnomalyDetector, XGBoostDetector

    root = tmp_path_factory.mktemp("models")
    X, y = ulb.drop(columns="Class"), ulb["Class"].to_numpy()
    reg = Registry(root)
    xgb = XGBoostDetector(n_estimators=40, early_stopping_rounds=None, refit=False, n_jobs=1)
    reg.save(xgb.fit(X, y))
    reg.save(AnomalyDetector(n_estimators=30, refit=False).fit(X, y))
    return root


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(models_dir=models_dir, check_seconds=0.0)) as c:
        yield c


def csv_rows(df: pd.DataFrame) -> str:
    return "\n".join(
        ",".join(repr(float(v)) for v in row) for row in df.drop(columns="Class").to_numpy()
    )


@pytest.fixture(scope="module")
def sample(ulb: pd.DataFrame) -> pd.DataFrame:
    """Four frauds and four normal rows."""
    return pd.concat([ulb[ulb["Class"] == 1].head(4), ulb[ulb["Class"] == 0].head(4)])


def test_ping(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/ping")
    assert r.status_code == 200
    assert r.json()["status"] == "healthy"
    assert "cards-xgboost" in r.json()["models"]
    with TestClient(create_app(models_dir=tmp_path / "empty")) as empty:
        r = empty.get("/ping")
        assert r.status_code == 503
        assert "no loadable model" in r.json()["error"]


def test_linear_learner_reply(client: TestClient, sample: pd.DataFrame, models_dir: Path) -> None:
    r = client.post("/invocations", content=csv_rows(sample), headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 8
    assert set(preds[0]) == {"score", "predicted_label"}
    det = Registry(models_dir).load("cards-xgboost")
    expected = det.decision_function(sample.drop(columns="Class"))
    np.testing.assert_allclose([p["score"] for p in preds], expected, rtol=1e-6)
    assert [p["predicted_label"] for p in preds] == [int(s > det.threshold_) for s in expected]
    # The model separates these rows: every fraud scores above every normal row.
    scores = np.array([p["score"] for p in preds])
    assert scores[:4].min() > scores[4:].max()
    assert r.headers["x-model-version"] == "cards-xgboost:v0001"


def test_xgboost_text_reply(client: TestClient, sample: pd.DataFrame) -> None:
    body = csv_rows(sample)
    ll = client.post("/invocations", content=body, headers={"Content-Type": "text/csv"}).json()
    for kwargs in (
        {"headers": {"Content-Type": "text/csv", "Accept": "text/csv"}},
        {"headers": {"Content-Type": "text/csv"}, "params": {"format": "xgboost"}},
    ):
        r = client.post("/invocations", content=body, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        lines = r.text.strip().split("\n")
        assert [float(x) for x in lines] == pytest.approx([p["score"] for p in ll["predictions"]])


def test_rcf_reply(client: TestClient, sample: pd.DataFrame, models_dir: Path) -> None:
    body = csv_rows(sample)
    expected = (
        Registry(models_dir).load("cards-anomaly").decision_function(sample.drop(columns="Class"))
    )
    for kwargs in (
        {"params": {"format": "rcf"}, "headers": {"Content-Type": "text/csv"}},
        {"headers": {"Content-Type": "text/csv", "X-Model": "anomaly"}},
    ):
        r = client.post("/invocations", content=body, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 200
        scores = r.json()["scores"]
        assert list(scores[0]) == ["score"]
        np.testing.assert_allclose([s["score"] for s in scores], expected, rtol=1e-9)


def test_v1_cards_score_shapes(client: TestClient, sample: pd.DataFrame, models_dir: Path) -> None:
    both = client.post(
        "/v1/cards/score", json={"data": csv_rows(sample), "metadata": list(range(8))}
    )
    assert both.status_code == 200, both.text
    out = both.json()
    assert set(out) == {"fraud_classifier", "anomaly_detector"}
    assert set(out["fraud_classifier"]) == {"pred_proba", "prediction"}
    assert len(out["fraud_classifier"]["pred_proba"]) == 8
    assert len(out["anomaly_detector"]["score"]) == 8
    threshold = Registry(models_dir).load("cards-xgboost").threshold_
    assert out["fraud_classifier"]["prediction"] == [
        int(p > threshold) for p in out["fraud_classifier"]["pred_proba"]
    ]

    rows = sample.drop(columns="Class").to_numpy().tolist()
    only = client.post("/v1/cards/score", json={"data": rows, "model": "fraud_classifier"}).json()
    assert set(only) == {"fraud_classifier"}
    assert only["fraud_classifier"]["pred_proba"] == pytest.approx(
        out["fraud_classifier"]["pred_proba"]
    )
    anomaly = client.post(
        "/v1/cards/score", json={"data": rows, "model": "anomaly_detector"}
    ).json()
    assert set(anomaly) == {"anomaly_detector"}


def test_v1_cards_score_writes_sink(models_dir: Path, sample: pd.DataFrame, tmp_path: Path) -> None:
    from fraudlens.sinks import open_sink

    sink = open_sink(tmp_path / "sink", timer=False)
    with TestClient(create_app(models_dir=models_dir, sink=sink)) as c:
        meta = [{"transaction_id": f"t{i}", "source": "Web"} for i in range(8)]
        r = c.post("/v1/cards/score", json={"data": csv_rows(sample), "metadata": meta})
        assert r.status_code == 200
    # Leaving the client shuts the app down, which closes (flushes) the sink.
    (obj,) = [p for p in (tmp_path / "sink").rglob("*.csv")]
    with open(obj, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["transaction_id"] for row in rows] == [f"t{i}" for i in range(8)]
    assert {row["source"] for row in rows} == {"Web"}
    assert [float(row["score"]) for row in rows] == pytest.approx(
        r.json()["fraud_classifier"]["pred_proba"]
    )
    assert all(row["anomaly_score"] for row in rows)


def test_bad_input_never_500(client: TestClient, sample: pd.DataFrame) -> None:
    good = csv_rows(sample.head(2)).split("\n")
    cases = [
        (
            "wrong content type",
            {"content": b"abc", "headers": {"Content-Type": "application/xml"}},
            415,
        ),
        ("no content type", {"content": b"abc", "headers": {"Content-Type": ""}}, 415),
        ("empty body", {"content": b"", "headers": {"Content-Type": "text/csv"}}, 400),
        (
            "short row",
            {"content": good[0] + "\n1,2,3", "headers": {"Content-Type": "text/csv"}},
            422,
        ),
        (
            "not a number",
            {
                "content": good[0].replace(",", ",abc,", 1).rsplit(",", 1)[0],
                "headers": {"Content-Type": "text/csv"},
            },
            422,
        ),
        ("not utf-8", {"content": b"\xff\xfe\x00", "headers": {"Content-Type": "text/csv"}}, 422),
        (
            "nan value",
            {"content": ",".join(["nan"] * N_FEATURES), "headers": {"Content-Type": "text/csv"}},
            422,
        ),
        (
            "unknown model",
            {"content": good[0], "headers": {"Content-Type": "text/csv", "X-Model": "svm"}},
            422,
        ),
        (
            "unknown format",
            {
                "content": good[0],
                "headers": {"Content-Type": "text/csv"},
                "params": {"format": "svmlight"},
            },
            422,
        ),
        (
            "bad json",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
        ),
        (
            "json without trades",
            {"content": b'{"klines": []}', "headers": {"Content-Type": "application/json"}},
            422,
        ),
        (
            "json of wrong type",
            {"content": b"[1, 2]", "headers": {"Content-Type": "application/json"}},
            422,
        ),
    ]
    for what, kwargs, status in cases:
        r = client.post("/invocations", **kwargs)  # type: ignore[arg-type]
        assert r.status_code == status, (what, r.status_code, r.text)
        body = r.json()
        assert set(body) == {"error", "detail"}, what
        assert body["error"], what

    r = client.post(
        "/invocations", content=good[0] + "\n1,2,3", headers={"Content-Type": "text/csv"}
    )
    assert r.json()["detail"]["row"] == 2
    assert "expected 30" in r.json()["error"]
    bad = good[1].split(",")
    bad[4] = "x7"
    r = client.post(
        "/invocations", content=good[0] + "\n" + ",".join(bad), headers={"Content-Type": "text/csv"}
    )
    assert (r.json()["detail"]["row"], r.json()["detail"]["column"]) == (2, "5")
    assert "x7" in r.json()["error"]

    v1 = [
        ("missing data", {"metadata": []}, 422, "data"),
        ("bad model", {"data": good[0], "model": "svm"}, 422, "model"),
        ("ragged rows", {"data": [[1.0, 2.0]]}, 422, "expected 30"),
        ("metadata mismatch", {"data": "\n".join(good), "metadata": [1, 2, 3]}, 422, "metadata"),
        ("empty rows", {"data": []}, 422, "at least 1 item"),
    ]
    for what, payload, status, needle in v1:
        r = client.post("/v1/cards/score", json=payload)
        assert r.status_code == status, (what, r.text)
        assert needle in json.dumps(r.json()), (what, r.text)

    r = client.post(
        "/v1/market/score", json={"klines": [{"symbol": "X"}], "trades": [{"trade_id": 1}]}
    )
    assert r.status_code in (422, 503), r.text
    assert r.json()["error"]


def test_market_bad_rows_named(client: TestClient) -> None:
    pytest.importorskip("fraudlens.market.data")
    klines = [
        {
            "symbol": "COIN",
            "ts": "2024-03-01T14:30:00Z",
            "open": 10,
            "high": 10.5,
            "low": 9.8,
            "close": 10.1,
            "volume": 100,
        }
    ]
    trades = [
        {
            "trade_id": "t1",
            "account_id": "a",
            "symbol": "COIN",
            "ts": "2024-03-01T14:31:00Z",
            "side": "buy",
            "price": 9.9,
            "quantity": 1,
        },
        {
            "trade_id": "t2",
            "account_id": "a",
            "symbol": "COIN",
            "ts": "yesterday",
            "side": "sell",
            "price": 10.4,
            "quantity": 1,
        },
    ]
    r = client.post("/v1/market/score", json={"klines": klines, "trades": trades})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail["file"], detail["row"], detail["column"]) == ("trades", 2, "ts")
    r = client.post(
        "/v1/market/score", json={"klines": [{**klines[0], "high": "tall"}], "trades": trades[:1]}
    )
    assert r.status_code == 422
    assert r.json()["detail"]["column"] == "high"


def test_oversized_body(models_dir: Path) -> None:
    with TestClient(create_app(models_dir=models_dir, max_body_bytes=1000, preload=False)) as c:
        big = b"1," * 600
        r = c.post("/invocations", content=big, headers={"Content-Type": "text/csv"})
        assert r.status_code == 413
        assert r.json()["detail"]["limit"] == 1000

        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b"1," * 50

        # A generator is sent chunked, without Content-Length: caught while reading.
        r = c.post("/invocations", content=chunks(), headers={"Content-Type": "text/csv"})
        assert r.status_code == 413
        assert "limit of 1000 bytes" in r.json()["error"]
        r = c.post(
            "/v1/cards/score", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413
        text = c.get("/metrics").text
        assert (
            'fraudlens_http_requests_total{method="POST",route="/invocations",status="413"} 2.0'
            in text
        )


def test_metrics(client: TestClient, sample: pd.DataFrame) -> None:
    client.post(
        "/invocations", content=csv_rows(sample.head(1)), headers={"Content-Type": "text/csv"}
    )
    client.post("/invocations", content=b"x", headers={"Content-Type": "application/xml"})
    r = client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'fraudlens_http_requests_total{method="POST",route="/invocations",status="200"}' in text
    assert 'fraudlens_http_requests_total{method="POST",route="/invocations",status="415"}' in text
    assert (
        'fraudlens_http_request_seconds_bucket{le="0.01",method="POST",route="/invocations"}'
        in text
    )
    assert 'fraudlens_model_loaded{name="cards-xgboost",version="v0001"} 1.0' in text
    assert 'fraudlens_scored_records_total{model="cards-xgboost:v0001"}' in text


def test_openapi_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/ping", "/invocations", "/v1/cards/score", "/v1/market/score", "/metrics"):
        assert path in spec["paths"], path
    assert "text/csv" in spec["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_new_version_picked_up_without_restart(
    ulb: pd.DataFrame, tmp_path: Path, sample: pd.DataFrame
) -> None:
    from fraudlens.cards.detectors import XGBoostDetector

    X, y = ulb.drop(columns="Class"), ulb["Class"].to_numpy()
    reg = Registry(tmp_path)
    reg.save(
        XGBoostDetector(n_estimators=5, early_stopping_rounds=None, refit=False, n_jobs=1).fit(X, y)
    )
    body = csv_rows(sample.head(2))
    with TestClient(create_app(models_dir=tmp_path, check_seconds=0.2)) as c:
        first = c.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
        assert first.headers["x-model-version"] == "cards-xgboost:v0001"
        reg.save(
            XGBoostDetector(n_estimators=30, early_stopping_rounds=None, refit=False, n_jobs=1).fit(
                X, y
            )
        )
        deadline = time.monotonic() + 5
        while True:
            r = c.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
            if r.headers["x-model-version"] == "cards-xgboost:v0002" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.headers["x-model-version"] == "cards-xgboost:v0002"
        assert r.json() != first.json()
        text = c.get("/metrics").text
        assert 'fraudlens_model_loaded{name="cards-xgboost",version="v0002"} 1.0' in text
        assert 'version="v0001"' not in text


def test_real_uvicorn_server(models_dir: Path, sample: pd.DataFrame) -> None:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(models_dir=models_dir), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/ping")
        ping = conn.getresponse()
        assert ping.status == 200
        assert json.loads(ping.read())["status"] == "healthy"
        conn.request(
            "POST",
            "/invocations",
            body=csv_rows(sample.head(1)),
            headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert 0.0 <= float(resp.read().decode()) <= 1.0
        conn.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_serve_host_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    # The package re-exports the command function under the module's name.
    cli = importlib.import_module("fraudlens.cli.serve")

    monkeypatch.setattr(cli, "in_container", lambda: True)
    monkeypatch.setattr(sys, "argv", ["fraudlens", "serve"])
    assert cli._default_host() == "0.0.0.0"
    monkeypatch.setattr(sys, "argv", ["fraudlens", "serve", "--port", "9000"])
    assert cli._default_host() == "0.0.0.0"
    monkeypatch.setattr(sys, "argv", ["fraudlens", "cards", "serve"])
    assert cli._default_host() == "127.0.0.1"
    monkeypatch.setattr(cli, "in_container", lambda: False)
    monkeypatch.setattr(sys, "argv", ["fraudlens", "serve"])
    assert cli._default_host() == "127.0.0.1"


def test_in_container_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from fraudlens.cli.serve import in_container

    monkeypatch.setenv("FRAUDLENS_IN_CONTAINER", "1")
    assert in_container()


# ------------------------------------------------------------------------------- market


def market_payload(data: object) -> dict[str, list[dict[str, object]]]:
    def records(df: pd.DataFrame) -> list[dict[str, object]]:
        out = df.copy()
        out["ts"] = out["ts"].map(lambda t: t.isoformat())
        return out.to_dict(orient="records")

    k = data.klines[["symbol", "ts", "open", "high", "low", "close", "volume"]]  # type: ignore[attr-defined]
    t = data.trades[["trade_id", "account_id", "symbol", "ts", "side", "price", "quantity"]]  # type: ignore[attr-defined]
    return {"klines": records(k), "trades": records(t)}


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A registry with a market feature model and a (one-epoch) CNN trained on simulated
    accounts, and unseen accounts to score."""
    pytest.importorskip("torch")
    from fraudlens.market.data import window
    from fraudlens.market.detectors import CNNDetector, FeatureDetector
    from fraudlens.market.simulate import simulate

    train = window(simulate(300, seed=11, n_symbols=6, days=2))
    root = tmp_path_factory.mktemp("market-models")
    reg = Registry(root)
    small = train.subset(train.account_ids[::5])
    reg.save(CNNDetector(epochs=1, num_threads=2).fit(small))
    # Saved last, so it is the market domain's default model.
    reg.save(FeatureDetector(n_estimators=60, n_jobs=1).fit(train, train.y()))
    test = simulate(60, seed=12, n_symbols=4, days=2)
    return root, test


def test_market_scores(market: tuple[Path, object]) -> None:
    from sklearn.metrics import roc_auc_score

    from fraudlens.market.data import window

    root, test = market
    payload = market_payload(test)
    det = Registry(root).load("market-features")
    expected = det.decision_function(window(test))  # type: ignore[arg-type]
    with TestClient(create_app(models_dir=root)) as c:
        r = c.post("/v1/market/score", json={**payload, "top": 3})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model"] == "market-features:v0001"
        ids = [s["account_id"] for s in out["scores"]]
        assert ids == [str(a) for a in test.account_ids]  # type: ignore[attr-defined]
        scores = np.array([s["score"] for s in out["scores"]])
        np.testing.assert_allclose(scores, expected, rtol=1e-6)
        # the one flag rule: strictly above the model's own threshold
        assert out["threshold"] == det.threshold_
        assert [s["flagged"] for s in out["scores"]] == [bool(v > det.threshold_) for v in scores]
        assert roc_auc_score(test.y(), scores) > 0.8  # type: ignore[attr-defined]
        trades = {str(t) for t in test.trades["trade_id"]}  # type: ignore[attr-defined]
        for s in out["scores"]:
            assert 1 <= len(s["trades"]) <= 3
            assert all(str(t["trade_id"]) in trades for t in s["trades"])
            assert all(t["reason"] for t in s["trades"])

        r = c.post(
            "/invocations",
            content=json.dumps(payload),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        sm = r.json()
        assert set(sm) == {"model", "threshold", "scores"}
        from fraudlens.scoring import EVIDENCE_COLUMNS

        assert set(sm["scores"][0]) == {"account_id", "score", "flagged", *EVIDENCE_COLUMNS}
        np.testing.assert_allclose([s["score"] for s in sm["scores"]], expected, rtol=1e-6)

        cnn = Registry(root).load("market-cnn")
        r = c.post("/v1/market/score", json={**payload, "model": "cnn", "top": 0})
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "market-cnn:v0001"
        np.testing.assert_allclose(
            [s["score"] for s in r.json()["scores"]],
            cnn.decision_function(window(test)),  # type: ignore[arg-type]
            rtol=1e-5,
        )


def test_image_reply(market: tuple[Path, object], client: TestClient) -> None:
    import io

    from PIL import Image

    from fraudlens.market.data import window
    from fraudlens.market.render import render_batch

    root, test = market
    cnn = Registry(root).load("market-cnn")
    images = render_batch(window(test).subset(test.account_ids[:2]))  # type: ignore[attr-defined]
    with TestClient(create_app(models_dir=root)) as c:
        for fmt, media in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
            buf = io.BytesIO()
            Image.fromarray(images[0]).save(buf, format=fmt)
            r = c.post("/invocations", content=buf.getvalue(), headers={"Content-Type": media})
            assert r.status_code == 200, r.text
            reply = r.json()
            assert isinstance(reply, list) and len(reply) == 2
            assert sum(reply) == pytest.approx(1.0, abs=1e-5)
            decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            np.testing.assert_allclose(reply, cnn.score_images(decoded)[0], rtol=1e-5)
        png = io.BytesIO()
        Image.fromarray(images[1]).save(png, format="PNG")
        for garbage in (b"\xff\xd8\xff\xe0 not really a jpeg", png.getvalue()[:200], b"GIF89a"):
            r = c.post("/invocations", content=garbage, headers={"Content-Type": "image/jpeg"})
            assert r.status_code == 400, r.text
            assert "image" in r.json()["error"]
    # A registry without a CNN answers an image with 503, not 500.
    r = client.post("/invocations", content=png.getvalue(), headers={"Content-Type": "image/png"})
    assert r.status_code == 503
    assert "market-cnn" in r.json()["error"]
    assert "retry-after" not in r.headers  # waiting does not train a model
