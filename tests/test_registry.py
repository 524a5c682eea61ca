"""The model registry: versions, activation, metadata, no half-written versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudlens.errors import ModelNotFoundError
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry


@pytest.fixture(scope="module")
def small_market():
    return simulate(200, seed=5)


def test_versions_activate_and_load(tmp_path: Path, small_market) -> None:
    reg = Registry(tmp_path)
    det = FeatureDetector(n_estimators=20).fit(small_market)
    v1 = reg.save(det, metrics={"auc": 0.9}, data_digest="abc")
    v2 = reg.save(det, metrics={"auc": 0.95})
    assert (v1.version, v2.version) == ("v0001", "v0002")
    assert reg.active_version("market-features") == "v0002"
    assert reg.defaults() == {"market": "market-features"}
    meta = json.loads((v1.path / "metadata.json").read_text())
    for key in ("version", "created_at", "data_hash", "metrics", "threshold", "libraries"):
        assert key in meta
    assert meta["libraries"]["xgboost"]
    reg.activate("market-features", "v0001")
    loaded = reg.load("market")
    assert loaded.model_version_ == "market-features:v0001"  # type: ignore[attr-defined]
    np.testing.assert_allclose(
        loaded.decision_function(small_market), det.decision_function(small_market), rtol=1e-6
    )
    assert [mv.version for mv in reg.list()] == ["v0001", "v0002"]


def test_missing_models_raise(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    with pytest.raises(ModelNotFoundError):
        reg.load("market")
    with pytest.raises(ModelNotFoundError):
        reg.get("market-features", "v0009")


def test_failed_save_leaves_no_version(tmp_path: Path, small_market) -> None:
    class Exploding(FeatureDetector):
        def save_files(self, path: Path) -> dict[str, Any]:
            (path / "partial.bin").write_bytes(b"x")
            raise OSError("disk full")

    det = Exploding(n_estimators=5).fit(small_market)
    reg = Registry(tmp_path)
    with pytest.raises(OSError):
        reg.save(det)
    assert reg.versions("market-features") == []
    assert not any(p.name.startswith(".incoming") for p in (tmp_path / "market-features").iterdir())
