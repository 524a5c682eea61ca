"""Monitoring: reference profiles and drift (PSI, Wasserstein) on known distributions,
reviewed precision per model version and week, and a whole snapshot over a real store,
registry and model (the train command saves the profile it needs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.monitoring import (
    PSI_MAJOR,
    PSI_MODERATE,
    compute_snapshot,
    drift_level,
    feature_drift,
    precision_tables,
    psi,
    reference_profile,
)


def _table(n: int, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "normal": rng.normal(shift, 1.0, n),
            "counts": rng.poisson(3.0 + shift, n).astype(float),
            "constant": np.full(n, 2.0),
        }
    )


def test_profile_is_small_and_describes_the_data() -> None:
    train = _table(20_000)
    train.loc[:99, "normal"] = np.nan  # 0.5 % missing
    prof = reference_profile(train)
    assert prof["n"] == 20_000 and set(prof["features"]) == {"normal", "counts", "constant"}
    normal = prof["features"]["normal"]
    assert len(normal["quantiles"]) == 100 and len(normal["shares"]) == len(normal["edges"]) + 1
    assert normal["missing"] == pytest.approx(0.005)
    assert sum(normal["shares"]) == pytest.approx(1.0)
    assert normal["quantiles"][49] == pytest.approx(0.0, abs=0.05)  # the 49.5 % quantile
    assert normal["iqr"] == pytest.approx(1.349, rel=0.05)
    # tied values: fewer edges, shares still measured
    assert len(prof["features"]["constant"]["edges"]) == 1
    assert prof["features"]["constant"]["shares"] == [1.0, 0.0]
    import json

    assert len(json.dumps(prof)) < 10_000


def test_same_data_does_not_drift_and_a_shift_does() -> None:
    prof = reference_profile(_table(20_000, seed=1))
    same = {r["feature"]: r for r in feature_drift(prof, _table(5_000, seed=2))}
    assert same["normal"]["psi"] < 0.02 and same["normal"]["level"] == "none"
    assert same["counts"]["psi"] < 0.02
    assert same["normal"]["wasserstein"] < 0.06
    moved = feature_drift(prof, _table(5_000, shift=1.0, seed=3))
    by = {r["feature"]: r for r in moved}
    assert moved[0]["feature"] in ("normal", "counts")  # most drifted first
    assert by["normal"]["psi"] > PSI_MAJOR and by["normal"]["level"] == "major"
    # the Wasserstein-1 distance between N(0,1) and N(1,1) is 1
    assert by["normal"]["wasserstein"] == pytest.approx(1.0, abs=0.08)
    assert by["normal"]["wasserstein_iqr"] == pytest.approx(1.0 / 1.349, rel=0.1)
    assert by["counts"]["psi"] > PSI_MODERATE
    assert by["constant"]["psi"] == pytest.approx(0.0, abs=1e-9)


def test_missing_and_unknown_features() -> None:
    prof = reference_profile(_table(2_000))
    now = _table(500).drop(columns=["counts"])
    now["normal"] = np.nan
    by = {r["feature"]: r for r in feature_drift(prof, now)}
    assert by["counts"]["psi"] is None and by["counts"]["level"] == "unknown"
    assert by["normal"]["psi"] is None and by["normal"]["missing"] == 1.0
    assert by["constant"]["level"] == "none"
    with pytest.raises(ValueError, match="not a reference profile"):
        feature_drift({"features": {}}, now)


def test_psi_matches_its_definition() -> None:
    ref, now = [0.5, 0.3, 0.2], [0.3, 0.3, 0.4]
    want = sum((b - a) * np.log(b / a) for a, b in zip(ref, now, strict=True))
    assert psi(ref, now) == pytest.approx(want)
    assert psi(ref, ref) == 0.0
    assert psi([0.5, 0.5], [1.0, 0.0]) > 0  # an emptied bin counts, finitely
    assert [drift_level(v) for v in (0.05, 0.1, 0.3, None)] == [
        "none",
        "moderate",
        "major",
        "unknown",
    ]


def test_precision_per_version_and_week() -> None:
    rows = [
        ("2026-03-02", "m:v1", "confirmed", 8),  # ISO week 10
        ("2026-03-03", "m:v1", "dismissed", 2),
        ("2026-03-09", "m:v1", "confirmed", 1),  # week 11
        ("2026-03-09", "m:v2", "dismissed", 3),
    ]
    versions, weeks = precision_tables(rows)
    assert versions == [
        {
            "model_version": "m:v1",
            "confirmed": 9,
            "dismissed": 2,
            "reviewed": 11,
            "precision": 9 / 11,
        },
        {"model_version": "m:v2", "confirmed": 0, "dismissed": 3, "reviewed": 3, "precision": 0.0},
    ]
    assert [(w["week"], w["model_version"], w["precision"]) for w in weeks] == [
        ("2026-W10", "m:v1", 0.8),
        ("2026-W11", "m:v1", 1.0),
        ("2026-W11", "m:v2", 0.0),
    ]


@pytest.mark.slow
def test_snapshot_over_a_real_store_and_model(tmp_path: Path) -> None:
    """Train through the CLI (which saves the profile), load the test accounts into a
    store with risk events and decisions, and compute the snapshot."""
    pytest.importorskip("sqlalchemy")
    from typer.testing import CliRunner

    from fraudlens.cli import app
    from fraudlens.market.data import window
    from fraudlens.market.simulate import simulate
    from fraudlens.model_cache import ModelCache
    from fraudlens.registry import Registry
    from fraudlens.store import open_store

    train_dir = tmp_path / "train"
    sim = simulate(300, seed=11, n_symbols=4, days=2)
    train_dir.mkdir()
    sim.klines.to_csv(train_dir / "klines.csv", index=False)
    sim.trades.to_csv(train_dir / "trades.csv", index=False)
    sim.labels.to_csv(train_dir / "labels.csv", index=False)
    models = tmp_path / "models"
    result = CliRunner().invoke(
        app, ["market", "train", "--data", str(train_dir), "--model-dir", str(models)]
    )
    assert result.exit_code == 0, result.output
    meta = Registry(models).get("market-features").metadata
    profile = meta["reference_profile"]
    from fraudlens.market.features import FEATURE_NAMES

    assert set(profile["features"]) == set(FEATURE_NAMES) and profile["n"] == 300

    test = window(simulate(200, seed=12, n_symbols=4, days=2))
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    store.upgrade()
    store.load_klines(test.klines)
    store.load_trades(test.trades)
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    base = {"threshold": 0.9, "window_start": now - timedelta(days=1), "window_end": now}
    events = [
        {
            **base,
            "account_id": f"a{i}",
            "score": 0.95,
            "model_version": v,
            "created_at": now - timedelta(days=d),
        }
        for i, (v, d) in enumerate(
            [("m:v1", 0), ("m:v1", 0), ("m:v1", 8), ("m:v2", 1), ("m:v2", 70)]
        )
    ]
    assert store.add_risk_events(events) == 5
    ids = {e["account_id"]: e["id"] for e in store.list_risk_events(limit=10)[0]}
    store.review_risk_events([ids["a0"], ids["a2"]], status="confirmed", reviewed_by="ana")
    store.review_risk_events([ids["a1"], ids["a3"]], status="dismissed", reviewed_by="ana")

    snap = compute_snapshot(store, ModelCache(models), sample_accounts=120, now=now)
    per_day = {(r["day"], r["model_version"]): r["count"] for r in snap.events_per_day}
    assert per_day == {
        ("2026-03-20", "m:v1"): 2,
        ("2026-03-12", "m:v1"): 1,
        ("2026-03-19", "m:v2"): 1,
    }
    assert snap.events_by_version == {"m:v1": 3, "m:v2": 2}  # all time
    assert snap.status_counts == {"confirmed": 2, "dismissed": 2, "open": 1}
    prec = {r["model_version"]: r["precision"] for r in snap.precision_by_version}
    assert prec == {"m:v1": pytest.approx(2 / 3), "m:v2": 0.0}
    assert snap.model is not None and snap.model["id"] == "market-features:v0001"
    assert snap.model["has_profile"] is True
    assert snap.scores is not None
    active = len(store.recent_accounts(hours=24.0)[0])
    assert (
        snap.scores["accounts"] == min(120, active)
        and sum(snap.scores["counts"]) == snap.scores["accounts"]
    )
    assert snap.drift is not None and {r["feature"] for r in snap.drift} == set(FEATURE_NAMES)
    assert all(r["psi"] is None or r["psi"] >= 0 for r in snap.drift)
    assert snap.notes == []
    assert snap.to_dict()["model"]["id"] == "market-features:v0001"
    store.close()
